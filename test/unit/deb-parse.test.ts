import fc from "fast-check";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import type { PackratError } from "../../src/errors.js";
import { isPackratError } from "../../src/errors.js";
import { readArMembers } from "../../src/layout/formats/ar.js";
import { decompress } from "../../src/layout/formats/compress.js";
import { parseDeb } from "../../src/layout/formats/deb.js";
import {
  normalizeValue,
  parseControlStanza,
  renderStanza,
} from "../../src/layout/formats/deb-control.js";
import { FormatError } from "../../src/layout/formats/format-error.js";
import { readTar } from "../../src/layout/formats/tar.js";
import { bufferSource } from "../../src/layout/types.js";
import { buildDeb, compressWith, makeAr, makeTar } from "../support/deb-builder.js";

const enc = new TextEncoder();
const CONTROL =
  "Package: hello\nVersion: 1:2.0~rc1-3\nArchitecture: amd64\nMaintainer: T <t@example.com>\n" +
  "Depends: libc6 (>= 2.3)\nDescription: greets\n long text\n .\n   indented\n";

async function expectInvalid(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  const err = await parseDeb(bufferSource(bytes), "bad.deb").catch((e: unknown) => e);
  expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID")).toBe(true);
  expect((err as PackratError).message).toMatch(/^bad\.deb: /);
  expect((err as PackratError).message).toMatch(pattern);
}

/** An ar archive of these members, plus an empty data.tar.gz unless `data` is false. */
function debWithMembers(
  members: { name: string; content: Uint8Array }[],
  { data = true }: { data?: boolean } = {},
): Uint8Array {
  const dataMember = { name: "data.tar.gz", content: gzipSync(makeTar([])) };
  return makeAr(data ? [...members, dataMember] : members);
}

const binary = { name: "debian-binary", content: enc.encode("2.0\n") };
const controlTar = (control: string) =>
  makeTar([
    { name: "./", directory: true },
    { name: "./control", content: enc.encode(control) },
  ]);

