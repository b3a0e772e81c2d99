import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { parseRpm } from "../../src/layout/formats/rpm-meta.js";
import { signRpm } from "../../src/layout/formats/rpm-sign.js";
import type { Signer } from "../../src/signing/signer.js";
import { bufferSource } from "../../src/layout/types.js";
import { changelogsAsCreaterepo } from "../../src/layout/formats/rpm-repodata.js";
import {
  encodeHeader,
  headerText,
  int32Entry,
  LEAD_SIZE,
  stringArrayEntry,
  stringEntry,
  type NewEntry,
} from "../../src/layout/formats/rpm-header.js";
import { Sense, Tag } from "../../src/layout/formats/rpm-tags.js";
import { buildSyntheticRpm } from "../support/rpm-builder.js";

const sample = () =>
  buildSyntheticRpm({
    name: "demo",
    version: "1.2",
    release: "4",
    epoch: 3,
    arch: "x86_64",
    summary: "Demo <pkg>",
    requires: [
      { name: "/bin/sh", flags: Sense.SCRIPT_PRE },
      { name: "libfoo", flags: Sense.GREATER | Sense.EQUAL, version: "1:2.0-5" },
      { name: "/usr/bin/demo" },
    ],
    files: { "/usr/bin/demo": "#!/bin/sh\n", "/usr/share/demo/data": "x", "/etc/demo.conf": "c" },
    changelog: [
      { time: 1700000200, author: "New <n@x> - 1.2-4", text: "- newer" },
      { time: 1700000100, author: "Old <o@x> - 1.2-3", text: "- older" },
    ],
    compress: "gzip",
  });

