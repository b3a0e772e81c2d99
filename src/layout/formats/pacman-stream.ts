/**
 * Streaming decompression of a package file read through a ByteSource, with caps against
 * decompression bombs: the output is counted as it is produced and cut off at a limit, so a
 * 1 MB file that claims 100 GB costs at most `maxOutput` bytes of work and never that much
 * memory. zstd and gzip stream (zstd-napi, node:zlib); xz has no streaming binding here, so
 * its exact decompressed size is read from the xz index first and refused if too large.
 *
 * Errors are plain `StreamError`s; the caller wraps them in a PackratError naming its file.
 */
import type { Transform } from "node:stream";
import { Readable, pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { xz } from "@napi-rs/lzma";
import * as lzma from "lzma-native";
import unbzip2 from "unbzip2-stream";
import zstdBinding from "zstd-napi/binding.js";
import type { ByteSource } from "../types.js";
import { xzDecompressedSize } from "./compress.js";

/** bzip2 and lzma (LZMA-alone, .tar.lzma) only for callers that ask (Python sdists). */
export type StreamCompression = "zstd" | "xz" | "gzip" | "bzip2" | "lzma" | "none";

export class StreamError extends Error {
  override readonly name = "StreamError";
}

const READ_CHUNK = 1 << 20;

/**
 * The compression a file uses, from its magic bytes (the name can lie). `bzip2`: also know
 * bzip2 ("BZh" and a block size digit); pacman packages never use it, Python sdists may.
 */
export async function sniffCompression(
  source: ByteSource,
  options: { bzip2?: boolean } = {},
): Promise<StreamCompression | null> {
  const head = await source.read(0, 512);
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

/** The raw bytes of a source, in chunks, with `onChunk` seeing each (for hashing). */
export async function* sourceChunks(
  source: ByteSource,
  onChunk?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < source.size;) {
    const chunk = await source.read(offset, Math.min(READ_CHUNK, source.size - offset));
    if (chunk.length === 0) throw new StreamError(`unexpected end of data at byte ${offset}`);
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
 * The decompressed bytes of `source` in chunks. `onRaw` sees every compressed chunk once, in
 * order (so the caller can hash the file in the same pass).
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
    if (total > limits.maxOutput) {
      throw new StreamError(`decompressed size exceeds the limit of ${limits.maxOutput} bytes`);
    }
    return chunk;
  };
  if (compression === "none") {
    for await (const chunk of sourceChunks(source, onRaw)) yield count(chunk);
    return;
  }
  if (compression === "xz") {
    yield* unxzChunks(source, limits, onRaw);
    return;
  }
  if (compression === "zstd") {
    for await (const chunk of unzstdChunks(source, onRaw)) yield count(chunk);
    return;
  }
  if (compression === "bzip2") {
    yield* unbzip2Chunks(source, count, onRaw);
    return;
  }
  const decoder: Transform =
    compression === "lzma"
      ? // LZMA-alone has no index to read the size from: liblzma streams it, output counted.
        lzma.createStream("aloneDecoder", { memlimit: LZMA_MEMLIMIT })
      : createGunzip();
  const out = pipeline(Readable.from(sourceChunks(source, onRaw)), decoder, () => {
    // Errors surface through the async iteration below.
  });
  try {
    for await (const chunk of out as AsyncIterable<Uint8Array>) yield count(chunk);
  } catch (err) {
    if (err instanceof StreamError) throw err;
    throw new StreamError(`${compression}: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    out.destroy();
  }
}

/** liblzma's decoder memory cap for LZMA-alone (its dictionary): xz -9 needs 65 MiB. */
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
    if (failure instanceof StreamError) throw failure;
    throw new StreamError(`bzip2: ${(failure as Error).message}`, { cause: failure });
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
  if (!ended) throw new StreamError("bzip2: the data ends inside a stream (truncated)");
}

const ZSTD_OUT = 256 << 10;

/**
 * zstd through libzstd's streaming API directly (what zstd-napi's DecompressStream wraps),
 * synchronously and with a bounded output buffer: no stream machinery per package, which
 * made small packages cost ~2 ms each. The window is capped at 2^27 (zstd's default).
 */
function* unzstdRaw(
  dctx: InstanceType<typeof zstdBinding.DCtx>,
  raw: Uint8Array,
  state: { inFrame: boolean },
): Generator<Uint8Array> {
  let src = raw;
  for (;;) {
    const dst = Buffer.allocUnsafe(Math.min(ZSTD_OUT, Math.max(16 << 10, src.length * 8)));
    let ret: number, produced: number, consumed: number;
    try {
      [ret, produced, consumed] = dctx.decompressStream(dst, src);
    } catch (err) {
      throw new StreamError(`zstd: ${(err as Error).message}`, { cause: err });
    }
    if (produced > 0) yield dst.subarray(0, produced);
    src = src.subarray(consumed);
    if (src.length === 0 && (produced < dst.length || ret === 0)) {
      state.inFrame = ret !== 0;
      return;
    }
  }
}

/**
 * Decoder contexts kept for reuse: making one (ZSTD_createDCtx and its buffers) costs ~25 µs,
 * more than decoding a small package. Each parse takes its own (parses may interleave at
 * awaits) and gives it back reset. Only a context that decoded a small package is kept: its
 * window buffer's touched pages stay resident, and a large package's could be tens of MB.
 */
const idleDctxs: InstanceType<typeof zstdBinding.DCtx>[] = [];
const MAX_IDLE_DCTXS = 2;
const MAX_POOLED_OUTPUT = 4 << 20;

async function* unzstdChunks(
  source: ByteSource,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  let dctx = idleDctxs.pop();
  if (!dctx) {
    dctx = new zstdBinding.DCtx();
    dctx.setParameter(zstdBinding.DParameter.windowLogMax, 27);
  }
  let output = 0;
  try {
    const state = { inFrame: false };
    for await (const raw of sourceChunks(source, onRaw)) {
      for (const chunk of unzstdRaw(dctx, raw, state)) {
        output += chunk.length;
        yield chunk;
      }
    }
    if (state.inFrame) throw new StreamError("zstd: the data ends inside a frame (truncated)");
  } finally {
    if (output <= MAX_POOLED_OUTPUT && idleDctxs.length < MAX_IDLE_DCTXS) {
      // sessionOnly keeps windowLogMax; a context cut off mid-frame starts clean next time.
      dctx.reset(zstdBinding.ResetDirective.sessionOnly);
      idleDctxs.push(dctx);
    }
  }
}

async function* unxzChunks(
  source: ByteSource,
  limits: DecompressLimits,
  onRaw?: (chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  // The whole compressed file is needed in memory; refuse absurd sizes before reading it.
  if (source.size > limits.maxOutput) {
    throw new StreamError(`xz file of ${source.size} bytes exceeds the limit`);
  }
  const parts: Uint8Array[] = [];
  for await (const chunk of sourceChunks(source, onRaw)) parts.push(chunk);
  const data = Buffer.concat(parts);
  const size = xzUncompressedSize(data);
  if (size > limits.maxOutput) {
    throw new StreamError(
      `xz index declares ${size} decompressed bytes, over the limit of ${limits.maxOutput}`,
    );
  }
  // The index is only a claim: @napi-rs/lzma (lzma-rs) decodes the blocks whatever it says,
  // so a 10 KB file whose index claimed 1 KiB decoded 64 MiB (any amount: each LZMA2 chunk may
  // expand 2 MiB) before the length check below. The chunk headers bound what the decoder
  // produces (compress.ts xzDecompressedSize); they must agree with the index.
  let decoded: number;
  try {
    decoded = xzDecompressedSize(data);
  } catch (err) {
    throw new StreamError((err as Error).message, { cause: err });
  }
  if (decoded !== size) {
    throw new StreamError(`xz: the blocks hold ${decoded} bytes, the index says ${size}`);
  }
  let out: Uint8Array;
  try {
    out = xz.decompressSync(data);
  } catch (err) {
    throw new StreamError(`xz: ${(err as Error).message}`, { cause: err });
  }
  // The chunk headers bound the decoder (see above), so this only guards a binding bug.
  if (out.length !== size) throw new StreamError(`xz: ${out.length} bytes, index says ${size}`);
  for (let i = 0; i < out.length; i += READ_CHUNK) yield out.subarray(i, i + READ_CHUNK);
}

/**
 * The uncompressed size of a single-stream .xz file, from its index (xz file format 1.0.4,
 * §4: the stream footer gives the index size; the index lists every block's sizes).
 */
export function xzUncompressedSize(data: Uint8Array): number {
  const bad = (why: string) => new StreamError(`xz: ${why}`);
  if (data.length < 32) throw bad("file too short");
  const footer = data.length - 12;
  if (data[footer + 10] !== 0x59 || data[footer + 11] !== 0x5a) {
    throw bad("no stream footer (stream padding or concatenated streams are not supported)");
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const indexSize = (view.getUint32(footer + 4, true) + 1) * 4;
  const indexStart = footer - indexSize;
  if (indexStart < 12 || data[indexStart] !== 0x00) throw bad("index not found");
  let pos = indexStart + 1;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 63; shift += 7) {
      if (pos >= footer) throw bad("truncated index");
      const byte = data[pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw bad("index number too long");
  };
  const records = varint();
  let uncompressed = 0;
  let compressed = 0;
  for (let i = 0; i < records; i++) {
    const unpadded = varint();
    compressed += Math.ceil(unpadded / 4) * 4;
    uncompressed += varint();
  }
  // Header (12) + blocks + index + footer (12) must be the whole file: one stream only.
  if (12 + compressed + indexSize + 12 !== data.length) {
    throw bad("the file is not exactly one xz stream");
  }
  return uncompressed;
}
