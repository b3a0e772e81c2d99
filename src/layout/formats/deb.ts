/**
 * Reading a .deb (deb(5)) from a ByteSource: the ar members `debian-binary`, `control.tar[.gz|
 * .xz|.zst]` and `data.tar*`. Only the control member is read and decompressed (with a cap);
 * data.tar is never touched except to hash the whole file.
 */
import { createHash } from "node:crypto";
import { PackratError } from "../../errors.js";
import type { ByteSource, PackageMeta } from "../types.js";
import { readArMember, readArMembers } from "./ar.js";
import { readThrough, withHead } from "./read-through.js";
import type { Compression } from "./compress.js";
import { compressionForSuffix, decompress } from "./compress.js";
import type { ControlField } from "./deb-control.js";
import { controlValue, parseControlStanza } from "./deb-control.js";
import { FormatError, inFile } from "./format-error.js";
import { findTarFile, readTar } from "./tar.js";

/**
 * What a .deb parse yields; JSON-serialisable, cached by the file's sha256. (A type alias, not
 * an interface, so that it is assignable to PackageMeta's index signature.)
 */
export type DebMeta = {
  format: "deb";
  /** The control stanza's fields in file order, values as found (see parseControlStanza). */
  control: ControlField[];
  controlCompression: Compression;
  size: number;
  md5: string;
  sha1: string;
  sha256: string;
  sha512: string;
};

export interface DebLimits {
  /** Largest control.tar member accepted, compressed (bytes). */
  maxControlMember: number;
  /** Largest control.tar accepted after decompression (bytes): the bomb cap. */
  maxControlTar: number;
  /** Largest control file accepted (bytes). */
  maxControlFile: number;
}

export const DEFAULT_DEB_LIMITS: DebLimits = {
  maxControlMember: 16 * 1024 * 1024,
  maxControlTar: 16 * 1024 * 1024,
  maxControlFile: 1024 * 1024,
};

const DEB_HASHES = ["md5", "sha1", "sha256", "sha512"] as const;

/**
 * md5, sha1, sha256 and sha512 of a whole source, read once, plus the first chunk of it (see
 * read-through.ts): the ar headers and control member are parsed from that, not read again.
 */
export async function hashSource(source: ByteSource): Promise<{
  size: number;
  md5: string;
  sha1: string;
  sha256: string;
  sha512: string;
  head: Uint8Array;
}> {
  const hashes = DEB_HASHES.map((a) => createHash(a));
  const { head, bytesRead } = await readThrough(source, (chunk) => {
    for (const h of hashes) h.update(chunk);
  });
  const [md5, sha1, sha256, sha512] = hashes.map((h) => h.digest("hex")) as [
    string,
    string,
    string,
    string,
  ];
  return { size: bytesRead, md5, sha1, sha256, sha512, head };
}

const utf8 = new TextDecoder();
/** fatal: a decoder that throws on bad UTF-8 (it keeps no state between whole decodes). */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Package and Architecture end up in paths and index names: hold them to dpkg's syntax
 * (deb-control(5): lower case, digits, + - .; architectures lower case, digits, -).
 */
const REQUIRED_SYNTAX: readonly (readonly [string, RegExp])[] = [
  ["Package", /^[a-z0-9][a-z0-9+.-]+$/],
  ["Version", /^[0-9A-Za-z.+~:-]+$/],
  ["Architecture", /^[a-z0-9][a-z0-9-]*$/],
];

