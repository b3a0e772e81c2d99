/**
 * A small tar reader over bytes in memory (POSIX ustar, GNU long names, pax `path`), for the
 * control members of packages (a .deb's control.tar, a pacman package's .PKGINFO). It never
 * writes anything and reads only headers and the entries asked for. Errors are `TarError`s;
 * callers wrap them in a PackratError naming their file.
 */

export class TarError extends Error {
  override readonly name = "TarError";
}

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "other";

export interface TarEntry {
  /** The path as stored, with any pax/GNU long name applied (e.g. `./control`). */
  name: string;
  type: TarEntryType;
  size: number;
  /** The entry's bytes (a view into the archive; empty for non-files). */
  data: Uint8Array;
}

const BLOCK = 512;

export interface ReadTarOptions {
  /** Stop with an error after this many entries (a hostile archive of empty entries). */
  maxEntries?: number;
}

/** Every entry of an uncompressed tar archive, in archive order. */
export function readTar(archive: Uint8Array, options: ReadTarOptions = {}): TarEntry[] {
  const maxEntries = options.maxEntries ?? 10_000;
  const entries: TarEntry[] = [];
  let pos = 0;
  let longName: string | null = null;
  let paxPath: string | null = null;
  while (pos + BLOCK <= archive.length) {
    const header = archive.subarray(pos, pos + BLOCK);
    if (isZeroBlock(header)) break; // end-of-archive marker
    verifyChecksum(header, pos);
    const size = readNumber(header, 124, 12, "size", pos);
    const typeflag = String.fromCharCode(header[156]!);
    const dataStart = pos + BLOCK;
    if (dataStart + size > archive.length) {
      throw new TarError(
        `entry at offset ${pos} claims ${size} bytes but only ${archive.length - dataStart} remain`,
      );
    }
    const data = archive.subarray(dataStart, dataStart + size);
    pos = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    if (typeflag === "L") {
      longName = cString(data);
      continue;
    }
    if (typeflag === "x") {
      paxPath = paxAttribute(data, "path") ?? paxPath;
      continue;
    }
    if (typeflag === "g" || typeflag === "K") continue; // global pax header, GNU long link
    let name = cString(header.subarray(0, 100));
    if (isUstar(header)) {
      const prefix = cString(header.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    name = paxPath ?? longName ?? name;
    longName = null;
    paxPath = null;
    const type = entryType(typeflag);
    entries.push({ name, type, size, data: type === "file" ? data : new Uint8Array(0) });
    if (entries.length > maxEntries) throw new TarError(`more than ${maxEntries} entries`);
  }
  if (pos < archive.length && pos + BLOCK > archive.length) {
    throw new TarError(`truncated: ${archive.length - pos} bytes after the last entry`);
  }
  return entries;
}

/** The first regular file whose normalised name (without a leading `./`) is `name`. */
export function findTarFile(entries: readonly TarEntry[], name: string): TarEntry | undefined {
  return entries.find((e) => e.type === "file" && normalizeTarName(e.name) === name);
}

export function normalizeTarName(name: string): string {
  let n = name;
  while (n.startsWith("./")) n = n.slice(2);
  return n;
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function entryType(flag: string): TarEntryType {
  switch (flag) {
    case "0":
    case "\0":
    case "7":
      return "file";
    case "5":
      return "directory";
    case "2":
      return "symlink";
    case "1":
      return "hardlink";
    default:
      return "other";
  }
}

function isUstar(header: Uint8Array): boolean {
  return cString(header.subarray(257, 263)) === "ustar";
}

function verifyChecksum(header: Uint8Array, pos: number): void {
  const stored = readNumber(header, 148, 8, "checksum", pos);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  if (sum !== stored) {
    throw new TarError(`header at offset ${pos} has checksum ${stored}, computed ${sum}`);
  }
}

/** An octal field, or GNU base-256 (high bit set) for large values. */
function readNumber(
  header: Uint8Array,
  offset: number,
  length: number,
  what: string,
  pos: number,
): number {
  const field = header.subarray(offset, offset + length);
  if ((field[0]! & 0x80) !== 0) {
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    if (!Number.isSafeInteger(value))
      throw new TarError(`header at offset ${pos}: ${what} too large`);
    return value;
  }
  const text = cString(field).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new TarError(
      `header at offset ${pos}: ${what} field is not octal (${JSON.stringify(text)})`,
    );
  }
  return parseInt(text, 8);
}

const decoder = new TextDecoder("utf-8");

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return decoder.decode(end === -1 ? bytes : bytes.subarray(0, end));
}

/** A pax extended header value: records of the form "<len> <key>=<value>\n". */
function paxAttribute(data: Uint8Array, key: string): string | null {
  // Record lengths count bytes, so walk the bytes and decode each record on its own.
  let value: string | null = null;
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const len = Number(decoder.decode(data.subarray(at, space)));
    if (!Number.isInteger(len) || len <= space - at || at + len > data.length) break;
    const record = decoder.decode(data.subarray(space + 1, at + len - 1));
    const eq = record.indexOf("=");
    if (eq !== -1 && record.slice(0, eq) === key) value = record.slice(eq + 1);
    at += len;
  }
  return value;
}
