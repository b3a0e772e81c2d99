/**
 * What the yum layout keeps of an RPM: everything primary.xml, filelists.xml and other.xml
 * need, JSON-serialisable (the state DB caches it by sha256). Field meanings follow
 * createrepo_c's cr_package_from_header, so the published entries match what createrepo_c
 * would write for the same file.
 */
import { createHash } from "node:crypto";
import type { ByteSource } from "../types.js";
import { READ_CHUNK, readThrough, withHead } from "./read-through.js";
import { HeaderReader, headerText, invalid, readRpmStructure } from "./rpm-header.js";
import { FileFlag, S_IFDIR, S_IFMT, Sense, SigTag, Tag } from "./rpm-tags.js";

export interface RpmDependency {
  name: string;
  /** EQ, LT, LE, GT, GE; absent for an unversioned dependency. */
  flags?: string;
  epoch?: string;
  ver?: string;
  rel?: string;
  /** Requires only: needed before the package's scripts run. */
  pre?: boolean;
}

export type RpmFileType = "file" | "dir" | "ghost";

export interface RpmFile {
  path: string;
  type: RpmFileType;
}

export interface RpmChangelog {
  author: string;
  date: number;
  text: string;
}

export interface RpmMeta {
  format: "rpm";
  name: string;
  epoch: number;
  version: string;
  release: string;
  arch: string;
  summary: string;
  description: string;
  packager: string;
  url: string;
  buildTime: number;
  /** Installed size (LONGSIZE, else SIZE). */
  installedSize: number;
  /** Uncompressed payload size. */
  archiveSize: number;
  /** Bytes of the file parsed. */
  packageSize: number;
  /** SHA-256 of the file parsed (createrepo's pkgid). */
  sha256: string;
  license: string;
  vendor: string;
  group: string;
  buildHost: string;
  sourceRpm: string;
  /** rpm:header-range: the main header's first byte and the byte after it. */
  headerStart: number;
  headerEnd: number;
  provides: RpmDependency[];
  requires: RpmDependency[];
  conflicts: RpmDependency[];
  obsoletes: RpmDependency[];
  recommends: RpmDependency[];
  suggests: RpmDependency[];
  supplements: RpmDependency[];
  enhances: RpmDependency[];
  files: RpmFile[];
  /** Newest first, as in the header; capped at CHANGELOG_CAP (render picks the limit). */
  changelogs: RpmChangelog[];
}

/** Changelogs kept per package in the cache; rpm_changelog_limit picks from these. */
export const CHANGELOG_CAP = 100;

/**
 * SHA-256 of the whole source, read once, and its first chunk (read-through.ts): the lead and
 * headers are parsed from that chunk instead of four more reads of the file. A source whose
 * SHA-256 the caller checked (ByteSource.verifiedSha256) is not hashed again.
 */
export async function sha256Of(
  source: ByteSource,
  filename: string,
): Promise<{ sha256: string; head: Uint8Array }> {
  if (source.verifiedSha256 !== undefined) {
    // Checked by the caller: only the head is read (the headers are parsed from it).
    const want = Math.min(READ_CHUNK, source.size);
    const head = want === 0 ? new Uint8Array(0) : await source.read(0, want);
    if (head.length !== want) {
      throw invalid(filename, `read ${head.length} bytes, expected ${source.size} (truncated)`);
    }
    return { sha256: source.verifiedSha256, head };
  }
  const hash = createHash("sha256");
  const { head, bytesRead } = await readThrough(source, (chunk) => hash.update(chunk));
  if (bytesRead !== source.size) {
    throw invalid(filename, `read ${bytesRead} bytes, expected ${source.size} (truncated)`);
  }
  return { sha256: hash.digest("hex"), head };
}

const FLAG_NAMES: Record<number, string> = {
  [Sense.LESS]: "LT",
  [Sense.GREATER]: "GT",
  [Sense.EQUAL]: "EQ",
  [Sense.LESS | Sense.EQUAL]: "LE",
  [Sense.GREATER | Sense.EQUAL]: "GE",
};

/** Split an EVR string as createrepo_c's cr_str_to_evr does: [epoch:]version[-release]. */
export function splitEvr(evr: string): { epoch: string; ver: string; rel?: string } {
  let rest = evr;
  let epoch = "0";
  const colon = rest.indexOf(":");
  if (colon >= 0 && /^\d*$/.test(rest.slice(0, colon))) {
    epoch = rest.slice(0, colon) || "0";
    rest = rest.slice(colon + 1);
  }
  const dash = rest.lastIndexOf("-");
  if (dash >= 0) return { epoch, ver: rest.slice(0, dash), rel: rest.slice(dash + 1) };
  return { epoch, ver: rest };
}

type DepKind =
  | "provides"
  | "requires"
  | "conflicts"
  | "obsoletes"
  | "recommends"
  | "suggests"
  | "supplements"
  | "enhances";

