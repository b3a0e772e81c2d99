/**
 * Arch Linux (pacman) repositories: packages at `<arch>/<filename>` (packrat `all` → `any`,
 * `arm64` → `aarch64`, as pacman's `$arch` names them), and per architecture directory the
 * databases `<repo>.db.tar.gz` / `<repo>.files.tar.gz` with `<repo>.db` / `<repo>.files` as
 * real copies (pacman fetches only the short names; object stores do not follow symlinks).
 *
 * Each database entry is `name-ver/desc` (and `name-ver/files` in the files db) with the
 * fields, order and formatting of repo-add 6.0.2's `db_write_entry`: a test compares them
 * with the real repo-add. An `any` package goes into every architecture directory of the
 * repo (FIELD_NOTES §7: pacman fetches %FILENAME% next to the db).
 */
import { createPacmanCheck } from "./checks/pacman.js";
import { createHash } from "node:crypto";
import { PackratError } from "../errors.js";
import { pacmanRepoNames } from "../config-values.js";
import type { Signer } from "../signing/signer.js";
import { asPacmanMeta, compareBytes, readPacmanPackage } from "./formats/pacman-package.js";
import type { PacmanPackageMeta } from "./formats/pacman-package.js";
import { GzipMemberCache } from "./formats/gzip-members.js";
import type { ChunkItem } from "./formats/gzip-members.js";
import { writeTar } from "./formats/tar.js";
import type { TarWriteEntry } from "./formats/tar.js";
import { pkgInfoList, pkgInfoValue, vercmp } from "./formats/pkginfo.js";
import type {
  ByteSource,
  PackageMeta,
  PlacementInput,
  PublishedPackage,
  RenderInput,
  RenderResult,
  RenderedFile,
  RepoLayout,
} from "./types.js";

/**
 * A package as pacman renders it: its detached binary signature comes from this layout's derive
 * hook (made once per (sha256, signing key) by sync and kept in package_signatures). Without
 * one, `readPackage` lets a caller outside sync (tests, tools) have it signed at render time.
 */
export interface PacmanPublishedPackage extends PublishedPackage {
  signature?: Uint8Array;
}
export interface PacmanRenderInput extends RenderInput {
  readPackage?: (pkg: PublishedPackage) => Promise<Uint8Array>;
}

/** The detached binary signature pacman expects in `<file>.sig` and %PGPSIG%. */
export async function signPacmanPackage(source: ByteSource, signer: Signer): Promise<Uint8Array> {
  return signer.signDetachedBinary(await source.read(0, source.size));
}

/** pacman's `$arch` for a packrat arch. */
export function pacmanArch(packratArch: string): string {
  if (packratArch === "all") return "any";
  if (packratArch === "arm64") return "aarch64";
  return packratArch;
}

/** The architecture directory used when a repo holds only `any` packages (or none). */
export const DEFAULT_PACMAN_ARCH = "x86_64";

const REPO_NAME_RE = /^[A-Za-z0-9@_+][A-Za-z0-9@._+-]*$/;

/** The pacman repo name: `pacman_repo_names` override, else filesystem_dir's last segment. */
export function pacmanRepoName(
  filesystemDir: string,
  names: Readonly<Record<string, string>>,
): string {
  const name = names[filesystemDir] ?? filesystemDir.split("/").filter(Boolean).pop() ?? "";
  if (!REPO_NAME_RE.test(name)) {
    throw new PackratError(
      "PACKRAT_CONFIG_INVALID",
      `pacman repo name ${JSON.stringify(name)} (for filesystem_dir ${JSON.stringify(filesystemDir)}) is not a valid repo name`,
      { hint: "set a name of letters, digits and @._+- in pacman_repo_names" },
    );
  }
  return name;
}

function archDirs(repoArches: readonly string[]): string[] {
  const dirs = [...new Set(repoArches.map(pacmanArch))].filter((a) => a !== "any").sort();
  return dirs.length > 0 ? dirs : [DEFAULT_PACMAN_ARCH];
}

