/**
 * Tiny files whose length and count fields claim gigabytes, decompression bombs, and text
 * shaped to make a backtracking regex quadratic (issue 18, "Parsers under fuzzing"): each must
 * be refused with PACKRAT_PACKAGE_INVALID quickly and without memory in proportion to what it
 * claims. Judged by the fuzz harness (test/fuzz/harness.ts), which measures the time, the
 * growth of array-buffer memory and of peak RSS for each input.
 */
import { execFileSync } from "node:child_process";
import { gzipSync } from "node:zlib";
import { zipSync } from "fflate";
import { describe, expect, it } from "vitest";
import { aptLayout } from "../../src/layout/apt.js";
import {
  encodeHeader,
  int32Entry,
  LEAD_MAGIC,
  LEAD_SIZE,
  stringEntry,
} from "../../src/layout/formats/rpm-header.js";
import { Tag } from "../../src/layout/formats/rpm-tags.js";
import { writeTar } from "../../src/layout/formats/tar.js";
import { xzCompressSync, zstdCompress } from "../../src/layout/formats/compress.js";
import { pacmanLayout } from "../../src/layout/pacman.js";
import { pypiLayout } from "../../src/layout/pypi.js";
import { yumLayout } from "../../src/layout/yum.js";
import { controlText, makeAr, makeTar } from "../support/deb-builder.js";
import type { Bounds, ParseFn } from "./harness.js";
import { judge } from "./harness.js";

const enc = new TextEncoder();
/** Far below any claim made here (≥ 256 MiB), far above what a refusal should cost. */
const BOUNDS: Bounds = { maxMs: 3_000, maxGrowth: 64 << 20 };

async function expectRefused(
  parse: ParseFn,
  bytes: Uint8Array,
  filename: string,
  bounds = BOUNDS,
  /** What the refusal must say (that it is refused for the claim, not by accident). */
  reason?: RegExp,
) {
  const verdict = await judge(parse, { bytes, filename, label: filename }, bounds);
  expect(verdict, `${filename}: ${JSON.stringify(verdict)}`).toMatchObject({
    ok: true,
    outcome: "refused",
  });
  if (reason && verdict.ok) expect(verdict.message).toMatch(reason);
}

async function expectRecord(parse: ParseFn, bytes: Uint8Array, filename: string, bounds = BOUNDS) {
  const verdict = await judge(parse, { bytes, filename, label: filename }, bounds);
  expect(verdict, `${filename}: ${JSON.stringify(verdict)}`).toMatchObject({
    ok: true,
    outcome: "record",
  });
}

const deb: ParseFn = (source, filename) => aptLayout.parse(source, filename);
const rpm: ParseFn = (source, filename) => yumLayout.parse(source, filename);
const pacman: ParseFn = (source, filename) => pacmanLayout.parse(source, filename);
const python: ParseFn = (source, filename) => pypiLayout.parse(source, filename);

const CONTROL = controlText({
  Package: "hello",
  Version: "1.0",
  Architecture: "amd64",
  Description: "d",
});
const DATA = gzipSync(makeTar([{ name: "./", directory: true }]));

function debWith(memberName: string, member: Uint8Array): Uint8Array {
  return makeAr([
    { name: "debian-binary", content: enc.encode("2.0\n") },
    { name: memberName, content: member },
    { name: "data.tar.gz", content: DATA },
  ]);
}

function controlTar(control: string): Uint8Array {
  return makeTar([{ name: "./control", content: enc.encode(control) }]);
}

/** `n` copies of one compressed stream: a file of n × `unit`'s output (gzip, xz and zstd all
 * read concatenated streams as one). */
function repeated(unit: Uint8Array, n: number): Uint8Array {
  return Buffer.concat(Array.from({ length: n }, () => unit));
}

const ZEROS_16M = new Uint8Array(16 << 20);