const DEP_TAGS: Record<DepKind, [name: number, flags: number, version: number]> = {
  provides: [Tag.PROVIDENAME, Tag.PROVIDEFLAGS, Tag.PROVIDEVERSION],
  requires: [Tag.REQUIRENAME, Tag.REQUIREFLAGS, Tag.REQUIREVERSION],
  conflicts: [Tag.CONFLICTNAME, Tag.CONFLICTFLAGS, Tag.CONFLICTVERSION],
  obsoletes: [Tag.OBSOLETENAME, Tag.OBSOLETEFLAGS, Tag.OBSOLETEVERSION],
  recommends: [Tag.RECOMMENDNAME, Tag.RECOMMENDFLAGS, Tag.RECOMMENDVERSION],
  suggests: [Tag.SUGGESTNAME, Tag.SUGGESTFLAGS, Tag.SUGGESTVERSION],
  supplements: [Tag.SUPPLEMENTNAME, Tag.SUPPLEMENTFLAGS, Tag.SUPPLEMENTVERSION],
  enhances: [Tag.ENHANCENAME, Tag.ENHANCEFLAGS, Tag.ENHANCEVERSION],
};

const PRE_FLAGS = Sense.PREREQ | Sense.SCRIPT_PRE | Sense.SCRIPT_POST;

/** createrepo_c's cr_is_primary: the files primary.xml lists. */
export function isPrimaryFile(path: string): boolean {
  return path.startsWith("/etc/") || path === "/usr/lib/sendmail" || path.includes("bin/");
}

/** What a requirement must equal to be satisfied by the package itself (createrepo_c). */
function providedKey(name: string, flags: number, version: string): string {
  return `${name}\0${FLAG_NAMES[flags & (Sense.LESS | Sense.GREATER | Sense.EQUAL)] ?? ""}\0${version}`;
}

/**
 * `ownFiles` and `provided` hold raw header strings (rawStrings): createrepo_c compares the
 * header's bytes and converts text only when writing it (headerText).
 */
function readDependencies(
  h: HeaderReader,
  kind: DepKind,
  ownFiles: ReadonlySet<string>,
  provided: Set<string>,
): RpmDependency[] {
  const [nameTag, flagsTag, versionTag] = DEP_TAGS[kind];
  const names = h.rawStrings(nameTag);
  const flags = h.numbers(flagsTag);
  const versions = h.rawStrings(versionTag);
  if ((flags.length > 0 && flags.length !== names.length) || versions.length > names.length) {
    throw invalid(
      h.filename,
      `${kind}: ${names.length} names but ${flags.length} flags and ${versions.length} versions`,
    );
  }
  const out: RpmDependency[] = [];
  const seen = new Set<string>();
  names.forEach((name, i) => {
    const f = flags[i] ?? 0;
    const version = versions[i] ?? "";
    if (kind === "requires") {
      // createrepo_c drops rpmlib() requirements and requirements on the package's own
      // primary files: dnf resolves neither from repo metadata.
      if (name.startsWith("rpmlib(")) return;
      if (name.startsWith("/") && ownFiles.has(name) && isPrimaryFile(name)) return;
      // ...and requirements the package provides itself, e.g. config(foo) = 1.0-1.
      if (provided.has(providedKey(name, f, version))) return;
    }
    if (kind === "provides") provided.add(providedKey(name, f, version));
    // Each attribute is converted on its own, as createrepo_c writes each with cr_xmlNewProp.
    const dep: RpmDependency = { name: headerText(name) };
    const cmp = FLAG_NAMES[f & (Sense.LESS | Sense.GREATER | Sense.EQUAL)];
    if (cmp !== undefined && version !== "") {
      dep.flags = cmp;
      const evr = splitEvr(version);
      dep.epoch = headerText(evr.epoch);
      dep.ver = headerText(evr.ver);
      if (evr.rel !== undefined) dep.rel = headerText(evr.rel);
    }
    // createrepo_c's rule: needed by %pre/%post (or legacy PreReq) → pre="1". Not pretrans,
    // and a plain and a pre form of the same requirement are both listed.
    if (kind === "requires" && (f & PRE_FLAGS) !== 0) dep.pre = true;
    const key = JSON.stringify(dep);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(dep);
  });
  return out;
}

/** The files, and their raw paths (directory and base name joined before headerText). */
function readFiles(h: HeaderReader): { files: RpmFile[]; rawPaths: string[] } {
  const basenames = h.rawStrings(Tag.BASENAMES);
  if (basenames.length === 0) return { files: [], rawPaths: [] };
  const dirnames = h.rawStrings(Tag.DIRNAMES);
  const dirindexes = h.numbers(Tag.DIRINDEXES);
  const modes = h.numbers(Tag.FILEMODES);
  const fileFlags = h.numbers(Tag.FILEFLAGS);
  if (dirindexes.length !== basenames.length) {
    throw invalid(
      h.filename,
      `${basenames.length} file basenames but ${dirindexes.length} directory indexes`,
    );
  }
  const rawPaths: string[] = [];
  const files = basenames.map((base, i): RpmFile => {
    const dir = dirnames[dirindexes[i] ?? -1];
    if (dir === undefined) {
      throw invalid(
        h.filename,
        `file ${headerText(base)} names directory ${dirindexes[i]} of ${dirnames.length}`,
      );
    }
    const mode = modes[i] ?? 0;
    const flags = fileFlags[i] ?? 0;
    const type: RpmFileType =
      (flags & FileFlag.GHOST) !== 0 ? "ghost" : (mode & S_IFMT) === S_IFDIR ? "dir" : "file";
    rawPaths.push(dir + base);
    return { path: headerText(dir + base), type };
  });
  return { files, rawPaths };
}