describe("parseDeb", () => {
  for (const compression of ["gzip", "xz", "zstd", "none"] as const) {
    it(`reads control.tar with ${compression} compression, fields in order`, async () => {
      const bytes = buildDeb({ control: CONTROL, compression });
      const meta = await parseDeb(bufferSource(bytes), "hello.deb");
      expect(meta.controlCompression).toBe(compression);
      expect(meta.control.map(([n]) => n)).toEqual([
        "Package",
        "Version",
        "Architecture",
        "Maintainer",
        "Depends",
        "Description",
      ]);
      expect(meta.control[5]).toEqual(["Description", "greets\n long text\n .\n   indented"]);
      expect(meta.size).toBe(bytes.length);
      const { createHash } = await import("node:crypto");
      expect(meta.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
      expect(meta.md5).toBe(createHash("md5").update(bytes).digest("hex"));
      expect(meta.sha1).toBe(createHash("sha1").update(bytes).digest("hex"));
      expect(meta.sha512).toBe(createHash("sha512").update(bytes).digest("hex"));
      expect(JSON.parse(JSON.stringify(meta))).toEqual(meta);
    });
  }

  it("accepts a control file stored without ./", async () => {
    const tar = makeTar([{ name: "control", content: enc.encode(CONTROL) }]);
    const bytes = debWithMembers([binary, { name: "control.tar.gz", content: gzipSync(tar) }]);
    const meta = await parseDeb(bufferSource(bytes), "x.deb");
    expect(meta.control[0]).toEqual(["Package", "hello"]);
  });

  it("skips _-prefixed members before control.tar, as dpkg does", async () => {
    const bytes = debWithMembers([
      binary,
      { name: "_gpgorigin", content: enc.encode("sig") },
      { name: "control.tar.gz", content: gzipSync(controlTar(CONTROL)) },
    ]);
    await expect(parseDeb(bufferSource(bytes), "x.deb")).resolves.toMatchObject({ format: "deb" });
  });

  it("rejects garbage", () =>
    expectInvalid(enc.encode("hello world, not a deb"), /not an ar archive/));
  it("rejects an empty file", () => expectInvalid(new Uint8Array(0), /not an ar archive/));
  it("rejects truncation", async () => {
    const bytes = buildDeb({ control: CONTROL });
    await expectInvalid(bytes.subarray(0, bytes.length - 10), /truncated/);
    await expectInvalid(bytes.subarray(0, 30), /truncated member header/);
  });
  it("rejects a member size beyond the file", async () => {
    const bytes = buildDeb({ control: CONTROL });
    const text = new TextDecoder("latin1").decode(bytes.subarray(8, 68));
    const patched = new Uint8Array(bytes);
    patched.set(enc.encode(text.slice(0, 48) + "9999999999" + "`\n"), 8);
    await expectInvalid(patched, /claims 9999999999 bytes/);
  });
  it("rejects a non-numeric member size", async () => {
    const patched = new Uint8Array(buildDeb({ control: CONTROL }));
    patched.set(enc.encode("12x4      "), 8 + 48);
    await expectInvalid(patched, /bad size/);
  });
  it("rejects a missing debian-binary", () =>
    expectInvalid(
      debWithMembers([{ name: "control.tar.gz", content: gzipSync(controlTar(CONTROL)) }]),
      /expected "debian-binary"/,
    ));
  it("rejects an unsupported format version", () =>
    expectInvalid(
      debWithMembers([
        { name: "debian-binary", content: enc.encode("3.0\n") },
        { name: "control.tar.gz", content: gzipSync(controlTar(CONTROL)) },
      ]),
      /debian-binary says/,
    ));
  it("rejects a missing control member", () =>
    expectInvalid(
      debWithMembers([binary, { name: "data.tar.gz", content: gzipSync(makeTar([])) }]),
      /no control\.tar member/,
    ));
  it("rejects a file without data.tar (cut at a member boundary)", () =>
    expectInvalid(
      debWithMembers([binary, { name: "control.tar.gz", content: gzipSync(controlTar(CONTROL)) }], {
        data: false,
      }),
      /no data\.tar member after control\.tar\.gz/,
    ));
  it("rejects an unknown compression", () =>
    expectInvalid(
      debWithMembers([binary, { name: "control.tar.bz2", content: enc.encode("BZh9") }]),
      /unknown control member compression "control\.tar\.bz2"/,
    ));
  it("rejects a control.tar without control", () =>
    expectInvalid(
      debWithMembers([
        binary,
        {
          name: "control.tar.gz",
          content: gzipSync(makeTar([{ name: "./md5sums", content: enc.encode("") }])),
        },
      ]),
      /has no \.\/control file/,
    ));
  it("rejects corrupt compressed data", async () => {
    for (const [name, content] of [
      ["control.tar.gz", enc.encode("\x1f\x8b garbage")],
      ["control.tar.xz", enc.encode("\xfd7zXZ\0 garbage")],
      ["control.tar.zst", new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3])],
    ] as const) {
      await expectInvalid(debWithMembers([binary, { name, content }]), /./);
    }
  });
  it("rejects a control file missing Package/Version/Architecture", async () => {
    const tar = controlTar("Version: 1\nArchitecture: all\n");
    await expectInvalid(
      debWithMembers([binary, { name: "control.tar", content: tar }]),
      /no Package field/,
    );
    const tar2 = controlTar("Package: a b\nVersion: 1\nArchitecture: all\n");
    await expectInvalid(
      debWithMembers([binary, { name: "control.tar", content: tar2 }]),
      /malformed Package/,
    );
  });
  it("rejects a control file that is not a stanza", async () => {
    const tar = controlTar("Package hello\n");
    await expectInvalid(
      debWithMembers([binary, { name: "control.tar", content: tar }]),
      /expected "Field: value"/,
    );
    const dup = controlTar("Package: a\npackage: b\n");
    await expectInvalid(
      debWithMembers([binary, { name: "control.tar", content: dup }]),
      /duplicate field/,
    );
  });
  for (const compression of ["gzip", "xz", "zstd", "none"] as const) {
    it(`cuts off a ${compression} decompression bomb`, async () => {
      // 24 MiB of zeros inside a tar entry, beyond the 16 MiB cap.
      const big = new Uint8Array(24 * 1024 * 1024);
      const tar = makeTar([
        { name: "./control", content: enc.encode(CONTROL) },
        { name: "./bomb", content: big },
      ]);
      const packed = compressWith(tar, compression);
      const bytes = debWithMembers([
        binary,
        {
          name: `control.tar${compression === "none" ? "" : compression === "gzip" ? ".gz" : compression === "xz" ? ".xz" : ".zst"}`,
          content: packed,
        },
      ]);
      await expectInvalid(bytes, /exceeds the limit|more than the \d+ allowed/);
    });
  }
  it("gives a PackratError or a record for arbitrary bytes, never another exception", async () => {
    const valid = buildDeb({ control: CONTROL, compression: "gzip" });
    const arbitrary = fc.oneof(
      fc.uint8Array({ maxLength: 2048 }),
      // Mutations of a valid .deb reach deeper than random bytes.
      fc
        .tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length))
        .map(([at, byte, cut]) => {
          const copy = new Uint8Array(valid.subarray(0, Math.max(cut, at + 1)));
          copy[at] = byte;
          return copy;
        }),
      fc.uint8Array({ maxLength: 512 }).map((tail) => {
        const prefix = enc.encode(
          "!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n",
        );
        const out = new Uint8Array(prefix.length + tail.length);
        out.set(prefix);
        out.set(tail, prefix.length);
        return out;
      }),
    );
    await fc.assert(
      fc.asyncProperty(arbitrary, async (bytes) => {
        try {
          const meta = await parseDeb(bufferSource(bytes), "fuzz.deb");
          expect(meta.format).toBe("deb");
        } catch (err) {
          if (!isPackratError(err, "PACKRAT_PACKAGE_INVALID")) throw err;
        }
      }),
      { numRuns: 400 },
    );
  });
  it("fuzzes each compressed member kind too", async () => {
    for (const compression of ["xz", "zstd", "gzip"] as const) {
      const valid = buildDeb({ control: CONTROL, compression });
      await fc.assert(
        fc.asyncProperty(
          fc.nat(valid.length - 1),
          fc.integer({ min: 0, max: 255 }),
          async (at, byte) => {
            const copy = new Uint8Array(valid);
            copy[at] = byte;
            try {
              await parseDeb(bufferSource(copy), "fuzz.deb");
            } catch (err) {
              if (!isPackratError(err, "PACKRAT_PACKAGE_INVALID")) throw err;
            }
          },
        ),
        { numRuns: 300 },
      );
    }
  });
});

