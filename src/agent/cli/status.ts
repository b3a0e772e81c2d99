/** `packrat-agent status [--json]`: reads the state DB (read-only; works while the daemon runs). */
import { openStateStore } from "../../state/db.js";
import { PUBLISH_CHECK_FAILURES_KEY, PUBLISH_CHECK_LAST_FAILURE_KEY } from "../../sync/publish.js";
import { parseCommandArgs, settingsAndLogger } from "./common.js";
import { keyExpiryWarning } from "../../signing/expiry.js";
import type { Logger } from "../../log.js";
import type { Settings } from "../../settings.js";
import type { StateStore } from "../../state/state-store.js";
import { loadConfiguredSigner, replicasFrom, servePolicyOf } from "../context.js";
import { TRIGGERS_KEY, type TriggersStatus } from "../../sync/daemon.js";
import { layoutFor } from "../../layout/index.js";
import { metaCacheKey } from "../../layout/types.js";

export interface RepoStatus {
  name: string;
  managerType: string;
  directory: string;
  /** Package files the repo serves (its serve policy applied). */
  files: number;
  /** Package files the master lists for it, served or not. */
  listed: number;
  /** Of those, marked failed / deprecated on the master, and whether the repo serves them. */
  failed: { count: number; published: boolean };
  deprecated: { count: number; published: boolean };
  /** Files the master lists that the agent cannot use (unsafe name, malformed object). */
  skipped: { uri: string; file: string; error: string }[];
  /** Files downloaded that their format's parser refused (a bad image archive): not served. */
  unreadable: { file: string; error: string }[];
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
  /** What the daemon concluded about the master's poll triggers; null before any evidence. */
  triggers: TriggersStatus | null;
  /** The bucket of [s3]: how far behind root_dir it is; null without [s3]. */
  bucket: BucketStatus | null;
  repos: RepoStatus[];
}

export interface BucketStatus {
  target: string;
  lastSuccess: string | null;
  lastAttempt: string | null;
  lastError: string | null;
  failuresInARow: number;
  nextAttempt: string | null;
  /** Repos whose bucket generation is older than root_dir's, with both numbers. */
  behind: { repo: string; diskGeneration: number; bucketGeneration: number | null }[];
  /** Seconds since the bucket was last fully up to date; 0 when it is. */
  behindSeconds: number;
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

function bucketStatus(settings: Settings, store: StateStore, log: Logger): BucketStatus | null {
  const [replica] = replicasFrom(settings, store, log);
  if (!replica) return null;
  try {
    const st = replica.status();
    const behind = st.repos.filter(
      (r) => r.diskGeneration > 0 && (r.bucketGeneration ?? 0) < r.diskGeneration,
    );
    return {
      target: st.description,
      lastSuccess: iso(st.lastSuccessAt),
      lastAttempt: iso(st.lastAttemptAt),
      lastError: st.lastError,
      failuresInARow: st.failuresInARow,
      nextAttempt: iso(st.nextAttemptAt),
      behind,
      behindSeconds:
        behind.length === 0
          ? 0
          : Math.round((Date.now() - (st.lastSuccessAt ?? st.lastAttemptAt ?? Date.now())) / 1000),
    };
  } finally {
    replica.close();
  }
}

/** Served files whose parse failed (cached by SHA-256 in the state DB with its error). */
function unreadableOf(
  store: StateStore,
  managerType: string,
  served: readonly { file: { filename: string; sha256: string }; diskSha256: string | null }[],
): RepoStatus["unreadable"] {
  const layout = layoutFor(managerType);
  if (!layout) return [];
  const key = metaCacheKey(layout);
  const status = store.packageMetaStatus(key);
  return served.flatMap((f) => {
    const sha = f.diskSha256 ?? f.file.sha256;
    if (status.get(sha) !== false) return [];
    return [{ file: f.file.filename, error: store.getPackageMeta(sha, key)?.error ?? "" }];
  });
}

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("status", argv, { json: { type: "boolean" } });
  const { settings, log } = await settingsAndLogger(values);
  const store = openStateStore(settings.mirror.stateDb, { readonly: true });
  let status: AgentStatus;
  try {
    const last = store.lastSyncRun("full");
    const failures = store.listDownloadFailures();
    const files = store.listPackageFiles();
    const skipped = store.listSkippedFiles();
    const repos = store.listRepos().map(({ repo, lastMasterContact }): RepoStatus => {
      const gen = store.latestGeneration(repo.name);
      const listed = files.filter((f) => f.repo === repo.name);
      const policy = servePolicyOf(settings, repo.name);
      const served = listed.filter(
        (f) =>
          (f.file.failedAt === null || policy.publishFailed) &&
          (f.file.deprecatedAt === null || policy.publishDeprecated),
      );
      return {
        name: repo.name,
        managerType: repo.managerType,
        directory: repo.filesystemDir,
        files: served.length,
        listed: listed.length,
        failed: {
          count: listed.filter((f) => f.file.failedAt !== null).length,
          published: policy.publishFailed,
        },
        deprecated: {
          count: listed.filter((f) => f.file.deprecatedAt !== null).length,
          published: policy.publishDeprecated,
        },
        skipped: skipped
          .filter((f) => f.repo === repo.name)
          .map((f) => ({ uri: f.uri, file: f.fileUrl, error: f.reason })),
        unreadable: unreadableOf(store, repo.managerType, served),
        bytes: served.reduce((n, f) => n + (f.size ?? 0), 0),
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
      triggers: parseJsonOrNull(store.getValue(TRIGGERS_KEY)) as TriggersStatus | null,
      bucket: bucketStatus(settings, store, log),
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
  if (status.triggers && status.triggers.available === false) {
    out.push(
      `change triggers: unavailable since ${status.triggers.since}: ${status.triggers.message}`,
    );
  }
  const b = status.bucket;
  if (b) {
    out.push(
      `bucket ${b.target}: ${b.behind.length === 0 ? "up to date" : `behind by ${b.behindSeconds} s in ${b.behind.map((r) => `${r.repo} (generation ${r.bucketGeneration ?? "none"} of ${r.diskGeneration})`).join(", ")}`}, last success ${b.lastSuccess ?? "never"}${b.lastError ? `; last error: ${b.lastError} (${b.failuresInARow} in a row, next try ${b.nextAttempt ?? "next pass"})` : ""}`,
    );
  }
  for (const r of status.repos) {
    const marked = [
      r.failed.count > 0
        ? `${r.failed.count} failed (${r.failed.published ? "published" : "not published"})`
        : null,
      r.deprecated.count > 0
        ? `${r.deprecated.count} deprecated (${r.deprecated.published ? "published" : "not published"})`
        : null,
      r.skipped.length > 0 ? `${r.skipped.length} skipped` : null,
      r.unreadable.length > 0 ? `${r.unreadable.length} unreadable` : null,
    ].filter(Boolean);
    out.push(
      `repo ${r.name} (${r.managerType}, ${r.directory}): ${r.files} files${marked.length > 0 ? ` [${marked.join(", ")}]` : ""}, ${r.bytes} bytes, generation ${r.generation ?? "-"}, last publish ${r.lastPublish ?? "never"}, master last seen ${r.lastMasterContact ?? "never"}`,
    );
    for (const f of r.skipped) out.push(`  skipped: ${f.uri}: ${f.error}`);
    for (const f of r.unreadable) out.push(`  unreadable: ${f.file}: ${f.error}`);
    for (const f of r.failingDownloads)
      out.push(`  failing: ${f.file} (${f.attempts} attempts): ${f.error}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}
