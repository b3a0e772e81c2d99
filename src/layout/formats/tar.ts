/**
 * The one tar module: a reader for POSIX ustar with GNU long names, GNU base-256 sizes and pax
 * `path`/`size` records, over bytes in memory (`readTar`: a .deb's control.tar, a pacman
 * database) or chunk by chunk (`readTarStream`: a package's data, which never has to be whole
 * in memory), keeping only the members a caller asks for; and a deterministic ustar writer
 * (`writeTar`, for pacman databases and the demo packages). Written for hostile input: header
 * checksums are verified, every size is bounded, and anything malformed throws a
 * `FormatError` ("tar") with the offset of the header at fault.
 */
import type { ByteSource } from "../types.js";
import { FormatError } from "./format-error.js";

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "other";

export interface TarMember {
  /** The path as stored (pax `path` or GNU long name when present), e.g. `./control`. */
  name: string;
  /** The ustar typeflag: "0" file, "5" directory, "2" symlink, "1" hard link... */
  typeflag: string;
  type: TarEntryType;
  /** Data bytes (0 for anything but a regular file). */
  size: number;
  /** Offset of the member's header in the archive. */
  offset: number;
  /** A symlink's or hard link's target (the ustar linkname field). */
  linkName?: string;
}

export interface TarEntry extends TarMember {
  /** The entry's bytes (a view into the archive; empty for non-files). */
  data: Uint8Array;
}

export interface TarReadOptions {
  /** Members whose bytes the caller wants (others are skipped). */
  wantContent(member: TarMember): boolean;
  /** Most bytes kept for one wanted member. */
  maxContent: number;
  /** Most members accepted. */
  maxMembers: number;
  onMember(member: TarMember, content: Uint8Array | null): void;
  /** Stop reading once this returns true (checked after each chunk). */
  done?(): boolean;
}

const BLOCK = 512;
const MAX_META = 1 << 20;
/** One decoder for every name (lenient: a name with bad UTF-8 still lists). */
const utf8 = new TextDecoder();

/** Reads a tar stream chunk by chunk; the data never has to be whole in memory. */
export async function readTarStream(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: TarReadOptions,
): Promise<void> {
  const reader = new TarReader(options, null);
  for await (const chunk of chunks) {
    reader.push(chunk);
    if (reader.ended || options.done?.()) return;
  }
  reader.finish();
}

/**
 * Reads the members of an uncompressed tar archive behind a ByteSource, seeking past the data
 * of members the caller does not want: listing a multi-GiB archive reads only its headers (and
 * the members asked for). A member's data starts at `offset + 512`.
 */
export async function readTarSource(source: ByteSource, options: TarReadOptions): Promise<void> {
  const reader = new TarReader(options, source.size);
  let pos = 0;
  while (!reader.ended && !options.done?.()) {
    pos += reader.skipAhead();
    if (pos >= source.size) break;
    const chunk = await source.read(pos, Math.min(reader.needed(), source.size - pos));
    if (chunk.length === 0) break;
    reader.push(chunk);
    pos += chunk.length;
  }
  if (!options.done?.()) reader.finish();
}

export interface ReadTarOptions {
  /** Stop with an error after this many entries (a hostile archive of empty entries). */
  maxEntries?: number;
}

/**
 * Every entry of an uncompressed tar archive in memory, in archive order (file data as views
 * into `archive`). An empty archive gives no entries.
 */
