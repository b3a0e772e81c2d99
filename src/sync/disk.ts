/**
 * Disk primitives for the sync engine and the publisher: hashing, stat fingerprints, a
 * ByteSource over a file, durable atomic writes, and a tree walk that never follows symlinks.
 * Temporary files live in `<root>/.packrat-tmp/` so that rename(2) into place never crosses a
 * filesystem (the original agent downloaded to /tmp and moved across filesystems: not atomic).
 */
import { createHash, randomBytes } from "node:crypto";
import fsSync, { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { bufferSource, type ByteSource } from "../layout/types.js";
import type { Fingerprint } from "../state/state-store.js";
import { PackratError, isPackratError } from "../errors.js";
import { sha256Hex } from "../digest.js";

export const TMP_DIR = ".packrat-tmp";

export interface StatInfo {
  size: number;
  mtimeNs: string;
  ino: string;
}

export async function statInfo(full: string): Promise<StatInfo | null> {
  try {
    const st = await fs.lstat(full, { bigint: true });
    if (!st.isFile()) return null;
    return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: st.ino.toString() };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/**
 * statInfo, synchronously: lstat of a file whose dentry is cached takes a few microseconds,
 * while a promise round trip through libuv's thread pool takes tens. Callers stat thousands
 * in batches and yield to the event loop between batches.
 */
export function statInfoSync(full: string): StatInfo | null {
  const st = fsSync.lstatSync(full, { bigint: true, throwIfNoEntry: false });
  if (st === undefined || !st.isFile()) return null;
  return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: st.ino.toString() };
}

export function fingerprintMatches(fp: Fingerprint | undefined, st: StatInfo | null): boolean {
  return (
    fp !== undefined &&
    st !== null &&
    fp.size === st.size &&
    fp.mtimeNs === st.mtimeNs &&
    fp.ino === st.ino
  );
}

/** Files up to this size are hashed from one read; larger ones are streamed. */
const SMALL_FILE = 1 << 20;
/**
 * Files up to this size are read synchronously: an async open, fstat, read and close cost
 * 0.1–0.2 ms of thread-pool round trips per file, readFileSync 0.01 ms (a cold sync reads
 * 10,000 packages of a few KB). The price is the event loop waiting for one small read.
 */
const TINY_FILE = 256 * 1024;

/** The whole file, if it is a regular file of at most TINY_FILE bytes; else null. */
export function readTinySync(full: string): Buffer | null {
  const fd = fsSync.openSync(full, "r");
  try {
    const { size } = fsSync.fstatSync(fd);
    if (size > TINY_FILE) return null;
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = fsSync.readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** Reused by hashTinySync: hashing thousands of small files allocates no buffer per file. */
let scratch: Buffer | null = null;

/** SHA-256 of a regular file of at most TINY_FILE bytes, read synchronously; else null. */
function hashTinySync(full: string): string | null {
  const fd = fsSync.openSync(full, "r");
  try {
    const { size } = fsSync.fstatSync(fd);
    if (size > TINY_FILE) return null;
    return hashOpenTinySync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** The SHA-256 of what an open file of at most TINY_FILE bytes holds, or null if larger. */
function hashOpenTinySync(fd: number): string | null {
  scratch ??= Buffer.allocUnsafe(TINY_FILE + 1);
  let got = 0;
  // Read to the end, not to the fstat's size: a file that grew since is hashed as it is now
  // (or, past TINY_FILE, by the caller's streaming path).
  for (;;) {
    const n = fsSync.readSync(fd, scratch, got, scratch.length - got, got);
    if (n === 0) break;
    got += n;
    if (got === scratch.length) return null;
  }
  return createHash("sha256").update(scratch.subarray(0, got)).digest("hex");
}

const OPEN_NOFOLLOW =
  fsSync.constants.O_RDONLY | fsSync.constants.O_NOFOLLOW | fsSync.constants.O_NONBLOCK;

/**
 * What statInfoSync and a hash would see, from one open: the regular file at `full` (not
 * followed if a symlink), its stat from the open descriptor, and its SHA-256 when it is at most
 * TINY_FILE bytes (else `sha256` is null: hash it with sha256File). `stat` is null when nothing
 * or something other than a regular file is there. The stat and the bytes are the same file's.
 * A cold pass observes 10,000 files with no fingerprint: an lstat and then an open each cost
 * one more syscall and a thread-pool round trip per file.
 */
export function statAndHashTinySync(full: string): {
  stat: StatInfo | null;
  sha256: string | null;
} {
  let fd: number;
  try {
    fd = fsSync.openSync(full, OPEN_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP") return { stat: null, sha256: null };
    throw err;
  }
  try {
    const st = fsSync.fstatSync(fd, { bigint: true });
    if (!st.isFile()) return { stat: null, sha256: null };
    const stat = { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: st.ino.toString() };
    return { stat, sha256: st.size <= BigInt(TINY_FILE) ? hashOpenTinySync(fd) : null };
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * Size and SHA-256 of a regular file, or null when nothing or something else (a symlink, a
 * directory, a FIFO) is at `full`, as statInfo sees it. One open and fstat instead of an lstat
 * and then an open: a deep verify pays this per package file beside `sha256sum`.
 */
export async function sha256FileInfo(
  full: string,
): Promise<{ size: number; sha256: string } | null> {
  let fd: number;
  try {
    fd = fsSync.openSync(full, OPEN_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP") return null;
    throw err;
  }
  let size: number;
  try {
    const st = fsSync.fstatSync(fd);
    if (!st.isFile()) return null;
    size = st.size;
    if (size <= TINY_FILE) {
      const sha256 = hashOpenTinySync(fd);
      if (sha256 !== null) return { size, sha256 };
    }
  } finally {
    fsSync.closeSync(fd);
  }
  // A large file: streamed (it was a regular file a moment ago; sha256File reads it by path).
  return { size, sha256: await sha256File(full) };
}

export async function sha256File(full: string): Promise<string> {
  const tiny = hashTinySync(full);
  if (tiny !== null) return tiny;
  const handle = await fs.open(full, "r");
  try {
    const { size } = await handle.stat();
    if (size <= SMALL_FILE) {
      return createHash("sha256")
        .update(await handle.readFile())
        .digest("hex");
    }
  } finally {
    await handle.close();
  }
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(full, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

export function sha256Bytes(bytes: Uint8Array): string {
  return sha256Hex(bytes);
}

/** Open a file as a ByteSource for a layout's parser; call close() when done. */
export async function openFileSource(
  full: string,
): Promise<ByteSource & { close(): Promise<void> }> {
  const tiny = readTinySync(full);
  if (tiny !== null) return { ...bufferSource(tiny), close: () => Promise.resolve() };
  const handle = await fs.open(full, "r");
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const want = Math.max(0, Math.min(length, size - offset));
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(buf, got, want - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    },
    close: () => handle.close(),
  };
}

/**
 * Refuse to write through a symlinked directory under root: `mkdir -p` and rename() follow
 * symlinks, so a link planted at root/apt/pool would send package files anywhere. Components
 * that do not exist yet are fine: the agent creates them as real directories.
 */
export async function assertNoSymlinkDirs(root: string, full: string): Promise<void> {
  const rel = path.relative(root, path.dirname(full));
  if (rel === "") return;
  if (rel.startsWith("..") || path.isAbsolute(rel)) {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${full} is outside ${root}; refusing to write it`,
    );
  }
  let current = root;
  for (const segment of rel.split(path.sep)) {
    current = path.join(current, segment);
    let st;
    try {
      st = await fs.lstat(current);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    if (st.isSymbolicLink() || !st.isDirectory()) {
      throw new PackratError(
        "PACKRAT_UNSAFE_FILENAME",
        `${current} is ${st.isSymbolicLink() ? "a symlink" : "not a directory"}; refusing to write ${full} through it`,
        {
          hint: "replace it with a real directory (the agent never follows symlinks under root_dir)",
        },
      );
    }
  }
}

/** The open temp directory of each root: its descriptor and what it was when opened. */
const tempDirs = new Map<string, { fd: number; dev: bigint; ino: bigint }>();
/**
 * Descriptors of temp directories that were replaced while open. A temp path handed out
 * earlier (a download still writing) names its directory through the descriptor, so it stays
 * open until releaseTempDir: closing it would let the number be reused for another file.
 */
const retiredTempDirs = new Map<string, number[]>();
/** Repairs made to a temp directory that was not the agent's, by root (takeTempDirRepairs). */
const tempDirRepairs = new Map<string, string[]>();
let procFdUsable: boolean | undefined;

/**
 * The directory temp files are created in: `<root>/.packrat-tmp`, made by the agent (0700),
 * opened once with O_DIRECTORY|O_NOFOLLOW, and then addressed through its descriptor
 * (`/proc/self/fd/N`). A name resolved through the descriptor lands in the directory the agent
 * opened even if `.packrat-tmp` is swapped for a symlink a moment later, so nothing is ever
 * written outside root_dir through it (a path check before each write could be raced). If the
 * path is found to be anything but that directory (a symlink, a file, another directory), it
 * is removed and made again, and the repair is reported through takeTempDirRepairs().
 * Where /proc is not mounted, the checked path itself is used.
 */
export function tempDir(root: string): string {
  const full = path.join(root, TMP_DIR);
  const cached = tempDirs.get(root);
  let st = fsSync.lstatSync(full, { bigint: true, throwIfNoEntry: false });
  if (cached && st?.isDirectory() && st.dev === cached.dev && st.ino === cached.ino) {
    return procFdUsable ? `/proc/self/fd/${cached.fd}` : full;
  }
  if (st !== undefined && !st.isDirectory()) {
    tempDirRepairs.set(root, [
      ...(tempDirRepairs.get(root) ?? []),
      `${full} was ${st.isSymbolicLink() ? "a symlink" : "not a directory"}; removed it and made the agent's temp directory again`,
    ]);
    fsSync.rmSync(full, { force: true });
    st = undefined;
  }
  if (st === undefined) fsSync.mkdirSync(full, { mode: 0o700 });
  let fd: number;
  try {
    fd = fsSync.openSync(
      full,
      fsSync.constants.O_RDONLY | fsSync.constants.O_DIRECTORY | fsSync.constants.O_NOFOLLOW,
    );
  } catch (err) {
    // Swapped between the mkdir and the open: refuse rather than guess.
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${full} changed while the agent opened it as its temp directory (${(err as Error).message})`,
      {
        hint: "something else writes in root_dir; the write is retried on the next pass",
        cause: err,
      },
    );
  }
  const opened = fsSync.fstatSync(fd, { bigint: true });
  if (cached) retiredTempDirs.set(root, [...(retiredTempDirs.get(root) ?? []), cached.fd]);
  tempDirs.set(root, { fd, dev: opened.dev, ino: opened.ino });
  procFdUsable ??= fsSync.existsSync(`/proc/self/fd/${fd}`);
  return procFdUsable ? `/proc/self/fd/${fd}` : full;
}

/**
 * Close the temp directory's descriptors (the engine removes the directory after a pass);
 * only when no temp path handed out is still in use.
 */
export function releaseTempDir(root: string): void {
  for (const fd of retiredTempDirs.get(root) ?? []) fsSync.closeSync(fd);
  retiredTempDirs.delete(root);
  const cached = tempDirs.get(root);
  if (!cached) return;
  tempDirs.delete(root);
  fsSync.closeSync(cached.fd);
}

/** Repairs tempDir() made under `root` since the last call, for the log. */
export function takeTempDirRepairs(root: string): string[] {
  const repairs = tempDirRepairs.get(root) ?? [];
  tempDirRepairs.delete(root);
  return repairs;
}

/**
 * Temp names are this process's random prefix and a counter: as unlikely to meet another
 * process's names as a random name each, without a randomBytes call per file (a cold pacman
 * publish writes 10,000 .sig files).
 */
const TMP_PREFIX = randomBytes(6).toString("hex");
let tmpCounter = 0;

export function tmpPath(root: string, hint: string): string {
  const safe = hint.replace(/[^0-9a-zA-Z._-]/g, "_").slice(0, 60);
  return path.join(tempDir(root), `${TMP_PREFIX}${(tmpCounter++).toString(36)}-${safe}`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Write bytes to a new fsynced temp file under <root>/.packrat-tmp; returns its path. */
export async function writeTempFile(
  root: string,
  hint: string,
  content: Uint8Array,
): Promise<string> {
  const tmp = tmpPath(root, hint);
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  const handle = await fs.open(tmp, "w", 0o644);
  let written = false;
  try {
    await handle.writeFile(content);
    await handle.sync();
    written = true;
  } catch (err) {
    throw describeTempWrite(err, root, hint, tmp);
  } finally {
    await handle.close();
    // A partial temp file holds the very space that ran out: never leave one behind.
    if (!written) await fs.rm(tmp, { force: true });
  }
  return tmp;
}

/** Run `fn` over `items`, at most `limit` at a time; the first rejection is thrown once all settle. */
export async function eachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === null) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
}

/**
 * How many temp files writeTempFiles writes or fsyncs at a time: enough to keep libuv's four
 * threads busy and let the file system fold the fsyncs into a few journal commits.
 */
const TEMP_BATCH_CONCURRENCY = 16;

/**
 * writeTempFile for many files at once, with the same promise: when it resolves, every file is
 * written whole and fsynced. They are all written first and then fsynced TEMP_BATCH_CONCURRENCY
 * at a time, so the fsyncs share journal commits: a pacman repo of 10,000 packages publishes
 * 10,000 small `.sig` files, and writing and fsyncing one after another cost 2 ms each on ext4
 * (20 s), against about 0.25 ms batched. Returns the temp paths in the order given; on a
 * failure every temp file made here is removed before the error is thrown.
 */
export async function writeTempFiles(
  root: string,
  files: readonly { hint: string; content: Uint8Array }[],
): Promise<string[]> {
  const tmps = files.map((f) => tmpPath(root, f.hint));
  if (tmps.length > 0) await fs.mkdir(path.dirname(tmps[0]!), { recursive: true });
  const made: string[] = [];
  let done = false;
  try {
    await eachLimit(files, TEMP_BATCH_CONCURRENCY, async (file, i) => {
      const tmp = tmps[i]!;
      const handle = await fs.open(tmp, "w", 0o644);
      made.push(tmp);
      try {
        await handle.writeFile(file.content);
      } catch (err) {
        throw describeTempWrite(err, root, file.hint, tmp);
      } finally {
        await handle.close();
      }
    });
    // The fsyncs through the thread pool, several at a time (they share journal commits); the
    // open and close around each are synchronous, a few microseconds each.
    await eachLimit(files, TEMP_BATCH_CONCURRENCY, async (file, i) => {
      const tmp = tmps[i]!;
      const fd = fsSync.openSync(tmp, "r");
      try {
        await fsyncFd(fd);
      } catch (err) {
        throw describeTempWrite(err, root, file.hint, tmp);
      } finally {
        fsSync.closeSync(fd);
      }
    });
    done = true;
    return tmps;
  } finally {
    // Partial temp files hold the very space that ran out: never leave one behind.
    if (!done) await eachLimit(made, TEMP_BATCH_CONCURRENCY, (tmp) => fs.rm(tmp, { force: true }));
  }
}

const fsyncFd = promisify(fsSync.fsync);

/**
 * Node's "ENOSPC: no space left on device, write" names neither the file nor the disk, and the
 * temp path goes through /proc/self/fd (tempDir): say what was written, and where.
 */
function describeTempWrite(err: unknown, root: string, hint: string, tmp: string): unknown {
  if (err instanceof Error)
    err.message = `writing ${hint} (${path.join(root, TMP_DIR, path.basename(tmp))}): ${err.message}`;
  return err;
}

/**
 * Write bytes at `full` so that a reader sees the old file or the new one, never a part:
 * temp file in <root>/.packrat-tmp, fsync, rename, fsync the directory.
 */
export async function writeFileAtomic(
  root: string,
  full: string,
  content: Uint8Array,
): Promise<void> {
  const tmp = tmpPath(root, path.basename(full));
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  const handle = await fs.open(tmp, "w", 0o644);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await assertNoSymlinkDirs(root, full);
  await fs.mkdir(path.dirname(full), { recursive: true });
  try {
    await fs.rename(tmp, full);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(full));
}

/** Place another name for an existing file (pacman `any` packages in each arch dir). */
export async function linkAtomic(root: string, existing: string, full: string): Promise<void> {
  const tmp = tmpPath(root, path.basename(full));
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  try {
    await fs.link(existing, tmp);
  } catch {
    // Hard links can fail (EXDEV on bind mounts, EPERM): a copy gives clients the same bytes.
    await fs.copyFile(existing, tmp);
  }
  await assertNoSymlinkDirs(root, full);
  await fs.mkdir(path.dirname(full), { recursive: true });
  await fs.rename(tmp, full);
  await fsyncDir(path.dirname(full));
}

/**
 * Copy `length` bytes at `offset` of the file `from` into a new temp file, hashing them as
 * they are copied, and fsync it. The SHA-256 must be `sha256`, or nothing is left behind and
 * a PACKRAT_HASH_MISMATCH names `hint`. Memory: one 1 MiB buffer, whatever the length.
 */
export async function copyRangeToTemp(
  root: string,
  hint: string,
  from: string,
  range: { offset: number; length: number; sha256: string },
): Promise<string> {
  const tmp = tmpPath(root, hint);
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  const src = await fs.open(from, "r");
  let done = false;
  try {
    const out = await fs.open(tmp, "w", 0o644);
    try {
      const hash = createHash("sha256");
      const buf = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(1, range.length)));
      for (let at = 0; at < range.length;) {
        const want = Math.min(buf.length, range.length - at);
        const { bytesRead } = await src.read(buf, 0, want, range.offset + at);
        if (bytesRead === 0)
          throw new PackratError(
            "PACKRAT_HASH_MISMATCH",
            `${hint}: ${from} ends before byte ${range.offset + range.length}`,
          );
        const chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        await out.write(chunk, 0, bytesRead);
        at += bytesRead;
      }
      const actual = hash.digest("hex");
      if (actual !== range.sha256)
        throw new PackratError(
          "PACKRAT_HASH_MISMATCH",
          `${hint}: the bytes copied from ${path.basename(from)} hash to ${actual}, expected ${range.sha256}`,
        );
      await out.sync();
      done = true;
    } finally {
      await out.close();
    }
  } catch (err) {
    if (err instanceof Error && !isPackratError(err))
      err.message = `writing ${hint} (${path.join(root, TMP_DIR, path.basename(tmp))}): ${err.message}`;
    throw err;
  } finally {
    await src.close();
    if (!done) await fs.rm(tmp, { force: true });
  }
  return tmp;
}

/**
 * A new temp name for an existing (fsynced) file, as a hard link: the temp to rename into place
 * shares its bytes. Null where the filesystem cannot link; the caller writes the bytes instead.
 */
export async function linkTempOrNull(
  root: string,
  hint: string,
  existing: string,
): Promise<string | null> {
  const tmp = tmpPath(root, hint);
  try {
    await fs.link(existing, tmp);
    return tmp;
  } catch {
    return null;
  }
}

/** A hard link to `existing` as a new temp file (a copy where links fail). */
export async function linkToTemp(root: string, hint: string, existing: string): Promise<string> {
  await fs.mkdir(tempDir(root), { recursive: true });
  const linked = await linkTempOrNull(root, hint, existing);
  if (linked !== null) return linked;
  const tmp = tmpPath(root, hint);
  await fs.copyFile(existing, tmp);
  return tmp;
}

export interface WalkEntry {
  /** Relative to the walked root, forward slashes. */
  rel: string;
  kind: "file" | "dir" | "symlink" | "other";
}

/** Every entry under root, depth first (children before their directory); symlinks are reported, never followed. */
export async function walkTree(root: string): Promise<WalkEntry[]> {
  const out: WalkEntry[] = [];
  const visit = async (relDir: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(path.join(root, relDir), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    for (const entry of entries) {
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isDirectory()) {
        await visit(rel);
        out.push({ rel, kind: "dir" });
      } else if (entry.isSymbolicLink()) {
        out.push({ rel, kind: "symlink" });
      } else if (entry.isFile()) {
        out.push({ rel, kind: "file" });
      } else {
        out.push({ rel, kind: "other" });
      }
    }
  };
  await visit("");
  return out;
}
