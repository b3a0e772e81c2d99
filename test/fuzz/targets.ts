/**
 * One fuzz target per package parser, each through its layout's `parse` (the entry point the
 * engine calls): .deb (ar + control.tar in none/gz/xz/zst), RPM (lead, signature header, main
 * header), pacman (.PKGINFO and .BUILDINFO in a zst/xz/gz/plain tar) and Python (wheel
 * METADATA, sdist PKG-INFO in .tar.gz/.tar.xz/.tar/.zip) and docker image archives (manifest.json
 * or index.json, configs, layers in both shapes).
 *
 * Seeds are real package files from the test builders, split into layers (the file, the tar
 * inside it, the metadata text inside that) so that a mutation can land at any depth and be
 * wrapped back (recompressed, checksums fixed) into a file the outer layers accept.
 */
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { zipSync } from "fflate";
import { aptLayout } from "../../src/layout/apt.js";
import type { Compression } from "../../src/layout/formats/compress.js";
import { xzCompressSync, zstdCompress } from "../../src/layout/formats/compress.js";
import { readTar, writeTar } from "../../src/layout/formats/tar.js";
import { dockerLayout } from "../../src/layout/docker.js";
import { dockerArchive, layerTar, ociArchive } from "../support/docker-builder.js";
import type { TarWriteEntry } from "../../src/layout/formats/tar.js";
import {
  binEntry,
  encodeHeader,
  int16Entry,
  int32Entry,
  LEAD_MAGIC,
  LEAD_SIZE,
  stringArrayEntry,
  stringEntry,
} from "../../src/layout/formats/rpm-header.js";
import type { NewEntry } from "../../src/layout/formats/rpm-header.js";
import { RpmType, SigTag, Tag } from "../../src/layout/formats/rpm-tags.js";
import { pacmanLayout } from "../../src/layout/pacman.js";
import { pypiLayout } from "../../src/layout/pypi.js";
import { yumLayout } from "../../src/layout/yum.js";
import { controlText, makeAr, makeTar } from "../support/deb-builder.js";
import { pkginfoText } from "../support/pacman-builder.js";
import { coreMetadata } from "../support/python-builder.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../support/rpm-builder.js";
import type { FuzzCase, Layer, Seed, Target } from "./harness.js";

/** xz -0: seeds are small, and liblzma -6 sets up a 94 MiB encoder per call. */
const xzCompressSync0 = (data: Uint8Array) => xzCompressSync(data, 0);

const enc = new TextEncoder();
const identity = (b: Uint8Array) => b;

/**
 * Incompressible bytes, the same every run (xorshift32). Big seeds put 1.1 MiB of them before
 * the metadata, so the parsers' reads past the first chunk (read-through.ts READ_CHUNK, 1 MiB,
 * which small packages never leave) are fuzzed too.
 */
