/**
 * The one compression module: detection by magic bytes, decompression with a hard cap on the
 * output (a decompression bomb is cut off as it is produced, never buffered), streaming or
 * whole, and deterministic compression for published indexes and the demo packages.
 *
 * One implementation per algorithm (bench/compression.ts, docs/benchmarks.md): gzip is
 * node:zlib; xz and LZMA-alone are liblzma through lzma-native (its binary ships inside the
 * npm package: nothing to compile); zstd is libzstd through zstd-napi (the only candidate that
 * both compresses and decodes in bounded steps with a window limit); bzip2 (Python sdists
 * only) is unbzip2-stream (pure JS). Errors are `FormatError`s ("compress"); callers wrap them
 * in a PackratError that names their file.
 */
import type { Transform } from "node:stream";
import { Readable, pipeline } from "node:stream";
import { createGunzip, gunzipSync, gzipSync, constants as zlibConstants } from "node:zlib";
import * as lzma from "lzma-native";
import unbzip2 from "unbzip2-stream";
import { compress as zstdCompressNative } from "zstd-napi";
import zstdBinding from "zstd-napi/binding.js";
import type { ByteSource } from "../types.js";
import { bufferSource } from "../types.js";
import { FormatError } from "./format-error.js";

/** What a .deb member or a published index may use. */
export type Compression = "gzip" | "xz" | "zstd" | "none";
/** bzip2 and lzma (LZMA-alone, .tar.lzma) only for callers that ask (Python sdists). */
export type StreamCompression = Compression | "bzip2" | "lzma";

const READ_CHUNK = 1 << 20;

function compressError(message: string, options: { offset?: number; cause?: unknown } = {}) {
  return new FormatError("compress", message, options);
}

function tooLarge(maxOutput: number): FormatError {
  return compressError(`decompressed size exceeds the limit of ${maxOutput} bytes`, {
    offset: maxOutput,
  });
}

/** The compression a member name ends with (`control.tar.gz` → gzip), or null if unknown. */
export function compressionForSuffix(suffix: string): Compression | null {
  switch (suffix) {
    case "":
      return "none";
    case ".gz":
      return "gzip";
    case ".xz":
      return "xz";
    case ".zst":
      return "zstd";
    default:
      return null;
  }
}

/**
 * The compression `head` (the first bytes of a file, 512 or more for a plain tar) starts
 * with, from its magic bytes (the name can lie); "none" for a ustar tar; null if unknown.
 * `bzip2`: also know bzip2 ("BZh" and a block size digit); only Python sdists use it.
 */
export function detectCompression(
  head: Uint8Array,
  options: { bzip2?: boolean } = {},
): StreamCompression | null {
  const starts = (...bytes: number[]) => bytes.every((b, i) => head[i] === b);
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x1f, 0x8b)) return "gzip";
  if (
    options.bzip2 &&
    starts(0x42, 0x5a, 0x68) &&
    (head[3] ?? 0) >= 0x31 &&
    (head[3] ?? 0) <= 0x39
  ) {
    return "bzip2";
  }
  if (head.length >= 262 && String.fromCharCode(...head.subarray(257, 262)) === "ustar") {
    return "none";
  }
  return null;
}

/** detectCompression over the first 512 bytes of a source. */
export async function sniffCompression(
  source: ByteSource,
  options: { bzip2?: boolean } = {},
): Promise<StreamCompression | null> {
  return detectCompression(await source.read(0, 512), options);
}

/** The raw bytes of a source, in chunks, with `onChunk` seeing each (for hashing). */
export async function* sourceChunks(
  source: ByteSource,
  onChunk?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < source.size;) {
    const chunk = await source.read(offset, Math.min(READ_CHUNK, source.size - offset));
    if (chunk.length === 0)
      throw compressError(`unexpected end of data at byte ${offset}`, { offset });
    onChunk?.(chunk);
    offset += chunk.length;
    yield chunk;
  }
}

export interface DecompressLimits {
  /** Most decompressed bytes accepted. */
  maxOutput: number;
}

/**
 * The decompressed bytes of `source` in chunks, cut off with a FormatError once more than
 * `limits.maxOutput` bytes came out. `onRaw` sees every compressed chunk once, in order (so
 * the caller can hash the file in the same pass).
 */
