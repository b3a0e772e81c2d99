import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { isPackratError } from "../../src/errors.js";
import {
  PACMAN_LIMITS,
  compareBytes,
  readPacmanPackage,
} from "../../src/layout/formats/pacman-package.js";
import { decompress, xzCompressSync } from "../../src/layout/formats/compress.js";
import { readTarStream, writeTar } from "../../src/layout/formats/tar.js";
import { parsePkgInfo, vercmp } from "../../src/layout/formats/pkginfo.js";
import { pacmanArch, pacmanLayout, pacmanRepoName } from "../../src/layout/pacman.js";
import type { PacmanRenderInput } from "../../src/layout/pacman.js";
import { gpgv } from "../support/gpg.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { PackageMeta, PublishedPackage, RenderInput } from "../../src/layout/types.js";
import {
  ARCH_DISTRO_VERSION,
  buildPacmanPackage,
  compressPacman,
  pacmanRepo,
  publishedPacman,
} from "../support/pacman-builder.js";
import type { PacmanPackageSpec } from "../support/pacman-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

const SPEC: PacmanPackageSpec = {
  name: "hello",
  version: "1.0-1",
  files: { "usr/bin/hello": "#!/bin/sh\n", "usr/share/doc/hello/README": "readme\n" },
  extra: { depend: ["glibc", "bash>=5"], license: ["MIT"] },
};

async function expectInvalid(promise: Promise<unknown>, filename: string): Promise<void> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID"), String(err)).toBe(true);
  expect((err as Error).message).toContain(filename);
}

async function tarNames(tar: Uint8Array): Promise<string[]> {
  const names: string[] = [];
  await readTarStream([tar], {
    maxContent: 0,
    maxMembers: 1000,
    wantContent: () => false,
    onMember: (m) => names.push(m.name),
  });
  return names;
}