describe(".deb: length fields and bombs", () => {
  it("an ar member claiming 9,999,999,999 bytes in a 100-byte file", async () => {
    const header = `${"debian-binary".padEnd(16)}${"0".padEnd(12)}${"0".padEnd(6)}${"0".padEnd(6)}${"100644".padEnd(8)}${"9999999999"}\`\n`;
    await expectRefused(
      deb,
      enc.encode(`!<arch>\n${header}2.0\n${"x".repeat(28)}`),
      "ar.deb",
      BOUNDS,
      /claims 9999999999 bytes/,
    );
  });

  it("a control tar entry claiming 8 GiB (octal) and 2^52 bytes (base-256)", async () => {
    for (const [name, write] of [
      ["octal", (h: Uint8Array) => h.set(enc.encode("77777777777\0"), 124)],
      [
        "base-256",
        (h: Uint8Array) => {
          h.fill(0, 124, 136);
          h[124] = 0x80;
          h[129] = 0x10; // 2^52
        },
      ],
    ] as const) {
      const tar = controlTar(CONTROL);
      write(tar);
      tar.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of tar.subarray(0, 512)) sum += b;
      tar.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
      await expectRefused(
        deb,
        debWith("control.tar", tar),
        `tar-${name}.deb`,
        BOUNDS,
        /claims \d+ bytes/,
      );
    }
  });

  it("a gzip bomb: 1 MiB of control.tar.gz that inflates to 1 GiB", async () => {
    const bomb = repeated(gzipSync(ZEROS_16M), 64);
    await expectRefused(
      deb,
      debWith("control.tar.gz", bomb),
      "gzip-bomb.deb",
      BOUNDS,
      /exceeds the limit/,
    );
  });

  it("an xz bomb: control.tar.xz that decodes to 256 MiB", async () => {
    const unit = execFileSync("xz", ["-c", "-6", "--check=crc64"], { input: ZEROS_16M });
    await expectRefused(
      deb,
      debWith("control.tar.xz", repeated(unit, 16)),
      "xz-bomb.deb",
      BOUNDS,
      /exceeds the limit/,
    );
  });

  it("a zstd bomb: control.tar.zst that decodes to 1 GiB", async () => {
    const bomb = repeated(zstdCompress(ZEROS_16M), 64);
    await expectRefused(
      deb,
      debWith("control.tar.zst", bomb),
      "zstd-bomb.deb",
      BOUNDS,
      /exceeds the limit/,
    );
  });

  it("a 10-byte zstd frame whose header claims a 1.9 GiB window or a 2 GiB content size", async () => {
    // Magic, frame descriptor 0x00 (a window byte follows), window byte, then one last raw
    // block of 1 byte. 0xA7: 2^30 + 7 × 2^27 ≈ 1.9 GiB; 0xAF: 2^31 + 7 × 2^28.
    for (const windowByte of [0xa7, 0xaf]) {
      const frame = Uint8Array.from([
        0x28,
        0xb5,
        0x2f,
        0xfd,
        0x00,
        windowByte,
        0x09,
        0x00,
        0x00,
        0x41,
      ]);
      await expectRefused(
        deb,
        debWith("control.tar.zst", frame),
        `zstd-window-${windowByte}.deb`,
        BOUNDS,
        /too much memory/,
      );
    }
    // Single segment (descriptor 0xE0) with an 8-byte content size of 0x7f000000 (≈ 2 GiB).
    const fcs = Uint8Array.from([
      0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0x00, 0x00, 0x00, 0x7f, 0, 0, 0, 0, 0x09, 0x00, 0x00, 0x41,
    ]);
    await expectRefused(
      deb,
      debWith("control.tar.zst", fcs),
      "zstd-fcs.deb",
      BOUNDS,
      /too much memory/,
    );
  });

  it("a control file with a 100,000-blank run takes no quadratic time", async () => {
    for (const blanks of [
      `Package: hello${" ".repeat(100_000)}x\n`,
      `Descr${" \t".repeat(50_000)}x: y\n`,
    ]) {
      const control = `${CONTROL}${blanks}`;
      const verdict = await judge(deb, {
        bytes: debWith("control.tar", controlTar(control)),
        filename: "blanks.deb",
        label: "blanks",
      });
      expect(verdict.ok, JSON.stringify(verdict)).toBe(true);
      expect(verdict.ms).toBeLessThan(1_000);
    }
  });
});

