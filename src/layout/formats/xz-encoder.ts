/**
 * A small xz compressor (LZMA2 inside the xz container), in TypeScript. It exists because the
 * installed @napi-rs/lzma (1.4, lzma-rs) writes xz files whose LZMA2 chunks are all stored
 * uncompressed, so a Packages.xz would be larger than Packages. This encoder is greedy (hash
 * chains, no rep matches, no optimal parsing): about gzip -9's size on Packages files, which is
 * what matters for apt clients, and byte-for-byte deterministic.
 *
 * References: the xz file format 1.0.4 (.xz container), the LZMA SDK's LzmaEnc.c (range coder,
 * literal/match/length/distance coding), xz-embedded's xz_dec_lzma2.c (what a decoder expects
 * of LZMA2 chunks).
 */

// ---- CRC32 (IEEE), for the xz container --------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- byte output --------------------------------------------------------------------------------

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  length = 0;

  push(byte: number): void {
    if (this.length === this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.length++] = byte;
  }

  pushAll(bytes: Uint8Array | readonly number[]): void {
    for (const b of bytes) this.push(b);
  }

  pushUint32LE(v: number): void {
    this.push(v & 0xff);
    this.push((v >>> 8) & 0xff);
    this.push((v >>> 16) & 0xff);
    this.push((v >>> 24) & 0xff);
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

// ---- range encoder ------------------------------------------------------------------------------

const TOP = 1 << 24;
const PROB_INIT = 1024;

class RangeEncoder {
  /** Up to 33 bits: kept in a double, which is exact there. */
  private low = 0;
  private range = 0xffffffff;
  private cache = 0;
  private cacheSize = 1;
  readonly out = new ByteWriter();

  /** Bytes the encoder will have written once flushed. */
  pendingSize(): number {
    return this.out.length + this.cacheSize + 4;
  }

  private shiftLow(): void {
    const lo = this.low >>> 0;
    if (lo < 0xff000000 || this.low > 0xffffffff) {
      const carry = this.low > 0xffffffff ? 1 : 0;
      let temp = this.cache;
      do {
        this.out.push((temp + carry) & 0xff);
        temp = 0xff;
      } while (--this.cacheSize !== 0);
      this.cache = lo >>> 24;
    }
    this.cacheSize++;
    this.low = (lo & 0x00ffffff) * 256;
  }

  bit(probs: Uint16Array, index: number, bit: number): void {
    const p = probs[index]!;
    const bound = (this.range >>> 11) * p;
    if (bit === 0) {
      this.range = bound;
      probs[index] = p + ((2048 - p) >>> 5);
    } else {
      this.low += bound;
      this.range = (this.range - bound) >>> 0;
      probs[index] = p - (p >>> 5);
    }
    while (this.range < TOP) {
      this.range = (this.range * 256) >>> 0;
      this.shiftLow();
    }
  }

  directBits(value: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) {
      this.range >>>= 1;
      if ((value >>> i) & 1) this.low += this.range;
      if (this.range < TOP) {
        this.range = (this.range * 256) >>> 0;
        this.shiftLow();
      }
    }
  }

  bitTree(probs: Uint16Array, base: number, bits: number, symbol: number): void {
    let m = 1;
    for (let i = bits - 1; i >= 0; i--) {
      const b = (symbol >>> i) & 1;
      this.bit(probs, base + m, b);
      m = (m << 1) | b;
    }
  }

  reverseBitTree(probs: Uint16Array, base: number, bits: number, symbol: number): void {
    let m = 1;
    let s = symbol;
    for (let i = 0; i < bits; i++) {
      const b = s & 1;
      this.bit(probs, base + m, b);
      m = (m << 1) | b;
      s >>>= 1;
    }
  }

  flush(): Uint8Array {
    for (let i = 0; i < 5; i++) this.shiftLow();
    return this.out.bytes();
  }
}

// ---- LZMA model (lc=3, lp=0, pb=2) ----------------------------------------------------------