function noise(length: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const BIG = 1_100_000;

/** A seed that is only its file (mutations land anywhere; hot spots aim at the fields). */
function fileSeed(name: string, filename: string, bytes: Uint8Array, hotspots: number[]): Seed {
  return { name, filename, layers: [{ name: "file", bytes, hotspots, wrap: identity }] };
}

// ---- hot-spot scanners: where the length and count fields of each format sit -------------

/** ar: each member header's name and decimal size field. */
export function arHotspots(bytes: Uint8Array, base = 0): number[] {
  const out: number[] = [];
  let pos = 8;
  while (pos + 60 <= bytes.length) {
    out.push(base + pos, base + pos + 48);
    const size = Number(
      Buffer.from(bytes.subarray(pos + 48, pos + 58))
        .toString("latin1")
        .trim(),
    );
    if (!Number.isSafeInteger(size)) break;
    pos += 60 + size + (size % 2);
  }
  return out;
}

/** Offsets of the header blocks of a well-formed tar. */
export function tarHeaders(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let pos = 0;
  while (pos + 512 <= bytes.length && bytes.subarray(pos, pos + 512).some((b) => b !== 0)) {
    out.push(pos);
    const text = Buffer.from(bytes.subarray(pos + 124, pos + 136))
      .toString("latin1")
      .replace(/[\0 ]+$/, "");
    const size = parseInt(text || "0", 8);
    if (!Number.isSafeInteger(size)) break;
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** tar: each header's size, checksum and type fields (and the name, for pax/long names). */
export function tarHotspots(bytes: Uint8Array): number[] {
  return tarHeaders(bytes).flatMap((h) => [h, h + 124, h + 128, h + 148, h + 156, h + 345]);
}

/** Recompute the checksum of each header block at `headers` (so a mutation gets past it). */
export function fixTarChecksums(bytes: Uint8Array, headers: readonly number[]): Uint8Array {
  for (const h of headers) {
    if (h + 512 > bytes.length) continue;
    const block = bytes.subarray(h, h + 512);
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of block) sum += b;
    block.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  }
  return bytes;
}

/** RPM: lead fields, and each header's il, dl and every index entry's type, offset and count. */
export function rpmHotspots(bytes: Uint8Array): number[] {
  const out = [4, 6, 78];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = LEAD_SIZE;
  for (let h = 0; h < 2 && start + 16 <= bytes.length; h++) {
    const il = dv.getUint32(start + 8);
    const dl = dv.getUint32(start + 12);
    out.push(start + 8, start + 12);
    for (let i = 0; i < il && start + 16 + i * 16 + 16 <= bytes.length; i++) {
      const e = start + 16 + i * 16;
      out.push(e, e + 4, e + 8, e + 12);
    }
    const end = start + 16 + il * 16 + dl;
    start = end + ((8 - (end % 8)) % 8);
  }
  return out;
}

/** zip: the end record's count/size/offset, each directory entry's and local header's sizes. */
export function zipHotspots(bytes: Uint8Array): number[] {
  const out: number[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= 0; i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return out;
  out.push(eocd + 8, eocd + 10, eocd + 12, eocd + 16, eocd + 20);
  let pos = dv.getUint32(eocd + 16, true);
  const count = dv.getUint16(eocd + 10, true);
  for (let i = 0; i < count && pos + 46 <= bytes.length; i++) {
    out.push(pos + 10, pos + 20, pos + 24, pos + 28, pos + 30, pos + 32, pos + 42);
    const local = dv.getUint32(pos + 42, true);
    if (local + 30 <= bytes.length)
      out.push(local + 8, local + 18, local + 22, local + 26, local + 28);
    pos +=
      46 +
      dv.getUint16(pos + 28, true) +
      dv.getUint16(pos + 30, true) +
      dv.getUint16(pos + 32, true);
  }
  return out;
}

/** Compressed-stream headers: zstd's window descriptor and content size, xz's footer/index. */
function streamHotspots(bytes: Uint8Array, base = 0): number[] {
  const out = [0, 4, 5, 6, 7, 8, 9, 10].map((o) => base + o);
  // xz: index (before the 12-byte footer) and the footer's backward size.
  if (bytes[0] === 0xfd && bytes.length >= 32) {
    const footer = bytes.length - 12;
    out.push(base + footer + 4, base + footer - 8, base + footer - 4, base + 12);
  }
  return out;
}

function compress(data: Uint8Array, compression: Compression): Uint8Array {
  switch (compression) {
    case "none":
      return data;
    case "gzip":
      return gzipSync(data);
    // Stored LZMA2 chunks (fast, synchronous); a valid xz stream like any other.
    case "xz":
      return xzCompressSync0(data);
    case "zstd":
      return zstdCompress(data);
  }
}

// ---- .deb -------------------------------------------------------------------------------

const DEB_SUFFIX: Record<Compression, string> = { none: "", gzip: ".gz", xz: ".xz", zstd: ".zst" };

function debFromParts(control: Uint8Array, compression: Compression, data: Uint8Array): Uint8Array {
  return makeAr([
    { name: "debian-binary", content: enc.encode("2.0\n") },
    { name: `control.tar${DEB_SUFFIX[compression]}`, content: compress(control, compression) },
    { name: "data.tar.gz", content: data },
  ]);
}

function controlTarOf(control: Uint8Array): Uint8Array {
  return makeTar([
    { name: "./", directory: true },
    { name: "./control", content: control },
    { name: "./md5sums", content: enc.encode("d41d8cd98f00b204e9800998ecf8427e  usr/bin/x\n") },
  ]);
}

function debSeed(name: string, control: string, compression: Compression): Seed {
  const data = gzipSync(
    makeTar([
      { name: "./", directory: true },
      { name: "./usr/bin/x", content: enc.encode("x\n") },
    ]),
  );
  const controlBytes = enc.encode(control);
  const tar = controlTarOf(controlBytes);
  const file = debFromParts(tar, compression, data);
  const member = compress(tar, compression);
  // The control member's data starts after the magic, debian-binary (60 + 4) and its header.
  const memberAt = 8 + 60 + 4 + 60;
  const headers = tarHeaders(tar);
  const layers: Layer[] = [
    {
      name: "file",
      bytes: file,
      hotspots: [...arHotspots(file), ...streamHotspots(member, memberAt)],
      wrap: identity,
    },
    {
      name: "control.tar",
      bytes: tar,
      hotspots: tarHotspots(tar),
      wrap: (m) => debFromParts(fixTarChecksums(m, headers), compression, data),
    },
    {
      name: "control",
      bytes: controlBytes,
      hotspots: [],
      wrap: (m) => debFromParts(controlTarOf(m), compression, data),
    },
  ];
  return { name: `${name}.${compression}`, filename: `${name}_1.0_amd64.deb`, layers };
}

const DEB_CONTROL = controlText({
  Package: "hello",
  Version: "1:2.10-3+b1",
  Architecture: "amd64",
  Maintainer: "Fuzz <fuzz@example.invalid>",
  "Installed-Size": "120",
  Depends: "libc6 (>= 2.34), libfoo | libbar",
  Description: "a greeting\n long text\n .\n more",
});

/** Control files written from generated fields, and the text shapes that cost parsers time. */
const controlTextArbitrary: fc.Arbitrary<string> = fc.oneof(
  fc
    .array(
      fc.tuple(
        fc.oneof(
          fc.constantFrom("Package", "Version", "Architecture", "Description", "Depends"),
          fc.string({ maxLength: 12 }),
        ),
        fc.string({ maxLength: 40 }),
        fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }),
      ),
      { maxLength: 10 },
    )
    .map((fields) =>
      fields.map(([k, v, cont]) => `${k}: ${v}\n${cont.map((c) => ` ${c}\n`).join("")}`).join(""),
    ),
  pathologicalText(DEB_CONTROL),
);

/**
 * `prefix` with a long run of one character (and an ending) spliced in at a line start or
 * inside a line: where a backtracking regex over a line (e.g. /\s+$/) goes quadratic.
 */
function pathologicalText(prefix: string): fc.Arbitrary<string> {
  return fc
    .record({
      ch: fc.constantFrom(" ", "\t", "\r", "\n", ":", "=", "#", "a", ".", "\u00a0", " \t"),
      n: fc.integer({ min: 1_000, max: 200_000 }),
      end: fc.constantFrom("", "x", "\n", ": v", " = v", "x\n"),
      at: fc.nat(),
    })
    .map(({ ch, n, end, at }) => {
      const cut = at % (prefix.length + 1);
      return `${prefix.slice(0, cut)}${ch.repeat(n)}${end}${prefix.slice(cut)}`;
    });
}

export function debTarget(): Target {
  const compressions: Compression[] = ["gzip", "xz", "zstd", "none"];
  // A "_" member (dpkg skips those) of 1.1 MiB puts the control member past the first chunk.
  const big = makeAr([
    { name: "debian-binary", content: enc.encode("2.0\n") },
    { name: "_padding", content: noise(BIG) },
    { name: "control.tar.gz", content: gzipSync(controlTarOf(enc.encode(DEB_CONTROL))) },
    { name: "data.tar.gz", content: gzipSync(makeTar([{ name: "./", directory: true }])) },
  ]);
  const seeds = [
    ...compressions.map((c) => debSeed("hello", DEB_CONTROL, c)),
    fileSeed("big", "big_1.0_amd64.deb", big, arHotspots(big)),
  ];
  const data = gzipSync(makeTar([{ name: "./", directory: true }]));
  return {
    name: "deb",
    parse: (source, filename) => aptLayout.parse(source, filename),
    seeds,
    generated: fc
      .tuple(controlTextArbitrary, fc.constantFrom(...compressions))
      .map(([text, c]): FuzzCase => ({
        bytes: debFromParts(controlTarOf(enc.encode(text)), c, data),
        filename: "gen_1.0_amd64.deb",
        label: `generated control (${c}, ${text.length} chars)`,
      })),
  };
}

// ---- RPM --------------------------------------------------------------------------------

function rpmSeed(name: string, input: Parameters<typeof buildSyntheticRpm>[0]): Seed {
  const bytes = buildSyntheticRpm(input);
  return {
    name,
    filename: syntheticRpmFilename(input),
    layers: [{ name: "file", bytes, hotspots: rpmHotspots(bytes), wrap: identity }],
  };
}

/** Tags the parser reads, with the type it expects (a generated entry may use another). */
const RPM_TAGS: readonly [number, number][] = [
  [Tag.NAME, RpmType.STRING],
  [Tag.VERSION, RpmType.STRING],
  [Tag.RELEASE, RpmType.STRING],
  [Tag.EPOCH, RpmType.INT32],
  [Tag.ARCH, RpmType.STRING],
  [Tag.SOURCERPM, RpmType.STRING],
  [Tag.SUMMARY, RpmType.I18NSTRING],
  [Tag.BASENAMES, RpmType.STRING_ARRAY],
  [Tag.DIRNAMES, RpmType.STRING_ARRAY],
  [Tag.DIRINDEXES, RpmType.INT32],
  [Tag.FILEMODES, RpmType.INT16],
  [Tag.FILEFLAGS, RpmType.INT32],
  [Tag.REQUIRENAME, RpmType.STRING_ARRAY],
  [Tag.REQUIREFLAGS, RpmType.INT32],
  [Tag.REQUIREVERSION, RpmType.STRING_ARRAY],
  [Tag.PROVIDENAME, RpmType.STRING_ARRAY],
  [Tag.PROVIDEFLAGS, RpmType.INT32],
  [Tag.PROVIDEVERSION, RpmType.STRING_ARRAY],
  [Tag.CHANGELOGTIME, RpmType.INT32],
  [Tag.CHANGELOGNAME, RpmType.STRING_ARRAY],
  [Tag.CHANGELOGTEXT, RpmType.STRING_ARRAY],
  [Tag.LONGSIZE, RpmType.INT64],
  [Tag.SIZE, RpmType.INT32],
];

/** A generated header entry: a tag the parser reads, any type, a count that may lie. */
const rpmEntryArbitrary: fc.Arbitrary<NewEntry> = fc
  .record({
    tagType: fc.constantFrom(...RPM_TAGS),
    type: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }),
    count: fc.option(
      fc.oneof(fc.nat({ max: 64 }), fc.constantFrom(0xffff, 0x7fffffff, 0xffffffff)),
      {
        nil: undefined,
      },
    ),
    strings: fc.array(fc.string({ maxLength: 16 }), { maxLength: 6 }),
    numbers: fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 6 }),
  })
  .map(({ tagType: [tag, expected], type, count, strings, numbers }) => {
    const entry: NewEntry =
      expected === RpmType.INT32
        ? int32Entry(tag, numbers)
        : expected === RpmType.INT16
          ? int16Entry(tag, numbers)
          : expected === RpmType.INT64
            ? binEntry(tag, new Uint8Array(numbers.length * 8))
            : expected === RpmType.STRING
              ? stringEntry(tag, strings[0] ?? "")
              : stringArrayEntry(tag, strings, expected);
    return {
      ...entry,
      type: type ?? (expected === RpmType.INT64 ? RpmType.INT64 : entry.type),
      count: count ?? entry.count,
    };
  });