export async function* decompressedChunks(
  source: ByteSource,
  compression: StreamCompression,
  limits: DecompressLimits,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  let total = 0;
  const count = (chunk: Uint8Array): Uint8Array => {
    total += chunk.length;
    if (total > limits.maxOutput) throw tooLarge(limits.maxOutput);
    return chunk;
  };
  try {
    if (compression === "none") {
      for await (const chunk of sourceChunks(source, onRaw)) yield count(chunk);
    } else if (compression === "zstd") {
      for await (const chunk of unzstdChunks(source, onRaw)) yield count(chunk);
    } else if (compression === "bzip2") {
      yield* unbzip2Chunks(source, count, onRaw);
    } else {
      yield* streamChunks(source, compression, count, limits.maxOutput, onRaw);
    }
  } catch (err) {
    // Every fault names where it is: the decompressed bytes that came out before it.
    if (err instanceof FormatError && err.offset === undefined) {
      throw new FormatError(err.code, err.message, { offset: total, cause: err.cause });
    }
    throw err;
  }
}

/**
 * gzip (node:zlib) and xz/LZMA-alone (liblzma) through their Transform streams. liblzma is fed
 * LZMA_SLICE bytes at a time, in blocking mode (no thread-pool hop per slice): its output for
 * one call is not bounded, and LZMA2 turns a few KiB of input into megabytes, so small slices
 * keep what is decoded past the cap (and buffered before it is counted) to a few MiB. An xz
 * file's index states its decompressed size: more than the cap is refused before decoding,
 * and blocks that decode to more than the index says are cut off there.
 */
async function* streamChunks(
  source: ByteSource,
  compression: "gzip" | "xz" | "lzma",
  count: (chunk: Uint8Array) => Uint8Array,
  maxOutput: number,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  let declared: number | null = null;
  if (compression === "xz") {
    declared = await xzDeclaredSize(source);
    if (declared > maxOutput) {
      throw compressError(
        `decompressed size exceeds the limit of ${maxOutput} bytes: the xz index declares ${declared}`,
        { offset: 0 },
      );
    }
  }
  const decoder: Transform =
    compression === "gzip"
      ? createGunzip()
      : // liblzma: xz (every check type and filter xz-utils writes, concatenated streams)
        // or LZMA-alone. memlimit caps the decoder's own memory (its dictionary).
        lzma.createStream(compression === "xz" ? XZ_DECODER : "aloneDecoder", {
          memlimit: LZMA_MEMLIMIT,
          synchronous: true,
        });
  const input = compression === "gzip" ? sourceChunks(source, onRaw) : sliced(source, onRaw);
  const out = pipeline(Readable.from(input), decoder, () => {
    // Errors surface through the async iteration below.
  });
  let produced = 0;
  try {
    for await (const chunk of out as AsyncIterable<Uint8Array>) {
      produced += chunk.length;
      if (declared !== null && produced > declared) {
        throw compressError(
          `xz: the blocks hold over ${produced - chunk.length} bytes, the index says ${declared}`,
        );
      }
      yield count(chunk);
    }
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw compressError(`${compression}: ${(err as Error).message}`, { cause: err });
  } finally {
    out.destroy();
  }
}

/**
 * Decompress `data` whole; throws a FormatError if it is corrupt, truncated, or would exceed
 * `maxOutput` (cut off as it is produced).
 */
export async function decompress(
  data: Uint8Array,
  compression: StreamCompression,
  maxOutput: number,
): Promise<Uint8Array> {
  if (compression === "none") {
    if (data.length > maxOutput) throw tooLarge(maxOutput);
    return data;
  }
  if (compression === "gzip") {
    // A whole gzip buffer (a .deb's control.tar.gz) in one synchronous call, capped by
    // maxOutputLength: the stream path costs a pipeline and a round of microtasks per chunk,
    // which a cold publish of 10,000 .debs paid 10,000 times (about 2 s of 8 at N = 10,000).
    // A fault is decoded again by the stream path, which says at which offset it is.
    try {
      const out = gunzipSync(data, { maxOutputLength: maxOutput });
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    } catch {
      // fall through
    }
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of decompressedChunks(bufferSource(data), compression, { maxOutput })) {
    parts.push(chunk);
    total += chunk.length;
  }
  return concat(parts, total);
}

/** Decompress by magic bytes (gzip, xz, zstd), else return the data as it is. */
export async function decompressAny(data: Uint8Array, maxOutput: number): Promise<Uint8Array> {
  const compression = detectCompression(data);
  if (compression === null || compression === "none") return data;
  return decompress(data, compression, maxOutput);
}