describe("parse", () => {
  test.each(["zst", "xz", "gz"] as const)(
    "reads .PKGINFO and the file list from .pkg.tar.%s",
    async (compression) => {
      const pkg = buildPacmanPackage({ ...SPEC, compression });
      const meta = await pacmanLayout.parse(bufferSource(pkg.bytes), pkg.filename);
      expect(meta).toMatchObject({
        format: "pacman",
        csize: pkg.bytes.length,
        files: [
          "usr/",
          "usr/bin/",
          "usr/bin/hello",
          "usr/share/",
          "usr/share/doc/",
          "usr/share/doc/hello/",
          "usr/share/doc/hello/README",
        ],
        pkginfo: {
          pkgname: "hello",
          pkgver: "1.0-1",
          depend: ["glibc", "bash>=5"],
          license: ["MIT"],
          arch: "x86_64",
        },
      });
      expect(meta.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(meta.md5).toMatch(/^[0-9a-f]{32}$/);
    },
  );

  test("hashes cover bytes after the tar end marker", async () => {
    // Plain tar (no compression) followed by trailing zero padding, as some writers add.
    const tar = writeTar([
      {
        name: ".PKGINFO",
        content: new TextEncoder().encode("pkgname = a\npkgver = 1-1\n"),
        mtime: 0,
      },
    ]);
    const padded = new Uint8Array(tar.length + 10240);
    padded.set(tar);
    const a = (await readPacmanPackage(bufferSource(padded), "a.pkg.tar")) as { sha256: string };
    const { createHash } = await import("node:crypto");
    expect(a.sha256).toBe(createHash("sha256").update(padded).digest("hex"));
  });

  test("a package without .PKGINFO is invalid, naming the file", async () => {
    const tar = writeTar([{ name: "usr/", mtime: 0 }]);
    await expectInvalid(
      pacmanLayout.parse(bufferSource(compressPacman(tar, "zst")), "x.pkg.tar.zst"),
      "x.pkg.tar.zst",
    );
  });

  test("a truncated package is invalid", async () => {
    const pkg = buildPacmanPackage({ ...SPEC, compression: "gz" });
    await expectInvalid(
      pacmanLayout.parse(
        bufferSource(pkg.bytes.subarray(0, pkg.bytes.length - 30)),
        "t.pkg.tar.gz",
      ),
      "t.pkg.tar.gz",
    );
  });

  test("unsafe names and versions are refused (they become database paths)", async () => {
    for (const [name, version] of [
      ["../evil", "1-1"],
      ["ok", "1/2-1"],
      [".hidden", "1-1"],
    ]) {
      const tar = writeTar([
        {
          name: ".PKGINFO",
          content: new TextEncoder().encode(`pkgname = ${name}\npkgver = ${version}\n`),
          mtime: 0,
        },
      ]);
      await expectInvalid(pacmanLayout.parse(bufferSource(tar), "u.pkg.tar"), "u.pkg.tar");
    }
  });

  test("a decompression bomb is cut off at the limit", async () => {
    const zeros = new Uint8Array(8 << 20);
    const bomb = compressPacman(writeTar([{ name: "big", content: zeros, mtime: 0 }]), "zst");
    const limits = { ...PACMAN_LIMITS, minOutputCap: 1 << 20, outputRatio: 10 };
    await expectInvalid(
      readPacmanPackage(bufferSource(bomb), "bomb.pkg.tar.zst", limits),
      "bomb.pkg.tar.zst",
    );
    const xzBomb = compressPacman(writeTar([{ name: "big", content: zeros, mtime: 0 }]), "xz");
    await expectInvalid(
      readPacmanPackage(bufferSource(xzBomb), "bomb.pkg.tar.xz", limits),
      "bomb.pkg.tar.xz",
    );
  });

  test("xz decodes to the exact size, and not a byte over the cap", async () => {
    const data = new Uint8Array(123_457).fill(7);
    expect((await decompress(xzCompressSync(data), "xz", data.length)).length).toBe(data.length);
    await expect(decompress(xzCompressSync(data), "xz", data.length - 1)).rejects.toThrow(
      /exceeds the limit/,
    );
  });

  test("arbitrary bytes give metadata or PACKRAT_PACKAGE_INVALID, never another error", async () => {
    const pkg = buildPacmanPackage({ ...SPEC, compression: "gz" });
    const tar = gzipSync(Buffer.from("x"));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }),
          // Mutations of real packages and of a plain tar reach deeper into the parsers.
          fc.tuple(fc.nat(pkg.bytes.length - 1), fc.integer({ min: 0, max: 255 })).map(([i, v]) => {
            const b = Uint8Array.from(pkg.bytes);
            b[i] = v;
            return b;
          }),
          fc
            .tuple(fc.nat(3000), fc.uint8Array({ minLength: 1, maxLength: 8 }))
            .map(([i, bytes]) => {
              const b = Uint8Array.from(
                writeTar([
                  {
                    name: ".PKGINFO",
                    content: new TextEncoder().encode("pkgname = a\npkgver = 1-1\n"),
                    mtime: 0,
                  },
                  { name: "usr/x", content: tar, mtime: 0 },
                ]),
              );
              b.set(bytes.subarray(0, Math.max(0, b.length - (i % b.length))), i % b.length);
              return b;
            }),
        ),
        async (bytes) => {
          try {
            const meta = await pacmanLayout.parse(bufferSource(bytes), "f.pkg.tar.zst");
            expect(meta.format).toBe("pacman");
          } catch (err) {
            expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID"), String(err)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe(".PKGINFO", () => {
  test("reads keys the way repo-add does", () => {
    const info = parsePkgInfo(
      [
        "# comment",
        "pkgname = a",
        "pkgver = 1-1",
        "pkgdesc = two   spaces\tand tab ",
        "pkgdesc = last wins",
        "depend = x",
        "depend = y>=2",
        "optdepend = z: for things = stuff",
        "xdata = pkgtype=pkg",
        "",
      ].join("\n"),
    );
    expect(info).toEqual({
      pkgname: "a",
      pkgver: "1-1",
      pkgdesc: "last wins",
      depend: ["x", "y>=2"],
      optdepend: ["z: for things = stuff"],
      xdata: "pkgtype=pkg",
    });
    expect(parsePkgInfo("pkgname = a\npkgver = 1\npkgdesc = two   spaces\tand\n").pkgdesc).toBe(
      "two spaces and",
    );
  });

  test("requires pkgname and pkgver", () => {
    expect(() => parsePkgInfo("pkgname = a\n")).toThrow(/pkgver/);
  });
});

describe("vercmp (alpm)", () => {
  test.each([
    ["1.0", "1.0", 0],
    ["1.0", "1.1", -1],
    ["1.0.1", "1.0", 1],
    ["1.0a", "1.0", -1],
    ["1.0alpha", "1.0.1", -1],
    ["1.0-1", "1.0-2", -1],
    ["1.0-2", "1.0", 0],
    ["1:1.0", "2.0", 1],
    ["0:1.0", "1.0", 0],
    ["1.10", "1.9", 1],
    ["1.001", "1.1", 0],
    ["1..0", "1.0", 1],
    ["a", "1", -1],
    ["2.0rc1", "2.0", -1],
  ])("%s vs %s → %i", (a, b, expected) => {
    expect(Math.sign(vercmp(a, b)) + 0).toBe(expected + 0);
    expect(Math.sign(vercmp(b, a)) + 0).toBe(-expected + 0);
  });
});

describe("placement", () => {
  const place = (arch: string, repoArches: string[]) =>
    pacmanLayout.placePackage({
      repo: pacmanRepo(),
      file: {
        ...publishedPacman(buildPacmanPackage(SPEC), {}, []).file,
        arch,
        filename: "p.pkg.tar.zst",
      },
      distroVersion: ARCH_DISTRO_VERSION,
      repoArches,
      options: DEFAULT_LAYOUT_OPTIONS,
    });

  test("arch packages go to their arch directory; all → any; arm64 → aarch64", () => {
    expect(place("x86_64", ["x86_64", "all"])).toEqual(["x86_64/p.pkg.tar.zst"]);
    expect(place("arm64", ["arm64"])).toEqual(["aarch64/p.pkg.tar.zst"]);
    expect(pacmanArch("all")).toBe("any");
  });

  test("an any package goes into every arch directory, or x86_64 when there is none", () => {
    expect(place("all", ["x86_64", "all", "arm64"])).toEqual([
      "aarch64/p.pkg.tar.zst",
      "x86_64/p.pkg.tar.zst",
    ]);
    expect(place("all", ["all"])).toEqual(["x86_64/p.pkg.tar.zst"]);
  });

  test("repo name: override, else the last segment of filesystem_dir; unsafe names refused", () => {
    expect(pacmanRepoName("arch/core", {})).toBe("core");
    expect(pacmanRepoName("arch/core", { "arch/core": "mycore" })).toBe("mycore");
    expect(() => pacmanRepoName("x", { x: "a b" })).toThrow(/not a valid repo name/);
  });
});

describe("render", () => {
  async function input(signed: boolean): Promise<RenderInput> {
    const pkgs = [
      buildPacmanPackage(SPEC),
      buildPacmanPackage({ ...SPEC, version: "0.9-1" }),
      buildPacmanPackage({ ...SPEC, name: "data", arch: "any", files: {} }),
    ];
    const signer = signed ? (await makeTestSigner()).signer : null;
    const packages = [];
    for (const p of pkgs) {
      const meta: PackageMeta = await pacmanLayout.parse(bufferSource(p.bytes), p.filename);
      const sig = signer ? await signer.signDetachedBinary(p.bytes) : undefined;
      packages.push(publishedPacman(p, meta, [`x86_64/${p.filename}`], sig));
    }
    return {
      repo: pacmanRepo("extra"),
      distroVersions: new Map(),
      packages,
      signer,
      options: DEFAULT_LAYOUT_OPTIONS,
      now: new Date(0),
    };
  }

  test("databases, copies, signatures, stages; the newest version of a name wins", async () => {
    const result = await pacmanLayout.render(await input(true));
    const byPath = new Map(result.files.map((f) => [f.path, f]));
    expect([...byPath.keys()].sort()).toEqual(
      [
        "x86_64/data-1.0-1-any.pkg.tar.zst.sig",
        "x86_64/extra.db",
        "x86_64/extra.db.sig",
        "x86_64/extra.db.tar.gz",
        "x86_64/extra.db.tar.gz.sig",
        "x86_64/extra.files",
        "x86_64/extra.files.sig",
        "x86_64/extra.files.tar.gz",
        "x86_64/extra.files.tar.gz.sig",
        "x86_64/hello-1.0-1-x86_64.pkg.tar.zst.sig",
      ].sort(),
    );
    expect(byPath.get("x86_64/hello-1.0-1-x86_64.pkg.tar.zst.sig")).toMatchObject({
      stage: 0,
      contentAddressed: true,
    });
    expect(byPath.get("x86_64/extra.db")).toMatchObject({ stage: 1, contentAddressed: false });
    expect(byPath.get("x86_64/extra.db.sig")).toMatchObject({ stage: 2 });
    expect(byPath.get("x86_64/extra.db")!.content).toEqual(
      byPath.get("x86_64/extra.db.tar.gz")!.content,
    );
    expect(result.warnings.join("\n")).toContain("hello-0.9-1-x86_64.pkg.tar.zst: not listed");

    const names = await tarNames(
      new Uint8Array(
        await import("node:zlib").then((z) =>
          z.gunzipSync(byPath.get("x86_64/extra.files")!.content),
        ),
      ),
    );
    expect(names).toEqual([
      "data-1.0-1/",
      "data-1.0-1/desc",
      "data-1.0-1/files",
      "hello-1.0-1/",
      "hello-1.0-1/desc",
      "hello-1.0-1/files",
    ]);
  });

  test("output is deterministic (same input, same database bytes)", async () => {
    const i = await input(false);
    const a = await pacmanLayout.render(i);
    const b = await pacmanLayout.render(i);
    expect(a.files).toEqual(b.files);
    // gzip header: no file name flag, mtime 0 (RFC 1952 §2.3).
    const db = a.files.find((f) => f.path === "x86_64/extra.db")!.content;
    expect([...db.subarray(0, 8)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    expect(a.warnings).toContain("publishing unsigned: no signing key configured");
    expect(a.files.some((f) => f.path.endsWith(".sig"))).toBe(false);
  });

  test("an empty repo still gets an (empty) x86_64 database", async () => {
    const result = await pacmanLayout.render({ ...(await input(false)), packages: [] });
    expect(result.files.map((f) => f.path)).toContain("x86_64/extra.db");
  });

  test("describe() is the desc entry", async () => {
    const pkg = buildPacmanPackage(SPEC);
    const meta = await pacmanLayout.parse(bufferSource(pkg.bytes), pkg.filename);
    const text = pacmanLayout.describe(meta, pkg.filename);
    expect(text.startsWith(`%FILENAME%\n${pkg.filename}\n\n%NAME%\nhello\n\n`)).toBe(true);
    expect(text).toContain("%DEPENDS%\nglibc\nbash>=5\n\n");
    expect(() => pacmanLayout.describe({ format: "deb" }, "x.deb")).toThrow(/x\.deb/);
  });
});

describe("file list order", () => {
  test("compareBytes sorts like LC_ALL=C sort (UTF-8 bytes)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        expect(Math.sign(compareBytes(a, b)) + 0).toBe(
          Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))) + 0,
        );
      }),
    );
    expect(compareBytes("\u{1F600}", "\uFFFD")).toBe(1);
  });

  test("a parsed package lists its files in UTF-8 byte order, with or without astral names", async () => {
    const extras: Record<string, string>[] = [
      {},
      { "usr/share/\u{1F600}": "x", "usr/share/\uFFFD": "y" },
    ];
    for (const extra of extras) {
      const { bytes, filename } = buildPacmanPackage({
        ...SPEC,
        files: { "usr/bin/B": "1", "usr/bin/a": "2", "usr/bin/\u00e9": "3", ...extra },
      });
      const meta = await readPacmanPackage(bufferSource(bytes), filename);
      const bytewise = [...meta.files].sort((a, b) =>
        Buffer.compare(Buffer.from(a), Buffer.from(b)),
      );
      expect(meta.files).toEqual(bytewise);
      expect(meta.files).toContain("usr/bin/\u00e9");
    }
  });
});