function rpmFromHeaders(sigEntries: NewEntry[], mainEntries: NewEntry[]): Uint8Array {
  const sig = encodeHeader(Tag.HEADERSIGNATURES, sigEntries);
  const main = encodeHeader(Tag.HEADERIMMUTABLE, mainEntries);
  const lead = new Uint8Array(LEAD_SIZE);
  lead.set(LEAD_MAGIC, 0);
  lead[4] = 3;
  new DataView(lead.buffer).setUint16(78, 5);
  return Buffer.concat([lead, sig, Buffer.alloc((8 - (sig.length % 8)) % 8), main]);
}

export function rpmTarget(): Target {
  const base = { name: "hello", version: "2.10", release: "3.fc40" };
  const seeds = [
    rpmSeed("plain", base),
    rpmSeed("files", {
      ...base,
      epoch: 2,
      arch: "x86_64",
      files: {
        "/usr/bin/hello": "#!/bin/sh\n",
        "/etc/hello.conf": "x=1\n",
        "/usr/share/doc/hello/README": "r",
      },
      requires: [{ name: "libc.so.6()(64bit)" }, { name: "bash", flags: 12, version: "5.0-1" }],
      provides: [{ name: "greeter", flags: 8, version: "1:2.10" }],
    }),
    // A main header larger than the first chunk (a 1.1 MiB description).
    rpmSeed("big", { ...base, description: "d".repeat(BIG) }),
    rpmSeed("changelog", {
      ...base,
      compress: "gzip",
      files: { "/usr/lib/x": "x" },
      changelog: [
        { time: 1700000000, author: "A <a@example.invalid> - 2.10-3", text: "- fix" },
        { time: 1600000000, author: "B <b@example.invalid> - 2.9-1", text: "- first" },
      ],
    }),
  ];
  return {
    name: "rpm",
    parse: (source, filename) => yumLayout.parse(source, filename),
    seeds,
    generated: fc
      .record({
        sig: fc.array(
          fc.oneof(
            fc.constant(int32Entry(SigTag.PAYLOADSIZE, [12])),
            fc.constant(stringEntry(SigTag.SHA256, "0".repeat(64))),
            fc.nat({ max: 0xffffffff }).map((n) => int32Entry(SigTag.LONGARCHIVESIZE, [n])),
          ),
          { maxLength: 3 },
        ),
        main: fc.array(rpmEntryArbitrary, { minLength: 1, maxLength: 24 }),
        withRequired: fc.boolean(),
      })
      .map(({ sig, main, withRequired }): FuzzCase => {
        const required = withRequired
          ? [
              stringEntry(Tag.NAME, "gen"),
              stringEntry(Tag.VERSION, "1"),
              stringEntry(Tag.RELEASE, "1"),
              stringEntry(Tag.ARCH, "noarch"),
              stringEntry(Tag.SOURCERPM, "gen-1-1.src.rpm"),
            ]
          : [];
        // Later entries of the same tag win in encodeHeader's sort order only by position;
        // generated ones go first so that they, not the required ones, are the ones read.
        const byTag = new Map<number, NewEntry>();
        for (const e of [...main, ...required]) if (!byTag.has(e.tag)) byTag.set(e.tag, e);
        return {
          bytes: rpmFromHeaders(sig, [...byTag.values()]),
          filename: "gen-1-1.noarch.rpm",
          label: `generated headers (${byTag.size} entries)`,
        };
      }),
  };
}