describe("RPM: header counts and sizes", () => {
  function rpmWith(sig: Uint8Array, main?: Uint8Array): Uint8Array {
    const lead = new Uint8Array(LEAD_SIZE);
    lead.set(LEAD_MAGIC, 0);
    lead[4] = 3;
    const parts = [lead, sig];
    if (main) parts.push(new Uint8Array((8 - (sig.length % 8)) % 8), main);
    return Buffer.concat(parts);
  }
  const intro = (il: number, dl: number) => {
    const b = new Uint8Array(16);
    b.set([0x8e, 0xad, 0xe8, 0x01]);
    new DataView(b.buffer).setUint32(8, il);
    new DataView(b.buffer).setUint32(12, dl);
    return b;
  };
  const sig = encodeHeader(Tag.HEADERSIGNATURES, [int32Entry(1000, [1])]);

  it("a signature header claiming 0xffffffff entries, or 65535 entries and a 256 MiB store", async () => {
    await expectRefused(
      rpm,
      rpmWith(intro(0xffffffff, 0xffffffff)),
      "il.rpm",
      BOUNDS,
      /4294967295 index entries/,
    );
    await expectRefused(rpm, rpmWith(intro(0xffff, 0x0fffffff)), "dl.rpm", BOUNDS, /needs bytes/);
  });

  it("a main header claiming 4 GiB of data after a valid signature header", async () => {
    await expectRefused(
      rpm,
      rpmWith(sig, intro(1, 0xffffffff)),
      "main-dl.rpm",
      BOUNDS,
      /4294967295-byte data store/,
    );
  });

  it("index entries whose counts claim 2^32 - 1 strings or integers", async () => {
    for (const [tag, entry] of [
      [Tag.NAME, stringEntry(Tag.NAME, "x")],
      [Tag.DIRINDEXES, int32Entry(Tag.DIRINDEXES, [0])],
    ] as const) {
      const main = encodeHeader(Tag.HEADERIMMUTABLE, [
        stringEntry(Tag.NAME, "x"),
        stringEntry(Tag.VERSION, "1"),
        stringEntry(Tag.RELEASE, "1"),
        stringEntry(Tag.BASENAMES, "b"),
        entry,
      ]);
      // Set the count of `tag`'s index entry to 0xffffffff (and its type to STRING_ARRAY for
      // a string, so that the count is read at all).
      const dv = new DataView(main.buffer, main.byteOffset, main.byteLength);
      const il = dv.getUint32(8);
      for (let i = 0; i < il; i++) {
        const at = 16 + i * 16;
        if (dv.getUint32(at) === tag) {
          if (tag === Tag.NAME) dv.setUint32(at + 4, 8);
          dv.setUint32(at + 12, 0xffffffff);
        }
      }
      await expectRefused(
        rpm,
        rpmWith(sig, main),
        `count-${tag}.rpm`,
        BOUNDS,
        /4294967295 (strings|integers)/,
      );
    }
  });
});

