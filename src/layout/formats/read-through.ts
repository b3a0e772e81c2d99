/**
 * One sequential pass over a package file that both hashes it and keeps its head in memory.
 *
 * Parsers need the whole file once (its checksums) and a few small pieces of its start (ar,
 * tar and RPM headers, a control member). Over a file handle every `read` is a round trip
 * through the thread pool (about 15-50 µs each, more than parsing a small package), so reading
 * the pieces separately cost a .deb seven reads and an RPM six. Here the first chunk of the
 * hashing pass is kept and `withHead` answers the parser's reads from it: a package up to
 * READ_CHUNK bytes costs exactly one read, a larger one a read per chunk plus whatever its
 * headers need beyond the first chunk.
 */
import type { ByteSource } from "../types.js";

/** Bytes per read of the hashing pass; the first chunk is the head the parser reads from. */
export const READ_CHUNK = 1 << 20;

export interface ReadThrough {
  /** The first min(size, chunkSize) bytes. */
  head: Uint8Array;
  /** Bytes actually read: less than `source.size` only if the file ended early. */
  bytesRead: number;
}

/**
 * Read `source` from start to end in chunks, handing each to `onChunk` in order. Stops early
 * (bytesRead < size) if a read comes back empty; the caller decides what a short file means.
 */
export async function readThrough(
  source: ByteSource,
  onChunk: (chunk: Uint8Array) => void,
  chunkSize: number = READ_CHUNK,
): Promise<ReadThrough> {
  let head: Uint8Array | null = null;
  let offset = 0;
  while (offset < source.size) {
    const chunk = await source.read(offset, Math.min(chunkSize, source.size - offset));
    if (chunk.length === 0) break;
    onChunk(chunk);
    // Only the first chunk is kept: a later one is handed on and dropped.
    head ??= chunk;
    offset += chunk.length;
  }
  return { head: head ?? new Uint8Array(0), bytesRead: offset };
}

/**
 * `source` with reads inside `head` (its first bytes) answered from memory. A read that goes
 * past the head falls through to the source, so a parser never sees a difference except speed.
 */
export function withHead(source: ByteSource, head: Uint8Array): ByteSource {
  const whole = head.length >= source.size;
  return {
    size: source.size,
    read(offset, length) {
      const end = offset + length;
      if (offset >= 0 && length >= 0 && (end <= head.length || whole)) {
        return Promise.resolve(head.subarray(offset, Math.min(end, source.size)));
      }
      return source.read(offset, length);
    },
  };
}