// ---- pacman -----------------------------------------------------------------------------

type PacmanCompression = "zst" | "xz" | "gz" | "none";

function pacmanCompress(tar: Uint8Array, c: PacmanCompression): Uint8Array {
  return c === "none"
    ? tar
    : c === "zst"
      ? zstdCompress(tar)
      : c === "xz"
        ? xzCompressSync0(tar)
        : gzipSync(tar);
}

const PACMAN_MTIME = 1700000000;

function pacmanTar(pkginfo: Uint8Array): Uint8Array {
  const entries: TarWriteEntry[] = [
    { name: ".PKGINFO", content: pkginfo, mtime: PACMAN_MTIME },
    {
      name: ".BUILDINFO",
      content: enc.encode(
        "format = 2\npkgname = hello\npkgbuild_sha256sum = 00\nbuildenv = ccache\n",
      ),
      mtime: PACMAN_MTIME,
    },
    { name: ".MTREE", content: gzipSync("#mtree\n"), mtime: PACMAN_MTIME },
    { name: "usr/", mtime: PACMAN_MTIME },
    { name: "usr/bin/", mtime: PACMAN_MTIME },
    {
      name: "usr/bin/hello",
      content: enc.encode("#!/bin/sh\necho hello\n"),
      mtime: PACMAN_MTIME,
      mode: 0o755,
    },
    {
      name: `usr/share/doc/${"long/".repeat(30)}README`,
      content: enc.encode("pax path\n"),
      mtime: PACMAN_MTIME,
    },
  ];
  return writeTar(entries);
}