describe("pacman: tar sizes and bombs", () => {
  const pkginfo = enc.encode("pkgname = hello\npkgver = 1-1\n");
  const tar = () => writeTar([{ name: ".PKGINFO", content: pkginfo, mtime: 0 }]);

  it("a .PKGINFO entry claiming 8 GiB, in a 2 KiB plain tar", async () => {
    const t = tar();
    t.set(enc.encode("77777777777\0"), 124);
    t.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of t.subarray(0, 512)) sum += b;
    t.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    await expectRefused(pacman, t, "size-x86_64.pkg.tar", BOUNDS, /over the limit/);
  });

  it("zstd and gzip bombs (1 MiB for 16 GiB or 1 GiB) are cut off at the cap", async () => {
    // A member claiming 16 GiB (base-256 size) whose data is the bomb: the reader skips it
    // while the decoder runs, until the cap (max(256 MiB, 100 × size)) stops it. The decoders
    // stream, so memory stays flat.
    const big = writeTar([{ name: "usr/big", content: new Uint8Array(1), mtime: 0 }]).subarray(
      0,
      512,
    );
    big.fill(0, 124, 136);
    big[124] = 0x80;
    big[131] = 0x04; // 2^34
    fixChecksum(big);
    const prefix = Buffer.concat([tar().subarray(0, 1024), big]);
    // zstd: 1 MiB for 16 GiB; gzip (1000:1 at best): 1 MiB for 1 GiB. Both under the cap's
    // 100 × size, so the fixed 256 MiB is what stops them.
    for (const [suffix, pack, copies] of [
      ["zst", zstdCompress, 1024],
      ["gz", (b: Uint8Array) => gzipSync(b), 64],
    ] as const) {
      const bomb = Buffer.concat([pack(prefix), repeated(pack(ZEROS_16M), copies)]);
      await expectRefused(
        pacman,
        bomb,
        `bomb.pkg.tar.${suffix}`,
        { ...BOUNDS, maxMs: 20_000 },
        /exceeds the limit of 268435456/,
      );
    }
  });

  it("an xz file whose index understates what its blocks decode to", async () => {
    await expectRefused(pacman, lyingXz(), "lie.pkg.tar.xz", BOUNDS, /the index says 1024/);
  });

  it("a .PKGINFO with a 100,000-space run takes no quadratic time", async () => {
    const text = `pkgname = hello\npkgver = 1-1\npkgdesc = a${" ".repeat(100_000)}b\n`;
    const bytes = writeTar([{ name: ".PKGINFO", content: enc.encode(text), mtime: 0 }]);
    const verdict = await judge(pacman, { bytes, filename: "spaces.pkg.tar", label: "spaces" });
    expect(verdict, JSON.stringify(verdict)).toMatchObject({ ok: true, outcome: "record" });
    expect(verdict.ms).toBeLessThan(1_000);
  });
});

function fixChecksum(header: Uint8Array): void {
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of header.subarray(0, 512)) sum += b;
  header.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
}

let lying: Uint8Array | undefined;
/** 128 MiB of zeros in one xz block (LZMA2 chunks of 2 MiB each), whose index claims 1 KiB. */
function lyingXz(): Uint8Array {
  lying ??= lieInXzIndex(
    execFileSync("xz", ["-c", "-0", "--check=none"], { input: new Uint8Array(128 << 20) }),
    1024,
  );
  return lying;
}

/**
 * Rewrite the (only) record of a single-block xz stream's index to claim `size` uncompressed
 * bytes, with the index CRC32 recomputed: the stream's blocks still decode to the original.
 */
