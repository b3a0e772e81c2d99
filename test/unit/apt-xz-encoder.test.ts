import fc from "fast-check";
import { gzipSync } from "node:zlib";
import { xz } from "@napi-rs/lzma";
import { describe, expect, it } from "vitest";
import { decompress, xzDecompressedSize } from "../../src/layout/formats/compress.js";
import { xzEncode, xzEncodeAsync } from "../../src/layout/formats/xz-encoder.js";

const enc = new TextEncoder();

function packagesText(n: number): Uint8Array {
  let t = "";
  for (let i = 0; i < n; i++) {
    t +=
      `Package: pkg${i}\nVersion: 1.${i}-1\nArchitecture: amd64\nMaintainer: M <m@example.com>\n` +
      `Depends: libc6 (>= 2.36), libfoo${i % 7}\nFilename: pool/pkg${i}/pkg${i}_1.${i}-1_amd64.deb\n` +
      `Description: package ${i}\n with a longer description line\n\n`;
  }
  return enc.encode(t);
}

const roundTrip = (data: Uint8Array) => {
  const packed = xzEncode(data);
  expect(xzDecompressedSize(packed)).toBe(data.length);
  expect(Buffer.from(xz.decompressSync(packed)).equals(data)).toBe(true);
  expect(Buffer.from(decompress(packed, "xz", data.length)).equals(data)).toBe(true);
  return packed;
};

describe("xzEncode", () => {
  it("round-trips empty, tiny and repetitive input", () => {
    roundTrip(new Uint8Array(0));
    roundTrip(enc.encode("a"));
    roundTrip(enc.encode("abc".repeat(1000)));
    roundTrip(new Uint8Array(5_000_000)); // several 2 MiB chunks of one byte
  });
  it("round-trips arbitrary bytes, including low-entropy ones", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 3000 }),
          fc
            .array(fc.constantFrom(0, 1, 97, 255), { maxLength: 5000 })
            .map((a) => new Uint8Array(a)),
        ),
        (data) => {
          roundTrip(data);
        },
      ),
      { numRuns: 300 },
    );
  });
  it("stores incompressible data instead of growing it much", () => {
    const noise = new Uint8Array(200_000).map((_, i) => (Math.imul(i, 2654435761) >>> 13) & 0xff);
    const packed = roundTrip(noise);
    expect(packed.length).toBeLessThan(noise.length + 200);
  });
  it("compresses a Packages file at least as well as gzip -9, deterministically", () => {
    const text = packagesText(5000);
    const packed = roundTrip(text);
    expect(packed.length).toBeLessThan(gzipSync(text, { level: 9 }).length);
    expect(xzEncode(text)).toEqual(packed);
  });
  it("gives the same bytes when it yields to the event loop", async () => {
    const text = packagesText(20000); // several LZMA2 chunks
    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    const packed = await xzEncodeAsync(text);
    clearInterval(timer);
    expect(Buffer.from(packed).equals(xzEncode(text))).toBe(true);
    expect(turns).toBeGreaterThan(0);
  });
});
