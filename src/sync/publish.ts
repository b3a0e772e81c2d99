/**
 * The publisher: the only code that writes repository metadata. It renders a repo through its
 * layout and switches the result in stage by stage (content-addressed files first, entry points
 * last, each by rename), so a client never sees an entry point naming a file that is not there
 * yet (FIELD_NOTES §1). Superseded files are not deleted here: the state DB marks them and cleanup
 * removes them after metadata_grace_seconds (FIELD_NOTES §2).
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { Logger } from "../log.js";
import type { RenderInput, RepoLayout } from "../layout/types.js";
import type { StateStore } from "../state/state-store.js";
import { sha256Bytes, sha256File, statInfo, writeFileAtomic } from "./disk.js";
import { assertSafeRelativePath } from "./filename-guard.js";

export interface PublishRequest {
  layout: RepoLayout;
  input: RenderInput;
  /** The repo's directory relative to root_dir. */
  repoDir: string;
  /** Extra inputs that change the output (options, signer), folded into the inputs hash. */
  salt: string;
}

export interface PublishOutcome {
  published: boolean;
  generation: number;
  files: number;
  warnings: string[];
}

export interface PublisherDeps {
  root: string;
  store: StateStore;
  log: Logger;
  now: () => number;
}

/** A digest of everything that decides a repo's metadata, so unchanged repos are not rewritten. */
export function inputsHash(req: PublishRequest): string {
  const h = createHash("sha256");
  const { repo, packages } = req.input;
  h.update(JSON.stringify([repo, [...req.input.distroVersions.values()], req.salt]));
  for (const p of packages) {
    h.update(
      `\n${p.file.uri}\t${p.sha256}\t${p.size}\t${p.paths.join(",")}\t${p.distroVersion.uri}`,
    );
  }
  return h.digest("hex");
}

/** Does every metadata file of the latest generation still hold the bytes it was published with? */
async function latestIntact(deps: PublisherDeps, repoName: string): Promise<boolean> {
  const rows = deps.store
    .listPublishedFiles(repoName)
    .filter((r) => r.kind === "metadata" && r.supersededAt === null);
  for (const row of rows) {
    const full = path.join(deps.root, row.path);
    const st = await statInfo(full);
    if (st === null) return false;
    const fp = deps.store.getFingerprint(row.path);
    if (
      fp &&
      fp.size === st.size &&
      fp.mtimeNs === st.mtimeNs &&
      fp.ino === st.ino &&
      fp.sha256 === row.sha256
    )
      continue;
    if ((await sha256File(full)) !== row.sha256) return false;
  }
  return true;
}

export async function publishRepo(
  req: PublishRequest,
  deps: PublisherDeps,
): Promise<PublishOutcome> {
  const repoName = req.input.repo.name;
  const hash = inputsHash(req);
  const latest = deps.store.latestGeneration(repoName);
  if (latest && latest.inputsHash === hash && (await latestIntact(deps, repoName))) {
    return {
      published: false,
      generation: latest.generation,
      files: latest.fileCount,
      warnings: [],
    };
  }

  const { files, warnings } = await req.layout.render(req.input);
  const stages = [...new Set(files.map((f) => f.stage))].sort((a, b) => a - b);
  const written: { path: string; sha256: string }[] = [];
  for (const stage of stages) {
    for (const file of files.filter((f) => f.stage === stage)) {
      const rel = `${req.repoDir}/${assertSafeRelativePath(file.path, `repo ${repoName} layout output`)}`;
      const full = path.join(deps.root, rel);
      const sha256 = sha256Bytes(file.content);
      written.push({ path: rel, sha256 });
      // A content-addressed name already holding its bytes is never rewritten: a client may be
      // reading it right now, and its mtime is what caches revalidate against.
      if (file.contentAddressed) {
        const st = await statInfo(full);
        if (st !== null && st.size === file.content.length && (await sha256File(full)) === sha256) {
          continue;
        }
      }
      await writeFileAtomic(deps.root, full, file.content);
      const st = await statInfo(full);
      if (st) deps.store.putFingerprint({ path: rel, sha256, ...st, verifiedAt: deps.now() });
    }
  }

  const generation = (latest?.generation ?? 0) + 1;
  const packageRows = req.input.packages.flatMap((p) =>
    p.paths.map((rel) => ({
      path: `${req.repoDir}/${rel}`,
      sha256: p.sha256,
      kind: "package" as const,
    })),
  );
  deps.store.recordGeneration(
    {
      repo: repoName,
      generation,
      inputsHash: hash,
      publishedAt: deps.now(),
      fileCount: written.length,
      packageCount: req.input.packages.length,
    },
    [
      ...written.map((w) => ({
        repo: repoName,
        path: w.path,
        sha256: w.sha256,
        kind: "metadata" as const,
      })),
      ...packageRows.map((r) => ({ repo: repoName, ...r })),
    ],
    deps.now(),
  );
  for (const w of warnings) deps.log.warn({ repo: repoName }, w);
  deps.log.info(
    { repo: repoName, generation, files: written.length, packages: req.input.packages.length },
    "published",
  );
  return { published: true, generation, files: written.length, warnings };
}