function placePackage(input: PlacementInput): string[] {
  // In place: where the producer put it; each directory holding packages gets its database
  // (pacman reads a package from the directory its db is in), so `Server =` names that
  // directory: the source's top for flat packages, `x86_64/` for packages under x86_64/.
  if (input.sourcePath !== undefined) return [input.sourcePath];
  const arch = pacmanArch(input.file.arch);
  const dirs = arch === "any" ? archDirs(input.repoArches) : [arch];
  return dirs.map((dir) => `${dir}/${input.file.filename}`);
}

/**
 * Names pacman metadata takes in an arch directory: the databases in each of their spellings
 * (`<repo>.db`, `<repo>.db.tar.gz`, `.files` likewise, whatever the repo name is) and every
 * detached signature (`<repo>.db.sig`, `<package>.sig`). No package file is called that.
 */
function isPacmanMetadataName(rel: string): boolean {
  const base = rel.slice(rel.lastIndexOf("/") + 1);
  return base.endsWith(".sig") || /\.(db|files)(\.tar(\.[a-z0-9]+)?)?$/.test(base);
}

/** One desc field the way repo-add's format_entry writes it: nothing when the first is empty. */
function entry(field: string, values: readonly string[]): string {
  if (values.length === 0 || values[0] === "") return "";
  return `%${field}%\n${values.join("\n")}\n\n`;
}

export interface DescInput {
  filename: string;
  csize: number;
  sha256: string;
  /** Omitted when unknown (the bytes on disk differ from the parsed ones). */
  md5: string | null;
  signature: Uint8Array | null;
}

/** The `desc` file of one package, field for field as repo-add 6.0.2 writes it. */
export function renderDesc(meta: PacmanPackageMeta, input: DescInput): string {
  const info = meta.pkginfo;
  const v = (key: string) => [pkgInfoValue(info, key)];
  const l = (key: string) => pkgInfoList(info, key);
  return [
    entry("FILENAME", [input.filename]),
    entry("NAME", v("pkgname")),
    entry("BASE", v("pkgbase")),
    entry("VERSION", v("pkgver")),
    entry("DESC", v("pkgdesc")),
    entry("GROUPS", l("group")),
    entry("CSIZE", [String(input.csize)]),
    entry("ISIZE", v("size")),
    entry("MD5SUM", [input.md5 ?? ""]),
    entry("SHA256SUM", [input.sha256]),
    entry("PGPSIG", [input.signature ? Buffer.from(input.signature).toString("base64") : ""]),
    entry("URL", v("url")),
    entry("LICENSE", l("license")),
    entry("ARCH", v("arch")),
    entry("BUILDDATE", v("builddate")),
    entry("PACKAGER", v("packager")),
    entry("REPLACES", l("replaces")),
    entry("CONFLICTS", l("conflict")),
    entry("PROVIDES", l("provides")),
    entry("DEPENDS", l("depend")),
    entry("OPTDEPENDS", l("optdepend")),
    entry("MAKEDEPENDS", l("makedepend")),
    entry("CHECKDEPENDS", l("checkdepend")),
  ].join("");
}

/** The `files` file of one package. */
export function renderFilesEntry(meta: PacmanPackageMeta): string {
  return `%FILES%\n${meta.files.map((f) => `${f}\n`).join("")}`;
}

/** One package file as a candidate for one directory's databases. */
interface Candidate {
  pkg: PacmanPublishedPackage;
  filename: string;
  /** Everything but the signature that decides the package's entries (see DbEntry.key). */
  key: string;
  name: string;
  version: string;
}

/** One package per name and directory: the newest by vercmp (repo-add replaces older ones). */
function newestByName(candidates: Candidate[]): { kept: Candidate[]; dropped: Candidate[] } {
  const byName = new Map<string, Candidate>();
  const dropped: Candidate[] = [];
  for (const c of candidates) {
    const other = byName.get(c.name);
    if (!other) {
      byName.set(c.name, c);
      continue;
    }
    const cmp = vercmp(c.version, other.version);
    const newer = cmp > 0 || (cmp === 0 && c.filename > other.filename);
    byName.set(c.name, newer ? c : other);
    dropped.push(newer ? other : c);
  }
  return { kept: [...byName.values()], dropped };
}

