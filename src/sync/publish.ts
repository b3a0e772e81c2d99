/**
 * The publisher: the only code that writes repository metadata. It renders a repo through its
 * layout and switches the result in stage by stage (content-addressed files first, entry points
 * last, each by rename), so a client never sees an entry point naming a file that is not there
 * yet (FIELD_NOTES §1). Superseded files are not deleted here: the state DB marks them and cleanup
 * removes them after metadata_grace_seconds (FIELD_NOTES §2).
 *
 * Before anything is written, the new generation is read back as its clients would read it
 * (src/layout/checks: signatures, every index by size and hash, every package by size and
 * hash); if that finds a problem nothing is switched and the previous generation stays served
 * (FIELD_NOTES §6).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { PackratError } from "../errors.js";
import type { Logger } from "../log.js";
import type {
  CheckProblem,
  RenderInput,
  RenderedFile,
  RepoLayout,
  TreeReader,
} from "../layout/types.js";
import { createSignatureVerifier, type SignatureVerifier } from "../signing/verify.js";
import type { StateStore } from "../state/state-store.js";
import {
  assertNoSymlinkDirs,
  copyRangeToTemp,
  fsyncDir,
  linkTempOrNull,
  linkToTemp,
  sha256Bytes,
  eachLimit,
  sha256File,
  statInfoSync,
  writeTempFiles,
} from "./disk.js";
import { assertSafeRelativePath } from "./filename-guard.js";
import { refuseProducerFiles } from "./in-place.js";
import { PathAuthority } from "./path-authority.js";

export interface PublishRequest {
  layout: RepoLayout;
  input: RenderInput;
  /** The repo's directory relative to root_dir. */
  repoDir: string;
  /** Extra inputs that change the output (options, signer), folded into the inputs hash. */
  salt: string;
  /**
   * The repo is published in place (src/sync/in-place.ts): no metadata file is written over a
   * file the agent did not write.
   */
  inPlace?: boolean;
  /**
   * Render (filling the layout's caches) but publish nothing; only for a repo whose served
   * generation already matches its inputs. A changed repo is published as usual.
   */
  warmOnly?: boolean;
}

export interface PublishOutcome {
  published: boolean;
  /** The served generation is a quick one that left something out: publish again, not quick. */
  deferred: boolean;
  /**
   * When a generation was rendered: the extracted files (RenderedFile.extract) of each package
   * file that is a source of some, root-relative, with their SHA-256 (see dropsPackageFiles).
   */
  extracted?: Map<string, { path: string; sha256: string }[]>;
  generation: number;
  files: number;
  warnings: string[];
}

