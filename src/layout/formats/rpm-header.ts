/**
 * The RPM file structure (rpm's lib/header.c, lib/package.c): a 96-byte lead, the signature
 * header padded to 8 bytes, the main header, then the payload. A header is an 8-byte magic
 * (8e ad e8 01 + 4 reserved), il and dl (big-endian uint32), il 16-byte index entries
 * (tag, type, offset, count) and a dl-byte data store.
 *
 * Every count and offset comes from the file, so every one is checked against the bytes
 * actually present before use: a hostile header gives PACKRAT_PACKAGE_INVALID naming the file,
 * never a RangeError or an allocation sized by the attacker.
 */
import { PackratError } from "../../errors.js";
import type { ByteSource } from "../types.js";
import { RpmType, Tag } from "./rpm-tags.js";

export const LEAD_SIZE = 96;
export const LEAD_MAGIC = [0xed, 0xab, 0xee, 0xdb] as const;
export const HEADER_MAGIC = [0x8e, 0xad, 0xe8, 0x01] as const;
const INTRO_SIZE = 16;
const ENTRY_SIZE = 16;
/** rpm's own limits (header_internal.h hdrchkTags / hdrchkData). */
const MAX_INDEX_ENTRIES = 0xffff;
const MAX_DATA_SIZE = 0x0fffffff;

export interface HeaderEntry {
  tag: number;
  type: number;
  offset: number;
  count: number;
}

/** One parsed header: where it sits in the file and its index and store. */
export interface RpmHeaderBlob {
  /** File offset of the header magic. */
  start: number;
  /** File offset just past the store (before any padding). */
  end: number;
  entries: Map<number, HeaderEntry>;
  store: Uint8Array;
  /** The header's exact bytes, magic included (what header digests and signatures cover). */
  bytes: Uint8Array;
}

export interface RpmStructure {
  /** Lead type: 0 binary, 1 source. */
  leadType: number;
  signature: RpmHeaderBlob;
  header: RpmHeaderBlob;
}