function builddate(meta: PacmanPackageMeta): number {
  const n = Number(pkgInfoValue(meta.pkginfo, "builddate"));
  return Number.isSafeInteger(n) && n > 0 && n < 8 ** 11 ? n : 0;
}

/**
 * What the last render of a database directory made, reused by the next one: each package's
 * name and version (so a warm render reads no package metadata for packages it has seen) and
 * the gzip members of both databases (so adding one package to 10,000 re-renders and
 * recompresses the chunk of about 64 entries that holds it, not the whole 20 MB tar). Pure
 * memoisation: an entry is keyed by everything that decides its bytes, and each render keeps
 * only what it used, so memory stays one generation's worth per directory.
 */
interface DbEntry {
  /** sha256 on disk, sha256 parsed, size and file name: with the signature, decide the entry. */
  key: string;
  signature: Uint8Array | null;
  /**
   * The gzip chunk key: a digest of `key` and the signature (a new signature is a new entry).
   * Short, because every render hashes every chunk key.
   */
  chunkKey: string;
  name: string;
  version: string;
  /** `name-ver`: the entry's directory in the database, and its sort key. */
  entryDir: string;
  /** entryDir has characters whose UTF-16 order differs from their UTF-8 order. */
  beyondBmp: boolean;
}

interface DirCache {
  entries: Map<string, DbEntry>;
  db: GzipMemberCache;
  files: GzipMemberCache;
  /** The last files database made (not reused) here, for quick renders (see filesDatabase). */
  filesDb: FilesDb | null;
}

interface FilesDb {
  gz: Uint8Array;
  sig: Uint8Array | null;
  /** The signer's fingerprint, or null when unsigned. */
  signer: string | null;
  /** A digest of its entries' chunk keys, in order: equal digests, equal databases. */
  keys: string;
}

/** By repo, then by directory: a repo's render replaces its whole map. */
type RepoCaches = Map<string, Map<string, DirCache>>;

/** gzip level of both databases (repo-add uses bsdtar's default, 6). */
const DB_GZIP_LEVEL = 6;

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null): boolean =>
  a === b ||
  (a !== null && b !== null && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b));

/** Two 512-byte zero blocks: the end of a tar archive. */
const TAR_END: ChunkItem = { key: "tar end-of-archive", bytes: new Uint8Array(1024), alone: true };

/**
 * `entries` as a slice of a tar archive: writeTar's bytes without its end-of-archive blocks.
 * Database entries (short ASCII names, default modes) are written straight into one buffer
 * from header templates made by writeTar itself, 3x faster than writeTar's general path, which
 * a cold render of 10,000 packages runs 30,000 times; a test compares the two.
 */
export function tarSlice(entries: readonly TarWriteEntry[]): Uint8Array {
  let total = 0;
  for (const e of entries) {
    const size = e.content?.length ?? 0;
    if (!plainEntry(e, size)) {
      const tar = writeTar(entries);
      return tar.subarray(0, tar.length - TAR_END.bytes.length);
    }
    total += BLOCK + padded(size);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const e of entries) {
    out.set(e.content === undefined ? DIR_HEADER : FILE_HEADER, at);
    for (let i = 0; i < e.name.length; i++) out[at + i] = e.name.charCodeAt(i);
    const size = e.content?.length ?? 0;
    putOctal(out, at + 124, 11, size);
    putOctal(out, at + 136, 11, e.mtime);
    // The checksum counts its own field as spaces (the templates hold spaces there).
    let sum = 0;
    for (let i = at; i < at + BLOCK; i++) sum += out[i]!;
    putOctal(out, at + 148, 6, sum);
    out[at + 154] = 0;
    out[at + 155] = 0x20;
    at += BLOCK;
    if (e.content !== undefined && size > 0) {
      out.set(e.content, at);
      at += padded(size);
    }
  }
  return out;
}