/** Compressed bytes handed to liblzma at a time (see streamChunks). */
const LZMA_SLICE = 4 << 10;

async function* sliced(
  source: ByteSource,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  for await (const raw of sourceChunks(source, onRaw)) {
    for (let at = 0; at < raw.length; at += LZMA_SLICE) yield raw.subarray(at, at + LZMA_SLICE);
  }
}

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
/** The tail read at once for a stream footer and the stream padding before it. */
const XZ_TAIL = 64 << 10;
const XZ_MAX_INDEX = 16 << 20;

/**
 * The decompressed size an xz file's indexes declare (xz file format 1.0.4, §2.2 and §4):
 * stream by stream from the end (stream padding, footer, index, blocks, header), reading only
 * those parts. Throws on anything that does not follow the format.
 */
export async function xzDeclaredSize(source: ByteSource): Promise<number> {
  const bad = (what: string, offset?: number) =>
    compressError(`xz: ${what}`, offset === undefined ? {} : { offset });
  const read = async (offset: number, length: number) => {
    const bytes = await source.read(offset, length);
    if (bytes.length !== length) throw bad("truncated", offset);
    return bytes;
  };
  let end = source.size;
  let total = 0;
  let streams = 0;
  while (end > 0 || streams === 0) {
    if (end < 24) throw bad("file too short for a stream", 0);
    // Stream padding: null bytes in multiples of four, after a stream.
    const tailStart = Math.max(0, end - XZ_TAIL);
    const tail = await read(tailStart, end - tailStart);
    let t = tail.length;
    while (
      t >= 4 &&
      tail[t - 1] === 0 &&
      tail[t - 2] === 0 &&
      tail[t - 3] === 0 &&
      tail[t - 4] === 0
    )
      t -= 4;
    if (t === 0 && tailStart > 0) throw bad("too much stream padding", tailStart);
    end = tailStart + t;
    if (end < 24) throw bad("file too short for a stream", 0);
    const footer = await read(end - 12, 12);
    if (footer[10] !== 0x59 || footer[11] !== 0x5a) throw bad("no stream footer", end - 12);
    const indexSize =
      ((footer[4]! | (footer[5]! << 8) | (footer[6]! << 16) | (footer[7]! << 24)) >>> 0) * 4 + 4;
    const indexStart = end - 12 - indexSize;
    if (indexSize > XZ_MAX_INDEX || indexStart < 12) throw bad("index not found", end - 12);
    const index = await read(indexStart, indexSize);
    if (index[0] !== 0x00) throw bad("index not found", indexStart);
    let p = 1;
    const vli = (): number => {
      let value = 0;
      for (let i = 0; i < 9; i++) {
        if (p >= index.length - 4) throw bad("truncated index", indexStart + p);
        const byte = index[p++]!;
        value += (byte & 0x7f) * 2 ** (7 * i);
        if ((byte & 0x80) === 0) return value;
      }
      throw bad("index number too long", indexStart + p);
    };
    const records = vli();
    let blocks = 0;
    for (let i = 0; i < records; i++) {
      blocks += Math.ceil(vli() / 4) * 4;
      total += vli();
      if (!Number.isSafeInteger(total) || !Number.isSafeInteger(blocks))
        throw bad("index sizes out of range", indexStart);
    }
    const start = indexStart - blocks - 12;
    if (start < 0) throw bad("the index lists more blocks than the file holds", indexStart);
    const header = await read(start, 6);
    if (!XZ_MAGIC.every((b, i) => header[i] === b)) throw bad("not an xz stream", start);
    end = start;
    streams++;
  }
  return total;
}

/** liblzma's .xz-only decoder (lzma_stream_decoder); @types/lzma-native does not list it. */
const XZ_DECODER = "streamDecoder" as lzma.Coders;

/** liblzma's decoder memory cap: xz -9 needs 65 MiB (its dictionary); 256 MiB is plenty. */
const LZMA_MEMLIMIT = 256 << 20;

/** Compressed bytes handed to the bzip2 decoder at a time (the output cap is checked per block). */
const BZIP2_SLICE = 64 << 10;

