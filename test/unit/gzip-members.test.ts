import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  CHUNK_MODULUS,
  GzipMemberCache,
  chunkItems,
  type ChunkItem,
} from "../../src/layout/formats/gzip-members.js";

const item = (i: number): ChunkItem => {
  const key = createHash("sha256").update(`pkg${i}`).digest("hex");
  return { key, bytes: Buffer.from(`Package: pkg${i}\nSHA256: ${key}\n\n`) };
};
const items = Array.from({ length: 3000 }, (_, i) => item(i));
const plainOf = (xs: readonly ChunkItem[]) => Buffer.concat(xs.map((x) => x.bytes));

describe("content-defined chunks", () => {
  it("cover every item in order, about CHUNK_MODULUS items each", () => {
    const chunks = chunkItems(items);
    expect(chunks.flat()).toEqual(items);
    expect(chunks.length).toBeGreaterThan(items.length / CHUNK_MODULUS / 2);
    expect(chunks.length).toBeLessThan((items.length / CHUNK_MODULUS) * 2);
  });
  it("an insertion changes one chunk and keeps every other boundary", () => {
    const before = chunkItems(items).map((c) => c.map((x) => x.key).join());
    const inserted = [...items.slice(0, 1500), item(99999), ...items.slice(1500)];
    const after = chunkItems(inserted).map((c) => c.map((x) => x.key).join());
    const changed = after.filter((c) => !before.includes(c));
    expect(changed.length).toBeGreaterThanOrEqual(1);
    expect(changed.length).toBeLessThanOrEqual(2);
    expect(before.filter((c) => !after.includes(c)).length).toBe(1);
  });
});

describe("GzipMemberCache", () => {
  it("writes members that gunzip to the whole index", async () => {
    const cache = new GzipMemberCache();
    const gz = await cache.compress(items);
    expect(Buffer.from(gunzipSync(gz)).equals(plainOf(items))).toBe(true);
    expect(cache.lastCompressed).toBe(chunkItems(items).length);
  });
  it("compresses only the changed chunk in the next generation, and drops unused members", async () => {
    const cache = new GzipMemberCache();
    await cache.compress(items);
    const next = [...items.slice(0, 700), item(123456), ...items.slice(700)];
    const gz = await cache.compress(next);
    expect(cache.lastCompressed).toBeLessThanOrEqual(2);
    expect(Buffer.from(gunzipSync(gz)).equals(plainOf(next))).toBe(true);
    // Back to the first list: the old chunk was dropped, so it is compressed again.
    await cache.compress(items);
    expect(cache.lastCompressed).toBe(1);
  });
  it("writes a valid empty gzip file for an empty index", async () => {
    const gz = await new GzipMemberCache().compress([]);
    expect(gunzipSync(gz).length).toBe(0);
  });
});

describe("items that stand alone", () => {
  it("get a chunk of their own, so a changing header recompresses only itself", async () => {
    const header = (n: number): ChunkItem => ({
      key: `header ${n}`,
      bytes: Buffer.from(`<metadata packages="${n}">\n`),
      alone: true,
    });
    const chunks = chunkItems([header(3), ...items.slice(0, 100), header(4)]);
    expect(chunks[0]).toEqual([header(3)]);
    expect(chunks.at(-1)).toEqual([header(4)]);
    const cache = new GzipMemberCache();
    await cache.compress([header(1), ...items]);
    await cache.compress([header(2), ...items]);
    expect(cache.lastCompressed).toBe(1);
  });
});