describe("parseRpm", () => {
  it("reads the fields primary.xml needs from a synthetic RPM", async () => {
    const bytes = sample();
    const meta = await parseRpm(bufferSource(bytes), "demo.rpm");
    expect(meta).toMatchObject({
      name: "demo",
      epoch: 3,
      version: "1.2",
      release: "4",
      arch: "x86_64",
      summary: "Demo <pkg>",
      license: "MIT",
      packageSize: bytes.length,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      sourceRpm: "demo-1.2-4.src.rpm",
    });
    // requires: rpmlib() and the package's own primary file are dropped; /bin/sh is pre.
    expect(meta.requires).toEqual([
      { name: "/bin/sh", pre: true },
      { name: "libfoo", flags: "GE", epoch: "1", ver: "2.0", rel: "5" },
    ]);
    expect(meta.provides).toEqual([
      { name: "demo", flags: "EQ", epoch: "3", ver: "1.2", rel: "4" },
    ]);
    expect(meta.files).toEqual([
      { path: "/etc/demo.conf", type: "file" },
      { path: "/usr/bin/demo", type: "file" },
      { path: "/usr/share/demo/data", type: "file" },
    ]);
    expect(meta.changelogs.map((c) => c.text)).toEqual(["- newer", "- older"]);
    expect(meta.headerStart % 8).toBe(0);
    expect(meta.headerEnd).toBeGreaterThan(meta.headerStart);
    expect(JSON.parse(JSON.stringify(meta))).toEqual(meta);
  });

  it("takes a SHA-256 the caller verified instead of hashing, and parses the same", async () => {
    const bytes = sample();
    const hashed = await parseRpm(bufferSource(bytes), "demo.rpm");
    let bytesRead = 0;
    const counting = bufferSource(bytes);
    const verified = {
      size: counting.size,
      read: async (offset: number, length: number) => {
        const got = await counting.read(offset, length);
        bytesRead += got.length;
        return got;
      },
      verifiedSha256: hashed.sha256,
    };
    expect(await parseRpm(verified, "demo.rpm")).toEqual(hashed);
    // One read of the head (here the whole file), no second pass for a hash.
    expect(bytesRead).toBe(bytes.length);
    // The parser reports what it was given: the caller's check is what vouches for it.
    const other = "ab".repeat(32);
    expect(
      (await parseRpm({ ...bufferSource(bytes), verifiedSha256: other }, "d.rpm")).sha256,
    ).toBe(other);
    // A file shorter than it claims is still refused.
    const short = { ...bufferSource(bytes), size: bytes.length + 10, verifiedSha256: other };
    await expect(parseRpm(short, "short.rpm")).rejects.toMatchObject({
      code: "PACKRAT_PACKAGE_INVALID",
    });
  });

  it("gives PACKRAT_PACKAGE_INVALID naming the file for a truncated RPM", async () => {
    const bytes = sample();
    for (const cut of [0, 50, 96, 100, 200, bytes.length >> 1]) {
      const err = await parseRpm(bufferSource(bytes.subarray(0, cut)), "cut.rpm").catch(
        (e: unknown) => e,
      );
      if (cut < 400) {
        expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID")).toBe(true);
        expect((err as Error).message).toContain("cut.rpm");
      }
    }
  });

  it("refuses a header claiming a huge index or store without allocating it", async () => {
    const bytes = Buffer.from(sample());
    const hostile = Buffer.from(bytes);
    hostile.writeUInt32BE(0x00ffffff, 96 + 8); // il of the signature header
    await expect(parseRpm(bufferSource(hostile), "big.rpm")).rejects.toMatchObject({
      code: "PACKRAT_PACKAGE_INVALID",
    });
    const hostile2 = Buffer.from(bytes);
    hostile2.writeUInt32BE(0x0fffffff, 96 + 12); // dl
    await expect(parseRpm(bufferSource(hostile2), "big.rpm")).rejects.toMatchObject({
      code: "PACKRAT_PACKAGE_INVALID",
    });
  });

  it("never throws anything but a PackratError on mutated headers", async () => {
    const base = sample();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: 2047 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 12,
        }),
        async (edits) => {
          const bytes = Buffer.from(base);
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          try {
            const meta = await parseRpm(bufferSource(bytes), "fuzz.rpm");
            expect(typeof meta.name).toBe("string");
          } catch (err) {
            if (!isPackratError(err, "PACKRAT_PACKAGE_INVALID")) throw err;
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it("never throws anything but a PackratError on arbitrary bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), async (raw) => {
        // Give most inputs a valid lead so the header parser is reached.
        const bytes = Buffer.from(raw);
        if (bytes.length > 100 && (bytes[0] ?? 0) % 2 === 0) {
          Buffer.from([0xed, 0xab, 0xee, 0xdb, 3, 0]).copy(bytes, 0);
          Buffer.from([0x8e, 0xad, 0xe8, 0x01]).copy(bytes, 96);
        }
        try {
          await parseRpm(bufferSource(bytes), "random.rpm");
        } catch (err) {
          if (!isPackratError(err, "PACKRAT_PACKAGE_INVALID")) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });

  it("signing a mutated RPM gives signed bytes or a PackratError, nothing else", async () => {
    // A fixed v4 EdDSA-shaped signature packet: signing itself is not under test here.
    const packet = new Uint8Array([0xc2, 0x06, 0x04, 0x00, 0x16, 0x0a, 0x00, 0x00]);
    const signer = { signDetachedBinary: () => Promise.resolve(packet) } as unknown as Signer;
    const base = sample();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: 2047 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        async (edits) => {
          const bytes = Buffer.from(base);
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          try {
            const signed = await signRpm(bufferSource(bytes), "fuzz.rpm", signer);
            const meta = await parseRpm(bufferSource(signed), "fuzz.rpm");
            expect(typeof meta.name).toBe("string");
          } catch (err) {
            if (!isPackratError(err, "PACKRAT_PACKAGE_INVALID")) throw err;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  describe("inconsistent headers", () => {
    /** A lead + minimal signature header + the given main header entries. */
    function rpmWith(entries: NewEntry[]): Uint8Array {
      const lead = Buffer.from(sample().subarray(0, LEAD_SIZE));
      const sig = encodeHeader(Tag.HEADERSIGNATURES, [int32Entry(1000, [0])]);
      const pad = Buffer.alloc((8 - (sig.length % 8)) % 8);
      const base = [
        stringEntry(Tag.NAME, "bad"),
        stringEntry(Tag.VERSION, "1"),
        stringEntry(Tag.RELEASE, "1"),
        stringEntry(Tag.ARCH, "noarch"),
        stringEntry(Tag.SOURCERPM, "bad-1-1.src.rpm"),
      ];
      return Buffer.concat([
        lead,
        sig,
        pad,
        encodeHeader(Tag.HEADERIMMUTABLE, [...base, ...entries]),
      ]);
    }

    const cases: [string, NewEntry[], RegExp][] = [
      [
        "a file naming a directory that does not exist",
        [
          stringArrayEntry(Tag.BASENAMES, ["a"]),
          stringArrayEntry(Tag.DIRNAMES, ["/usr/"]),
          int32Entry(Tag.DIRINDEXES, [7]),
        ],
        /directory 7 of 1/,
      ],
      [
        "more basenames than directory indexes",
        [
          stringArrayEntry(Tag.BASENAMES, ["a", "b"]),
          stringArrayEntry(Tag.DIRNAMES, ["/usr/"]),
          int32Entry(Tag.DIRINDEXES, [0]),
        ],
        /2 file basenames but 1 directory indexes/,
      ],
      [
        "dependency names and flags of different lengths",
        [stringArrayEntry(Tag.REQUIRENAME, ["a", "b"]), int32Entry(Tag.REQUIREFLAGS, [0])],
        /requires: 2 names but 1 flags/,
      ],
      [
        "a string array claiming more strings than the store holds",
        [{ ...stringArrayEntry(Tag.PROVIDENAME, ["a"]), count: 1_000_000 }],
        /strings cannot fit/,
      ],
      [
        "a name stored as an integer",
        [int32Entry(Tag.SUMMARY, [1])],
        /tag 1004: type 4, expected a string/,
      ],
    ];
    for (const [what, entries, message] of cases) {
      it(`refuses ${what}`, async () => {
        const err = await parseRpm(bufferSource(rpmWith(entries)), "bad.rpm").catch(
          (e: unknown) => e,
        );
        expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID")).toBe(true);
        expect((err as Error).message).toMatch(/^bad\.rpm: /);
        expect((err as Error).message).toMatch(message);
      });
    }

    it("accepts the same header when it is consistent", async () => {
      const meta = await parseRpm(bufferSource(rpmWith([])), "bad.rpm");
      expect(meta.name).toBe("bad");
    });
  });
});

describe("header text and changelog dates as createrepo_c writes them", () => {
  const bytes = (...b: number[]) => Buffer.from(b).toString("latin1");

  it("keeps UTF-8, and reads anything else as ISO-8859-1 the way cr_latin1_to_utf8 does", () => {
    expect(headerText(Buffer.from("café ✓", "utf8").toString("latin1"))).toBe("café ✓");
    // é in Latin-1; 0xAB («) and 0x85 are dropped (0x80-0xBF), and so is the C0 control 0x01,
    // but tab and LF stay.
    expect(headerText(bytes(0x63, 0x61, 0x66, 0xe9, 0xab, 0x85, 0x01, 0x09, 0x0a, 0xff))).toBe(
      "café\t\nÿ",
    );
    // A lone continuation byte is not UTF-8 shaped: the whole string is read as Latin-1.
    expect(headerText(bytes(0xc3, 0xa9, 0xe9))).toBe("Ãé");
    expect(headerText("plain\u0001ascii")).toBe("plain\u0001ascii");
  });

  it("moves repeated changelog times within the kept entries only", () => {
    const log = (date: number) => ({ author: "a", date, text: "t" });
    const dates = (input: number[], limit: number) =>
      changelogsAsCreaterepo(input.map(log), limit).map((c) => c.date);
    expect(dates([100, 100, 100, 50], 10)).toEqual([102, 101, 100, 50]);
    expect(dates([100, 100, 100, 50], 2)).toEqual([101, 100]);
    expect(dates([100, 100, 100], 1)).toEqual([100]);
    expect(dates([100, 100, 100], 0)).toEqual([]);
    // A run that ends and starts again is counted afresh.
    expect(dates([100, 100, 90, 100, 100], 10)).toEqual([101, 100, 90, 101, 100]);
    // A moved entry can meet the next older date: createrepo_c moves it on, not back.
    expect(dates([101, 100, 100], 10)).toEqual([102, 101, 100]);
  });
});