function lieInXzIndex(stream: Uint8Array, size: number): Uint8Array {
  const footer = stream.length - 12;
  const dv = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const indexSize = (dv.getUint32(footer + 4, true) + 1) * 4;
  const indexStart = footer - indexSize;
  // Index: 0x00, record count (1), unpadded size (vli), uncompressed size (vli), padding, CRC.
  let p = indexStart + 2;
  const vli = () => {
    const start = p;
    while ((stream[p]! & 0x80) !== 0) p++;
    p++;
    return stream.subarray(start, p);
  };
  const unpadded = vli();
  vli();
  const encodeVli = (n: number) => {
    const out: number[] = [];
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    out.push(n);
    return out;
  };
  const body = [0x00, 0x01, ...unpadded, ...encodeVli(size)];
  while (body.length % 4 !== 0) body.push(0);
  const crc = crc32(Uint8Array.from(body));
  const index = Buffer.alloc(body.length + 4);
  index.set(body);
  index.writeUInt32LE(crc, body.length);
  const newFooter = Buffer.from(stream.subarray(footer));
  newFooter.writeUInt32LE(index.length / 4 - 1, 4);
  newFooter.writeUInt32LE(crc32(newFooter.subarray(4, 10)), 0);
  return Buffer.concat([stream.subarray(0, indexStart), index, newFooter]);
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe("Python: zip directory sizes", () => {
  const wheel = () =>
    zipSync({ "x-1.dist-info/METADATA": enc.encode("Name: x\nVersion: 1\n\n") }, { level: 6 });
  const eocdOf = (z: Uint8Array) => {
    const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
    for (let i = z.length - 22; i >= 0; i--) if (dv.getUint32(i, true) === 0x06054b50) return i;
    throw new Error("no end record");
  };

  it("an end record claiming a 4 GiB central directory", async () => {
    const z = wheel();
    const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
    dv.setUint32(eocdOf(z) + 12, 0xfffffff0, true);
    await expectRefused(
      python,
      z,
      "x-1-py3-none-any.whl",
      BOUNDS,
      /central directory of 4294967280 bytes is too large/,
    );
  });

  it("a zip64 end record claiming 2^52 entries and bytes", async () => {
    const z = wheel();
    const eocd = eocdOf(z);
    const z64 = Buffer.alloc(56 + 20);
    z64.writeUInt32LE(0x06064b50, 0);
    z64.writeBigUInt64LE(2n ** 52n, 32);
    z64.writeBigUInt64LE(2n ** 52n, 40);
    z64.writeBigUInt64LE(0n, 48);
    z64.writeUInt32LE(0x07064b50, 56);
    z64.writeBigUInt64LE(BigInt(eocd), 56 + 8);
    const end = Buffer.from(z.subarray(eocd));
    end.writeUInt16LE(0xffff, 10);
    end.writeUInt32LE(0xffffffff, 12);
    const bytes = Buffer.concat([z.subarray(0, eocd), z64, end]);
    await expectRefused(
      python,
      bytes,
      "x-1-py3-none-any.whl",
      BOUNDS,
      /central directory of 4503599627370496 bytes/,
    );
  });

  it("a METADATA entry claiming 4 GiB, or 2^52 bytes in its zip64 extra field", async () => {
    const z = wheel();
    const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
    const cd = dv.getUint32(eocdOf(z) + 16, true);
    dv.setUint32(cd + 24, 0xfffffff0, true);
    await expectRefused(python, z, "x-1-py3-none-any.whl", BOUNDS, /larger than 16777216 bytes/);

    // The same entry with both sizes saturated and a zip64 extra field (id 1) of 2^52 each:
    // the directory entry grows by 20 bytes, so the end record's size grows with it.
    const z2 = wheel();
    const eocd = eocdOf(z2);
    const v2 = new DataView(z2.buffer, z2.byteOffset, z2.byteLength);
    const at = v2.getUint32(eocd + 16, true);
    const nameLen = v2.getUint16(at + 28, true);
    const extraLen = v2.getUint16(at + 30, true);
    const entry = Buffer.from(z2.subarray(at, at + 46 + nameLen + extraLen));
    entry.writeUInt32LE(0xffffffff, 20);
    entry.writeUInt32LE(0xffffffff, 24);
    entry.writeUInt16LE(extraLen + 20, 30);
    const extra = Buffer.alloc(20);
    extra.writeUInt16LE(1, 0);
    extra.writeUInt16LE(16, 2);
    extra.writeBigUInt64LE(2n ** 52n, 4);
    extra.writeBigUInt64LE(2n ** 52n, 12);
    const end = Buffer.from(z2.subarray(eocd));
    end.writeUInt32LE(end.readUInt32LE(12) + 20, 12);
    const rest = z2.subarray(at + entry.length, eocd);
    const bytes = Buffer.concat([z2.subarray(0, at), entry, extra, rest, end]);
    await expectRefused(
      python,
      bytes,
      "x-1-py3-none-any.whl",
      BOUNDS,
      /larger than 16777216 bytes/,
    );
  });

  it("a deflate bomb: METADATA that inflates to 32 MiB (twice the cap) while its sizes say 100 bytes", async () => {
    const big = new Uint8Array(32 << 20);
    const z = zipSync({ "x-1.dist-info/METADATA": big }, { level: 1 });
    const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
    const cd = dv.getUint32(eocdOf(z) + 16, true);
    dv.setUint32(cd + 24, 100, true);
    await expectRefused(
      python,
      z,
      "x-1-py3-none-any.whl",
      BOUNDS,
      /larger than 16777216|Cannot create a Buffer larger/,
    );
  }, 60_000);

  it("an sdist .tar.xz whose index understates its blocks", async () => {
    await expectRefused(python, lyingXz(), "x-1.tar.xz", BOUNDS, /the index says 1024/);
  });

  it("seeds parse (the cases above differ from good files only in what they claim)", async () => {
    await expectRecord(python, wheel(), "x-1-py3-none-any.whl");
    await expectRecord(
      deb,
      debWith("control.tar.xz", xzCompressSync(controlTar(CONTROL))),
      "ok.deb",
    );
  });
});