export function invalid(filename: string, what: string, cause?: unknown): PackratError {
  return new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: not a valid RPM: ${what}`, {
    hint: "the file is corrupt, truncated or not an RPM; check it on the master",
    cause,
  });
}

async function readExact(
  source: ByteSource,
  offset: number,
  length: number,
  filename: string,
  what: string,
): Promise<Uint8Array> {
  if (offset + length > source.size) {
    throw invalid(
      filename,
      `${what} needs bytes ${offset}..${offset + length}, the file has ${source.size}`,
    );
  }
  const bytes = await source.read(offset, length);
  if (bytes.length !== length) {
    throw invalid(filename, `${what}: read ${bytes.length} of ${length} bytes at ${offset}`);
  }
  return bytes;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hasMagic(bytes: Uint8Array, at: number, magic: readonly number[]): boolean {
  return magic.every((b, i) => bytes[at + i] === b);
}

/** Read one header starting at `start` (the magic). */
export async function readHeaderBlob(
  source: ByteSource,
  start: number,
  filename: string,
  what: string,
): Promise<RpmHeaderBlob> {
  const intro = await readExact(source, start, INTRO_SIZE, filename, `${what} intro`);
  if (!hasMagic(intro, 0, HEADER_MAGIC)) {
    throw invalid(filename, `${what} at byte ${start} has no header magic 8eade801`);
  }
  const dv = view(intro);
  const il = dv.getUint32(8);
  const dl = dv.getUint32(12);
  if (il < 1 || il > MAX_INDEX_ENTRIES) {
    throw invalid(filename, `${what} has ${il} index entries, expected 1..${MAX_INDEX_ENTRIES}`);
  }
  if (dl > MAX_DATA_SIZE) {
    throw invalid(filename, `${what} claims a ${dl}-byte data store, more than rpm allows`);
  }
  const length = INTRO_SIZE + il * ENTRY_SIZE + dl;
  const bytes = await readExact(source, start, length, filename, what);
  return parseHeaderBytes(bytes, start, filename, what);
}

/** Parse a header held in memory (`bytes` starts at the magic and holds the whole header). */
export function parseHeaderBytes(
  bytes: Uint8Array,
  start: number,
  filename: string,
  what: string,
): RpmHeaderBlob {
  const dv = view(bytes);
  const il = dv.getUint32(8);
  const dl = dv.getUint32(12);
  const storeAt = INTRO_SIZE + il * ENTRY_SIZE;
  const store = bytes.subarray(storeAt, storeAt + dl);
  const entries = new Map<number, HeaderEntry>();
  for (let i = 0; i < il; i++) {
    const at = INTRO_SIZE + i * ENTRY_SIZE;
    const entry: HeaderEntry = {
      tag: dv.getUint32(at),
      type: dv.getUint32(at + 4),
      offset: dv.getInt32(at + 8),
      count: dv.getUint32(at + 12),
    };
    if (entry.type > RpmType.I18NSTRING) {
      throw invalid(filename, `${what} tag ${entry.tag} has unknown data type ${entry.type}`);
    }
    // Every entry, a region's included (it points at its trailer), starts inside the store.
    if (entry.offset < 0 || entry.offset > dl) {
      throw invalid(filename, `${what} tag ${entry.tag} points at ${entry.offset}, store is ${dl}`);
    }
    if (!entries.has(entry.tag)) entries.set(entry.tag, entry);
  }
  return { start, end: start + bytes.length, entries, store, bytes };
}

/** Lead, signature header and main header of an RPM. */
export async function readRpmStructure(
  source: ByteSource,
  filename: string,
): Promise<RpmStructure> {
  const lead = await readExact(source, 0, LEAD_SIZE, filename, "lead");
  if (!hasMagic(lead, 0, LEAD_MAGIC)) {
    throw invalid(filename, "no RPM lead magic edabeedb at byte 0");
  }
  if (lead[4] !== 3 && lead[4] !== 4) {
    throw invalid(filename, `lead format ${lead[4]}, expected 3`);
  }
  const leadType = view(lead).getUint16(6);
  const signature = await readHeaderBlob(source, LEAD_SIZE, filename, "signature header");
  const headerStart = alignTo8(signature.end);
  const header = await readHeaderBlob(source, headerStart, filename, "main header");
  return { leadType, signature, header };
}

export function alignTo8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

// ---- typed access to entries ------------------------------------------------------------

/**
 * libxml2's xmlCheckUTF8, which createrepo_c asks before writing a header string: only the
 * shape of each sequence (lead byte, continuation bytes) is checked, not overlong forms.
 */
function isUtf8Shaped(bytes: Uint8Array): boolean {
  const cont = (i: number) => ((bytes[i] ?? 0) & 0xc0) === 0x80;
  let i = 0;
  while (i < bytes.length) {
    const c = bytes[i] ?? 0;
    const n =
      c < 0x80
        ? 1
        : (c & 0xe0) === 0xc0
          ? 2
          : (c & 0xf0) === 0xe0
            ? 3
            : (c & 0xf8) === 0xf0
              ? 4
              : 0;
    if (n === 0) return false;
    for (let k = 1; k < n; k++) if (!cont(i + k)) return false;
    i += n;
  }
  return true;
}

/**
 * Header text as createrepo_c writes it (xml_dump.c cr_xmlNewTextChild / cr_xmlNewProp):
 * rpm stores bytes, not text, and packages built with ISO-8859-1 specs exist. Bytes shaped as
 * UTF-8 are UTF-8; anything else is read as ISO-8859-1 by cr_latin1_to_utf8, which keeps
 * ASCII (dropping C0 controls but tab, LF and CR), drops 0x80-0xBF (it takes them for
 * misencoded cp1252) and maps 0xC0-0xFF to U+00C0-U+00FF. Following it exactly keeps a
 * dependency name such as "àáâãäåç" equal to what the same package means in createrepo_c's
 * metadata, instead of U+FFFD that matches nothing.
 *
 * `raw` holds one byte per char (a "binary" string, see HeaderReader.rawStrings), so callers
 * can join or split header strings first and convert the result, as createrepo_c does with a
 * file's directory and base name.
 */
export function headerText(raw: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/[^\x00-\x7f]/.test(raw)) return raw; // ASCII is UTF-8-shaped: kept as it is
  const bytes = Buffer.from(raw, "latin1");
  if (isUtf8Shaped(bytes)) return bytes.toString("utf8");
  let out = "";
  for (const b of bytes) {
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) continue;
    if (b >= 0x80 && b < 0xc0) continue;
    out += String.fromCharCode(b);
  }
  return out;
}

/** Typed, bounds-checked reads of one header's entries. */
export class HeaderReader {
  constructor(
    readonly blob: RpmHeaderBlob,
    readonly filename: string,
    readonly what: string,
  ) {}

  has(tag: number): boolean {
    return this.blob.entries.has(tag);
  }

  private fail(tag: number, problem: string): PackratError {
    return invalid(this.filename, `${this.what} tag ${tag}: ${problem}`);
  }

  /** Strings of a STRING, STRING_ARRAY or I18NSTRING entry as text (headerText); [] when absent. */
  strings(tag: number): string[] {
    return this.rawStrings(tag).map(headerText);
  }

  /**
   * The same strings with one char per byte (latin1), undecoded: for comparing header strings
   * as rpm and createrepo_c do (bytes), and for joining them before headerText.
   */
  rawStrings(tag: number): string[] {
    const store = Buffer.from(
      this.blob.store.buffer,
      this.blob.store.byteOffset,
      this.blob.store.byteLength,
    );
    return this.stringSpans(tag).map(([from, to]) => store.toString("latin1", from, to));
  }

  /** [start, end) of each string in the store (end at its NUL). */
  stringSpans(tag: number): [number, number][] {
    const e = this.blob.entries.get(tag);
    if (!e) return [];
    if (
      e.type !== RpmType.STRING &&
      e.type !== RpmType.STRING_ARRAY &&
      e.type !== RpmType.I18NSTRING
    ) {
      throw this.fail(tag, `type ${e.type}, expected a string`);
    }
    const count = e.type === RpmType.STRING ? 1 : e.count;
    const store = this.blob.store;
    // Each string takes at least its NUL byte: a count beyond that is a lie, caught before looping.
    if (count > store.length - e.offset) throw this.fail(tag, `${count} strings cannot fit`);
    const out: [number, number][] = [];
    let at = e.offset;
    for (let i = 0; i < count; i++) {
      const nul = store.indexOf(0, at);
      if (nul < 0) throw this.fail(tag, "string runs past the end of the store");
      out.push([at, nul]);
      at = nul + 1;
    }
    return out;
  }

  /** The first string, or null when the tag is absent. */
  string(tag: number): string | null {
    return this.has(tag) ? (this.strings(tag)[0] ?? null) : null;
  }

  /** The first string undecoded (rawStrings), or null when the tag is absent. */
  rawString(tag: number): string | null {
    return this.has(tag) ? (this.rawStrings(tag)[0] ?? null) : null;
  }

  /** Integers of an INT8/16/32/64 entry as numbers ([] when absent). */
  numbers(tag: number): number[] {
    const e = this.blob.entries.get(tag);
    if (!e) return [];
    const width =
      e.type === RpmType.INT8 || e.type === RpmType.CHAR
        ? 1
        : e.type === RpmType.INT16
          ? 2
          : e.type === RpmType.INT32
            ? 4
            : e.type === RpmType.INT64
              ? 8
              : 0;
    if (width === 0) throw this.fail(tag, `type ${e.type}, expected an integer`);
    const store = this.blob.store;
    if (e.count > (store.length - e.offset) / width) {
      throw this.fail(tag, `${e.count} integers do not fit in the store`);
    }
    const dv = view(store);
    const out = new Array<number>(e.count);
    for (let i = 0; i < e.count; i++) {
      const at = e.offset + i * width;
      out[i] =
        width === 1
          ? dv.getUint8(at)
          : width === 2
            ? dv.getUint16(at)
            : width === 4
              ? dv.getUint32(at)
              : Number(dv.getBigUint64(at));
    }
    return out;
  }

  number(tag: number): number | null {
    return this.has(tag) ? (this.numbers(tag)[0] ?? null) : null;
  }

  bin(tag: number): Uint8Array | null {
    const e = this.blob.entries.get(tag);
    if (!e) return null;
    if (e.type !== RpmType.BIN) throw this.fail(tag, `type ${e.type}, expected binary`);
    if (e.count > this.blob.store.length - e.offset) throw this.fail(tag, "runs past the store");
    return this.blob.store.subarray(e.offset, e.offset + e.count);
  }
}

// ---- writing headers ------------------------------------------------------------------

/** An entry to write: its raw big-endian data and element count. */
export interface NewEntry {
  tag: number;
  type: number;
  count: number;
  data: Uint8Array;
}

const ALIGN: Record<number, number> = {
  [RpmType.INT16]: 2,
  [RpmType.INT32]: 4,
  [RpmType.INT64]: 8,
};

/**
 * Encode a header with one region covering every entry, as rpm's headerReload does:
 * index sorted by tag with the region entry first, data in index order (aligned for its
 * type), and the 16-byte region trailer (offset = -16 * il) at the end of the store.
 * hdrblobVerifyInfo requires data offsets to increase in index order; this layout does.
 */
export function encodeHeader(regionTag: number, entries: readonly NewEntry[]): Uint8Array {
  const sorted = [...entries].filter((e) => e.tag !== regionTag).sort((a, b) => a.tag - b.tag);
  const il = sorted.length + 1;
  const offsets: number[] = [];
  let dl = 0;
  for (const e of sorted) {
    const align = ALIGN[e.type] ?? 1;
    dl += (align - (dl % align)) % align;
    offsets.push(dl);
    dl += e.data.length;
  }
  const trailerAt = dl;
  dl += ENTRY_SIZE;
  const out = new Uint8Array(INTRO_SIZE + il * ENTRY_SIZE + dl);
  const dv = view(out);
  out.set(HEADER_MAGIC, 0);
  dv.setUint32(8, il);
  dv.setUint32(12, dl);
  const writeEntry = (at: number, tag: number, type: number, offset: number, count: number) => {
    dv.setUint32(at, tag);
    dv.setUint32(at + 4, type);
    dv.setInt32(at + 8, offset);
    dv.setUint32(at + 12, count);
  };
  writeEntry(INTRO_SIZE, regionTag, RpmType.BIN, trailerAt, ENTRY_SIZE);
  const storeAt = INTRO_SIZE + il * ENTRY_SIZE;
  sorted.forEach((e, i) => {
    writeEntry(INTRO_SIZE + (i + 1) * ENTRY_SIZE, e.tag, e.type, offsets[i] ?? 0, e.count);
    out.set(e.data, storeAt + (offsets[i] ?? 0));
  });
  writeEntry(storeAt + trailerAt, regionTag, RpmType.BIN, -il * ENTRY_SIZE, ENTRY_SIZE);
  return out;
}

/** The entries of a parsed header as NewEntry values (raw data copied), regions dropped. */
export function entriesOf(blob: RpmHeaderBlob, filename: string, what: string): NewEntry[] {
  const reader = new HeaderReader(blob, filename, what);
  const out: NewEntry[] = [];
  // Each entry's length comes from its type and count, never from "up to the next offset".
  for (const e of blob.entries.values()) {
    if (e.tag === Tag.HEADERSIGNATURES || e.tag === Tag.HEADERIMMUTABLE) continue;
    out.push({ tag: e.tag, type: e.type, count: e.count, data: rawData(reader, e) });
  }
  return out;
}

function rawData(reader: HeaderReader, e: HeaderEntry): Uint8Array {
  const store = reader.blob.store;
  switch (e.type) {
    case RpmType.STRING:
    case RpmType.STRING_ARRAY:
    case RpmType.I18NSTRING: {
      const spans = reader.stringSpans(e.tag);
      const end = spans.length > 0 ? (spans[spans.length - 1]?.[1] ?? e.offset) + 1 : e.offset;
      return store.slice(e.offset, end);
    }
    case RpmType.BIN:
      return (reader.bin(e.tag) ?? new Uint8Array()).slice();
    case RpmType.NULL:
      return new Uint8Array();
    default: {
      const width =
        e.type === RpmType.INT16
          ? 2
          : e.type === RpmType.INT32
            ? 4
            : e.type === RpmType.INT64
              ? 8
              : 1;
      reader.numbers(e.tag); // bounds check
      return store.slice(e.offset, e.offset + e.count * width);
    }
  }
}

// ---- small encoders for writers (signing, test builders) --------------------------------

export function stringEntry(tag: number, value: string): NewEntry {
  return { tag, type: RpmType.STRING, count: 1, data: Buffer.from(`${value}\0`, "utf8") };
}

export function stringArrayEntry(
  tag: number,
  values: readonly string[],
  type: number = RpmType.STRING_ARRAY,
): NewEntry {
  return {
    tag,
    type,
    count: values.length,
    data: Buffer.from(values.map((v) => `${v}\0`).join(""), "utf8"),
  };
}

export function int32Entry(tag: number, values: readonly number[]): NewEntry {
  const data = new Uint8Array(values.length * 4);
  const dv = view(data);
  values.forEach((v, i) => dv.setUint32(i * 4, v >>> 0));
  return { tag, type: RpmType.INT32, count: values.length, data };
}

export function int16Entry(tag: number, values: readonly number[]): NewEntry {
  const data = new Uint8Array(values.length * 2);
  const dv = view(data);
  values.forEach((v, i) => dv.setUint16(i * 2, v & 0xffff));
  return { tag, type: RpmType.INT16, count: values.length, data };
}

export function int64Entry(tag: number, values: readonly number[]): NewEntry {
  const data = new Uint8Array(values.length * 8);
  const dv = view(data);
  values.forEach((v, i) => dv.setBigUint64(i * 8, BigInt(v)));
  return { tag, type: RpmType.INT64, count: values.length, data };
}

export function binEntry(tag: number, data: Uint8Array): NewEntry {
  return { tag, type: RpmType.BIN, count: data.length, data };
}
