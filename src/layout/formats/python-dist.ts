/**
 * Python distributions as pip sees them: the project and version come from the file name
 * (pip's LinkEvaluator: a wheel's name per PEP 427, an sdist's `<name>-<version>` stem in any
 * archive format pip unpacks), and the core metadata, where there is one, adds what the index
 * shows (Requires-Python). The metadata is a wheel's `<name>-<ver>.dist-info/METADATA` (a zip)
 * or an sdist's PKG-INFO, in the email-header format of the Core Metadata spec. Zips are read
 * through their central directory, so only the member that matters is read; tar sdists stream
 * and stop at `<top>/PKG-INFO`. All sizes are bounded.
 */
import { inflateRawSync } from "node:zlib";
import { PackratError } from "../../errors.js";
import { FormatError, inFile } from "./format-error.js";
import type { ByteSource } from "../types.js";
import { decompressedChunks, sniffCompression } from "./compress.js";
import { readTarStream } from "./tar.js";

export interface PythonDistMeta {
  format: "python";
  kind: "wheel" | "sdist";
  /**
   * The project as pip finds it, from the file name (normalize with normalizeProjectName for
   * URLs), spelt as the metadata's Name when that is the same project.
   */
  name: string;
  /** The version in the file name (what pip compares). */
  version: string;
  /** The metadata's Name field; null when the sdist has no PKG-INFO. */
  declaredName?: string | null;
  requiresPython: string | null;
  summary: string | null;
  metadataVersion: string | null;
  /** Every header (lower-case keys) except the description; repeated fields as arrays. */
  metadata: Record<string, string | string[]>;
}

export const PYTHON_LIMITS = {
  maxMetadataBytes: 16 << 20,
  maxCentralDirectoryBytes: 64 << 20,
  maxZipEntries: 1_000_000,
  maxSdistScanBytes: 2 * 2 ** 30,
  maxTarMembers: 1_000_000,
};

/** PEP 503: runs of -, _ and . become one -, lower case. */
export function normalizeProjectName(name: string): string {
  return name.replace(/[-_.]+/g, "-").toLowerCase();
}

/**
 * The archive suffixes pip takes for an sdist (pip/_internal/utils/filetypes.py), less
 * `.tar.lz`: pip opens that as xz, and lzip is not xz, so pip itself cannot unpack one.
 */
export const SDIST_SUFFIXES = [
  ".tar.gz",
  ".tgz",
  ".tar",
  ".tar.bz2",
  ".tbz",
  ".tar.xz",
  ".txz",
  ".tlz",
  ".tar.lzma",
  ".zip",
] as const;

/** pip's splitext: the last extension, with ".tar" in front of it when there is one. */
function pipSplitext(filename: string): [stem: string, ext: string] {
  const dot = filename.lastIndexOf(".");
  if (dot <= 0) return [filename, ""];
  let stem = filename.slice(0, dot);
  let ext = filename.slice(dot);
  if (stem.toLowerCase().endsWith(".tar")) {
    ext = stem.slice(-4) + ext;
    stem = stem.slice(0, -4);
  }
  return [stem, ext];
}

/** pip's wheel file name pattern (pip/_internal/models/wheel.py). */
const WHEEL_NAME =
  /^(?<name>[^\s-]+?)-(?<ver>[^\s-]*?)(?:-(?<build>\d[^-]*?))?-(?<pyver>[^\s-]+?)-(?<abi>[^\s-]+?)-(?<plat>[^\s-]+?)\.whl$/;

export interface DistFilename {
  kind: "wheel" | "sdist";
  /** The project name as the file spells it (a wheel's "_" read as "-", as pip does). */
  project: string;
  version: string;
}

/**
 * The project and version pip reads from a distribution's file name; null when pip would not
 * take the file (unknown suffix, or no `<name>-<version>`). A wheel's name is unambiguous. An
 * sdist's stem is split, as pip does, at the dash where the part before it names the project
 * asked for: here, the one the metadata names (`declaredName`) when a dash gives it, else the
 * last dash (PEP 625 names have none, versions have none).
 */
