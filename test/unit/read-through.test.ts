/**
 * One read per small package: the parsers hash a file in one pass and parse its head from that
 * pass's first chunk (src/layout/formats/read-through.ts). These tests count the reads each
 * parser makes and check that the result is the same whatever way the bytes are read.
 */
import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { parseDeb } from "../../src/layout/formats/deb.js";
import { readPacmanPackage } from "../../src/layout/formats/pacman-package.js";
import { READ_CHUNK, readThrough, withHead } from "../../src/layout/formats/read-through.js";
import { parseRpm } from "../../src/layout/formats/rpm-meta.js";
import type { ByteSource } from "../../src/layout/types.js";
import { bufferSource } from "../../src/layout/types.js";
import { buildDeb } from "../support/deb-builder.js";
import { buildPacmanPackage } from "../support/pacman-builder.js";
import { buildSyntheticRpm } from "../support/rpm-builder.js";

/** A source over `bytes` that records every read and hands out copies (as a file handle does). */
function recording(bytes: Uint8Array): ByteSource & { reads: [number, number][] } {
  const reads: [number, number][] = [];
  return {
    reads,
    size: bytes.length,
    read(offset, length) {
      reads.push([offset, length]);
      return Promise.resolve(bytes.slice(offset, Math.min(bytes.length, offset + length)));
    },
  };
}

/** A source whose file is `cut` bytes shorter than its stated size (it shrank after stat). */
function shrunk(bytes: Uint8Array, cut: number): ByteSource {
  const inner = bufferSource(bytes.subarray(0, bytes.length - cut));
  return { size: bytes.length, read: (o, l) => inner.read(o, l) };
}

const CONTROL = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nDescription: hi\n";
/** Text that is n characters long and not all alike (an RPM header holds it as a string). */
const big = (n: number) => randomBytes(n).toString("base64").slice(0, n);

describe("readThrough and withHead", () => {
  it("hands every chunk on in order and keeps the first as the head", async () => {
    const bytes = randomBytes(10_000);
    const seen: Uint8Array[] = [];
    const { head, bytesRead } = await readThrough(bufferSource(bytes), (c) => seen.push(c), 4096);
    expect(seen.map((c) => c.length)).toEqual([4096, 4096, 1808]);
    expect(Buffer.concat(seen).equals(bytes)).toBe(true);
    expect(Buffer.from(head).equals(bytes.subarray(0, 4096))).toBe(true);
    expect(bytesRead).toBe(10_000);
  });

  it("reports a file that ends early as fewer bytes read", async () => {
    const { bytesRead } = await readThrough(shrunk(randomBytes(5000), 100), () => {}, 1024);
    expect(bytesRead).toBe(4900);
  });

  it("reads nothing of an empty source", async () => {
    const source = recording(new Uint8Array(0));
    const { head, bytesRead } = await readThrough(source, () => {});
    expect([head.length, bytesRead, source.reads.length]).toEqual([0, 0, 0]);
  });

  it("answers reads inside the head from memory and the rest from the source", async () => {
    const bytes = randomBytes(3000);
    const source = recording(bytes);
    const cached = withHead(source, bytes.subarray(0, 1000));
    expect(Buffer.from(await cached.read(10, 990)).equals(bytes.subarray(10, 1000))).toBe(true);
    expect(source.reads).toEqual([]);
    expect(Buffer.from(await cached.read(990, 20)).equals(bytes.subarray(990, 1010))).toBe(true);
    expect(source.reads).toEqual([[990, 20]]);
  });

  it("returns exactly what the source would, for any read", async () => {
    const bytes = randomBytes(700);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 700 }),
        fc.integer({ min: 0, max: 800 }),
        fc.integer({ min: 0, max: 800 }),
        async (headLength, offset, length) => {
          const cached = withHead(bufferSource(bytes), bytes.subarray(0, headLength));
          const want = await bufferSource(bytes).read(offset, length);
          expect(Buffer.from(await cached.read(offset, length)).equals(want)).toBe(true);
        },
      ),
    );
  });
});