const PKGINFO = pkginfoText({
  name: "hello",
  version: "1:2.10-3",
  extra: {
    depend: ["glibc", "bash>=5"],
    license: ["GPL-3.0-or-later"],
    optdepend: ["foo: for bar"],
  },
});

function pacmanSeed(c: PacmanCompression): Seed {
  const pkginfo = enc.encode(PKGINFO);
  const tar = pacmanTar(pkginfo);
  const file = pacmanCompress(tar, c);
  const headers = tarHeaders(tar);
  const suffix = c === "none" ? "" : `.${c}`;
  return {
    name: `pacman.${c}`,
    filename: `hello-1:2.10-3-x86_64.pkg.tar${suffix}`,
    layers: [
      {
        name: "file",
        bytes: file,
        hotspots: c === "none" ? tarHotspots(tar) : streamHotspots(file),
        wrap: identity,
      },
      {
        name: "tar",
        bytes: tar,
        hotspots: tarHotspots(tar),
        wrap: (m) => pacmanCompress(fixTarChecksums(m, headers), c),
      },
      {
        name: ".PKGINFO",
        bytes: pkginfo,
        hotspots: [],
        wrap: (m) => pacmanCompress(pacmanTar(m), c),
      },
    ],
  };
}

export function pacmanTarget(): Target {
  const compressions: PacmanCompression[] = ["zst", "xz", "gz", "none"];
  const lines = fc.array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom(
          "pkgname",
          "pkgver",
          "depend",
          "license",
          "size",
          "arch",
          "# c",
          "__proto__",
          "constructor",
        ),
        fc.string({ maxLength: 10 }),
      ),
      fc.constantFrom(" = ", "=", " ", "  =  ", ""),
      fc.string({ maxLength: 40 }),
    ),
    { maxLength: 12 },
  );
  return {
    name: "pacman",
    parse: (source, filename) => pacmanLayout.parse(source, filename),
    seeds: [
      ...compressions.map(pacmanSeed),
      // 1.1 MiB of incompressible file before .PKGINFO: the tar reader meets it in a later
      // chunk, and the zst file itself is larger than the first chunk.
      ...(["none", "zst"] as const).map((c) => {
        const tar = writeTar([
          { name: "usr/share/blob", content: noise(BIG), mtime: PACMAN_MTIME },
          { name: ".PKGINFO", content: enc.encode(PKGINFO), mtime: PACMAN_MTIME },
        ]);
        const bytes = pacmanCompress(tar, c);
        const suffix = c === "none" ? "" : `.${c}`;
        const spots = c === "none" ? tarHotspots(tar) : streamHotspots(bytes);
        return fileSeed(`big.${c}`, `hello-1-1-x86_64.pkg.tar${suffix}`, bytes, spots);
      }),
    ],
    generated: fc
      .tuple(
        fc.oneof(
          lines.map(
            (ls) =>
              `pkgname = gen\npkgver = 1-1\n${ls.map(([k, d, v]) => `${k}${d}${v}`).join("\n")}\n`,
          ),
          pathologicalText(PKGINFO),
        ),
        fc.constantFrom(...compressions),
      )
      .map(([text, c]): FuzzCase => ({
        bytes: pacmanCompress(pacmanTar(enc.encode(text)), c),
        filename: `gen-1-1-x86_64.pkg.tar${c === "none" ? "" : `.${c}`}`,
        label: `generated .PKGINFO (${c}, ${text.length} chars)`,
      })),
  };
}