export function parseDistFilename(
  filename: string,
  declaredName?: string | null,
): DistFilename | null {
  if (filename.endsWith(".whl")) {
    const m = WHEEL_NAME.exec(filename);
    const name = m?.groups?.name;
    const ver = m?.groups?.ver;
    if (!name || !ver) return null;
    return { kind: "wheel", project: name.replace(/_/g, "-"), version: ver.replace(/_/g, "-") };
  }
  const [stem, ext] = pipSplitext(filename);
  if (!(SDIST_SUFFIXES as readonly string[]).includes(ext)) return null;
  const dashes: number[] = [];
  for (let i = 1; i < stem.length - 1; i++) if (stem[i] === "-") dashes.push(i);
  if (dashes.length === 0) return null;
  const wanted = declaredName ? normalizeProjectName(declaredName) : null;
  const at =
    dashes.find((i) => normalizeProjectName(stem.slice(0, i)) === wanted) ?? dashes.at(-1)!;
  return { kind: "sdist", project: stem.slice(0, at), version: stem.slice(at + 1) };
}

/** Fields that may repeat (Core Metadata 2.4). */
const MULTI = new Set([
  "platform",
  "supported-platform",
  "classifier",
  "requires-dist",
  "requires-external",
  "project-url",
  "provides-extra",
  "provides-dist",
  "obsoletes-dist",
  "dynamic",
  "license-file",
]);

/** Parses Core Metadata headers; the body (the long description) is dropped. */
export function parseCoreMetadata(text: string): Record<string, string | string[]> {
  const fields: Record<string, string | string[]> = {};
  let last: string | null = null;
  for (const line of text.replace(/\r\n/g, "\n").split("\n")) {
    if (line === "") break;
    if (/^[ \t]/.test(line)) {
      // A folded continuation line (the Description field's, mostly).
      if (last !== null && last !== "description" && Object.hasOwn(fields, last)) {
        const prev = fields[last]!;
        if (Array.isArray(prev)) prev[prev.length - 1] += `\n${line.trim()}`;
        else fields[last] = `${prev}\n${line.trim()}`;
      }
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0)
      throw new FormatError(
        "python-metadata",
        `metadata line ${JSON.stringify(line.slice(0, 80))} is not a header`,
      );
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    last = key;
    if (key === "description") continue;
    // Own properties only: a header named "Constructor" read Object.prototype.constructor
    // here, was dropped, and its continuation line published "function Object() { [native
    // code] }". ("__proto__" cannot be stored in a plain object and is dropped.)
    const prev = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (MULTI.has(key)) {
      if (Array.isArray(prev)) prev.push(value);
      else fields[key] = [value];
    } else if (prev === undefined) {
      fields[key] = value;
    }
  }
  return fields;
}

function single(fields: Record<string, string | string[]>, key: string): string | null {
  const v = fields[key];
  return typeof v === "string" && v !== "" ? v : null;
}

/**
 * Reads a wheel's or an sdist's metadata; PACKRAT_PACKAGE_INVALID (naming the file) if pip
 * would not take the file, or its metadata is there but unreadable.
 */