describe("the parsers read a small package once", () => {
  it("parseDeb", async () => {
    const bytes = buildDeb({ control: CONTROL });
    const source = recording(bytes);
    const meta = await parseDeb(source, "hello.deb");
    expect(source.reads).toEqual([[0, bytes.length]]);
    expect(meta).toEqual(await parseDeb(bufferSource(bytes), "hello.deb"));
  });

  it("parseRpm", async () => {
    const bytes = buildSyntheticRpm({ name: "demo", version: "1", release: "1" });
    const source = recording(bytes);
    const meta = await parseRpm(source, "demo.rpm");
    expect(source.reads).toEqual([[0, bytes.length]]);
    expect(meta.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(meta).toEqual(await parseRpm(bufferSource(bytes), "demo.rpm"));
  });

  for (const compression of ["zst", "xz", "gz"] as const) {
    it(`readPacmanPackage (${compression})`, async () => {
      const { bytes } = buildPacmanPackage({ name: "hello", version: "1-1", compression });
      const source = recording(bytes);
      const meta = await readPacmanPackage(source, "hello.pkg.tar");
      expect(source.reads).toEqual([[0, bytes.length]]);
      expect(meta).toEqual(await readPacmanPackage(bufferSource(bytes), "hello.pkg.tar"));
    });
  }
});

describe("a package larger than one read chunk", () => {
  it("parseDeb reads each chunk once and hashes the whole file", async () => {
    const bytes = buildDeb({
      control: CONTROL,
      files: { "usr/share/big": randomBytes(READ_CHUNK * 2) },
    });
    expect(bytes.length).toBeGreaterThan(READ_CHUNK * 2);
    const source = recording(bytes);
    const meta = await parseDeb(source, "hello.deb");
    expect(source.reads.map(([o]) => o)).toEqual([0, READ_CHUNK, 2 * READ_CHUNK]);
    expect(meta.sha512).toBe(createHash("sha512").update(bytes).digest("hex"));
    expect(meta.size).toBe(bytes.length);
    expect(meta).toEqual(await parseDeb(bufferSource(bytes), "hello.deb"));
  });

  it("parseRpm reads a header that runs past the first chunk from the file", async () => {
    // A description larger than a chunk puts the main header's end beyond the head.
    const bytes = buildSyntheticRpm({
      name: "demo",
      version: "1",
      release: "1",
      description: big(READ_CHUNK + 1000),
    });
    const source = recording(bytes);
    const meta = await parseRpm(source, "demo.rpm");
    expect(meta.description.length).toBe(READ_CHUNK + 1000);
    expect(meta.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(meta).toEqual(await parseRpm(bufferSource(bytes), "demo.rpm"));
    expect(source.reads.length).toBe(3); // two chunks, then the main header once
  });

  it("readPacmanPackage", async () => {
    const { bytes } = buildPacmanPackage({
      name: "hello",
      version: "1-1",
      files: { "usr/share/big": randomBytes(READ_CHUNK * 2) },
    });
    const source = recording(bytes);
    const meta = await readPacmanPackage(source, "hello.pkg.tar.zst");
    expect(meta.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(meta).toEqual(await readPacmanPackage(bufferSource(bytes), "hello.pkg.tar.zst"));
    expect(source.reads.map(([o]) => o)).toEqual([0, READ_CHUNK, 2 * READ_CHUNK]);
  });
});

describe("a file shorter than its stated size", () => {
  it("is refused by parseDeb and parseRpm, naming the file", async () => {
    const deb = buildDeb({ control: CONTROL });
    const rpm = buildSyntheticRpm({ name: "demo", version: "1", release: "1" });
    for (const [promise, name] of [
      [parseDeb(shrunk(deb, 1), "short.deb"), "short.deb"],
      [parseRpm(shrunk(rpm, 1), "short.rpm"), "short.rpm"],
    ] as const) {
      const err = await promise.catch((e: unknown) => e);
      expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID")).toBe(true);
      expect((err as Error).message).toMatch(
        new RegExp(`^${name.replace(".", "\\.")}: .*truncated`),
      );
    }
  });
});