// ---- Python -----------------------------------------------------------------------------

const SPEC = {
  name: "fuzz-pkg",
  version: "1.2.3",
  requiresPython: ">=3.8",
  extraHeaders: [
    "Requires-Dist: requests>=2",
    "Classifier: A :: B",
    "Project-URL: Home, https://x.invalid",
  ],
};
const METADATA = coreMetadata(SPEC);
const ZIP_MTIME = new Date("2024-01-01T00:00:00Z");

function wheelOf(metadata: Uint8Array, level: 0 | 6): Uint8Array {
  return zipSync(
    {
      "fuzz_pkg/__init__.py": enc.encode("x = 1\n"),
      "fuzz_pkg-1.2.3.dist-info/METADATA": metadata,
      "fuzz_pkg-1.2.3.dist-info/WHEEL": enc.encode("Wheel-Version: 1.0\n"),
      "fuzz_pkg-1.2.3.dist-info/RECORD": enc.encode(""),
    },
    { level, mtime: ZIP_MTIME },
  );
}

function sdistTar(pkgInfo: Uint8Array): Uint8Array {
  const mtime = 1704067200;
  return writeTar([
    { name: "fuzz_pkg-1.2.3/", mtime },
    { name: "fuzz_pkg-1.2.3/setup.py", content: enc.encode("pass\n"), mtime },
    { name: "fuzz_pkg-1.2.3/PKG-INFO", content: pkgInfo, mtime },
  ]);
}

