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
import { gzipSync } from "node:zlib";
import { PackratError } from "../errors.js";
import type { Signer } from "../signing/signer.js";
import { asPacmanMeta, compareBytes, readPacmanPackage } from "./formats/pacman-package.js";
import type { PacmanPackageMeta } from "./formats/pacman-package.js";
import { writeTar } from "./formats/pacman-tar.js";
import type { TarWriteEntry } from "./formats/pacman-tar.js";
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
 * Proposed additions to the shared interfaces (read here through narrow local types until the
 * lead wires them): a package's detached binary signature, made once per (sha256, signing key)
 * with signPacmanPackage() and kept in the state DB, and, as a slower fallback, a way to read
 * a package's bytes at render time so it can be signed then.
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
  const arch = pacmanArch(input.file.arch);
  const dirs = arch === "any" ? archDirs(input.repoArches) : [arch];
  return dirs.map((dir) => `${dir}/${input.file.filename}`);
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

interface DbPackage {
  pkg: PacmanPublishedPackage;
  meta: PacmanPackageMeta;
  filename: string;
}

/** One package per name and directory: the newest by vercmp (repo-add replaces older ones). */
function newestByName(candidates: DbPackage[]): { kept: DbPackage[]; dropped: DbPackage[] } {
  const byName = new Map<string, DbPackage>();
  const dropped: DbPackage[] = [];
  for (const c of candidates) {
    const name = pkgInfoValue(c.meta.pkginfo, "pkgname");
    const other = byName.get(name);
    if (!other) {
      byName.set(name, c);
      continue;
    }
    const cmp = vercmp(
      pkgInfoValue(c.meta.pkginfo, "pkgver"),
      pkgInfoValue(other.meta.pkginfo, "pkgver"),
    );
    const newer = cmp > 0 || (cmp === 0 && c.filename > other.filename);
    byName.set(name, newer ? c : other);
    dropped.push(newer ? other : c);
  }
  return { kept: [...byName.values()], dropped };
}

function builddate(meta: PacmanPackageMeta): number {
  const n = Number(pkgInfoValue(meta.pkginfo, "builddate"));
  return Number.isSafeInteger(n) && n > 0 && n < 8 ** 11 ? n : 0;
}

/** The two database archives (uncompressed tar) of one directory, sorted by entry name. */
function buildDatabases(entries: { pkg: DbPackage; desc: string }[]): {
  db: Uint8Array;
  files: Uint8Array;
} {
  const sorted = entries
    .map((e) => ({
      ...e,
      dir: `${pkgInfoValue(e.pkg.meta.pkginfo, "pkgname")}-${pkgInfoValue(e.pkg.meta.pkginfo, "pkgver")}`,
    }))
    .sort((a, b) => compareBytes(a.dir, b.dir));
  const enc = new TextEncoder();
  const db: TarWriteEntry[] = [];
  const files: TarWriteEntry[] = [];
  for (const e of sorted) {
    const mtime = builddate(e.pkg.meta);
    const desc = enc.encode(e.desc);
    db.push({ name: `${e.dir}/`, mtime }, { name: `${e.dir}/desc`, content: desc, mtime });
    files.push(
      { name: `${e.dir}/`, mtime },
      { name: `${e.dir}/desc`, content: desc, mtime },
      { name: `${e.dir}/files`, content: enc.encode(renderFilesEntry(e.pkg.meta)), mtime },
    );
  }
  return { db: writeTar(db), files: writeTar(files) };
}

/** gzip with mtime 0 and no name (node's zlib writes neither): the same tar, the same bytes. */
function gzip(data: Uint8Array): Uint8Array {
  return gzipSync(data, { level: 6 });
}

async function render(input: RenderInput): Promise<RenderResult> {
  const extended = input as PacmanRenderInput;
  const repoName = pacmanRepoName(input.repo.filesystemDir, input.options.pacmanRepoNames);
  const warnings: string[] = [];
  const signer = input.signer;
  if (!signer) warnings.push("publishing unsigned: no signing key configured");

  // Directory → the packages placed in it.
  const byDir = new Map<string, DbPackage[]>();
  for (const published of input.packages as readonly PacmanPublishedPackage[]) {
    let meta: PacmanPackageMeta;
    try {
      meta = asPacmanMeta(published.meta, published.file.filename);
    } catch (err) {
      // One bad record must not take the whole repo down: leave it out and say so.
      warnings.push(`${(err as Error).message}; not listed`);
      continue;
    }
    for (const p of published.paths) {
      const slash = p.lastIndexOf("/");
      const dir = slash === -1 ? "" : p.slice(0, slash);
      const list = byDir.get(dir) ?? [];
      list.push({ pkg: published, meta, filename: p.slice(slash + 1) });
      byDir.set(dir, list);
    }
  }
  if (byDir.size === 0) byDir.set(DEFAULT_PACMAN_ARCH, []);

  const files: RenderedFile[] = [];
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
    const { kept, dropped } = newestByName(byDir.get(dir)!);
    for (const d of dropped) {
      warnings.push(
        `${prefix}${d.filename}: not listed in ${repoName}.db, a newer ${pkgInfoValue(d.meta.pkginfo, "pkgname")} is in the same directory`,
      );
    }
    const entries: { pkg: DbPackage; desc: string }[] = [];
    for (const c of kept) {
      const signature = await signatureOf(c.pkg);
      if (signature) {
        // Stage 0: the package signature exists before any database that embeds it.
        files.push({
          path: `${prefix}${c.filename}.sig`,
          content: signature,
          contentAddressed: true,
          stage: 0,
        });
      }
      const desc = renderDesc(c.meta, {
        filename: c.filename,
        csize: c.pkg.size,
        sha256: c.pkg.sha256,
        md5: c.meta.sha256 === c.pkg.sha256 ? c.meta.md5 : null,
        signature,
      });
      entries.push({ pkg: c, desc });
    }
    const { db, files: filesDb } = buildDatabases(entries);
    const dbGz = gzip(db);
    const filesGz = gzip(filesDb);
    // Stage 1: the databases (pacman fetches `<repo>.db`, then `<repo>.db.sig`); stage 2:
    // their signatures. pacman reads the db first and its .sig right after, so switching the
    // db first means a client can only see a mismatched pair if both of its requests fall
    // between the two renames; switching the .sig first would break every client whose db
    // download started before the .sig rename and whose .sig request came after it.
    const dbSig = signer ? await signer.signDetachedBinary(dbGz) : null;
    const filesSig = signer ? await signer.signDetachedBinary(filesGz) : null;
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
  if (unsigned.length > 0) {
    // One line, not one per package: a repo of 10,000 must not flood the log.
    const sample = unsigned.slice(0, 5).join(", ");
    warnings.push(
      `${unsigned.length} package(s) have no signature available and are published without .sig or %PGPSIG% (${sample}${unsigned.length > 5 ? ", ..." : ""}); pacman with SigLevel Required will refuse them`,
    );
  }
  return { files, warnings };
}

export const pacmanLayout: RepoLayout = {
  managerType: "pacman",
  // packrat's PackageFile.type for pacman packages is not fixed; parse() rejects non-packages.
  fileTypes: ["*"],
  // pacman checks a detached signature per package (%PGPSIG% and <file>.sig).
  wantsPackageSignatures: true,
  placePackage,
  parse: async (source, filename) =>
    (await readPacmanPackage(source, filename)) as unknown as PackageMeta,
  render,
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
