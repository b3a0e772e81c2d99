/**
 * `packrat-agent verify`'s engine: read every published repo as its clients do (the same
 * client-view checkers the publisher runs before each switch), check that the state DB and the
 * disk agree, and find files nothing publishes. Reads only: it can run beside a live agent.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { layoutFor } from "../layout/index.js";
import type { RepoLayout, SignatureVerifier, TreeReader } from "../layout/types.js";
import { SKIPPED_REPO_DIRS_KEY, type StateStore } from "../state/state-store.js";
import { IN_PLACE_DIRS_KEY } from "./in-place.js";
import { TMP_DIR, fingerprintMatches, sha256File, statInfo, walkTree } from "./disk.js";

export interface VerifyProblem {
  /** The repo the path belongs to, null for root_dir files. */
  repo: string | null;
  /** Relative to root_dir. */
  path: string;
  problem: string;
}

export interface VerifyReport {
  ok: boolean;
  repos: number;
  entryPoints: number;
  /** Package references the client-view check followed. */
  packageRefs: number;
  /** Files whose bytes were compared with the state DB. */
  filesChecked: number;
  /** Files hashed in full (all of them with deep). */
  filesHashed: number;
  problems: VerifyProblem[];
}

export interface VerifyTreeOptions {
  root: string;
  store: StateStore;
  keepFileList: readonly string[];
  /** Re-hash every package file instead of trusting stat fingerprints. */
  deep: boolean;
  /** Checks signatures against the exported key; null when the mirror publishes unsigned. */
  verifier: SignatureVerifier | null;
  /** Files at root_dir the agent owns (the exported public key). */
  rootFiles?: readonly string[];
  /** The layouts the agent publishes with; the registry's by default. */
  layoutFor?: (managerType: string) => RepoLayout | undefined;
}

/** SHA-256 of a file once per run, vouched for by its fingerprint unless deep. */
class Hasher {
  hashed = 0;
  private readonly cache = new Map<string, Promise<{ size: number; sha256: string } | null>>();
  constructor(
    private readonly root: string,
    private readonly store: StateStore,
    private readonly deep: boolean,
  ) {}

  info(rel: string, trustFingerprint: boolean): Promise<{ size: number; sha256: string } | null> {
    const key = `${trustFingerprint && !this.deep ? "f" : "h"}:${rel}`;
    let p = this.cache.get(key);
    if (!p) {
      p = (async () => {
        const full = path.join(this.root, ...rel.split("/"));
        const st = await statInfo(full);
        if (st === null) return null;
        const fp = this.store.getFingerprint(rel);
        if (trustFingerprint && !this.deep && fp && fingerprintMatches(fp, st))
          return { size: st.size, sha256: fp.sha256 };
        this.hashed++;
        return { size: st.size, sha256: await sha256File(full) };
      })();
      this.cache.set(key, p);
    }
    return p;
  }
}

function diskReader(root: string, repoDir: string, hasher: Hasher): TreeReader {
  const rel = (p: string) => `${repoDir}/${p}`;
  return {
    async read(p) {
      try {
        return new Uint8Array(await readFile(path.join(root, ...rel(p).split("/"))));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "EISDIR") return null;
        throw err;
      }
    },
    packageInfo: (p) => hasher.info(rel(p), true),
  };
}

function skippedDirs(store: StateStore, key = SKIPPED_REPO_DIRS_KEY): string[] {
  try {
    const parsed: unknown = JSON.parse(store.getValue(key) ?? "[]");
    return Array.isArray(parsed) ? parsed.filter((d): d is string => typeof d === "string") : [];
  } catch {
    return [];
  }
}

const kept = (rel: string, keep: readonly string[]) =>
  keep.some((k) => rel === k || (k.endsWith("/") && rel.startsWith(k)));