/** createrepo_c trims spaces from the end of a changelog author, all but the first byte. */
function trimAuthor(raw: string): string {
  let end = raw.length;
  while (end > 1 && raw[end - 1] === " ") end--;
  return raw.slice(0, end);
}

function readChangelogs(h: HeaderReader): RpmChangelog[] {
  const times = h.numbers(Tag.CHANGELOGTIME);
  const names = h.rawStrings(Tag.CHANGELOGNAME);
  const texts = h.rawStrings(Tag.CHANGELOGTEXT);
  const n = Math.min(times.length, names.length, texts.length, CHANGELOG_CAP);
  const out: RpmChangelog[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      author: headerText(trimAuthor(names[i] ?? "")),
      // The header's time: entries that share one are told apart when rendered, because
      // how far createrepo_c moves each depends on how many entries it keeps.
      date: times[i] ?? 0,
      text: headerText(texts[i] ?? ""),
    });
  }
  return out;
}

/** Parse an RPM (binary or source) into RpmMeta: one pass hashes it, the headers come after. */
export async function parseRpm(source: ByteSource, filename: string): Promise<RpmMeta> {
  const { sha256, head } = await sha256Of(source, filename);
  const { leadType, signature, header } = await readRpmStructure(withHead(source, head), filename);
  const h = new HeaderReader(header, filename, "main header");
  const sig = new HeaderReader(signature, filename, "signature header");
  const required = (tag: number, label: string): string => {
    const v = h.string(tag);
    if (v === null || v === "") throw invalid(filename, `the header has no ${label}`);
    return v;
  };
  const name = required(Tag.NAME, "name");
  const version = required(Tag.VERSION, "version");
  const release = required(Tag.RELEASE, "release");
  // rpm's headerIsSource: a source package is one without a SOURCERPM tag.
  const isSource = !h.has(Tag.SOURCERPM) || leadType === 1;
  const arch = isSource ? "src" : required(Tag.ARCH, "arch");

  const { files, rawPaths } = readFiles(h);
  const ownFiles = new Set(rawPaths);
  const provided = new Set<string>();
  // provides first: requires consult what the package provides.
  const provides = readDependencies(h, "provides", ownFiles, provided);
  const deps = (kind: DepKind) => readDependencies(h, kind, ownFiles, provided);
  const text = (tag: number) => h.string(tag) ?? "";

  const meta: RpmMeta = {
    format: "rpm",
    name,
    epoch: h.number(Tag.EPOCH) ?? 0,
    version,
    release,
    arch,
    summary: text(Tag.SUMMARY),
    description: text(Tag.DESCRIPTION),
    packager: text(Tag.PACKAGER),
    url: text(Tag.URL),
    buildTime: h.number(Tag.BUILDTIME) ?? 0,
    installedSize: h.number(Tag.LONGSIZE) ?? h.number(Tag.SIZE) ?? 0,
    archiveSize:
      sig.number(SigTag.LONGARCHIVESIZE) ??
      sig.number(SigTag.PAYLOADSIZE) ??
      h.number(Tag.LONGARCHIVESIZE) ??
      h.number(Tag.ARCHIVESIZE) ??
      0,
    packageSize: source.size,
    sha256,
    license: text(Tag.LICENSE),
    vendor: text(Tag.VENDOR),
    group: text(Tag.GROUP),
    buildHost: text(Tag.BUILDHOST),
    sourceRpm: text(Tag.SOURCERPM),
    headerStart: header.start,
    headerEnd: header.end,
    provides,
    requires: deps("requires"),
    conflicts: deps("conflicts"),
    obsoletes: deps("obsoletes"),
    recommends: deps("recommends"),
    suggests: deps("suggests"),
    supplements: deps("supplements"),
    enhances: deps("enhances"),
    files,
    changelogs: readChangelogs(h),
  };
  return meta;
}

/** Narrow a cached PackageMeta back to RpmMeta (the cache may hold another layout's meta). */
export function asRpmMeta(meta: Record<string, unknown>, filename: string): RpmMeta {
  if (meta.format !== "rpm" || typeof meta.name !== "string" || !Array.isArray(meta.files)) {
    throw invalid(filename, "the cached metadata is not RPM metadata; parse the file again");
  }
  return meta as unknown as RpmMeta;
}
