/**
 * A multi-member gzip file (RFC 1952 §2.2: members back to back, which gunzip and libarchive
 * read as one stream) taken apart member by member, for checkers that remember what they read:
 * a member holding exactly the bytes of one remembered from the last reading is not
 * decompressed again; any other member is inflated and checked (CRC-32 and length) as gunzip
 * checks it. The renderers write their large indexes this way (formats/gzip-members.ts), so
 * a generation that adds one package to 10,000 has one new member of about 64 entries.
 */
import * as zlib from "node:zlib";

/** A member remembered from an earlier reading: its exact compressed bytes (a copy). */
export interface KnownGzipMember {
  bytes: Uint8Array;
}

/** Remembered members by memberKey (several may share a key; bytes are compared in full). */
export type GzipMemberMemo<K extends KnownGzipMember> = Map<string, K[]>;

export interface GzipMember<K extends KnownGzipMember> {
  /** The member's bytes (a copy: a memo must not hold the whole file). */
  bytes: Uint8Array;
  /** The remembered member with these exact bytes, or null... */
  known: K | null;
  /** ...and then the member decompressed. */
  plain: Uint8Array | null;
}

/** Byte views without copying (Buffer.from(Uint8Array) copies). */
export const byteView = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Where a member's deflate data starts to differ from another's: skip the fixed header. */
export function memberKey(bytes: Uint8Array): string {
  return byteView(bytes).subarray(10, 42).toString("latin1");
}

/** Remember a member under its key. */
export function rememberMember<K extends KnownGzipMember>(memo: GzipMemberMemo<K>, known: K) {
  const key = memberKey(known.bytes);
  const list = memo.get(key) ?? [];
  if (!list.includes(known)) list.push(known);
  memo.set(key, list);
}

/**
 * The members of `data`, each matched byte for byte with a remembered one or decompressed.
 * null when a member uses gzip header fields this reader does not take apart (FLG other than
 * 0): the caller then reads the file whole, the way gunzip does. Throws on a corrupt or
 * truncated member, or when the members decompress to more than `maxOutput` bytes.
 */
export function splitGzipMembers<K extends KnownGzipMember>(
  data: Uint8Array,
  memo: GzipMemberMemo<K> | undefined,
  maxOutput: number,
): GzipMember<K>[] | null {
  const buf = byteView(data);
  const out: GzipMember<K>[] = [];
  let total = 0;
  let pos = 0;
  while (pos < buf.length) {
    const known = memo
      ?.get(memberKey(buf.subarray(pos)))
      ?.find(
        (m) =>
          pos + m.bytes.length <= buf.length &&
          buf.compare(m.bytes, 0, m.bytes.length, pos, pos + m.bytes.length) === 0,
      );
    if (known) {
      out.push({ bytes: known.bytes, known, plain: null });
      pos += known.bytes.length;
      continue;
    }
    // RFC 1952 §2.3: ID1 ID2 CM=8 FLG MTIME(4) XFL OS; only FLG = 0 (no optional fields).
    if (pos + 18 > buf.length || buf[pos] !== 0x1f || buf[pos + 1] !== 0x8b) return null;
    if (buf[pos + 2] !== 8 || buf[pos + 3] !== 0) return null;
    const inflated = zlib.inflateRawSync(buf.subarray(pos + 10), {
      info: true,
      maxOutputLength: maxOutput,
    }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    const plain = inflated.buffer;
    const end = pos + 10 + inflated.engine.bytesWritten + 8;
    if (end > buf.length) throw new Error("truncated gzip member");
    if (
      buf.readUInt32LE(end - 8) !== crc32Of(plain) ||
      buf.readUInt32LE(end - 4) !== plain.length % 2 ** 32
    )
      throw new Error("gzip member fails its CRC-32 or length check");
    total += plain.length;
    if (total > maxOutput) throw new Error("decompressed size over the limit");
    out.push({ bytes: new Uint8Array(buf.subarray(pos, end)), known: null, plain });
    pos = end;
  }
  return out;
}

/** A remembered member with what it decompresses to (for readers that compare the bytes). */
export interface KnownPlainMember extends KnownGzipMember {
  plain: Uint8Array;
}

/**
 * `data` decompressed, as parts whose concatenation is the whole: a multi-member gzip file
 * member by member (a member remembered in `memo` is not inflated again), and `used` (when
 * given) what to remember for the next reading. Anything else, a gzip file this reader does
 * not take apart, or one with a fault, goes to `whole`, which says what is wrong the way
 * gunzip does.
 */
export async function decompressRemembering(
  data: Uint8Array,
  memo: GzipMemberMemo<KnownPlainMember> | undefined,
  maxOutput: number,
  whole: (data: Uint8Array) => Promise<Uint8Array>,
): Promise<{
  parts: Uint8Array[];
  used: GzipMemberMemo<KnownPlainMember> | null;
  /** The member each part is (a remembered one, or new), when the file was taken apart. */
  members: KnownPlainMember[] | null;
}> {
  if (data[0] === 0x1f && data[1] === 0x8b) {
    let members: GzipMember<KnownPlainMember>[] | null = null;
    try {
      members = splitGzipMembers(data, memo, maxOutput);
    } catch {
      members = null;
    }
    if (members !== null) {
      const used: GzipMemberMemo<KnownPlainMember> = new Map();
      const known = members.map((m) => {
        const k = m.known ?? { bytes: m.bytes, plain: m.plain! };
        rememberMember(used, k);
        return k;
      });
      return { parts: known.map((k) => k.plain), used, members: known };
    }
  }
  return { parts: [await whole(data)], used: null, members: null };
}

/** Do `parts`, concatenated, hold exactly the bytes of `reference`? (No concatenation made.) */
export function sameBytesAs(reference: Uint8Array, parts: readonly Uint8Array[]): boolean {
  const ref = byteView(reference);
  let at = 0;
  for (const p of parts) {
    if (at + p.length > ref.length || ref.compare(p, 0, p.length, at, at + p.length) !== 0)
      return false;
    at += p.length;
  }
  return at === ref.length;
}

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** gzip's CRC-32 (zlib.crc32 is Node 20.15 and later only). */
function crc32Of(data: Uint8Array): number {
  if (typeof zlib.crc32 === "function") return zlib.crc32(data);
  let c = -1;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