type SdistFormat = "tar.gz" | "tar.xz" | "tar" | "zip";

function sdistOf(pkgInfo: Uint8Array, format: SdistFormat): Uint8Array {
  if (format === "zip") {
    return zipSync(
      { "fuzz_pkg-1.2.3/setup.py": enc.encode("pass\n"), "fuzz_pkg-1.2.3/PKG-INFO": pkgInfo },
      { mtime: ZIP_MTIME },
    );
  }
  const tar = sdistTar(pkgInfo);
  return format === "tar.gz" ? gzipSync(tar) : format === "tar.xz" ? xzCompressSync0(tar) : tar;
}

function wheelSeed(level: 0 | 6): Seed {
  const metadata = enc.encode(METADATA);
  const bytes = wheelOf(metadata, level);
  return {
    name: `wheel.level${level}`,
    filename: "fuzz_pkg-1.2.3-py3-none-any.whl",
    layers: [
      { name: "file", bytes, hotspots: zipHotspots(bytes), wrap: identity },
      { name: "METADATA", bytes: metadata, hotspots: [], wrap: (m) => wheelOf(m, level) },
    ],
  };
}

function sdistSeed(format: SdistFormat): Seed {
  const pkgInfo = enc.encode(METADATA);
  const bytes = sdistOf(pkgInfo, format);
  const layers: Layer[] = [
    {
      name: "file",
      bytes,
      hotspots:
        format === "zip"
          ? zipHotspots(bytes)
          : format === "tar"
            ? tarHotspots(bytes)
            : streamHotspots(bytes),
      wrap: identity,
    },
    { name: "PKG-INFO", bytes: pkgInfo, hotspots: [], wrap: (m) => sdistOf(m, format) },
  ];
  if (format === "tar.gz" || format === "tar.xz") {
    const tar = sdistTar(pkgInfo);
    const headers = tarHeaders(tar);
    layers.push({
      name: "tar",
      bytes: tar,
      hotspots: tarHotspots(tar),
      wrap: (m) => {
        const fixed = fixTarChecksums(m, headers);
        return format === "tar.gz" ? gzipSync(fixed) : xzCompressSync0(fixed);
      },
    });
  }
  return { name: `sdist.${format}`, filename: `fuzz_pkg-1.2.3.${format}`, layers };
}