export function readTar(archive: Uint8Array, options: ReadTarOptions = {}): TarEntry[] {
  const entries: TarEntry[] = [];
  const reader = new TarReader(
    {
      wantContent: (m) => m.type === "file",
      maxContent: Number.MAX_SAFE_INTEGER,
      maxMembers: options.maxEntries ?? 10_000,
      onMember: (m, data) => entries.push({ ...m, data: data ?? new Uint8Array(0) }),
    },
    archive.length,
  );
  reader.push(archive);
  if (!reader.ended) reader.finish(true);
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

function tarError(message: string, offset?: number): FormatError {
  return new FormatError("tar", message, offset === undefined ? {} : { offset });
}

function entryType(flag: string): TarEntryType {
  switch (flag) {
    case "0":
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

class TarReader {
  ended = false;
  /** Bytes of the archive consumed so far (the offset of the next byte pushed). */
  private pos = 0;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private members = 0;
  /** Bytes of the current member's data still to skip (data + padding). */
  private skip = 0;
  /** The member whose data is being collected, or null while reading headers. */
  private collecting: {
    member: TarMember;
    kind: "content" | "pax" | "longname";
    total: number;
    padded: number;
  } | null = null;
  /** The header of the member being skipped or collected, for the truncation message. */
  private current: { offset: number; size: number } | null = null;
  private paxPath: string | null = null;
  private paxSize: number | null = null;
  private longName: string | null = null;
  private sawZeroBlock = false;

  /** `length`: the whole archive's size when it is in memory (a size beyond it is refused). */
  constructor(
    private readonly options: TarReadOptions,
    private readonly length: number | null,
  ) {}

  /** Take the data still to skip without reading it (readTarSource seeks past it). */
  skipAhead(): number {
    const n = this.skip;
    this.pos += n;
    this.skip = 0;
    return n;
  }

  /** Bytes that complete the header or member being read. */
  needed(): number {
    return (this.collecting ? this.collecting.padded : BLOCK) - this.pendingBytes;
  }

  push(chunk: Uint8Array): void {
    let data = chunk;
    while (data.length > 0 && !this.ended) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length);
        this.skip -= n;
        this.pos += n;
        data = data.subarray(n);
        continue;
      }
      const need = this.collecting ? this.collecting.padded : BLOCK;
      const take = Math.min(need - this.pendingBytes, data.length);
      this.pending.push(data.subarray(0, take));
      this.pendingBytes += take;
      this.pos += take;
      data = data.subarray(take);
      if (this.pendingBytes === need) {
        const whole = this.pending.length === 1 ? this.pending[0]! : concat(this.pending);
        this.pending = [];
        this.pendingBytes = 0;
        if (this.collecting) this.finishCollect(whole);
        else this.header(whole, this.pos - BLOCK);
      }
    }
  }

  /** The input has ended. `allowEmpty`: an archive with no member is not an error. */
  finish(allowEmpty = false): void {
    if (this.ended) return;
    // A missing end-of-archive marker is tolerated (GNU tar does); a cut member is not.
    if (this.skip > 0 || this.collecting) {
      const { offset, size } = this.current!;
      throw tarError(
        `entry at offset ${offset} claims ${size} bytes but only ${this.pos - offset - BLOCK} remain (truncated archive)`,
        offset,
      );
    }
    if (this.pendingBytes > 0) {
      throw tarError(
        `truncated: ${this.pendingBytes} bytes after the last entry`,
        this.pos - this.pendingBytes,
      );
    }
    if (this.members === 0 && !allowEmpty) throw tarError("empty archive");
  }

  private header(block: Uint8Array, offset: number): void {
    if (isZeroBlock(block)) {
      // Two zero blocks end the archive; bsdtar writes them, some writers write one.
      if (this.sawZeroBlock) this.ended = true;
      this.sawZeroBlock = true;
      return;
    }
    if (this.sawZeroBlock) throw tarError("data after an end-of-archive block", offset);
    const stored = readNumber(block, 148, 8, "checksum", offset);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (sum !== stored) {
      throw tarError(`header at offset ${offset} has checksum ${stored}, computed ${sum}`, offset);
    }
    const typeflag = block[156] === 0 ? "0" : String.fromCharCode(block[156]!);
    let size = readNumber(block, 124, 12, "size", offset);
    if (this.length !== null && offset + BLOCK + size > this.length) {
      throw tarError(
        `entry at offset ${offset} claims ${size} bytes but only ${this.length - offset - BLOCK} remain`,
        offset,
      );
    }
    const ustar = ascii(block, 257, 5) === "ustar";
    let name = cString(block, 0, 100);
    if (ustar) {
      const prefix = cString(block, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    this.current = { offset, size };
    if (typeflag === "x" || typeflag === "L") {
      if (size > MAX_META) {
        throw tarError(`${typeflag} header of ${size} bytes is too large`, offset);
      }
      const member: TarMember = { name, typeflag, type: "other", size, offset };
      this.startCollect(member, typeflag === "x" ? "pax" : "longname");
      return;
    }
    if (typeflag === "g" || typeflag === "K") {
      // Global pax headers and GNU long link names carry nothing the file list needs.
      this.skip = padded(size);
      return;
    }
    if (this.paxSize !== null) size = this.paxSize;
    if (this.longName !== null) name = this.longName;
    if (this.paxPath !== null) name = this.paxPath;
    this.paxPath = this.paxSize = this.longName = null;
    const type = entryType(typeflag);
    // Only regular files carry data; a hard link's or directory's size field is ignored.
    const dataSize = type === "file" ? size : 0;
    this.current = { offset, size: dataSize };
    const member: TarMember = { name, typeflag, type, size: dataSize, offset };
    if (type === "symlink" || type === "hardlink") member.linkName = cString(block, 157, 100);
    if (++this.members > this.options.maxMembers) {
      throw tarError(`more than ${this.options.maxMembers} entries`, offset);
    }
    if (this.options.wantContent(member)) {
      if (dataSize > this.options.maxContent) {
        throw tarError(
          `${name} is ${dataSize} bytes, over the limit of ${this.options.maxContent}`,
          offset,
        );
      }
      if (dataSize > 0) {
        this.startCollect(member, "content");
        return;
      }
      this.options.onMember(member, new Uint8Array(0));
      return;
    }
    this.options.onMember(member, null);
    this.skip = padded(dataSize);
  }

  private startCollect(member: TarMember, kind: "content" | "pax" | "longname"): void {
    if (member.size === 0) {
      this.finishCollectWith(member, kind, new Uint8Array(0));
      return;
    }
    this.collecting = { member, kind, total: member.size, padded: padded(member.size) };
  }

  private finishCollect(whole: Uint8Array): void {
    const { member, kind, total } = this.collecting!;
    this.collecting = null;
    this.finishCollectWith(member, kind, whole.subarray(0, total));
  }

  private finishCollectWith(
    member: TarMember,
    kind: "content" | "pax" | "longname",
    data: Uint8Array,
  ): void {
    if (kind === "content") {
      this.options.onMember(member, data);
    } else if (kind === "longname") {
      this.longName = utf8.decode(data).replace(/\0.*$/s, "");
    } else {
      for (const [key, value] of parsePax(data, member.offset)) {
        if (key === "path") this.paxPath = value;
        if (key === "size") {
          if (!/^\d{1,15}$/.test(value)) {
            throw tarError(`bad pax size ${JSON.stringify(value)}`, member.offset);
          }
          this.paxSize = Number(value);
        }
      }
    }
  }
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function ascii(block: Uint8Array, offset: number, length: number): string {
  // A loop, not String.fromCharCode(...spread): this runs for every header of every package.
  let out = "";
  const end = Math.min(block.length, offset + length);
  for (let i = offset; i < end; i++) out += String.fromCharCode(block[i]!);
  return out;
}

function cString(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return utf8.decode(end === -1 ? field : field.subarray(0, end));
}

/** An octal field (NULs and spaces around it allowed), or GNU base-256 (high bit set). */
function readNumber(
  block: Uint8Array,
  offset: number,
  length: number,
  what: string,
  at: number,
): number {
  if ((block[offset]! & 0x80) !== 0) {
    let value = block[offset]! & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i]!;
    if (!Number.isSafeInteger(value))
      throw tarError(`header at offset ${at}: ${what} too large`, at);
    return value;
  }
  // Octal digits, with trailing NULs/spaces and leading spaces allowed (as writers pad them);
  // anything else, a NUL between digits included, is refused.
  let start = offset;
  let end = offset + length;
  while (end > start && (block[end - 1] === 0 || block[end - 1] === 0x20)) end--;
  while (start < end && block[start] === 0x20) start++;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = block[i]! - 0x30;
    if (digit < 0 || digit > 7) {
      throw tarError(
        `header at offset ${at}: bad ${what} field ${JSON.stringify(ascii(block, start, end - start))} (not octal)`,
        at,
      );
    }
    value = value * 8 + digit;
  }
  return value;
}

/** pax extended header records: "<len> <key>=<value>\n". */
function parsePax(data: Uint8Array, at: number): [string, string][] {
  const out: [string, string][] = [];
  let pos = 0;
  while (pos < data.length) {
    let space = pos;
    while (space < data.length && data[space] !== 0x20) space++;
    const len = Number(ascii(data, pos, space - pos));
    if (!Number.isInteger(len) || len <= space - pos || pos + len > data.length) {
      throw tarError("bad pax record length", at);
    }
    const record = utf8.decode(data.subarray(space + 1, pos + len - 1));
    const eq = record.indexOf("=");
    if (eq <= 0) throw tarError("bad pax record", at);
    out.push([record.slice(0, eq), record.slice(eq + 1)]);
    pos += len;
  }
  return out;
}

export interface TarWriteEntry {
  name: string;
  /** Absent for a directory. */
  content?: Uint8Array;
  mode?: number;
  /** Seconds since the epoch. */
  mtime: number;
}

const encoder = new TextEncoder();

/**
 * A ustar archive of `entries`, in the order given, with uid/gid 0, owner root and the given
 * mtimes: the same input always gives the same bytes. Names over 100 bytes use the ustar
 * prefix when they split at a slash, else a pax `path` record.
 */
export function writeTar(entries: readonly TarWriteEntry[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const entry of entries) {
    const isDir = entry.content === undefined;
    const name = encoder.encode(entry.name);
    let nameField = name;
    let prefixField = new Uint8Array(0);
    if (name.length > 100) {
      const split = findPrefixSplit(name);
      if (split === -1) {
        const record = paxRecord("path", entry.name);
        blocks.push(
          header(
            encoder.encode("././@PaxHeader"),
            new Uint8Array(0),
            "x",
            record.length,
            0o644,
            entry.mtime,
          ),
          record,
          zeroPad(record.length),
        );
        nameField = name.subarray(0, 100);
      } else {
        prefixField = name.subarray(0, split);
        nameField = name.subarray(split + 1);
      }
    }
    const size = isDir ? 0 : entry.content!.length;
    blocks.push(
      header(
        nameField,
        prefixField,
        isDir ? "5" : "0",
        size,
        entry.mode ?? (isDir ? 0o755 : 0o644),
        entry.mtime,
      ),
    );
    if (!isDir && size > 0) blocks.push(entry.content!, zeroPad(size));
  }
  blocks.push(new Uint8Array(BLOCK * 2));
  return concat(blocks);
}

function findPrefixSplit(name: Uint8Array): number {
  for (let i = Math.min(155, name.length - 1); i > 0; i--) {
    if (name[i] === 0x2f && name.length - i - 1 <= 100 && name.length - i - 1 > 0) return i;
  }
  return -1;
}

function paxRecord(key: string, value: string): Uint8Array {
  const body = ` ${key}=${value}\n`;
  const bodyLen = encoder.encode(body).length;
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length + bodyLen !== len) len = String(len + 1).length + bodyLen;
  return encoder.encode(`${len}${body}`);
}

function zeroPad(size: number): Uint8Array {
  return new Uint8Array(padded(size) - size);
}

function header(
  name: Uint8Array,
  prefix: Uint8Array,
  type: string,
  size: number,
  mode: number,
  mtime: number,
): Uint8Array {
  const block = new Uint8Array(BLOCK);
  const octal = (value: number, offset: number, length: number) =>
    block.set(encoder.encode(value.toString(8).padStart(length - 1, "0")), offset);
  block.set(name.subarray(0, 100), 0);
  octal(mode, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(mtime, 136, 12);
  block.fill(0x20, 148, 156);
  block[156] = type.charCodeAt(0);
  block.set(encoder.encode("ustar\x0000"), 257);
  block.set(encoder.encode("root"), 265);
  block.set(encoder.encode("root"), 297);
  block.set(prefix.subarray(0, 155), 345);
  let sum = 0;
  for (const b of block) sum += b;
  block.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return block;
}
