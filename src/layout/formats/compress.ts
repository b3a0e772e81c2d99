/**
 * Decompression with a hard cap on the output size (a decompression bomb is cut off, not
 * buffered), and deterministic compression for published indexes. Generic: any layout may
 * use it. Errors are plain `DecompressError`s; callers wrap them in a PackratError that names
 * their file.
 */
import { gunzipSync, gzipSync, constants as zlibConstants } from "node:zlib";
import { xz } from "@napi-rs/lzma";
import { compress as zstdCompressNative } from "zstd-napi";
import zstdBinding from "zstd-napi/binding.js";
import * as lzma from "lzma-native";

export type Compression = "gzip" | "xz" | "zstd" | "none";

export class DecompressError extends Error {
  override readonly name = "DecompressError";
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

/** Decompress `data`; throws DecompressError if it is corrupt or would exceed `maxOutput`. */
export function decompress(
  data: Uint8Array,
  compression: Compression,
  maxOutput: number,
): Uint8Array {
  switch (compression) {
    case "none":
      if (data.length > maxOutput) throw tooLarge(maxOutput);
      return data;
    case "gzip":
      return gunzipCapped(data, maxOutput);
    case "xz":
      return unxzCapped(data, maxOutput);
    case "zstd":
      return unzstdCapped(data, maxOutput);
  }
}

function tooLarge(maxOutput: number): DecompressError {
  return new DecompressError(`decompressed size exceeds the limit of ${maxOutput} bytes`);
}

function gunzipCapped(data: Uint8Array, maxOutput: number): Uint8Array {
  try {
    // maxOutputLength makes zlib stop (RangeError) instead of growing the buffer further.
    return gunzipSync(data, { maxOutputLength: Math.max(1, maxOutput) });
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") throw tooLarge(maxOutput);
    throw new DecompressError(`gzip: ${(err as Error).message}`, { cause: err });
  }
}

/** zstd's own default decoder limit (the zstd CLI's --memory=128MB): 2^27-byte windows. */
const ZSTD_WINDOW_LOG_MAX = 27;
const ZSTD_OUT = 128 << 10;

function unzstdCapped(data: Uint8Array, maxOutput: number): Uint8Array {
  // libzstd's streaming decoder (zstd-napi), not fzstd: fzstd allocates the window a frame
  // header declares before decoding a byte, so a 20-byte control.tar.zst claiming a 1.9 GiB
  // window made it allocate 1.9 GiB (or throw a RangeError for a 2^31 one). libzstd refuses
  // windows over 2^27, sizes its buffer by the content size when the frame states it, and
  // hands over at most ZSTD_OUT bytes a call, so the cap holds to within one call.
  const dctx = new zstdBinding.DCtx();
  dctx.setParameter(zstdBinding.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  const parts: Uint8Array[] = [];
  let total = 0;
  let src = data;
  let inFrame = false;
  let stalled = 0;
  for (;;) {
    const dst = Buffer.allocUnsafe(ZSTD_OUT);
    let ret: number, produced: number, consumed: number;
    try {
      [ret, produced, consumed] = dctx.decompressStream(dst, src);
    } catch (err) {
      throw new DecompressError(`zstd: ${(err as Error).message}`, { cause: err });
    }
    total += produced;
    if (total > maxOutput) throw tooLarge(maxOutput);
    if (produced > 0) parts.push(dst.subarray(0, produced));
    src = src.subarray(consumed);
    inFrame = ret !== 0;
    // All input taken and the output not full: nothing more to flush.
    if (src.length === 0 && produced < dst.length) break;
    // A frame's end returns once without progress; a decoder that keeps making none would
    // spin here forever.
    stalled = produced === 0 && consumed === 0 ? stalled + 1 : 0;
    if (stalled > 2) throw new DecompressError("zstd: the decoder makes no progress");
  }
  if (inFrame) {
    throw new DecompressError("zstd: the data ends inside a frame (truncated)");
  }
  return concat(parts, total);
}

function unxzCapped(data: Uint8Array, maxOutput: number): Uint8Array {
  // @napi-rs/lzma (the Rust lzma-rs) has no output limit, so the exact output size is read
  // from the LZMA2 chunk headers first (cheap: no decoding). The decoder stops every chunk at
  // the size its header states, so the sum is a hard bound; the length is checked after too.
  // lzma-rs knows neither SHA-256 checks nor BCJ/delta filters: those fail as corrupt (dpkg
  // never writes them).
  const size = xzDecompressedSize(data);
  if (size > maxOutput) throw tooLarge(maxOutput);
  let out: Uint8Array;
  try {
    out = xz.decompressSync(data);
  } catch (err) {
    throw new DecompressError(`xz: ${(err as Error).message}`, { cause: err });
  }
  if (out.length !== size) {
    throw new DecompressError(`xz: decoded ${out.length} bytes, chunk headers state ${size}`);
  }
  return out;
}

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const XZ_CHECK_SIZES: Record<number, number> = { 0: 0, 1: 4, 4: 8, 10: 32 };

/**
 * The decompressed size of an xz file (one or more streams), summed from the LZMA2 chunk
 * headers of every block (xz file format 1.0.4 §3, LZMA2 chunk format). Throws on anything
 * that does not follow the format.
 */
export function xzDecompressedSize(data: Uint8Array): number {
  const bad = (what: string) => new DecompressError(`xz: ${what}`);
  const need = (pos: number, n: number) => {
    if (pos + n > data.length) throw bad("truncated");
  };
  const readVli = (pos: number): [number, number] => {
    let value = 0;
    for (let i = 0; i < 9; i++) {
      need(pos + i, 1);
      const byte = data[pos + i]!;
      value += (byte & 0x7f) * 2 ** (7 * i);
      if ((byte & 0x80) === 0) return [value, pos + i + 1];
    }
    throw bad("variable-length integer too long");
  };

  let total = 0;
  let pos = 0;
  let streams = 0;
  while (pos < data.length) {
    // Stream padding between streams: null bytes in multiples of four.
    if (streams > 0 && data[pos] === 0) {
      need(pos, 4);
      if (data[pos + 1] !== 0 || data[pos + 2] !== 0 || data[pos + 3] !== 0)
        throw bad("bad stream padding");
      pos += 4;
      continue;
    }
    need(pos, 12);
    for (let i = 0; i < 6; i++) if (data[pos + i] !== XZ_MAGIC[i]) throw bad("not an xz stream");
    const checkType = data[pos + 7]! & 0x0f;
    const checkSize = XZ_CHECK_SIZES[checkType];
    if (data[pos + 6] !== 0 || checkSize === undefined) throw bad("unsupported stream flags");
    pos += 12;
    streams++;
    // Blocks, until the index indicator (a zero header-size byte).
    for (;;) {
      need(pos, 1);
      const headerSizeByte = data[pos]!;
      if (headerSizeByte === 0) break;
      const headerSize = (headerSizeByte + 1) * 4;
      need(pos, headerSize);
      pos += headerSize;
      // LZMA2 chunks (the last filter of an xz block is always LZMA2).
      for (;;) {
        need(pos, 1);
        const control = data[pos]!;
        if (control === 0x00) {
          pos += 1;
          break;
        }
        if (control === 0x01 || control === 0x02) {
          need(pos, 3);
          const size = ((data[pos + 1]! << 8) | data[pos + 2]!) + 1;
          total += size;
          pos += 3 + size;
        } else if (control >= 0x80) {
          need(pos, 5);
          const unpacked = (((control & 0x1f) << 16) | (data[pos + 1]! << 8) | data[pos + 2]!) + 1;
          const packed = ((data[pos + 3]! << 8) | data[pos + 4]!) + 1;
          const propsByte = control >= 0xc0 ? 1 : 0;
          total += unpacked;
          pos += 5 + propsByte + packed;
        } else {
          throw bad(`invalid LZMA2 chunk control byte 0x${control.toString(16)}`);
        }
        need(pos, 0);
      }
      // Block padding to a multiple of four, then the check. Padding is relative to the
      // block start, which is four-aligned with the stream, so aligning `pos` works.
      while (pos % 4 !== 0) pos++;
      pos += checkSize;
      need(pos, 0);
    }
    // Index: indicator, record count, records, padding, CRC32; then the stream footer.
    let [records, p] = readVli(pos + 1);
    for (; records > 0; records--) {
      [, p] = readVli(p);
      [, p] = readVli(p);
    }
    while (p % 4 !== 0) p++;
    pos = p + 4 + 12;
    need(pos, 0);
  }
  if (streams === 0) throw bad("empty input");
  return total;
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
 * xz with liblzma (lzma-native), as xz-utils makes it: CRC64, preset by size (xzPresetFor),
 * single-threaded so the same input always gives the same bytes. It runs on libuv's thread
 * pool, so a large Packages file does not block the event loop. (@napi-rs/lzma 1.4 cannot
 * compress: it writes stored chunks only.)
 */
export function xzCompressAsync(data: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const encoder = lzma.createCompressor({
      preset: xzPresetFor(data.length),
      check: XZ_CHECK_CRC64,
      threads: 1,
    });
    const parts: Buffer[] = [];
    encoder.on("data", (chunk: Buffer) => parts.push(chunk));
    encoder.on("error", (err: Error) =>
      reject(new DecompressError(`xz: ${err.message}`, { cause: err })),
    );
    encoder.on("end", () => resolve(Buffer.concat(parts)));
    encoder.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
}

/** zstd (native, level 3 by default). */
export function zstdCompress(data: Uint8Array): Uint8Array {
  return zstdCompressNative(data);
}
