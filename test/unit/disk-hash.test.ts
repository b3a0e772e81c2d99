import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  sha256File,
  sha256FileInfo,
  statAndHashTinySync,
  statInfoSync,
} from "../../src/sync/disk.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "packrat-disk-hash-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("sha256File and sha256FileInfo", () => {
  it("hash empty, small, just-below, just-above the synchronous limit and large files", async () => {
    // 256 KiB is where the synchronous path ends; 1 MiB where the single read ends.
    for (const size of [0, 1, 4096, 256 * 1024, 256 * 1024 + 1, (1 << 20) + 7, 3 << 20]) {
      const bytes = randomBytes(size);
      const file = join(dir, `f${size}`);
      writeFileSync(file, bytes);
      expect(await sha256File(file)).toBe(sha(bytes));
      expect(await sha256FileInfo(file)).toEqual({ size, sha256: sha(bytes) });
    }
  });

  it("hash each small file on its own (the reused buffer leaks nothing between files)", async () => {
    const long = join(dir, "long");
    const short = join(dir, "short");
    writeFileSync(long, Buffer.alloc(10_000, 0x61));
    writeFileSync(short, "abc");
    expect(await sha256File(long)).toBe(sha(Buffer.alloc(10_000, 0x61)));
    expect(await sha256File(short)).toBe(sha(Buffer.from("abc")));
    expect((await sha256FileInfo(short))?.sha256).toBe(sha(Buffer.from("abc")));
  });

  it("sha256FileInfo answers null for what statInfo does not call a file, without blocking", async () => {
    writeFileSync(join(dir, "target"), "x");
    symlinkSync(join(dir, "target"), join(dir, "link"));
    mkdirSync(join(dir, "sub"));
    execFileSync("mkfifo", [join(dir, "fifo")]);
    expect(await sha256FileInfo(join(dir, "missing"))).toBeNull();
    expect(await sha256FileInfo(join(dir, "link"))).toBeNull();
    expect(await sha256FileInfo(join(dir, "sub"))).toBeNull();
    // A FIFO with no writer: opening it for reading would wait forever without O_NONBLOCK.
    expect(await sha256FileInfo(join(dir, "fifo"))).toBeNull();
    await expect(sha256FileInfo(join(dir, "target", "below"))).rejects.toMatchObject({
      code: "ENOTDIR",
    });
  });

  it("statAndHashTinySync sees what statInfoSync and sha256File see, from one open", () => {
    for (const size of [0, 3, 256 * 1024, 256 * 1024 + 1]) {
      const bytes = randomBytes(size);
      const file = join(dir, `g${size}`);
      writeFileSync(file, bytes);
      const seen = statAndHashTinySync(file);
      expect(seen.stat).toEqual(statInfoSync(file));
      // Past the synchronous limit the caller hashes it (sha256File).
      expect(seen.sha256).toBe(size <= 256 * 1024 ? sha(bytes) : null);
    }
    writeFileSync(join(dir, "target"), "x");
    symlinkSync(join(dir, "target"), join(dir, "link"));
    mkdirSync(join(dir, "sub"));
    execFileSync("mkfifo", [join(dir, "fifo")]);
    for (const name of ["missing", "link", "sub", "fifo"]) {
      expect(statInfoSync(join(dir, name)), name).toBeNull();
      expect(statAndHashTinySync(join(dir, name)), name).toEqual({ stat: null, sha256: null });
    }
    // A file where a directory should be: an error for both (the observer fails that path).
    const below = join(dir, "target", "below");
    expect(() => statInfoSync(below)).toThrow(/ENOTDIR/);
    expect(() => statAndHashTinySync(below)).toThrow(/ENOTDIR/);
  });
});
