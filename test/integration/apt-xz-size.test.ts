/**
 * The xz bomb guard reads the decompressed size from LZMA2 chunk headers (compress.ts). Check
 * it against files the real xz writes with every option that changes the container: threads
 * and blocks, check types, BCJ filters, presets, concatenated streams with padding.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  decompress,
  DecompressError,
  xzCompressAsync,
  xzDecompressedSize,
} from "../../src/layout/formats/compress.js";

const run = promisify(execFile);
let dir: string;
let input: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-xz-"));
  // Half incompressible, half repetitive: both uncompressed and LZMA chunks appear.
  input = Buffer.concat([randomBytes(300_000), Buffer.alloc(2_300_000, "packrat ")]);
  await writeFile(path.join(dir, "in"), input);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The decoder (@napi-rs/lzma, which wraps the Rust lzma-rs) knows neither SHA-256 checks nor
// the BCJ/delta filters: those files must fail with a clear DecompressError, not a crash.
// dpkg-deb never writes them.
const variants: [string[], boolean][] = [
  [[], true],
  [["-T2", "--block-size=500000"], true],
  [["--check=none"], true],
  [["--check=crc32"], true],
  [["-0"], true],
  [["-9e"], true],
  [["--check=sha256"], false],
  [["--x86", "--lzma2=preset=6"], false],
  [["--delta=dist=4", "--lzma2"], false],
];

for (const [opts, decodes] of variants) {
  it(`reads the size of \`xz ${opts.join(" ")}\` output`, async () => {
    const out = path.join(dir, `out${opts.join("")}.xz`);
    await run("sh", ["-c", `xz -c ${opts.join(" ")} "${path.join(dir, "in")}" > "${out}"`]);
    const xzed = new Uint8Array(await readFile(out));
    expect(xzDecompressedSize(xzed)).toBe(input.length);
    expect(() => decompress(xzed, "xz", input.length - 1)).toThrow(/exceeds the limit/);
    if (decodes) {
      expect(Buffer.from(decompress(xzed, "xz", input.length)).equals(input)).toBe(true);
    } else {
      expect(() => decompress(xzed, "xz", input.length)).toThrow(DecompressError);
    }
  });
}

it("sums concatenated streams with stream padding", async () => {
  await run("sh", ["-c", `xz -c "${path.join(dir, "in")}" > "${path.join(dir, "one.xz")}"`]);
  const one = await readFile(path.join(dir, "one.xz"));
  const two = new Uint8Array(Buffer.concat([one, Buffer.alloc(8), one]));
  expect(xzDecompressedSize(two)).toBe(2 * input.length);
  // What xz itself decodes from the same bytes.
  await writeFile(path.join(dir, "two.xz"), two);
  const { stdout } = await run("sh", ["-c", `xz -dc "${path.join(dir, "two.xz")}" | wc -c`]);
  expect(Number(stdout.trim())).toBe(2 * input.length);
});

it("writes xz files the real xz decodes, the same bytes for the same input", async () => {
  for (const [name, data] of [
    ["empty", new Uint8Array(0)],
    ["mixed", new Uint8Array(input)],
    ["text", new TextEncoder().encode("Package: hello\nVersion: 1.0\n\n".repeat(50_000))],
  ] as const) {
    const file = path.join(dir, `ours-${name}.xz`);
    const packed = await xzCompressAsync(data);
    expect(Buffer.from(await xzCompressAsync(data)).equals(Buffer.from(packed))).toBe(true);
    if (name === "text") expect(packed.length).toBeLessThan(data.length / 50);
    await writeFile(file, packed);
    await run("xz", ["--test", file]);
    // CRC64, as xz-utils writes by default (a silent "no check" would pass --test too).
    const { stdout: list } = await run("xz", ["--robot", "--list", file]);
    expect(list).toMatch(/^file\t.*\tCRC64\t/m);
    const { stdout } = await run("sh", ["-c", `xz -dc "${file}" | sha256sum`]);
    expect(stdout.split(" ")[0]).toBe(createHash("sha256").update(data).digest("hex"));
  }
});
