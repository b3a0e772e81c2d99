/**
 * writeTempFiles (src/sync/disk.ts): a generation's new files written together and fsynced as
 * one batch. Every file comes back whole under its temp path, and a failure leaves no temp file.
 */
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TMP_DIR, eachLimit, writeTempFiles } from "../../src/sync/disk.js";

describe("writeTempFiles", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "packrat-temp-files-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("writes every file whole, in the order given", async () => {
    const files = Array.from({ length: 300 }, (_, i) => ({
      hint: `pacman/x86_64/pkg-${i}.pkg.tar.zst.sig`,
      content: new Uint8Array(100 + i).fill(i % 251),
    }));
    const tmps = await writeTempFiles(root, files);
    expect(tmps).toHaveLength(files.length);
    expect(new Set(tmps).size).toBe(files.length);
    for (const [i, tmp] of tmps.entries()) {
      expect(Buffer.from(await readFile(tmp)).equals(Buffer.from(files[i]!.content))).toBe(true);
    }
    expect(await readdir(path.join(root, TMP_DIR))).toHaveLength(files.length);
  });

  it("leaves no temp file behind when one write fails, and names that file", async () => {
    const files: { hint: string; content: Uint8Array }[] = Array.from({ length: 50 }, (_, i) => ({
      hint: `repo/file-${i}`,
      content: new Uint8Array(10),
    }));
    // Not bytes: the write of this one throws, after others have been written.
    files[37] = { hint: "repo/broken", content: 42 as unknown as Uint8Array };
    await expect(writeTempFiles(root, files)).rejects.toThrow(/writing repo\/broken/);
    expect(await readdir(path.join(root, TMP_DIR))).toEqual([]);
  });
});

describe("eachLimit", () => {
  it("never runs more than the limit at once, runs everything, and throws the first error", async () => {
    let running = 0;
    let most = 0;
    const seen: number[] = [];
    await eachLimit([...Array(40).keys()], 5, async (n) => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => setImmediate(resolve));
      seen.push(n);
      running--;
    });
    expect(most).toBe(5);
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(40).keys()]);
    await expect(
      eachLimit([1, 2, 3], 2, (n) =>
        n === 2 ? Promise.reject(new Error("two")) : Promise.resolve(),
      ),
    ).rejects.toThrow("two");
  });
});
