/**
 * The xz decoder (liblzma through compress.ts) against files the real xz writes with every
 * option that changes the container: threads and blocks, check types, BCJ and delta filters,
 * presets, concatenated streams with padding. Each decodes to the input, and one byte less of
 * room is refused as a bomb. And the encoder: files xz-utils reads, the same bytes each time.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { decompress, xzCompress } from "../../src/layout/formats/compress.js";
import { FormatError } from "../../src/layout/formats/format-error.js";

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

const variants: string[][] = [
  [],
  ["-T2", "--block-size=500000"],
  ["--check=none"],
  ["--check=crc32"],
  ["--check=sha256"],
  ["-0"],
  ["-9e"],
  ["--x86", "--lzma2=preset=6"],
  ["--delta=dist=4", "--lzma2"],
];

for (const opts of variants) {
  it(`decodes \`xz ${opts.join(" ")}\` output, and not one byte over the cap`, async () => {
    const out = path.join(dir, `out${opts.join("")}.xz`);
    await run("sh", ["-c", `xz -c ${opts.join(" ")} "${path.join(dir, "in")}" > "${out}"`]);
    const xzed = new Uint8Array(await readFile(out));
    await expect(decompress(xzed, "xz", input.length - 1)).rejects.toThrow(/exceeds the limit/);
    expect(Buffer.from(await decompress(xzed, "xz", input.length)).equals(input)).toBe(true);
    // A flipped byte in the middle: liblzma's integrity check catches it (with none, only a
    // flip that breaks the LZMA2 data would be caught).
    if (!opts.includes("--check=none")) {
      const bad = Uint8Array.from(xzed);
      bad[bad.length >> 1]! ^= 0x55;
      await expect(decompress(bad, "xz", 1 << 30)).rejects.toBeInstanceOf(FormatError);
    }
  });
}

it("decodes concatenated streams with stream padding, as xz does", async () => {
  await run("sh", ["-c", `xz -c "${path.join(dir, "in")}" > "${path.join(dir, "one.xz")}"`]);
  const one = await readFile(path.join(dir, "one.xz"));
  const two = new Uint8Array(Buffer.concat([one, Buffer.alloc(8), one]));
  const ours = await decompress(two, "xz", 2 * input.length);
  // What xz itself decodes from the same bytes.
  await writeFile(path.join(dir, "two.xz"), two);
  const { stdout } = await run("sh", ["-c", `xz -dc "${path.join(dir, "two.xz")}" | wc -c`]);
  expect(Number(stdout.trim())).toBe(2 * input.length);
  expect(ours.length).toBe(2 * input.length);
});

it("writes xz files the real xz decodes, the same bytes for the same input", async () => {
  for (const [name, data] of [
    ["empty", new Uint8Array(0)],
    ["mixed", new Uint8Array(input)],
    ["text", new TextEncoder().encode("Package: hello\nVersion: 1.0\n\n".repeat(50_000))],
  ] as const) {
    const file = path.join(dir, `ours-${name}.xz`);
    const packed = await xzCompress(data);
    expect(Buffer.from(await xzCompress(data)).equals(Buffer.from(packed))).toBe(true);
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