describe("tar header numbers", () => {
  /** A one-file ustar archive whose size field is `field` (12 bytes), checksum fixed up. */
  function tarWithSizeField(field: string): Uint8Array {
    const tar = writeTar([{ name: "f", content: new Uint8Array(5), mtime: 0 }]);
    tar.set(new TextEncoder().encode(field.padEnd(12, "\0").slice(0, 12)), 124);
    tar.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += tar[i]!;
    tar.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    return tar;
  }
  async function sizeOf(field: string): Promise<number> {
    let size = -1;
    await readTarStream([tarWithSizeField(field)], {
      maxContent: 0,
      maxMembers: 10,
      wantContent: () => false,
      onMember: (m) => (size = m.size),
    });
    return size;
  }

  test("octal fields padded with NULs or spaces, leading spaces too, read as writers mean", async () => {
    expect(await sizeOf("00000000005\0")).toBe(5);
    expect(await sizeOf("5 \0")).toBe(5);
    expect(await sizeOf("     5\0 ")).toBe(5);
  });

  test("anything else in an octal field is refused, quoting it", async () => {
    for (const bad of ["0000000008\0", "5 5", "+5", "5\x005"]) {
      await expect(sizeOf(bad)).rejects.toThrow(/bad size field/);
    }
  });
});