/**
 * bzip2 through unbzip2-stream (pure JS: Node has no bzip2). Its through-stream decodes
 * synchronously inside write() and emits each block as it is done, so the output is counted
 * (and cut off at the cap) block by block, and handed on after each slice of input.
 */
async function* unbzip2Chunks(
  source: ByteSource,
  count: (chunk: Uint8Array) => Uint8Array,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  const decoder = unbzip2();
  const ready: Uint8Array[] = [];
  let failure: unknown = null;
  let ended = false;
  // A throw from count() inside the decoder is caught there and re-emitted as 'error'.
  decoder.on("data", (chunk: Uint8Array) => ready.push(count(chunk)));
  decoder.on("error", (err: unknown) => (failure ??= err));
  decoder.on("end", () => (ended = true));
  const check = () => {
    if (failure === null) return;
    if (failure instanceof FormatError) throw failure;
    throw compressError(`bzip2: ${(failure as Error).message}`, { cause: failure });
  };
  for await (const raw of sourceChunks(source, onRaw)) {
    for (let at = 0; at < raw.length; at += BZIP2_SLICE) {
      decoder.write(Buffer.from(raw.subarray(at, at + BZIP2_SLICE)));
      check();
      while (ready.length > 0) yield ready.shift()!;
    }
  }
  decoder.end();
  check();
  while (ready.length > 0) yield ready.shift()!;
  if (!ended) throw compressError("bzip2: the data ends inside a stream (truncated)");
}

const ZSTD_OUT = 256 << 10;
/** zstd's own default decoder limit (the zstd CLI's --memory=128MB): 2^27-byte windows. */
const ZSTD_WINDOW_LOG_MAX = 27;

/**
 * zstd through libzstd's streaming API directly (what zstd-napi's DecompressStream wraps),
 * synchronously and with a bounded output buffer: no stream machinery per package, which
 * made small packages cost ~2 ms each. libzstd refuses windows over 2^27 (a 20-byte frame
 * claiming a 1.9 GiB window is refused, not allocated) and hands over at most ZSTD_OUT bytes
 * a call, so the cap holds to within one call.
 */
function* unzstdRaw(
  dctx: InstanceType<typeof zstdBinding.DCtx>,
  raw: Uint8Array,
  state: { inFrame: boolean; stalled: number },
): Generator<Uint8Array> {
  let src = raw;
  for (;;) {
    const dst = Buffer.allocUnsafe(Math.min(ZSTD_OUT, Math.max(16 << 10, src.length * 8)));
    let ret: number, produced: number, consumed: number;
    try {
      [ret, produced, consumed] = dctx.decompressStream(dst, src);
    } catch (err) {
      throw compressError(`zstd: ${(err as Error).message}`, { cause: err });
    }
    if (produced > 0) yield dst.subarray(0, produced);
    src = src.subarray(consumed);
    if (src.length === 0 && (produced < dst.length || ret === 0)) {
      state.inFrame = ret !== 0;
      return;
    }
    // A frame's end returns once without progress; a decoder that keeps making none would
    // spin here forever.
    state.stalled = produced === 0 && consumed === 0 ? state.stalled + 1 : 0;
    if (state.stalled > 2) throw compressError("zstd: the decoder makes no progress");
  }
}

/**
 * Decoder contexts kept for reuse: making one (ZSTD_createDCtx and its buffers) costs ~25 µs,
 * more than decoding a small package. Each decode takes its own (decodes may interleave at
 * awaits) and gives it back reset. Only a context that decoded a small input is kept: its
 * window buffer's touched pages stay resident, and a large one's could be tens of MB.
 *
 * Keep as many as decodes run at once (the engine parses 8 packages at a time): a context not
 * kept is freed only when V8 finalises its small JS object, and V8 does not see the native
 * memory behind it. With 2 kept, parsing 10,000 small pacman packages 8 at a time peaked at
 * 276 MB RSS and took 1.95 s; with 8, 82 MB and 1.44 s (node /tmp micro-bench).
 */
const idleDctxs: InstanceType<typeof zstdBinding.DCtx>[] = [];
const MAX_IDLE_DCTXS = 8;
const MAX_POOLED_OUTPUT = 4 << 20;