describe("ar", () => {
  it("lists members with offsets and sizes, padding odd sizes", async () => {
    const ar = makeAr([
      { name: "a", content: enc.encode("odd") },
      { name: "b", content: enc.encode("even") },
    ]);
    const members = await readArMembers(bufferSource(ar));
    expect(members).toEqual([
      { name: "a", offset: 68, size: 3 },
      { name: "b", offset: 68 + 4 + 60, size: 4 },
    ]);
  });
});

describe("tar", () => {
  it("reads names, types and data, and checks header checksums", () => {
    const tar = makeTar([
      { name: "./", directory: true },
      { name: "./control", content: enc.encode("x") },
    ]);
    const entries = readTar(tar);
    expect(entries.map((e) => [e.name, e.type, e.size])).toEqual([
      ["./", "directory", 0],
      ["./control", "file", 1],
    ]);
    const bad = new Uint8Array(tar);
    bad[0] = 0x41;
    expect(() => readTar(bad)).toThrow(/checksum/);
    expect(() => readTar(tar.subarray(0, 700))).toThrow(/claims 1 bytes|truncated/);
  });
  it("applies GNU long names and pax paths", () => {
    const long = "./" + "d/".repeat(60) + "control";
    const gnu = makeTar([
      { name: "././@LongLink", content: enc.encode(long + "\0") },
      { name: "./short", content: enc.encode("1") },
    ]);
    // Make the first entry a GNU "L" entry (makeTar writes "0").
    gnu[156] = "L".charCodeAt(0);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : gnu[i]!;
    gnu.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    expect(readTar(gnu).map((e) => e.name)).toEqual([long]);

    const record = ` path=${long}\n`;
    const len = String(record.length + String(record.length).length);
    const pax = makeTar([
      { name: "./PaxHeader", content: enc.encode(len + record) },
      { name: "./short", content: enc.encode("1") },
    ]);
    pax[156] = "x".charCodeAt(0);
    sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : pax[i]!;
    pax.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    expect(readTar(pax).map((e) => e.name)).toEqual([long]);
  });
});