describe("package signatures", () => {
  test("missing signatures are one warning; readPackage() signs at render time", async () => {
    const { signer } = await makeTestSigner();
    const pkgs = [buildPacmanPackage(SPEC), buildPacmanPackage({ ...SPEC, name: "other" })];
    const packages = [];
    for (const p of pkgs) {
      const meta = await pacmanLayout.parse(bufferSource(p.bytes), p.filename);
      packages.push(publishedPacman(p, meta, [`x86_64/${p.filename}`]));
    }
    const base = {
      repo: pacmanRepo("r"),
      distroVersions: new Map(),
      packages,
      signer,
      options: DEFAULT_LAYOUT_OPTIONS,
      now: new Date(0),
    };
    const unsigned = await pacmanLayout.render(base);
    expect(unsigned.warnings.filter((w) => w.includes("no signature available"))).toHaveLength(1);
    expect(unsigned.files.some((f) => f.path.endsWith(".pkg.tar.zst.sig"))).toBe(false);

    const bytes = new Map(packages.map((p, i) => [p, pkgs[i]!.bytes]));
    const signed = await pacmanLayout.render({
      ...base,
      readPackage: (p: PublishedPackage) => Promise.resolve(bytes.get(p)!),
    } as PacmanRenderInput);
    expect(signed.warnings).toEqual([]);
    const sig = signed.files.find((f) => f.path === `x86_64/${pkgs[0]!.filename}.sig`)!;
    const check = await gpgv(signer.publicKeyBinary(), sig.content, pkgs[0]!.bytes);
    expect(check.ok, check.output).toBe(true);
  });
});