export interface PublisherDeps {
  root: string;
  store: StateStore;
  log: Logger;
  now: () => number;
  /**
   * Warnings already logged (repo and text), kept by the engine for the life of the process:
   * a layout warning about a file is logged the first time, not at every pass. The outcome
   * still carries every warning.
   */
  warned?: Set<string>;
  /**
   * Signature verifiers by key fingerprint, kept by the engine (one per process and key: making
   * one parses the key). Absent: one is made for each self-check.
   */
  verifiers?: Map<string, Promise<SignatureVerifier>>;
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
  const rows = deps.store.listCurrentMetadata(repoName);
  const fingerprints = deps.store.fingerprintMap();
  for (const row of rows) {
    const full = path.join(deps.root, row.path);
    const st = statInfoSync(full);
    if (st === null) return false;
    const fp = fingerprints.get(row.path);
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

/** State DB keys of the self-check counters (shown by `status`). */
export const PUBLISH_CHECK_FAILURES_KEY = "publish_check_failures";
export const PUBLISH_CHECK_LAST_FAILURE_KEY = "publish_check_last_failure";

function verifierFor(
  input: RenderInput,
  verifiers: PublisherDeps["verifiers"],
): Promise<SignatureVerifier> | null {
  const signer = input.signer;
  if (!signer) return null;
  let v = verifiers?.get(signer.fingerprint);
  if (!v) {
    v = createSignatureVerifier(signer.publicKeyArmored());
    verifiers?.set(signer.fingerprint, v);
  }
  return v;
}

/**
 * The new generation as a client will see it once switched: rendered files in memory over the
 * disk, and package files as the engine verified them in this pass (size and SHA-256).
 * Metadata bytes are always hashed in full.
 */
function generationReader(
  req: PublishRequest,
  files: readonly RenderedFile[],
  root: string,
): TreeReader {
  const rendered = new Map(files.filter((f) => !f.extract).map((f) => [f.path, f.content]));
  const packages = new Map<string, { size: number; sha256: string }>();
  for (const p of req.input.packages)
    for (const rel of p.paths) packages.set(rel, { size: p.size, sha256: p.sha256 });
  // Extracted files are too large to read back here: the publisher checks their hash as it
  // copies them, and refuses the generation if it differs.
  for (const f of files)
    if (f.extract) packages.set(f.path, { size: f.extract.length, sha256: f.extract.sha256 });
  const onDisk = (rel: string) => path.join(root, req.repoDir, ...rel.split("/"));
  return {
    async read(rel) {
      const mem = rendered.get(rel);
      if (mem !== undefined) return mem;
      try {
        return new Uint8Array(await readFile(onDisk(rel)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw err;
      }
    },
    packageInfo(rel) {
      // The engine observed (or just wrote and fingerprinted) every package file of this
      // generation moments ago; a stat per package here would double the check's cost for
      // nothing. `verify` reads the disk itself.
      return Promise.resolve(packages.get(rel) ?? null);
    },
    packageInfoSync(rel) {
      return packages.get(rel) ?? null;
    },
  };
}

/** Run the client-view check on a rendered generation; throws PACKRAT_PUBLISH_CHECK on a problem. */
export async function selfCheckGeneration(
  req: PublishRequest,
  files: readonly RenderedFile[],
  deps: PublisherDeps,
): Promise<void> {
  const checker = req.layout.check;
  const started = deps.now();
  const verifier = verifierFor(req.input, deps.verifiers);
  let problems: CheckProblem[];
  try {
    const result = await checker({
      reader: generationReader(req, files, deps.root),
      metadataPaths: files.map((f) => f.path),
      verifier: verifier === null ? null : await verifier,
      scope: req.input.repo.name,
    });
    problems = result.problems;
    deps.log.debug(
      {
        repo: req.input.repo.name,
        entryPoints: result.entryPoints,
        packages: result.packages,
        ms: deps.now() - started,
      },
      "self-check passed",
    );
  } catch (err) {
    problems = [{ path: req.repoDir, problem: `the check itself failed: ${String(err)}` }];
  }
  if (problems.length === 0) return;
  const repoName = req.input.repo.name;
  const shown = problems.slice(0, 10).map((p) => `${req.repoDir}/${p.path}: ${p.problem}`);
  const more = problems.length > 10 ? ` (and ${problems.length - 10} more)` : "";
  const summary = `${shown.join("; ")}${more}`;
  const count = Number(deps.store.getValue(PUBLISH_CHECK_FAILURES_KEY) ?? "0") + 1;
  deps.store.setValue(PUBLISH_CHECK_FAILURES_KEY, String(count));
  deps.store.setValue(
    PUBLISH_CHECK_LAST_FAILURE_KEY,
    JSON.stringify({ repo: repoName, at: deps.now(), problems: shown }),
  );
  deps.log.error(
    { repo: repoName, problems: problems.length, failuresSoFar: count },
    `self-check refused the new generation: ${summary}`,
  );
  throw new PackratError(
    "PACKRAT_PUBLISH_CHECK",
    `repo ${repoName}: the new generation failed its self-check, so it was not switched in: ${summary}`,
    {
      hint: "the previous generation stays served; this is a bug in the agent or a package changed under it: run `packrat-agent verify --deep` and report it",
    },
  );
}

/**
 * The order a replica (a bucket) must follow to show the generation as this switch-in does:
 * content-addressed files with the packages (0), then each entry-point stage in turn.
 */
function publishOrder(file: RenderedFile): number {
  return file.contentAddressed ? 0 : 1 + file.stage;
}

/** Renames of content-addressed files in flight at once (each is a thread-pool round trip). */
const RENAME_CONCURRENCY = 16;

interface PendingFile {
  rel: string;
  full: string;
  tmp: string;
  contentAddressed: boolean;
  stage: number;
}

interface InMemoryFile {
  p: PendingFile;
  content: Uint8Array;
  sha256: string;
}

/**
 * Write the in-memory files of a generation to temp files (fsynced, writeTempFiles). Files with
 * the same bytes are written once and hard-linked: apt names each index twice (Packages and
 * by-hash/SHA256/<hash>), 7.7 MB each at 10,000 packages, and the second write and its fsync
 * were most of the disk time of a +1. Sharing an inode is safe because nothing here writes to
 * a published file in place: every path is replaced by a rename, and removing one name leaves
 * the other whole. Where the filesystem cannot link, the bytes are written again.
 */
async function writeInMemory(root: string, files: readonly InMemoryFile[]): Promise<void> {
  const first = new Map<string, PendingFile>();
  const unique: InMemoryFile[] = [];
  const copies: InMemoryFile[] = [];
  for (const f of files) {
    if (first.has(f.sha256)) copies.push(f);
    else {
      first.set(f.sha256, f.p);
      unique.push(f);
    }
  }
  const tmps = await writeTempFiles(
    root,
    unique.map(({ p, content }) => ({ hint: p.rel, content })),
  );
  unique.forEach(({ p }, i) => (p.tmp = tmps[i]!));
  const unlinked: InMemoryFile[] = [];
  for (const f of copies) {
    const tmp = await linkTempOrNull(root, f.p.rel, first.get(f.sha256)!.tmp);
    if (tmp === null) unlinked.push(f);
    else f.p.tmp = tmp;
  }
  if (unlinked.length === 0) return;
  const more = await writeTempFiles(
    root,
    unlinked.map(({ p, content }) => ({ hint: p.rel, content })),
  );
  unlinked.forEach(({ p }, i) => (p.tmp = more[i]!));
}

/**
 * Switch a rendered generation in. Every new file is first written whole and fsynced to a temp
 * file (all of them, then one batch of fsyncs: writeTempFiles); then the content-addressed ones
 * are renamed into place (nothing names them yet) and their directories fsynced; then the
 * entry points are renamed in stage order back to back, with no I/O in between. A client that
 * reads two entry points (repomd.xml, then its .asc; a pacman db, then its .sig) can only see a
 * mismatched pair if both reads fall inside those few microseconds, instead of inside a write
 * and an fsync.
 */
async function switchIn(
  req: PublishRequest,
  files: readonly RenderedFile[],
  deps: PublisherDeps,
): Promise<{ path: string; sha256: string; order: number }[]> {
  const repoName = req.input.repo.name;
  const written: { path: string; sha256: string; order: number }[] = [];
  const pending: PendingFile[] = [];
  /** What each pending file is made of: bytes in memory, or a byte range of a package file. */
  const sources: (
    | { content: Uint8Array; sha256: string }
    | { extract: NonNullable<RenderedFile["extract"]>; sha256: string }
  )[] = [];
  /** Extracted files by SHA-256: where their bytes already are (final path or temp file). */
  const extracted = new Map<string, string>();
  const fingerprints = deps.store.fingerprintMap();
  // A quick generation trusts what the last one switched in (as apply trusts unchanged
  // packages on incremental passes): a content-addressed path already current with these
  // bytes, and fingerprinted so, is not even stat'ed. A pacman repo has 10,000 .sig files.
  // A full sync checks every one of them (latestIntact) and publishes again if one is gone.
  const current = req.input.quick === true ? deps.store.currentPublishedFiles(repoName) : null;
  for (const file of [...files].sort((a, b) => a.stage - b.stage)) {
    const rel = `${req.repoDir}/${assertSafeRelativePath(file.path, `repo ${repoName} layout output`)}`;
    const full = path.join(deps.root, rel);
    // sha256Bytes remembers large buffers' digests (src/digest.ts): a buffer a layout names at
    // two paths is hashed once.
    const sha256 = file.extract ? file.extract.sha256 : sha256Bytes(file.content);
    const size = file.extract ? file.extract.length : file.content.length;
    written.push({ path: rel, sha256, order: publishOrder(file) });
    // A content-addressed name already holding its bytes is never rewritten: a client may be
    // reading it right now, and its mtime is what caches revalidate against.
    if (file.contentAddressed) {
      if (
        !file.extract &&
        current?.get(rel)?.sha256 === sha256 &&
        fingerprints.get(rel)?.sha256 === sha256
      )
        continue;
      // A synchronous lstat: thousands of them through the thread pool cost far more.
      const st = statInfoSync(full);
      if (st !== null && st.size === size) {
        // The fingerprint recorded when we wrote it vouches for the bytes without a re-read
        // (a publish would otherwise read every by-hash copy and pacman .sig again).
        const fp = fingerprints.get(rel);
        const vouched =
          fp !== undefined &&
          fp.sha256 === sha256 &&
          fp.size === st.size &&
          fp.mtimeNs === st.mtimeNs &&
          fp.ino === st.ino;
        if (vouched || (await sha256File(full)) === sha256) {
          if (file.extract) extracted.set(sha256, full);
          continue;
        }
      }
    }
    pending.push({
      rel,
      full,
      tmp: "",
      contentAddressed: file.contentAddressed,
      stage: file.stage,
    });
    sources.push(
      file.extract ? { extract: file.extract, sha256 } : { content: file.content, sha256 },
    );
  }
  if (req.inPlace === true)
    refuseProducerFiles(
      repoName,
      pending.map((p) => p.rel),
      deps.root,
      deps.store,
    );
  // Each directory is checked and made once (a pacman arch directory takes 10,000 .sig files).
  for (const dir of new Set(pending.map((p) => path.dirname(p.full)))) {
    await assertNoSymlinkDirs(deps.root, path.join(dir, "-"));
    await mkdir(dir, { recursive: true });
  }
  try {
    // Rendered bytes: written together, then fsynced as one batch. The repo-relative path
    // names the file in an error (a by-hash basename is only a hash).
    const inMemory = pending.flatMap((p, i) => {
      const src = sources[i]!;
      return "content" in src ? [{ p, content: src.content, sha256: src.sha256 }] : [];
    });
    await writeInMemory(deps.root, inMemory);
    // Byte ranges of package files (docker's blobs): one file per content, however many paths
    // serve it (a layer shared by images), copied and checked against its digest.
    for (const [i, p] of pending.entries()) {
      const src = sources[i]!;
      if (!("extract" in src)) continue;
      const same = extracted.get(src.sha256);
      if (same) p.tmp = await linkToTemp(deps.root, p.rel, same);
      else {
        // The first source on disk (a dropped package file is fetched again when a blob it
        // yielded is missing, so one of them is there).
        const x = src.extract;
        const candidates = [{ from: x.from, offset: x.offset }, ...(x.alternatives ?? [])];
        const fullOf = (from: string) =>
          path.join(
            deps.root,
            req.repoDir,
            ...assertSafeRelativePath(from, `repo ${repoName} extract source`).split("/"),
          );
        const source =
          candidates.find((c) => statInfoSync(fullOf(c.from)) !== null) ?? candidates[0]!;
        p.tmp = await copyRangeToTemp(deps.root, p.rel, fullOf(source.from), {
          ...x,
          offset: source.offset,
        });
      }
      extracted.set(src.sha256, p.tmp);
    }
    const fsyncDirs = async (group: PendingFile[]) => {
      for (const dir of new Set(group.map((p) => path.dirname(p.full)))) await fsyncDir(dir);
    };
    // Content-addressed files in any order (nothing names them yet), several at a time. A
    // later file linked to one of these temps shares its inode; the link keeps it alive.
    const named = pending.filter((p) => p.contentAddressed);
    await eachLimit(named, RENAME_CONCURRENCY, async (p) => {
      await rename(p.tmp, p.full);
      p.tmp = "";
    });
    await fsyncDirs(named);
    // Entry points one after another, in stage order, with nothing in between.
    const entryPoints = pending.filter((p) => !p.contentAddressed);
    for (const p of entryPoints) {
      await rename(p.tmp, p.full);
      p.tmp = "";
    }
    await fsyncDirs(entryPoints);
  } finally {
    await eachLimit(
      pending.filter((p) => p.tmp !== ""),
      RENAME_CONCURRENCY,
      (p) => rm(p.tmp, { force: true }),
    );
  }
  const bySha = new Map(written.map((w) => [w.path, w.sha256]));
  deps.store.transaction(() => {
    for (const p of pending) {
      const st = statInfoSync(p.full);
      const sha256 = bySha.get(p.rel);
      if (st && sha256)
        deps.store.putFingerprint({ path: p.rel, sha256, ...st, verifiedAt: deps.now() });
    }
  });
  return written;
}

export async function publishRepo(
  req: PublishRequest,
  deps: PublisherDeps,
): Promise<PublishOutcome> {
  const repoName = req.input.repo.name;
  const hash = inputsHash(req);
  // A quick generation that left something out is recorded under another hash, so that the
  // next complete render of the same inputs is not mistaken for "unchanged".
  const deferredHash = `${hash}+deferred`;
  const latest = deps.store.latestGeneration(repoName);
  const same =
    latest !== undefined &&
    (latest.inputsHash === hash ||
      (req.input.quick === true && latest.inputsHash === deferredHash));
  if (latest && same && (await latestIntact(deps, repoName))) {
    if (req.warmOnly === true) {
      // The checker's memory too (what it read of each index): the first change after a start
      // then reads one new entry, not all of them. What it finds here is not acted on: this
      // render is not switched in, and the next real one is checked in full.
      const { files } = await req.layout.render(req.input);
      await req.layout
        .check({
          reader: generationReader(req, files, deps.root),
          metadataPaths: files.map((f) => f.path),
          verifier: await (verifierFor(req.input, deps.verifiers) ?? null),
          scope: repoName,
        })
        .catch(() => undefined);
    }
    return {
      published: false,
      deferred: latest.inputsHash === deferredHash,
      generation: latest.generation,
      files: latest.fileCount,
      warnings: [],
    };
  }

  const { files, warnings, deferred = false } = await req.layout.render(req.input);
  PathAuthority.assertRenderedApart(
    req.input.repo,
    files,
    req.input.packages.flatMap((p) => p.paths),
  );
  await selfCheckGeneration(req, files, deps);
  const written = await switchIn(req, files, deps);
  const generation = (latest?.generation ?? 0) + 1;
  // Package files a layout does not serve (dropsPackageFiles) are no part of the generation.
  const packageRows = (req.layout.dropsPackageFiles ? [] : req.input.packages).flatMap((p) =>
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
      inputsHash: deferred ? deferredHash : hash,
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
        order: w.order,
      })),
      ...packageRows.map((r) => ({ repo: repoName, ...r })),
    ],
    deps.now(),
  );
  for (const w of warnings) {
    // The same warning (they name the file) every pass would drown the log: say it once.
    const key = `${repoName}\0${w}`;
    if (deps.warned?.has(key)) continue;
    deps.warned?.add(key);
    deps.log.warn({ repo: repoName }, w);
  }
  deps.log.info(
    { repo: repoName, generation, files: written.length, packages: req.input.packages.length },
    "published",
  );
  const extracted = new Map<string, { path: string; sha256: string }[]>();
  for (const f of files) {
    if (!f.extract) continue;
    const out = { path: `${req.repoDir}/${f.path}`, sha256: f.extract.sha256 };
    for (const { from } of [f.extract, ...(f.extract.alternatives ?? [])]) {
      const key = `${req.repoDir}/${from}`;
      const list = extracted.get(key) ?? [];
      extracted.set(key, list);
      list.push(out);
    }
  }
  return { published: true, deferred, generation, files: written.length, warnings, extracted };
}
