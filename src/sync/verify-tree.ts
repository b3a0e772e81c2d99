/**
 * `packrat-agent verify`'s engine: read every published repo as its clients do (the same
 * client-view checkers the publisher runs before each switch), check that the state DB and the
 * disk agree, and find files nothing publishes. Reads only: it can run beside a live agent.
 */
import fsSync from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { layoutFor } from "../layout/index.js";
import type { RepoLayout, SignatureVerifier, TreeReader } from "../layout/types.js";
import { SKIPPED_REPO_DIRS_KEY, type Fingerprint, type StateStore } from "../state/state-store.js";
import {
  TMP_DIR,
  fingerprintMatches,
  readTinySync,
  sha256Bytes,
  sha256FileInfo,
  statInfoSync,
  walkTree,
} from "./disk.js";
import { IN_PLACE_DIRS_KEY } from "./in-place.js";

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

/**
 * SHA-256 of a file once per run, vouched for by its fingerprint unless deep. The per-file
 * costs are what a deep verify pays beside `sha256sum` (issue 25): the fingerprints are read in
 * one query (only when one can vouch), the stat is synchronous, and a small file is read and
 * hashed synchronously (sha256File), so a package check costs no thread-pool round trip.
 */
class Hasher {
  hashed = 0;
  private readonly cache = new Map<string, Promise<{ size: number; sha256: string } | null>>();
  private fingerprints: Map<string, Fingerprint> | null = null;
  /** Regular files read whole this run (readWhole), by path. */
  private readonly read = new Map<string, { size: number; sha256: string }>();
  constructor(
    private readonly root: string,
    private readonly store: StateStore,
    private readonly deep: boolean,
  ) {}

  private fingerprint(rel: string): Fingerprint | undefined {
    this.fingerprints ??= new Map(this.store.listFingerprints().map((f) => [f.path, f]));
    return this.fingerprints.get(rel);
  }

  info(rel: string, trustFingerprint: boolean): Promise<{ size: number; sha256: string } | null> {
    const vouch = trustFingerprint && !this.deep;
    const key = `${vouch ? "f" : "h"}:${rel}`;
    let p = this.cache.get(key);
    if (!p) {
      p = (async () => {
        const full = path.join(this.root, rel);
        if (vouch) {
          const st = statInfoSync(full);
          if (st === null) return null;
          const fp = this.fingerprint(rel);
          if (fp && fingerprintMatches(fp, st)) return { size: st.size, sha256: fp.sha256 };
        }
        const info = this.read.get(rel) ?? (await sha256FileInfo(full));
        if (info !== null) this.hashed++;
        return info;
      })();
      this.cache.set(key, p);
    }
    return p;
  }

  /**
   * Bytes of a regular file (not a symlink) this run has just read whole: its hash for step 2,
   * which would otherwise open and read it again (a pacman .sig per package).
   */
  readWhole(rel: string, bytes: Uint8Array): void {
    if (!this.cache.has(`h:${rel}`))
      this.read.set(rel, { size: bytes.length, sha256: sha256Bytes(bytes) });
  }
}

/**
 * A metadata file's bytes (following symlinks, as a web server does), or null if absent. A
 * small regular file is read synchronously (an index's signature, or a pacman .sig per package,
 * would otherwise cost a thread-pool round trip each) and its bytes handed to `whole`.
 */
async function readMetadata(
  full: string,
  whole: (bytes: Uint8Array) => void,
): Promise<Uint8Array | null> {
  try {
    const st = fsSync.lstatSync(full, { throwIfNoEntry: false });
    if (st === undefined || st.isDirectory()) return null;
    if (st.isFile()) {
      const tiny = readTinySync(full);
      if (tiny !== null) {
        const bytes = new Uint8Array(tiny.buffer, tiny.byteOffset, tiny.byteLength);
        whole(bytes);
        return bytes;
      }
    }
    return new Uint8Array(await readFile(full));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "EISDIR" || code === "ENOTDIR") return null;
    throw err;
  }
}

function diskReader(root: string, repoDir: string, hasher: Hasher): TreeReader {
  const rel = (p: string) => `${repoDir}/${p}`;
  return {
    read: (p) => readMetadata(path.join(root, rel(p)), (bytes) => hasher.readWhole(rel(p), bytes)),
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