const BLOCK = 512;
const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;
const OCTAL_11_MAX = 8 ** 11;

/** An entry the templates can write: ASCII name of at most 100 bytes, default mode. */
function plainEntry(e: TarWriteEntry, size: number): boolean {
  if (e.mode !== undefined || e.name.length > 100) return false;
  if (!(size < OCTAL_11_MAX && e.mtime >= 0 && e.mtime < OCTAL_11_MAX)) return false;
  if (!Number.isInteger(e.mtime)) return false;
  for (let i = 0; i < e.name.length; i++) if (e.name.charCodeAt(i) > 0x7f) return false;
  return true;
}

function putOctal(out: Uint8Array, at: number, digits: number, value: number): void {
  let v = value;
  for (let i = digits - 1; i >= 0; i--) {
    out[at + i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
}

/** writeTar's header for `entry` with the name cleared and the checksum field all spaces. */
function headerTemplate(entry: TarWriteEntry): Uint8Array {
  const header = writeTar([entry]).slice(0, BLOCK);
  header.fill(0, 0, 100);
  header.fill(0x20, 148, 156);
  return header;
}
const FILE_HEADER = headerTemplate({ name: "f", content: new Uint8Array(0), mtime: 0 });
const DIR_HEADER = headerTemplate({ name: "d/", mtime: 0 });

/** Characters from U+D800 on sort differently in UTF-16 and in UTF-8 (see compareBytes). */
const BEYOND_BMP_ORDER = /[\uD800-\uFFFF]/;

function newEntry(c: Candidate, signature: Uint8Array | null): DbEntry {
  const entryDir = `${c.name}-${c.version}`;
  const chunkKey = createHash("sha1")
    .update(c.key)
    .update(signature ? Buffer.from(signature).toString("base64") : "unsigned")
    .digest("hex");
  return {
    key: c.key,
    signature,
    chunkKey,
    name: c.name,
    version: c.version,
    entryDir,
    beyondBmp: BEYOND_BMP_ORDER.test(entryDir),
  };
}

/** Database entries in the byte order of their directory names (repo-add's bsdtar order). */
function compareListed(a: { entry: DbEntry }, b: { entry: DbEntry }): number {
  const x = a.entry;
  const y = b.entry;
  if (x.beyondBmp || y.beyondBmp) return compareBytes(x.entryDir, y.entryDir);
  return x.entryDir < y.entryDir ? -1 : x.entryDir > y.entryDir ? 1 : 0;
}

const utf8 = new TextEncoder();

/**
 * One package's tar entries, made only when a chunk holding them is compressed again (a warm
 * render makes about 64 of them, not 10,000): `name-ver/`, `name-ver/desc` and, in the files
 * database, `name-ver/files`.
 */
class EntryTar {
  private made: { head: Uint8Array; files: Uint8Array } | undefined;

  constructor(
    private readonly c: Candidate,
    readonly entry: DbEntry,
    private readonly metaOf: (pkg: PublishedPackage) => PacmanPackageMeta | null,
  ) {}

  /** `name-ver/` and `name-ver/desc` (both databases), and `name-ver/files` (the files db). */
  bytes(): { head: Uint8Array; files: Uint8Array } {
    if (this.made) return this.made;
    const { c, entry } = this;
    const meta = this.metaOf(c.pkg);
    if (meta === null) throw new Error(`pacman: ${c.pkg.file.filename}: metadata vanished`);
    const mtime = builddate(meta);
    const desc = utf8.encode(
      renderDesc(meta, {
        filename: c.filename,
        csize: c.pkg.size,
        sha256: c.pkg.sha256,
        md5: meta.sha256 === c.pkg.sha256 ? meta.md5 : null,
        signature: entry.signature,
      }),
    );
    const files = utf8.encode(renderFilesEntry(meta));
    this.made = {
      head: tarSlice([
        { name: `${entry.entryDir}/`, mtime },
        { name: `${entry.entryDir}/desc`, content: desc, mtime },
      ]),
      files: tarSlice([{ name: `${entry.entryDir}/files`, content: files, mtime }]),
    };
    return this.made;
  }
}

/** A package in `<repo>.db`: its directory and desc. */
class DescItem implements ChunkItem {
  readonly key: string;
  constructor(private readonly tar: EntryTar) {
    this.key = tar.entry.chunkKey;
  }
  get bytes(): Uint8Array {
    return this.tar.bytes().head;
  }
}

/** A package in `<repo>.files`: its directory, desc and files list. */
class FilesItem implements ChunkItem {
  readonly key: string;
  constructor(private readonly tar: EntryTar) {
    this.key = tar.entry.chunkKey;
  }
  get bytes(): Uint8Array {
    const { head, files } = this.tar.bytes();
    return Buffer.concat([head, files]);
  }
}

/**
 * A directory's files database (`<repo>.files`, read by `pacman -F` only; `pacman -Sy` never
 * fetches it). A quick render whose entries changed republishes the last one made instead,
 * with its signature: a complete, signed database of the previous generation, which `pacman
 * -Fy` reads as it did a moment ago, is what a client mid-sync sees anyway. `stale` tells the
 * engine to publish a complete generation once the repo is quiet (RenderResult.deferred).
 */
async function filesDatabase(
  cache: DirCache,
  old: DirCache | undefined,
  items: readonly ChunkItem[],
  input: RenderInput,
): Promise<{ db: FilesDb; made: boolean; stale: boolean }> {
  const signer = input.signer?.fingerprint ?? null;
  const h = createHash("sha1");
  for (const item of items) h.update(item.key).update("\n");
  const keys = h.digest("hex");
  const last = old?.filesDb;
  if (last && last.signer === signer && (last.keys === keys || input.quick === true))
    return { db: last, made: false, stale: last.keys !== keys };
  const gz = await cache.files.compress(items);
  const sig = input.signer ? await input.signer.signDetachedBinary(gz) : null;
  return { db: { gz, sig, signer, keys }, made: true, stale: false };
}

async function render(repoCaches: RepoCaches, input: RenderInput): Promise<RenderResult> {
  const extended = input as PacmanRenderInput;
  const repoName = pacmanRepoName(input.repo.filesystemDir, input.options.pacmanRepoNames);
  const warnings: string[] = [];
  const signer = input.signer;
  if (!signer) warnings.push("publishing unsigned: no signing key configured");
  const previous = repoCaches.get(input.repo.name) ?? new Map<string, DirCache>();
  const caches = new Map<string, DirCache>();

  // A package's metadata is read (PublishedPackage.meta may parse JSON from the state DB) only
  // when a directory has no entry for it, or a chunk holding it must be compressed again.
  const metas = new Map<PublishedPackage, PacmanPackageMeta | null>();
  const metaOf = (pkg: PublishedPackage): PacmanPackageMeta | null => {
    let meta = metas.get(pkg);
    if (meta === undefined) {
      try {
        meta = asPacmanMeta(pkg.meta, pkg.file.filename);
      } catch (err) {
        // One bad record must not take the whole repo down: leave it out and say so.
        warnings.push(`${(err as Error).message}; not listed`);
        meta = null;
      }
      metas.set(pkg, meta);
    }
    return meta;
  };

  // Directory → the packages placed in it.
  const byDir = new Map<string, Candidate[]>();
  for (const published of input.packages as readonly PacmanPublishedPackage[]) {
    for (const p of published.paths) {
      const slash = p.lastIndexOf("/");
      const dir = slash === -1 ? "" : p.slice(0, slash);
      const filename = p.slice(slash + 1);
      // The metadata is the master's file's (sha256 as parsed); the entry describes the bytes
      // on disk. Both sha256s are the same unless a derive rewrite changed the file.
      const parsedAs = published.file.sha256 === published.sha256 ? "" : published.file.sha256;
      const key = `${published.sha256}\t${published.size}\t${filename}\t${parsedAs}`;
      const cached = previous.get(dir)?.entries.get(key);
      let name: string;
      let version: string;
      if (cached) ({ name, version } = cached);
      else {
        const meta = metaOf(published);
        if (meta === null) continue;
        name = pkgInfoValue(meta.pkginfo, "pkgname");
        version = pkgInfoValue(meta.pkginfo, "pkgver");
      }
      const list = byDir.get(dir) ?? [];
      list.push({ pkg: published, filename, key, name, version });
      byDir.set(dir, list);
    }
  }
  if (byDir.size === 0) byDir.set(DEFAULT_PACMAN_ARCH, []);

  const files: RenderedFile[] = [];
  let deferred = false;
  const signatures = new Map<PublishedPackage, Uint8Array | null>();
  const unsigned: string[] = [];
  const signatureOf = async (pkg: PacmanPublishedPackage): Promise<Uint8Array | null> => {
    if (!signer) return null;
    if (pkg.signature) return pkg.signature;
    if (signatures.has(pkg)) return signatures.get(pkg)!;
    let sig: Uint8Array | null = null;
    if (extended.readPackage)
      sig = await signer.signDetachedBinary(await extended.readPackage(pkg));
    else unsigned.push(pkg.file.filename);
    signatures.set(pkg, sig);
    return sig;
  };

  for (const dir of [...byDir.keys()].sort()) {
    const prefix = dir === "" ? "" : `${dir}/`;
    const old = previous.get(dir);
    const cache: DirCache = {
      entries: new Map(),
      db: old?.db ?? new GzipMemberCache(DB_GZIP_LEVEL),
      files: old?.files ?? new GzipMemberCache(DB_GZIP_LEVEL),
      filesDb: null,
    };
    caches.set(dir, cache);
    const { kept, dropped } = newestByName(byDir.get(dir)!);
    for (const d of dropped) {
      warnings.push(
        `${prefix}${d.filename}: not listed in ${repoName}.db, a newer ${d.name} is in the same directory`,
      );
    }
    const listed: { c: Candidate; entry: DbEntry }[] = [];
    for (const c of kept) {
      // The engine hands most signatures over; awaiting each of 10,000 would cost more.
      const signature = !signer ? null : (c.pkg.signature ?? (await signatureOf(c.pkg)));
      if (signature) {
        // Stage 0: the package signature exists before any database that embeds it.
        files.push({
          path: `${prefix}${c.filename}.sig`,
          content: signature,
          contentAddressed: true,
          stage: 0,
        });
      }
      const hit = old?.entries.get(c.key);
      const entry: DbEntry =
        hit && sameBytes(hit.signature, signature) ? hit : newEntry(c, signature);
      cache.entries.set(c.key, entry);
      listed.push({ c, entry });
    }
    listed.sort(compareListed);

    const dbItems: ChunkItem[] = [];
    const filesItems: ChunkItem[] = [];
    for (const l of listed) {
      const tar = new EntryTar(l.c, l.entry, metaOf);
      dbItems.push(new DescItem(tar));
      filesItems.push(new FilesItem(tar));
    }
    dbItems.push(TAR_END);
    filesItems.push(TAR_END);
    const [dbGz, filesDb] = await Promise.all([
      cache.db.compress(dbItems),
      filesDatabase(cache, old, filesItems, input),
    ]);
    cache.filesDb = filesDb.made ? filesDb.db : (old?.filesDb ?? null);
    if (filesDb.stale) deferred = true;
    const filesGz = filesDb.db.gz;
    // Stage 1: the databases (pacman fetches `<repo>.db`, then `<repo>.db.sig`); stage 2:
    // their signatures. pacman reads the db first and its .sig right after, so switching the
    // db first means a client can only see a mismatched pair if both of its requests fall
    // between the two renames; switching the .sig first would break every client whose db
    // download started before the .sig rename and whose .sig request came after it.
    const dbSig = signer ? await signer.signDetachedBinary(dbGz) : null;
    const filesSig = filesDb.db.sig;
    for (const [name, content, sig] of [
      [`${repoName}.db.tar.gz`, dbGz, dbSig],
      [`${repoName}.files.tar.gz`, filesGz, filesSig],
      [`${repoName}.db`, dbGz, dbSig],
      [`${repoName}.files`, filesGz, filesSig],
    ] as const) {
      files.push({ path: `${prefix}${name}`, content, contentAddressed: false, stage: 1 });
      if (sig) {
        files.push({
          path: `${prefix}${name}.sig`,
          content: sig,
          contentAddressed: false,
          stage: 2,
        });
      }
    }
  }
  repoCaches.set(input.repo.name, caches);
  if (unsigned.length > 0) {
    // One line, not one per package: a repo of 10,000 must not flood the log.
    const sample = unsigned.slice(0, 5).join(", ");
    warnings.push(
      `${unsigned.length} package(s) have no signature available and are published without .sig or %PGPSIG% (${sample}${unsigned.length > 5 ? ", ..." : ""}); pacman with SigLevel Required will refuse them`,
    );
  }
  return deferred ? { files, warnings, deferred } : { files, warnings };
}

/** A new pacman layout: render caches and checker memory of its own. */
export function createPacmanLayout(): RepoLayout {
  const repoCaches: RepoCaches = new Map();
  return {
    ...PACMAN,
    check: createPacmanCheck(),
    render: (input) => render(repoCaches, input),
    forgetRepos: (keep) => {
      for (const name of repoCaches.keys()) if (!keep.has(name)) repoCaches.delete(name);
    },
  };
}

/** What every pacman layout shares; the rest comes from createPacmanLayout. */
const PACMAN: Omit<RepoLayout, "render" | "forgetRepos" | "check"> = {
  managerType: "pacman",
  title: "pacman",
  fileKinds: ".pkg.tar.zst/.xz/.gz",
  cacheRules: {
    entryPoints: [String.raw`\.(db|files)(\.tar\.(gz|xz|zst|bz2))?(\.sig)?$`],
    immutable: [String.raw`\.pkg\.tar\.(zst|xz|gz|bz2)(\.sig)?$`],
  },
  // packrat's PackageFile.type for pacman packages is not fixed; parse() rejects non-packages.
  fileTypes: ["*"],
  // pacman checks a detached signature per package (%PGPSIG% and <file>.sig).
  derive: {
    wants: (_options, signer) => (signer ? { rewrite: false, signature: true } : null),
    run: async (source, _filename, signer) => ({
      signature: await signPacmanPackage(source, signer),
    }),
  },
  optionsUsed: ["pacmanRepoNames"],
  options: {
    pacmanRepoNames: {
      parse: pacmanRepoNames(),
      default: {},
      example: "arch-prod:prod",
      what: "pacman repo names",
      doc: [
        "pacman repo names by filesystem_dir, as dir:name pairs separated by commas,",
        "e.g. arch-prod:prod, arch-dev:dev. Default: each repo is named after its filesystem_dir.",
      ],
    },
  },
  filenamePattern: /\.pkg\.tar(\.[a-z0-9]+)?$/,
  placePackage,
  reservesPath: isPacmanMetadataName,
  parse: async (source, filename) =>
    (await readPacmanPackage(source, filename)) as unknown as PackageMeta,
  identify(meta, filename) {
    const info = asPacmanMeta(meta, filename).pkginfo;
    const arch = pkgInfoValue(info, "arch");
    return {
      name: pkgInfoValue(info, "pkgname"),
      version: pkgInfoValue(info, "pkgver"),
      arch: arch === "any" ? "all" : arch === "aarch64" ? "arm64" : arch,
    };
  },
  describe(meta: PackageMeta, filename: string): string {
    const m = asPacmanMeta(meta, filename);
    return renderDesc(m, {
      filename,
      csize: m.csize,
      sha256: m.sha256,
      md5: m.md5,
      signature: null,
    });
  },
};

/** A shared instance, for `inspect` and tests; the agent makes its own (layout/index.ts). */
export const pacmanLayout = createPacmanLayout();