export function pythonTarget(): Target {
  const formats: SdistFormat[] = ["tar.gz", "tar.xz", "tar", "zip"];
  const header = fc.tuple(
    fc.oneof(
      fc.constantFrom(
        "Name",
        "Version",
        "Requires-Dist",
        "Description",
        "constructor",
        "__proto__",
        " ",
      ),
      fc.string({ maxLength: 10 }),
    ),
    fc.string({ maxLength: 40 }),
  );
  return {
    name: "python",
    parse: (source, filename) => pypiLayout.parse(source, filename),
    seeds: [
      wheelSeed(6),
      wheelSeed(0),
      ...formats.map(sdistSeed),
      // A stored 1.1 MiB member first: the central directory and METADATA lie past 1 MiB.
      (() => {
        const bytes = zipSync(
          {
            "fuzz_pkg/blob.bin": noise(BIG),
            "fuzz_pkg-1.2.3.dist-info/METADATA": enc.encode(METADATA),
          },
          { level: 0, mtime: ZIP_MTIME },
        );
        return fileSeed("wheel.big", "fuzz_pkg-1.2.3-py3-none-any.whl", bytes, zipHotspots(bytes));
      })(),
    ],
    generated: fc
      .tuple(
        fc.oneof(
          fc
            .array(header, { maxLength: 12 })
            .map((hs) => `Name: gen\nVersion: 1\n${hs.map(([k, v]) => `${k}: ${v}`).join("\n")}\n`),
          pathologicalText(METADATA),
        ),
        fc.constantFrom<"whl" | SdistFormat>("whl", ...formats),
      )
      .map(([text, format]): FuzzCase => {
        const bytes = enc.encode(text);
        return format === "whl"
          ? {
              bytes: wheelOf(bytes, 6),
              filename: "fuzz_pkg-1.2.3-py3-none-any.whl",
              label: `generated METADATA (${text.length} chars)`,
            }
          : {
              bytes: sdistOf(bytes, format),
              filename: `fuzz_pkg-1.2.3.${format}`,
              label: `generated PKG-INFO (${format}, ${text.length} chars)`,
            };
      }),
  };
}

/**
 * Docker image archives: a docker-archive and an OCI layout with gzip layers, mutated as a
 * whole file (tar headers) and at their top document (manifest.json / index.json) with the
 * archive rebuilt around it.
 */
export function dockerTarget(): Target {
  const base = layerTar({ "etc/os-release": "ID=fuzz\n" });
  const app = layerTar({ "usr/bin/app": "#!/bin/sh\n" });
  const seed = (name: string, bytes: Uint8Array, top: string): Seed => {
    const entries: TarWriteEntry[] = readTar(bytes).map((e) => ({
      name: e.name,
      ...(e.type === "file" ? { content: e.data } : {}),
      mtime: 0,
    }));
    const topEntry = entries.find((e) => e.name === top)!;
    return {
      name,
      filename: "app_1.0.tar",
      layers: [
        { name: "file", bytes, hotspots: tarHotspots(bytes), wrap: identity },
        {
          name: top,
          bytes: topEntry.content!,
          hotspots: [],
          wrap: (mutated) =>
            writeTar(entries.map((e) => (e === topEntry ? { ...e, content: mutated } : e))),
        },
      ],
    };
  };
  return {
    name: "docker",
    parse: (source, filename) => dockerLayout.parse(source, filename),
    seeds: [
      seed("docker-archive", dockerArchive([{ layers: [base, app] }]), "manifest.json"),
      seed("oci-layout", ociArchive([{ layers: [base, app] }], { gzip: true }), "index.json"),
    ],
  };
}

/** Every target, built once (seeds are made in memory; none needs a process). */
export function allTargets(): Target[] {
  return [debTarget(), rpmTarget(), pacmanTarget(), pythonTarget(), dockerTarget()];
}