const LC = 3;
const PB = 2;
const POS_MASK = (1 << PB) - 1;
/** LZMA2 properties byte: (pb * 5 + lp) * 9 + lc. */
const LZMA_PROPS = (PB * 5 + 0) * 9 + LC;
const STATES = 12;
const MATCH_MIN = 3;
const MATCH_MAX = 273;
const END_POS_MODEL_INDEX = 14;
const FULL_DISTANCES = 128;

class LenEncoder {
  readonly choice = new Uint16Array(2).fill(PROB_INIT);
  readonly low = new Uint16Array((1 << PB) * 8).fill(PROB_INIT);
  readonly mid = new Uint16Array((1 << PB) * 8).fill(PROB_INIT);
  readonly high = new Uint16Array(256).fill(PROB_INIT);

  encode(rc: RangeEncoder, len: number, posState: number): void {
    const l = len - 2;
    if (l < 8) {
      rc.bit(this.choice, 0, 0);
      rc.bitTree(this.low, posState * 8, 3, l);
    } else if (l < 16) {
      rc.bit(this.choice, 0, 1);
      rc.bit(this.choice, 1, 0);
      rc.bitTree(this.mid, posState * 8, 3, l - 8);
    } else {
      rc.bit(this.choice, 0, 1);
      rc.bit(this.choice, 1, 1);
      rc.bitTree(this.high, 0, 8, l - 16);
    }
  }
}

class LzmaModel {
  readonly isMatch = new Uint16Array(STATES << PB).fill(PROB_INIT);
  readonly isRep = new Uint16Array(STATES).fill(PROB_INIT);
  readonly literal = new Uint16Array(0x300 << LC).fill(PROB_INIT);
  readonly posSlot = new Uint16Array(4 * 64).fill(PROB_INIT);
  readonly posSpecial = new Uint16Array(FULL_DISTANCES - END_POS_MODEL_INDEX + 1).fill(PROB_INIT);
  readonly align = new Uint16Array(16).fill(PROB_INIT);
  readonly len = new LenEncoder();
  state = 0;
  /** The last match distance, 0-based (the decoder's rep0). */
  rep0 = 0;
}

function distSlot(dist: number): number {
  if (dist < 4) return dist;
  const n = 31 - Math.clz32(dist);
  return 2 * n + ((dist >>> (n - 1)) & 1);
}

/**
 * Bits a match saves over literals, roughly: a literal costs ~5 bits in text, a match ~11 bits
 * plus one per doubling of the distance. Short far matches (common in the random hex of
 * checksums) cost more than the literals they replace, so they are not taken (zlib's
 * TOO_FAR heuristic, generalised).
 */
function matchGain(len: number, dist: number): number {
  return len * 5 - 11 - Math.log2(dist + 1);
}

// ---- one LZMA2 chunk ----------------------------------------------------------------------------

const HASH_BITS = 16;
const CHAIN_DEPTH = 32;
/** A match this long is good enough: stop searching the chain (zlib's nice_match). */
const NICE_LEN = 64;
/** An LZMA2 chunk holds at most 2 MiB uncompressed and 64 KiB compressed. */
const CHUNK_UNPACKED_MAX = 1 << 21;
const CHUNK_PACKED_MAX = 1 << 16;

/**
 * Encode data[start..] until the chunk is full; returns the packed bytes and how much input
 * they cover. Every chunk resets dictionary and state (control 0xE0), so positions, the
 * previous byte and posState all start from zero, as the decoder's do after a reset.
 */
