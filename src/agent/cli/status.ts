/** `packrat-agent status [--json]`: reads the state DB (read-only; works while the daemon runs). */
import { openStateStore } from "../../state/db.js";
import { PUBLISH_CHECK_FAILURES_KEY, PUBLISH_CHECK_LAST_FAILURE_KEY } from "../../sync/publish.js";
import { parseCommandArgs, settingsAndLogger } from "./common.js";
import { keyExpiryWarning } from "../../signing/expiry.js";
import { loadConfiguredSigner } from "../context.js";

export interface RepoStatus {
  name: string;
  managerType: string;
  directory: string;
  files: number;
  bytes: number;
  generation: number | null;
  lastPublish: string | null;
  failingDownloads: { file: string; error: string; attempts: number }[];
  lastMasterContact: string | null;
}

export interface AgentStatus {
  lastFullSync: {
    started: string;
    finished: string | null;
    durationMs: number | null;
    result: string;
    message: string | null;
  } | null;
  lastSuccessfulFullSync: string | null;
  signingKey: { keyId: string; expires: string | null; warning: string | null } | null;
  /** Generations the publisher's self-check refused to switch in, and the last one's details. */
  selfCheck: { refused: number; last: unknown };
  repos: RepoStatus[];
}

function parseJsonOrNull(text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("status", argv, { json: { type: "boolean" } });
  const { settings, log } = await settingsAndLogger(values);
  const store = openStateStore(settings.mirror.stateDb, { readonly: true });
  let status: AgentStatus;
  try {
    const last = store.lastSyncRun("full");
    const failures = store.listDownloadFailures();
    const files = store.listPackageFiles();
    const repos = store.listRepos().map(({ repo, lastMasterContact }): RepoStatus => {
      const gen = store.latestGeneration(repo.name);
      const mine = files.filter((f) => f.repo === repo.name);
      return {
        name: repo.name,
        managerType: repo.managerType,
        directory: repo.filesystemDir,
        files: mine.length,
        bytes: mine.reduce((n, f) => n + (f.size ?? 0), 0),
        generation: gen?.generation ?? null,
        lastPublish: iso(gen?.publishedAt),
        failingDownloads: failures
          .filter((f) => f.repo === repo.name)
          .map((f) => ({ file: f.filename, error: f.error, attempts: f.attempts })),
        lastMasterContact: iso(lastMasterContact),
      };
    });
    let signingKey: AgentStatus["signingKey"] = null;
    if (settings.mirror.gpgKeyFile) {
      const signer = await loadConfiguredSigner(settings, log);
      if (signer) {
        signingKey = {
          keyId: signer.keyId,
          expires: signer.expiresAt?.toISOString() ?? null,
          warning: keyExpiryWarning(signer, new Date(), settings.mirror.keyExpiryWarnDays),
        };
      }
    }
    status = {
      lastFullSync: last
        ? {
            started: new Date(last.startedAt).toISOString(),
            finished: iso(last.finishedAt),
            durationMs: last.finishedAt ? last.finishedAt - last.startedAt : null,
            result: last.result,
            message: last.message,
          }
        : null,
      lastSuccessfulFullSync: iso(store.lastSuccessfulSyncRun("full")?.finishedAt),
      signingKey,
      selfCheck: {
        refused: Number(store.getValue(PUBLISH_CHECK_FAILURES_KEY) ?? "0"),
        last: parseJsonOrNull(store.getValue(PUBLISH_CHECK_LAST_FAILURE_KEY)),
      },
      repos,
    };
  } finally {
    store.close();
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  const l = status.lastFullSync;
  out.push(
    l
      ? `last full sync: ${l.result} at ${l.finished ?? l.started}${l.durationMs !== null ? ` (${(l.durationMs / 1000).toFixed(1)} s)` : ""}${l.message ? `: ${l.message}` : ""}`
      : "last full sync: never",
  );
  out.push(`last successful full sync: ${status.lastSuccessfulFullSync ?? "never"}`);
  if (status.signingKey) {
    out.push(
      `signing key: ${status.signingKey.keyId}, expires ${status.signingKey.expires ?? "never"}${status.signingKey.warning ? ` (${status.signingKey.warning})` : ""}`,
    );
  } else {
    out.push("signing key: none (repositories are published unsigned)");
  }
  if (status.selfCheck.refused > 0) {
    out.push(
      `self-check refused ${status.selfCheck.refused} generation(s); last: ${JSON.stringify(status.selfCheck.last)}`,
    );
  }
  for (const r of status.repos) {
    out.push(
      `repo ${r.name} (${r.managerType}, ${r.directory}): ${r.files} files, ${r.bytes} bytes, generation ${r.generation ?? "-"}, last publish ${r.lastPublish ?? "never"}, master last seen ${r.lastMasterContact ?? "never"}`,
    );
    for (const f of r.failingDownloads)
      out.push(`  failing: ${f.file} (${f.attempts} attempts): ${f.error}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}