export async function verifyTree(opts: VerifyTreeOptions): Promise<VerifyReport> {
  const { root, store } = opts;
  const problems: VerifyProblem[] = [];
  const hasher = new Hasher(root, store, opts.deep);
  const report: VerifyReport = {
    ok: false,
    repos: 0,
    entryPoints: 0,
    packageRefs: 0,
    filesChecked: 0,
    filesHashed: 0,
    problems,
  };
  const published = store.listPublishedFiles();
  const repos = store.listRepos();

  // 1. Each repo as its clients read it.
  for (const { repo } of repos) {
    report.repos++;
    const dir = repo.filesystemDir.replace(/^\/+|\/+$/g, "");
    const current = published.filter(
      (r) => r.repo === repo.name && r.kind === "metadata" && r.supersededAt === null,
    );
    if (store.latestGeneration(repo.name) === undefined) {
      problems.push({ repo: repo.name, path: dir, problem: "no generation was ever published" });
      continue;
    }
    const checker = (opts.layoutFor ?? layoutFor)(repo.managerType)?.check;
    if (!checker) continue;
    const result = await checker({
      reader: diskReader(root, dir, hasher),
      metadataPaths: current.map((r) => r.path.slice(dir.length + 1)),
      verifier: opts.verifier,
      scope: repo.name,
    });
    report.entryPoints += result.entryPoints;
    report.packageRefs += result.packages;
    for (const p of result.problems)
      problems.push({
        repo: repo.name,
        path: p.path === "" ? dir : `${dir}/${p.path}`,
        problem: p.problem,
      });
  }

  // 2. The state DB and the disk agree on every file of the current generations.
  const seen = new Set(problems.map((p) => p.path));
  for (const row of published) {
    if (row.supersededAt !== null) continue; // grace-period files may already be gone
    report.filesChecked++;
    const info = await hasher.info(row.path, row.kind === "package");
    if (seen.has(row.path)) continue; // already reported by the client view
    if (info === null)
      problems.push({
        repo: row.repo,
        path: row.path,
        problem: `missing (${row.kind} of the current generation)`,
      });
    else if (info.sha256 !== row.sha256)
      problems.push({
        repo: row.repo,
        path: row.path,
        problem: `SHA-256 is ${info.sha256}, the state DB says it was published as ${row.sha256}`,
      });
  }
  for (const f of store.listDownloadFailures()) {
    problems.push({
      repo: f.repo,
      path: f.filename,
      problem: `not published: ${f.attempts} failed attempt(s), last: ${f.error}`,
    });
  }

  // 3. Nothing sits under root_dir that nothing publishes (keep list, grace files aside).
  const expected = new Set(published.map((r) => r.path));
  for (const f of opts.rootFiles ?? []) expected.add(f);
  const repoDirs = repos.map((r) => ({ name: r.repo.name, dir: r.repo.filesystemDir }));
  // In-place directories hold the producer's files too, indexed or not: never the agent's to
  // call unexpected (cleanup never touches them either).
  const skipped = [...skippedDirs(store), ...skippedDirs(store, IN_PLACE_DIRS_KEY)];
  for (const e of await walkTree(root)) {
    if (e.kind === "dir" || e.rel === TMP_DIR || e.rel.startsWith(`${TMP_DIR}/`)) continue;
    if (skipped.some((d) => e.rel === d || e.rel.startsWith(`${d}/`))) continue;
    if (kept(e.rel, opts.keepFileList)) continue;
    const owner = repoDirs.find((d) => e.rel.startsWith(`${d.dir}/`))?.name ?? null;
    if (e.kind !== "file") {
      problems.push({ repo: owner, path: e.rel, problem: `not a regular file (${e.kind})` });
      continue;
    }
    if (expected.has(e.rel)) continue;
    problems.push({
      repo: owner,
      path: e.rel,
      problem: "unexpected file (nothing publishes it; the next full sync removes it)",
    });
  }
  report.filesHashed = hasher.hashed;
  report.ok = problems.length === 0;
  return report;
}