const invalid = (filename: string, what: string, cause?: unknown) =>
  new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: ${what}`, {
    hint: "the package file is corrupt or not a Debian binary package; rebuild it with dpkg-deb",
    cause,
  });

/** Parse a .deb; throws PackratError PACKRAT_PACKAGE_INVALID naming `filename`. */
export async function parseDeb(
  source: ByteSource,
  filename: string,
  limits: DebLimits = DEFAULT_DEB_LIMITS,
): Promise<DebMeta> {
  const { head, ...sums } = await hashSource(source);
  if (sums.size !== source.size) {
    throw invalid(filename, `read ${sums.size} bytes, expected ${source.size} (truncated)`);
  }
  // From here on every read of the first chunk comes from memory: a small .deb is one read.
  const bytes = withHead(source, head);
  try {
    const members = await readArMembers(bytes);
    const [first, ...rest] = members;
    if (!first || first.name !== "debian-binary") {
      throw invalid(
        filename,
        `first ar member is ${first ? JSON.stringify(first.name) : "missing"}, expected "debian-binary"`,
      );
    }
    const version = utf8.decode(await readArMember(bytes, first));
    if (!/^2\.[0-9]+\n/.test(version)) {
      throw invalid(
        filename,
        `debian-binary says ${JSON.stringify(version.slice(0, 16))}, expected "2.0\\n"`,
      );
    }
    // dpkg skips members starting with "_" between debian-binary and control.tar.
    const controlMember = rest.find((m) => !m.name.startsWith("_"));
    if (!controlMember || !controlMember.name.startsWith("control.tar")) {
      throw invalid(
        filename,
        `no control.tar member after debian-binary (found ${controlMember ? JSON.stringify(controlMember.name) : "nothing"})`,
      );
    }
    // data.tar is never read, but it must be there: a file cut at a member boundary passes
    // every size check and would otherwise look whole.
    const afterControl = rest.slice(rest.indexOf(controlMember) + 1);
    if (!afterControl.some((m) => m.name.startsWith("data.tar"))) {
      throw invalid(filename, `no data.tar member after ${controlMember.name} (truncated?)`);
    }
    const compression = compressionForSuffix(controlMember.name.slice("control.tar".length));
    if (compression === null) {
      throw invalid(
        filename,
        `unknown control member compression ${JSON.stringify(controlMember.name)}; expected control.tar, .gz, .xz or .zst`,
      );
    }
    if (controlMember.size > limits.maxControlMember) {
      throw invalid(
        filename,
        `${controlMember.name} is ${controlMember.size} bytes, more than the ${limits.maxControlMember} allowed`,
      );
    }
    const packed = await readArMember(bytes, controlMember);
    const tar = await decompress(packed, compression, limits.maxControlTar);
    const control = findTarFile(readTar(tar), "control");
    if (!control) throw invalid(filename, `${controlMember.name} has no ./control file`);
    if (control.size > limits.maxControlFile) {
      throw invalid(
        filename,
        `control file is ${control.size} bytes, more than the ${limits.maxControlFile} allowed`,
      );
    }
    let controlText: string;
    try {
      controlText = strictUtf8.decode(control.data);
    } catch {
      // Decoding leniently would publish U+FFFD in place of the bytes the package holds.
      throw invalid(filename, "control file is not valid UTF-8 (deb-control(5) requires UTF-8)");
    }
    const fields = parseControlStanza(controlText);
    for (const [required, pattern] of REQUIRED_SYNTAX) {
      const value = controlValue(fields, required);
      if (value === undefined || !pattern.test(value)) {
        throw invalid(
          filename,
          `control file has ${value === undefined ? "no" : "a malformed"} ${required} field`,
        );
      }
    }
    return { format: "deb", control: fields, controlCompression: compression, ...sums };
  } catch (err) {
    if (err instanceof FormatError) {
      throw invalid(filename, err.message, inFile(err, filename));
    }
    throw err;
  }
}

/** Check a cached meta's shape (it comes back from the state DB as plain JSON). */
export function asDebMeta(meta: PackageMeta, filename: string): DebMeta {
  const m = meta as Partial<DebMeta>;
  const hex = (v: unknown, len: number) =>
    typeof v === "string" && v.length === len && /^[0-9a-f]+$/.test(v);
  if (
    m.format !== "deb" ||
    !Array.isArray(m.control) ||
    !m.control.every(
      (f) => Array.isArray(f) && f.length === 2 && f.every((s) => typeof s === "string"),
    ) ||
    typeof m.size !== "number" ||
    !hex(m.md5, 32) ||
    !hex(m.sha1, 40) ||
    !hex(m.sha256, 64) ||
    !hex(m.sha512, 128)
  ) {
    throw new PackratError(
      "PACKRAT_PACKAGE_INVALID",
      `${filename}: cached package metadata is not a .deb record`,
      {
        hint: "the cached parse is stale or from another layout; it will be re-parsed",
      },
    );
  }
  return m as DebMeta;
}
