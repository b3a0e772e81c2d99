/**
 * Reading a pacman package (`.pkg.tar.zst`, `.xz`, `.gz`, or plain tar): its .PKGINFO and its
 * file list, in one streaming pass that also hashes the file (MD5 and SHA-256, which repo-add
 * writes). Bounded against hostile files: decompressed bytes, members, .PKGINFO size and file
 * list size all have limits.
 */
import { createHash } from "node:crypto";
import { PackratError } from "../../errors.js";
import { inFile } from "./format-error.js";
import type { ByteSource } from "../types.js";
import { decompressedChunks, sniffCompression, sourceChunks } from "./compress.js";
import type { StreamCompression } from "./compress.js";
import { readTarStream } from "./tar.js";
import { READ_CHUNK, withHead } from "./read-through.js";
import { parsePkgInfo } from "./pkginfo.js";
import type { PkgInfo } from "./pkginfo.js";

/** What parse() keeps of a pacman package (JSON-serialisable; cached by sha256). */
export interface PacmanPackageMeta {
  format: "pacman";
  compression: StreamCompression;
  pkginfo: PkgInfo;
  /** `bsdtar --exclude='^.*' -tf pkg | LC_ALL=C sort -u`, as repo-add lists it. */
  files: string[];
  csize: number;
  md5: string;
  sha256: string;
}

export type PacmanLimits = typeof PACMAN_LIMITS;

export const PACMAN_LIMITS = {
  maxPkgInfoBytes: 1 << 20,
  maxMembers: 1_000_000,
  maxFileListBytes: 64 << 20,
  /** Decompressed bytes: at least this much, ... */
  minOutputCap: 256 << 20,
  /** ... or this many times the compressed size (real packages stay under ~30x) ... */
  outputRatio: 100,
  /** ... and never more than this. */
  maxOutputCap: 32 * 2 ** 30,
};

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

// pacman's own rules (libmakepkg lint_pkgbuild): names and versions become tar paths.
const NAME_RE = /^[A-Za-z0-9@_+][A-Za-z0-9@._+-]*$/;
const VERSION_RE = /^[A-Za-z0-9._+:~-]+$/;

export async function readPacmanPackage(
  source: ByteSource,
  filename: string,
  limits: PacmanLimits = PACMAN_LIMITS,
): Promise<PacmanPackageMeta> {
  const invalid = (what: string, cause?: unknown) =>
    new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: ${what}`, {
      hint: "expected a pacman package (.pkg.tar.zst, .pkg.tar.xz or .pkg.tar.gz) with a .PKGINFO",
      cause,
    });

  // One read of the first chunk serves the magic sniff and the decompressor's first chunk
  // (both read from offset 0): a small package costs a single read of the file.
  const head = await source.read(0, Math.min(READ_CHUNK, source.size)).catch((err: unknown) => {
    throw invalid("cannot read the file", err);
  });
  const bytes = withHead(source, head);
  const compression = await sniffCompression(bytes).catch((err: unknown) => {
    throw invalid("cannot read the file", err);
  });
  if (compression === null) throw invalid("not zstd, xz, gzip or tar data");

  const md5 = createHash("md5");
  const sha256 = createHash("sha256");
  let hashed = 0;
  let hashing = true;
  const onRaw = (chunk: Uint8Array) => {
    if (!hashing) return;
    md5.update(chunk);
    sha256.update(chunk);
    hashed += chunk.length;
  };

  let pkginfoText: string | null = null;
  const files = new Set<string>();
  let fileListBytes = 0;
  const maxOutput = Math.min(
    limits.maxOutputCap,
    Math.max(limits.minOutputCap, bytes.size * limits.outputRatio),
  );
  try {
    await readTarStream(decompressedChunks(bytes, compression, { maxOutput }, onRaw), {
      maxMembers: limits.maxMembers,
      maxContent: limits.maxPkgInfoBytes,
      wantContent: (member) => member.name === ".PKGINFO",
      onMember: (member, content) => {
        if (content !== null) {
          if (pkginfoText !== null) throw invalid("more than one .PKGINFO");
          try {
            pkginfoText = strictUtf8.decode(content);
          } catch {
            throw invalid(".PKGINFO is not valid UTF-8");
          }
          return;
        }
        if (member.name.startsWith(".")) return;
        if (/[\n\0]/.test(member.name)) {
          throw invalid(`a member name contains a newline or NUL: ${JSON.stringify(member.name)}`);
        }
        fileListBytes += member.name.length + 1;
        if (fileListBytes > limits.maxFileListBytes) throw invalid("file list too large");
        files.add(member.name);
      },
    });
  } catch (err) {
    if (err instanceof PackratError) throw err;
    throw invalid((err as Error).message, inFile(err, filename));
  }
  hashing = false;
  // The tar end marker can come before the end of the file (padding); hash the rest too.
  if (hashed < source.size) {
    const rest: ByteSource = {
      size: source.size - hashed,
      read: (offset, length) => bytes.read(hashed + offset, length),
    };
    for await (const chunk of sourceChunks(rest)) {
      md5.update(chunk);
      sha256.update(chunk);
    }
  }

  if (pkginfoText === null) throw invalid("no .PKGINFO member");
  let pkginfo: PkgInfo;
  try {
    pkginfo = parsePkgInfo(pkginfoText);
  } catch (err) {
    throw invalid((err as Error).message, inFile(err, filename));
  }
  const name = pkginfo.pkgname as string;
  const version = pkginfo.pkgver as string;
  if (!NAME_RE.test(name)) throw invalid(`pkgname ${JSON.stringify(name)} is not a valid name`);
  if (!VERSION_RE.test(version)) {
    throw invalid(`pkgver ${JSON.stringify(version)} is not a valid version`);
  }
  return {
    format: "pacman",
    compression,
    pkginfo,
    files: sortBytewise([...files]),
    csize: source.size,
    md5: md5.digest("hex"),
    sha256: sha256.digest("hex"),
  };
}

const BEYOND_BMP_ORDER = /[\ud800-\uffff]/;

/**
 * `LC_ALL=C sort` of a whole list. Names without code units from U+D800 up (nearly all) sort
 * by UTF-16 units, which is UTF-8 byte order: one test per name instead of two per comparison.
 */
function sortBytewise(names: string[]): string[] {
  if (names.some((n) => BEYOND_BMP_ORDER.test(n))) return names.sort(compareBytes);
  return names.sort();
}

/** `LC_ALL=C sort`: by UTF-8 bytes, not UTF-16 code units. */
export function compareBytes(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except around surrogates (U+D800..U+FFFF).
  if (!BEYOND_BMP_ORDER.test(a) && !BEYOND_BMP_ORDER.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Narrow an unknown cached meta back to a pacman one (the state DB stores JSON). */
export function asPacmanMeta(meta: unknown, filename: string): PacmanPackageMeta {
  const m = meta as Partial<PacmanPackageMeta> | null;
  if (
    m === null ||
    typeof m !== "object" ||
    m.format !== "pacman" ||
    typeof m.pkginfo !== "object" ||
    !Array.isArray(m.files)
  ) {
    throw new PackratError(
      "PACKRAT_PACKAGE_INVALID",
      `${filename}: cached metadata is not a pacman package's`,
      { hint: "the file will be parsed again on the next full sync" },
    );
  }
  return m as PacmanPackageMeta;
}