async function* unzstdChunks(
  source: ByteSource,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  let dctx = idleDctxs.pop();
  if (!dctx) {
    dctx = new zstdBinding.DCtx();
    dctx.setParameter(zstdBinding.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  }
  let output = 0;
  try {
    const state = { inFrame: false, stalled: 0 };
    for await (const raw of sourceChunks(source, onRaw)) {
      for (const chunk of unzstdRaw(dctx, raw, state)) {
        output += chunk.length;
        yield chunk;
      }
    }
    if (state.inFrame) throw compressError("zstd: the data ends inside a frame (truncated)");
  } finally {
    if (output <= MAX_POOLED_OUTPUT && idleDctxs.length < MAX_IDLE_DCTXS) {
      // sessionOnly keeps windowLogMax; a context cut off mid-frame starts clean next time.
      dctx.reset(zstdBinding.ResetDirective.sessionOnly);
      idleDctxs.push(dctx);
    }
  }
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * gzip as Debian archive tools write it: mtime 0 and no file name in the header (Node's
 * gzip writes neither), maximum compression, so the same input always gives the same bytes.
 */
export function gzipDeterministic(data: Uint8Array): Uint8Array {
  return gzipSync(data, { level: zlibConstants.Z_BEST_COMPRESSION });
}

// @types/lzma-native types `check` as the constant's name, but liblzma takes its number: a
// name is silently read as "no check". The number comes from the module itself.
const XZ_CHECK_CRC64 = (lzma as unknown as { CHECK_CRC64: number })
  .CHECK_CRC64 as unknown as lzma.Check;

/**
 * xz -6 (xz-utils' default) up to 1 MiB; -1 above it. A large index is rewritten on every
 * publish, and -6 is what bounds a +1 there: on a 4.4 MB Packages file of 10,000 packages -6
 * takes 1.39 s and gives 794 KB, -3 0.91 s and 981 KB, -1 0.25 s and 984 KB. The preset depends
 * only on the size, so the same input still gives the same bytes.
 */
export function xzPresetFor(size: number): lzma.Preset {
  return size <= 1 << 20 ? 6 : 1;
}

/**
 * xz as xz-utils makes it: CRC64, `preset` (default: by size, xzPresetFor), single-threaded
 * so the same input always gives the same bytes. It runs on libuv's thread pool, so a large
 * Packages file does not block the event loop.
 */
export function xzCompress(data: Uint8Array, preset?: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const encoder = lzma.createCompressor({
      preset: (preset ?? xzPresetFor(data.length)) as lzma.Preset,
      check: XZ_CHECK_CRC64,
      threads: 1,
    });
    const parts: Buffer[] = [];
    encoder.on("data", (chunk: Buffer) => parts.push(chunk));
    encoder.on("error", (err: Error) =>
      reject(compressError(`xz: ${err.message}`, { cause: err })),
    );
    encoder.on("end", () => resolve(Buffer.concat(parts)));
    encoder.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
}

/** zstd with libzstd (level 3, its default, unless given): the same input, the same bytes. */
export function zstdCompress(data: Uint8Array, level = 3): Uint8Array {
  return zstdCompressNative(data, { compressionLevel: level });
}

interface LzmaNativeStream {
  bufferHandler: (buf: Buffer | null, processed: unknown, err: Error | null) => void;
  code(chunk: Buffer | null, async: boolean): void;
  resetUnderlying(): void;
}

/**
 * xzCompress, synchronously (the same bytes), for the package builders of the demo, which are
 * synchronous. lzma-native has no synchronous call, so this drives its native liblzma stream
 * in blocking mode directly (the output arrives through bufferHandler before code() returns);
 * the published indexes use xzCompress, which does not block the event loop.
 */
export function xzCompressSync(data: Uint8Array, preset?: number): Uint8Array {
  const stream = lzma.createStream("easyEncoder", {
    synchronous: true,
    preset: (preset ?? xzPresetFor(data.length)) as lzma.Preset,
    check: XZ_CHECK_CRC64,
    threads: 1,
  }) as unknown as { nativeStream: LzmaNativeStream };
  const native = stream.nativeStream;
  const parts: Buffer[] = [];
  let failure: Error | null = null;
  native.bufferHandler = (buf, _processed, err) => {
    if (err) failure = err;
    else if (buf) parts.push(Buffer.from(buf));
  };
  native.code(Buffer.from(data.buffer, data.byteOffset, data.byteLength), false);
  native.code(null, false);
  native.resetUnderlying();
  if (failure) throw compressError(`xz: ${(failure as Error).message}`, { cause: failure });
  return Buffer.concat(parts);
}