function encodeChunk(data: Uint8Array, start: number): { packed: Uint8Array; consumed: number } {
  const rc = new RangeEncoder();
  const m = new LzmaModel();
  const limit = Math.min(data.length, start + CHUNK_UNPACKED_MAX);
  const head = new Int32Array(1 << HASH_BITS).fill(-1);
  const prev = new Int32Array(limit - start);
  const hash = (i: number) =>
    (((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!) * 2654435761) >>> (32 - HASH_BITS);
  const insert = (i: number) => {
    if (i + 2 >= limit) return;
    const h = hash(i);
    prev[i - start] = head[h]!;
    head[h] = i;
  };

  let pos = start;
  // Room for the largest symbol (a long match with a far distance) plus the flush.
  while (pos < limit && rc.pendingSize() < CHUNK_PACKED_MAX - 64) {
    const rel = pos - start;
    const posState = rel & POS_MASK;
    let bestLen = 0;
    let bestDist = 0;
    let bestGain = 0;
    if (pos + MATCH_MIN <= limit) {
      const maxLen = Math.min(MATCH_MAX, limit - pos);
      let cand = head[hash(pos)]!;
      for (let depth = 0; cand >= start && depth < CHAIN_DEPTH; depth++) {
        if (data[cand + bestLen] === data[pos + bestLen]) {
          let len = 0;
          while (len < maxLen && data[cand + len] === data[pos + len]) len++;
          const dist = pos - cand - 1;
          const gain = matchGain(len, dist);
          if (gain > bestGain) {
            bestGain = gain;
            bestLen = len;
            bestDist = dist;
            if (len >= NICE_LEN || len === maxLen) break;
          }
        }
        cand = prev[cand - start]!;
      }
    }
    if (bestLen >= MATCH_MIN) {
      rc.bit(m.isMatch, (m.state << PB) + posState, 1);
      rc.bit(m.isRep, m.state, 0);
      m.len.encode(rc, bestLen, posState);
      const slot = distSlot(bestDist);
      rc.bitTree(m.posSlot, Math.min(bestLen - 2, 3) * 64, 6, slot);
      if (slot >= 4) {
        const footerBits = (slot >>> 1) - 1;
        const base = (2 | (slot & 1)) << footerBits;
        const reduced = bestDist - base;
        if (slot < END_POS_MODEL_INDEX) {
          rc.reverseBitTree(m.posSpecial, base - slot - 1, footerBits, reduced);
        } else {
          rc.directBits(reduced >>> 4, footerBits - 4);
          rc.reverseBitTree(m.align, 0, 4, reduced & 15);
        }
      }
      m.state = m.state < 7 ? 7 : 10;
      m.rep0 = bestDist;
      for (let i = 0; i < bestLen; i++) insert(pos + i);
      pos += bestLen;
    } else {
      const byte = data[pos]!;
      const prevByte = rel > 0 ? data[pos - 1]! : 0;
      const base = 0x300 * (prevByte >>> (8 - LC));
      rc.bit(m.isMatch, (m.state << PB) + posState, 0);
      if (m.state < 7) {
        rc.bitTree(m.literal, base, 8, byte);
      } else {
        // A literal right after a match is coded against the byte the match would continue
        // with (LzmaEnc.c LitEnc_EncodeMatched).
        let matchByte = data[pos - m.rep0 - 1]!;
        let offs = 0x100;
        let symbol = byte | 0x100;
        do {
          matchByte <<= 1;
          rc.bit(m.literal, base + offs + (matchByte & offs) + (symbol >>> 8), (symbol >>> 7) & 1);
          symbol <<= 1;
          offs &= ~(matchByte ^ symbol);
        } while (symbol < 0x10000);
      }
      m.state = m.state < 4 ? 0 : m.state < 10 ? m.state - 3 : m.state - 6;
      insert(pos);
      pos++;
    }
  }
  return { packed: rc.flush(), consumed: pos - start };
}

/** LZMA2 data, yielding after each chunk so that a caller can give the event loop a turn. */
function* lzma2Chunks(data: Uint8Array, out: ByteWriter): Generator<void, void, void> {
  let pos = 0;
  while (pos < data.length) {
    const { packed, consumed } = encodeChunk(data, pos);
    if (packed.length < consumed) {
      const u = consumed - 1;
      const p = packed.length - 1;
      // 0xE0: LZMA chunk, dictionary reset, new properties, state reset.
      out.push(0xe0 | (u >>> 16));
      out.push((u >>> 8) & 0xff);
      out.push(u & 0xff);
      out.push((p >>> 8) & 0xff);
      out.push(p & 0xff);
      out.push(LZMA_PROPS);
      out.pushAll(packed);
    } else {
      // Incompressible: stored chunks (0x01: uncompressed, dictionary reset), ≤ 64 KiB each.
      for (let at = pos; at < pos + consumed; at += 1 << 16) {
        const piece = data.subarray(at, Math.min(pos + consumed, at + (1 << 16)));
        out.push(0x01);
        out.push(((piece.length - 1) >>> 8) & 0xff);
        out.push((piece.length - 1) & 0xff);
        out.pushAll(piece);
      }
    }
    pos += consumed;
    yield;
  }
  out.push(0x00);
}

// ---- the xz container -------------------------------------------------------------------------

function vli(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

const STREAM_FLAGS = [0x00, 0x01]; // check type 1: CRC32
/** Dictionary size 2 MiB (one chunk's reach): 2^(18/2 + 12). */
const DICT_PROPS = 18;

/** Compress to the .xz format (one stream, one block, CRC32 check). Deterministic. */
export function xzEncode(data: Uint8Array): Uint8Array {
  const steps = xzSteps(data);
  let step = steps.next();
  while (!step.done) step = steps.next();
  return step.value;
}

/**
 * The same bytes as xzEncode, yielding to the event loop between LZMA2 chunks (each at most
 * 64 KiB of output, tens of milliseconds), so a daemon stays responsive while it compresses
 * a large Packages file.
 */
export async function xzEncodeAsync(data: Uint8Array): Promise<Uint8Array> {
  const steps = xzSteps(data);
  let step = steps.next();
  while (!step.done) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    step = steps.next();
  }
  return step.value;
}

function* xzSteps(data: Uint8Array): Generator<void, Uint8Array, void> {
  const out = new ByteWriter();
  out.pushAll([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, ...STREAM_FLAGS]);
  out.pushUint32LE(crc32(new Uint8Array(STREAM_FLAGS)));

  const records: [unpadded: number, uncompressed: number][] = [];
  if (data.length > 0) {
    // Block header: size byte, flags (one filter, no sizes), LZMA2 filter with its dictionary
    // property, padding to 8, CRC32: 12 bytes, so the size byte is 12 / 4 - 1.
    const header = new Uint8Array([0x02, 0x00, 0x21, 0x01, DICT_PROPS, 0, 0, 0]);
    const lz = new ByteWriter();
    yield* lzma2Chunks(data, lz);
    const compressed = lz.bytes();
    out.pushAll(header);
    out.pushUint32LE(crc32(header));
    out.pushAll(compressed);
    const unpadded = header.length + 4 + compressed.length + 4;
    while ((out.length & 3) !== 0) out.push(0);
    out.pushUint32LE(crc32(data));
    records.push([unpadded, data.length]);
  }

  const index = new ByteWriter();
  index.push(0x00);
  index.pushAll(vli(records.length));
  for (const [unpadded, uncompressed] of records) {
    index.pushAll(vli(unpadded));
    index.pushAll(vli(uncompressed));
  }
  while ((index.length & 3) !== 0) index.push(0);
  const indexBytes = index.bytes();
  out.pushAll(indexBytes);
  out.pushUint32LE(crc32(indexBytes));

  const footer = new ByteWriter();
  footer.pushUint32LE((indexBytes.length + 4) / 4 - 1);
  footer.pushAll(STREAM_FLAGS);
  const footerBytes = footer.bytes();
  out.pushUint32LE(crc32(footerBytes));
  out.pushAll(footerBytes);
  out.pushAll([0x59, 0x5a]);
  return out.bytes();
}