describe("parsers never throw anything but their own errors", () => {
  it("tar: entries or FormatError", () => {
    const valid = makeTar([{ name: "./control", content: enc.encode(CONTROL) }]);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }),
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })).map(([at, b]) => {
            const copy = new Uint8Array(valid);
            copy[at] = b;
            return copy;
          }),
        ),
        (bytes) => {
          try {
            readTar(bytes);
          } catch (err) {
            expect(err).toBeInstanceOf(FormatError);
            expect((err as FormatError).code).toBe("tar");
          }
        },
      ),
      { numRuns: 500 },
    );
  });
  it("control stanza: fields or FormatError", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        try {
          const fields = parseControlStanza(text);
          renderStanza(fields);
        } catch (err) {
          expect(err).toBeInstanceOf(FormatError);
        }
      }),
      { numRuns: 1000 },
    );
  });
  it("decompress: bytes or FormatError, for every compression", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 512 }),
        fc.constantFrom("gzip", "xz", "zstd", "none" as const),
        async (bytes, c) => {
          try {
            await decompress(bytes, c, 1 << 20);
          } catch (err) {
            expect(err).toBeInstanceOf(FormatError);
            expect((err as FormatError).code).toBe("compress");
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("compress", () => {
  it("round-trips xz of any size exactly at the cap", async () => {
    for (const n of [0, 1, 1000, 3_000_000]) {
      const data = new Uint8Array(n).map((_, i) => (i * 7919) % 251);
      const out = await decompress(compressWith(data, "xz"), "xz", n);
      expect(Buffer.from(out).equals(data)).toBe(true);
    }
  });
  it("refuses output one byte over the cap", async () => {
    const data = new Uint8Array(5000).fill(7);
    for (const c of ["gzip", "xz", "zstd", "none"] as const) {
      expect(new Uint8Array(await decompress(compressWith(data, c), c, 5000))).toEqual(data);
      await expect(decompress(compressWith(data, c), c, 4999)).rejects.toThrow(/exceeds the limit/);
    }
  });
  it("names the file and the offset of a fault inside a package", async () => {
    const tar = makeTar([{ name: "./control", content: enc.encode(CONTROL) }]);
    tar[0]! ^= 1; // the first header's checksum no longer matches
    const deb = makeAr([
      { name: "debian-binary", content: enc.encode("2.0\n") },
      { name: "control.tar", content: tar },
      { name: "data.tar", content: makeTar([{ name: "./", directory: true }]) },
    ]);
    const err = await parseDeb(bufferSource(deb), "bad.deb").catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID")).toBe(true);
    const cause = (err as PackratError).cause;
    expect(cause).toBeInstanceOf(FormatError);
    expect(cause).toMatchObject({ code: "tar", file: "bad.deb", offset: 0 });
  });
  it("refuses a truncated stream, with the offset of the fault", async () => {
    const data = new Uint8Array(100_000).map((_, i) => (i * 31) % 7);
    for (const c of ["gzip", "xz", "zstd"] as const) {
      const packed = compressWith(data, c);
      const err = await decompress(packed.subarray(0, packed.length - 20), c, 1 << 20).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FormatError);
      expect((err as FormatError).offset).toBeTypeOf("number");
    }
  });
});

describe("control stanzas", () => {
  it("normalises values the way dpkg stores them", () => {
    expect(normalizeValue("a  \n  b \n .\n ..\n\tc")).toBe("a\n b\n\n.\nc");
  });
  it("stops at the first blank line and skips comments", () => {
    expect(parseControlStanza("# c\nA: 1\n\nB: 2\n")).toEqual([["A", "1"]]);
  });
  it("renders in dpkg's Packages order, unknown fields sorted after", () => {
    const text = renderStanza([
      ["Description", "x\n y\n .\n z"],
      ["X-b", "1"],
      ["x-a", "2"],
      ["Version", "1"],
      ["Package", "p"],
      ["Depends", "   "],
      ["md5sum", "00"],
    ]);
    expect(text).toBe(
      "Package: p\nVersion: 1\nMD5sum: 00\nDescription: x\n y\n .\n z\nX-A: 2\nX-B: 1\n",
    );
  });
  it("survives a render/parse round trip", () => {
    const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,12}$/);
    const line = fc.stringMatching(/^[!-~][ -~]{0,20}$/);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(name, fc.array(line, { minLength: 1, maxLength: 4 })), {
          selector: ([n]) => n.toLowerCase(),
          maxLength: 8,
        }),
        (fields) => {
          const input = fields.map(
            ([n, lines]) =>
              [n, lines.map((l, i) => (i === 0 ? l : ` ${l}`)).join("\n")] as [string, string],
          );
          const once = renderStanza(input);
          expect(renderStanza(parseControlStanza(once))).toBe(once);
        },
      ),
    );
  });
});
