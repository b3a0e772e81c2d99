/**
 * Gzip written as a series of members, one per chunk of an index, with each chunk's member
 * kept for the next generation. RFC 1952 §2.2: "A gzip file consists of a series of members";
 * gunzip, zlib's gzread (which apt's FileFd, libsolv and libarchive use), Python's gzip and Go's
 * gzip.Reader all read the members as one stream. So when one package is added to a 10,000-
 * package index, only the chunk that holds it is compressed again, not the whole 7 MB.
 *
 * Chunk boundaries are content-defined (after every item whose own key hashes to 0 mod
 * CHUNK_MODULUS), so an insertion changes one chunk and leaves every other boundary where it
 * was. With about 64 stanzas (~50 KB) per chunk the members cost under 1% in size: deflate's
 * window is 32 KB, so a member boundary loses little context.
 *
 * This is xz's counterpart only in spirit: apt reads just the first of concatenated xz streams,
 * so Packages.xz is always one stream (see the apt layout's quick generations).
 */
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { gzip, constants as zlibConstants } from "node:zlib";

const gzipAsync = promisify(gzip);

/** Chunks compressed at once: libuv's four threads, plus one queued for each. */
const GZIP_IN_FLIGHT = 8;

/** On average one boundary every CHUNK_MODULUS items. */
export const CHUNK_MODULUS = 64;

export interface ChunkItem {
  /** Decides `bytes` completely (e.g. sha256, pool path and size of a package). */
  key: string;
  bytes: Uint8Array;
  /**
   * Always end a chunk after this item, and before it: for a header or footer that changes
   * with every generation (a package count), so it never drags a chunk of items with it.
   */
  alone?: boolean;
}

/** Is `key` a chunk boundary? Keys are expected to start with a hex digest (well mixed). */
function endsChunk(key: string): boolean {
  const h = Number.parseInt(key.slice(0, 8), 16);
  if (Number.isFinite(h)) return h % CHUNK_MODULUS === 0;
  let x = 0;
  for (let i = 0; i < key.length; i++) x = (Math.imul(x, 31) + key.charCodeAt(i)) | 0;
  return (x >>> 0) % CHUNK_MODULUS === 0;
}

/** Split items into runs ending at content-defined boundaries. */
export function chunkItems<T extends ChunkItem>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  for (const item of items) {
    if (item.alone === true && current.length > 0) {
      out.push(current);
      current = [];
    }
    current.push(item);
    if (item.alone === true || endsChunk(item.key)) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * Compressed members by chunk, for one index. `compress` returns the whole gzip file; the
 * members it did not use are dropped, so the cache holds at most one index's worth.
 */
export class GzipMemberCache {
  private members = new Map<string, Uint8Array>();
  /** How many chunks the last compress() had to compress (the rest were reused). */
  lastCompressed = 0;

  constructor(private readonly level: number = zlibConstants.Z_BEST_COMPRESSION) {}

  async compress(items: readonly ChunkItem[]): Promise<Uint8Array> {
    const chunks = chunkItems(items);
    const used = new Map<string, Uint8Array>();
    let compressed = 0;
    const parts: Uint8Array[] = new Array<Uint8Array>(chunks.length);
    let next = 0;
    // A few chunks in flight, not all: each holds its plain bytes and a deflate state (~256 KB
    // of native memory) until it is done, and a cold 10,000-package index has ~160 chunks.
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const at = next++;
        const chunk = chunks[at]!;
        const h = createHash("sha1");
        for (const item of chunk) h.update(item.key).update("\n");
        const id = h.digest("hex");
        let member = this.members.get(id) ?? used.get(id);
        if (member === undefined) {
          compressed++;
          const plain = Buffer.concat(chunk.map((i) => i.bytes));
          member = new Uint8Array(await gzipAsync(plain, { level: this.level }));
        }
        used.set(id, member);
        parts[at] = member;
      }
    };
    await Promise.all(Array.from({ length: GZIP_IN_FLIGHT }, worker));
    this.members = used;
    this.lastCompressed = compressed;
    if (parts.length === 0) return new Uint8Array(await gzipAsync(new Uint8Array(0)));
    return Buffer.concat(parts);
  }
}