export async function readPythonDist(
  source: ByteSource,
  filename: string,
  limits = PYTHON_LIMITS,
): Promise<PythonDistMeta> {
  const invalid = (what: string, cause?: unknown) =>
    new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: ${what}`, {
      hint: `expected a wheel (<name>-<version>-<tags>.whl with *.dist-info/METADATA) or an sdist (<name>-<version> and one of ${SDIST_SUFFIXES.join(" ")})`,
      cause,
    });
  const fromName = parseDistFilename(filename);
  if (fromName === null) {
    throw invalid("pip reads no project and version from this file name");
  }
  let text: string | null;
  try {
    if (fromName.kind === "wheel") {
      text = await readWheelMetadata(source, filename, limits);
    } else {
      text = filename.endsWith(".zip")
        ? await readZipSdistMetadata(source, limits)
        : await readTarSdistMetadata(source, filename, limits);
    }
  } catch (err) {
    if (err instanceof PackratError) throw err;
    throw invalid((err as Error).message, inFile(err, filename));
  }
  let metadata: Record<string, string | string[]> = {};
  try {
    if (text !== null) metadata = parseCoreMetadata(text);
  } catch (err) {
    throw invalid((err as Error).message, inFile(err, filename));
  }
  const declaredName = single(metadata, "name");
  // The split of an sdist's stem may depend on the declared name (foo-bar-1.0: foo-bar 1.0).
  const dist = parseDistFilename(filename, declaredName) ?? fromName;
  const sameProject =
    declaredName !== null &&
    normalizeProjectName(declaredName) === normalizeProjectName(dist.project);
  return {
    format: "python",
    kind: dist.kind,
    name: sameProject ? declaredName : dist.project,
    version: dist.version,
    declaredName,
    requiresPython: single(metadata, "requires-python"),
    summary: single(metadata, "summary"),
    metadataVersion: single(metadata, "metadata-version"),
    metadata,
  };
}

/** The compression of a tar sdist: by its magic, or LZMA-alone (which has none) by its name. */
async function sdistCompression(source: ByteSource, filename: string) {
  const sniffed = await sniffCompression(source, { bzip2: true });
  if (sniffed !== null && sniffed !== "zstd") return sniffed;
  // pip opens .tar.xz/.txz/.tlz/.tar.lzma with Python's lzma, which also reads LZMA-alone.
  if (sniffed === null && /\.(tar\.lzma|tlz|tar\.xz|txz)$/.test(filename)) return "lzma";
  throw new FormatError(
    "compress",
    "not a gzip, bzip2, xz or lzma compressed tar, nor a plain one",
  );
}

/**
 * Where an sdist's PKG-INFO may be, best first: `<top>/PKG-INFO` as sdists are made, a
 * PKG-INFO at the root (an archive without a top directory), then one that setuptools left in
 * `<name>.egg-info/` (at the root, in `<top>/` or `<top>/src/`). Deeper copies belong to
 * vendored projects and are not this one's.
 */
function pkgInfoRank(name: string): number | null {
  const parts = name.replace(/^\.\//, "").split("/");
  if (parts.at(-1) !== "PKG-INFO" || parts.some((p) => p === "" || p === "..")) return null;
  if (parts.length === 1) return 1;
  const inEggInfo = (parts.at(-2) ?? "").endsWith(".egg-info");
  if (parts.length === 2) return inEggInfo ? 2 : 0;
  if (!inEggInfo) return null;
  if (parts.length === 3) return 2;
  if (parts.length === 4 && parts[1] === "src") return 3;
  return null;
}

async function readTarSdistMetadata(
  source: ByteSource,
  filename: string,
  limits: typeof PYTHON_LIMITS,
): Promise<string | null> {
  const compression = await sdistCompression(source, filename);
  let found: { rank: number; content: Uint8Array } | null = null;
  await readTarStream(
    decompressedChunks(source, compression, { maxOutput: limits.maxSdistScanBytes }),
    {
      maxMembers: limits.maxTarMembers,
      maxContent: limits.maxMetadataBytes,
      wantContent: (m) => {
        const rank = pkgInfoRank(m.name);
        return m.type === "file" && rank !== null && rank < (found?.rank ?? 99);
      },
      onMember: (m, content) => {
        const rank = pkgInfoRank(m.name);
        if (content !== null && rank !== null && rank < (found?.rank ?? 99)) {
          found = { rank, content };
        }
      },
      // `<top>/PKG-INFO` cannot be bettered: stop there; otherwise read on for one.
      done: () => found?.rank === 0,
    },
  );
  return found === null ? null : decodeMetadata((found as { content: Uint8Array }).content);
}

async function readZipSdistMetadata(
  source: ByteSource,
  limits: typeof PYTHON_LIMITS,
): Promise<string | null> {
  const entries = await readCentralDirectory(source, limits);
  let best: { rank: number; entry: ZipEntry } | null = null;
  for (const entry of entries) {
    const rank = pkgInfoRank(entry.name);
    if (rank !== null && rank < (best?.rank ?? 99)) best = { rank, entry };
  }
  return best === null ? null : decodeMetadata(await readZipEntry(source, best.entry, limits));
}

async function readWheelMetadata(
  source: ByteSource,
  filename: string,
  limits: typeof PYTHON_LIMITS,
): Promise<string> {
  const entries = await readCentralDirectory(source, limits);
  const candidates = entries.filter((e) => /^[^/]+\.dist-info\/METADATA$/.test(e.name));
  // PEP 427: the wheel `{distribution}-{version}-...` has `{distribution}-{version}.dist-info`.
  const [dist, version] = filename.split("-");
  const expected = `${dist}-${version}.dist-info/METADATA`;
  const entry =
    candidates.find((e) => e.name === expected) ??
    candidates.find((e) => e.name.toLowerCase() === expected.toLowerCase()) ??
    (candidates.length === 1 ? candidates[0] : undefined);
  if (!entry) {
    throw new FormatError(
      "zip",
      candidates.length === 0
        ? "no *.dist-info/METADATA in the wheel"
        : `several .dist-info directories and none is ${expected.replace("/METADATA", "")}`,
    );
  }
  return decodeMetadata(await readZipEntry(source, entry, limits));
}

/** Core metadata is UTF-8 (PEP 566); anything else would be published as U+FFFD. */
function decodeMetadata(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(
      "python-metadata",
      "metadata is not valid UTF-8 (core metadata must be UTF-8)",
    );
  }
}

function decode(bytes: Uint8Array): string {
  return new TextDecoder("utf-8").decode(bytes);
}

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CDH_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(v: DataView, at: number): number {
  const n = Number(v.getBigUint64(at, true));
  if (!Number.isSafeInteger(n)) throw new FormatError("zip", "zip64 value out of range");
  return n;
}

/** The zip's central directory (APPNOTE 6.3.10 §4.3.16 end record; §4.3.14 zip64). */
async function readCentralDirectory(
  source: ByteSource,
  limits: typeof PYTHON_LIMITS,
): Promise<ZipEntry[]> {
  const tailLength = Math.min(source.size, 22 + 0xffff);
  const tailStart = source.size - tailLength;
  const tail = await source.read(tailStart, tailLength);
  const tv = view(tail);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd === -1)
    throw new FormatError("zip", "not a zip file (no end of central directory record)");
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocd < 20 || tv.getUint32(eocd - 20, true) !== ZIP64_LOCATOR_SIG) {
      throw new FormatError("zip", "zip64 end record locator missing");
    }
    const z64Offset = u64(tv, eocd - 20 + 8);
    const z64 = view(await source.read(z64Offset, 56));
    if (z64.byteLength < 56 || z64.getUint32(0, true) !== ZIP64_EOCD_SIG) {
      throw new FormatError("zip", "zip64 end record missing");
    }
    count = u64(z64, 32);
    cdSize = u64(z64, 40);
    cdOffset = u64(z64, 48);
  }
  if (cdSize > limits.maxCentralDirectoryBytes)
    throw new FormatError("zip", `central directory of ${cdSize} bytes is too large`);
  if (count > limits.maxZipEntries)
    throw new FormatError("zip", `${count} zip entries is too many`);
  if (cdOffset + cdSize > source.size)
    throw new FormatError("zip", "central directory lies outside the file");
  const cd = await source.read(cdOffset, cdSize);
  const cv = view(cd);
  const entries: ZipEntry[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 46 > cd.length || cv.getUint32(pos, true) !== CDH_SIG) {
      throw new FormatError("zip", `central directory entry ${i + 1} is damaged`);
    }
    const nameLen = cv.getUint16(pos + 28, true);
    const extraLen = cv.getUint16(pos + 30, true);
    const commentLen = cv.getUint16(pos + 32, true);
    if (pos + 46 + nameLen + extraLen + commentLen > cd.length)
      throw new FormatError("zip", "central directory is truncated");
    const entry: ZipEntry = {
      name: decode(cd.subarray(pos + 46, pos + 46 + nameLen)),
      method: cv.getUint16(pos + 10, true),
      compressedSize: cv.getUint32(pos + 20, true),
      size: cv.getUint32(pos + 24, true),
      localOffset: cv.getUint32(pos + 42, true),
    };
    applyZip64Extra(entry, cd.subarray(pos + 46 + nameLen, pos + 46 + nameLen + extraLen));
    entries.push(entry);
    pos += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Sizes and offset saturated at 0xffffffff live in the zip64 extra field (id 1), in order. */
function applyZip64Extra(entry: ZipEntry, extra: Uint8Array): void {
  const ev = view(extra);
  for (let p = 0; p + 4 <= extra.length;) {
    const id = ev.getUint16(p, true);
    const len = ev.getUint16(p + 2, true);
    if (id === 1) {
      let q = p + 4;
      const next = () => {
        if (q + 8 > p + 4 + len || q + 8 > extra.length)
          throw new FormatError("zip", "zip64 extra field too short");
        const v = u64(ev, q);
        q += 8;
        return v;
      };
      if (entry.size === 0xffffffff) entry.size = next();
      if (entry.compressedSize === 0xffffffff) entry.compressedSize = next();
      if (entry.localOffset === 0xffffffff) entry.localOffset = next();
      return;
    }
    p += 4 + len;
  }
}

async function readZipEntry(
  source: ByteSource,
  entry: ZipEntry,
  limits: typeof PYTHON_LIMITS,
): Promise<Uint8Array> {
  if (entry.size > limits.maxMetadataBytes || entry.compressedSize > limits.maxMetadataBytes) {
    throw new FormatError("zip", `${entry.name} is larger than ${limits.maxMetadataBytes} bytes`);
  }
  const local = await source.read(entry.localOffset, 30);
  const lv = view(local);
  if (local.length < 30 || lv.getUint32(0, true) !== LOCAL_SIG)
    throw new FormatError("zip", `${entry.name}: bad local header`);
  const dataStart = entry.localOffset + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
  const data = await source.read(dataStart, entry.compressedSize);
  if (data.length !== entry.compressedSize)
    throw new FormatError("zip", `${entry.name}: truncated`);
  if (entry.method === 0) return data;
  if (entry.method !== 8)
    throw new FormatError("zip", `${entry.name}: unsupported compression method ${entry.method}`);
  let out: Uint8Array;
  try {
    out = inflateRawSync(data, { maxOutputLength: Math.max(1, limits.maxMetadataBytes) });
  } catch (err) {
    throw new FormatError("zip", `${entry.name}: ${(err as Error).message}`, { cause: err });
  }
  if (out.length !== entry.size)
    throw new FormatError(
      "zip",
      `${entry.name}: ${out.length} bytes, the directory says ${entry.size}`,
    );
  return out;
}

/** Narrow an unknown cached meta back to a Python one (the state DB stores JSON). */
export function asPythonMeta(meta: unknown, filename: string): PythonDistMeta {
  const m = meta as Partial<PythonDistMeta> | null;
  if (m === null || typeof m !== "object" || m.format !== "python" || typeof m.name !== "string") {
    throw new PackratError(
      "PACKRAT_PACKAGE_INVALID",
      `${filename}: cached metadata is not a Python distribution's`,
      {
        hint: "the file will be parsed again on the next full sync",
      },
    );
  }
  return m as PythonDistMeta;
}
