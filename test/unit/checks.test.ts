/**
 * The client-view checkers against the real renderers: every layout's output passes, and each
 * kind of damage a client would trip over (a tampered index, a wrong package, a missing
 * by-hash copy, a signature by another key, a stale entry) is reported with its path.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import type { CheckResult, TreeReader } from "../../src/layout/types.js";
import { writeTar } from "../../src/layout/formats/tar.js";
import { createYumCheck } from "../../src/layout/checks/yum.js";
import { layoutFor } from "../../src/layout/index.js";
import { bufferSource, type PublishedPackage, type RenderedFile } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { Signer } from "../../src/signing/signer.js";
import { createSignatureVerifier, type SignatureVerifier } from "../../src/signing/verify.js";
import type { DistroVersion, Repo } from "../../src/types.js";
import { buildDeb, controlText } from "../support/deb-builder.js";
import { buildPacmanPackage } from "../support/pacman-builder.js";
import { buildWheel } from "../support/python-builder.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../support/rpm-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Built {
  files: Map<string, Uint8Array>;
  packages: Map<string, Uint8Array>;
  metadataPaths: string[];
}

interface Input {
  packageName: string;
  version: string;
  arch: string;
  filename: string;
  type: string;
  bytes: Uint8Array;
}

async function build(
  managerType: string,
  dv: DistroVersion,
  inputs: Input[],
  signer: Signer | null,
): Promise<Built> {
  const layout = layoutFor(managerType)!;
  const repo: Repo = {
    uri: `/api/v2/Repo/Repo:r-${managerType}:`,
    name: `r-${managerType}`,
    description: "",
    filesystemDir: managerType,
    managerType,
    distroVersionUris: [dv.uri],
    tag: "prod",
    showOnlyLatest: false,
  };
  const repoArches = [...new Set(inputs.map((i) => i.arch))].sort();
  const published: PublishedPackage[] = [];
  const packages = new Map<string, Uint8Array>();
  let id = 1;
  for (const i of inputs) {
    const file = {
      uri: `/api/v2/Package/PackageFile:${id++}:`,
      packageName: i.packageName,
      distroVersionUri: dv.uri,
      version: i.version,
      type: i.type,
      arch: i.arch,
      fileUrl: `/files/${i.filename}`,
      filename: i.filename,
      sha256: sha(i.bytes),
      tags: ["prod"],
      failedAt: null,
      deprecatedAt: null,
    };
    const paths = layout.placePackage({
      repo,
      file,
      distroVersion: dv,
      repoArches,
      options: DEFAULT_LAYOUT_OPTIONS,
    });
    for (const p of paths) packages.set(p, i.bytes);
    published.push({
      file,
      distroVersion: dv,
      paths,
      size: i.bytes.length,
      sha256: sha(i.bytes),
      meta: await layout.parse(bufferSource(i.bytes), i.filename),
    });
  }
  const { files } = await layout.render({
    repo,
    distroVersions: new Map([[dv.uri, dv]]),
    packages: published,
    signer,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date("2026-01-02T03:04:05Z"),
  });
  return {
    files: new Map(files.map((f: RenderedFile) => [f.path, f.content])),
    packages,
    metadataPaths: files.map((f) => f.path),
  };
}

function readerOf(b: Built): TreeReader {
  return {
    read: (p) => Promise.resolve(b.files.get(p) ?? null),
    packageInfo: (p) => {
      const bytes = b.packages.get(p);
      return Promise.resolve(bytes ? { size: bytes.length, sha256: sha(bytes) } : null);
    },
  };
}

async function check(
  managerType: string,
  b: Built,
  verifier: SignatureVerifier | null,
): Promise<CheckResult> {
  return layoutFor(managerType)!.check({
    reader: readerOf(b),
    metadataPaths: b.metadataPaths,
    verifier,
  });
}

const clone = (b: Built): Built => ({
  files: new Map(b.files),
  packages: new Map(b.packages),
  metadataPaths: [...b.metadataPaths],
});
const flip = (data: Uint8Array, at = data.length - 2): Uint8Array => {
  const out = Uint8Array.from(data);
  out[at] = (out[at] ?? 0) ^ 0x20;
  return out;
};
const paths = (r: CheckResult) => r.problems.map((p) => p.path);

const bookworm: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:bookworm:",
  name: "bookworm",
  distro: "debian",
  version: "bookworm",
  fileType: "deb",
  releaseNames: "",
};
const el9: DistroVersion = {
  ...bookworm,
  uri: "/dv/el9",
  name: "el9",
  distro: "rhel",
  version: "9",
  fileType: "rpm",
};
const arch: DistroVersion = {
  ...bookworm,
  uri: "/dv/arch",
  name: "arch",
  distro: "arch",
  version: null,
  fileType: "pacman",
};
const none: DistroVersion = {
  ...bookworm,
  uri: "/dv/none",
  name: "none",
  distro: "none",
  version: null,
  fileType: "json",
};

function deb(name: string, version: string, arch = "all"): Input {
  const bytes = buildDeb({
    control: controlText({
      Package: name,
      Version: version,
      Architecture: arch,
      Maintainer: "T <t@packrat.invalid>",
      Description: `${name}\n test`,
    }),
    files: { [`usr/share/doc/${name}/README`]: "x\n" },
  });
  return {
    packageName: name,
    version,
    arch: arch === "amd64" ? "x86_64" : arch,
    filename: `${name}_${version}_${arch}.deb`,
    type: "deb",
    bytes,
  };
}

describe("client-view checkers", () => {
  let signer: Signer;
  let verifier: SignatureVerifier;
  let otherVerifier: SignatureVerifier;
  beforeAll(async () => {
    signer = (await makeTestSigner()).signer;
    verifier = await createSignatureVerifier(signer.publicKeyArmored());
    otherVerifier = await createSignatureVerifier(
      (await makeTestSigner("other")).signer.publicKeyArmored(),
    );
  });

  describe("apt", () => {
    let good: Built;
    beforeAll(async () => {
      good = await build(
        "apt",
        bookworm,
        [deb("hello", "1.0"), deb("bin", "2.0", "amd64")],
        signer,
      );
    });

    it("passes what the apt layout renders, signed and unsigned", async () => {
      const r = await check("apt", good, verifier);
      expect(r.problems).toEqual([]);
      expect(r.entryPoints).toBe(1);
      expect(r.packages).toBe(2); // binary-amd64 lists hello (all) and bin
      const unsigned = await build("apt", bookworm, [deb("hello", "1.0")], null);
      expect((await check("apt", unsigned, null)).problems).toEqual([]);
    });

    it("reports a signature by another key, and an InRelease that signs other text", async () => {
      expect(paths(await check("apt", good, otherVerifier))).toEqual([
        "dists/bookworm/InRelease",
        "dists/bookworm/Release.gpg",
      ]);
      const b = clone(good);
      const text = Buffer.from(b.files.get("dists/bookworm/Release")!)
        .toString()
        .replace("Suite:", "Suite: x\nX-Y:");
      b.files.set("dists/bookworm/Release", Buffer.from(text));
      const r = await check("apt", b, verifier);
      expect(r.problems.map((p) => p.problem).join("\n")).toMatch(/signs a different text/);
      expect(r.problems.map((p) => p.problem).join("\n")).toMatch(
        /does not verify against Release/,
      );
    });

    it("reports an index whose bytes changed, and a missing by-hash copy", async () => {
      const b = clone(good);
      const pk = "dists/bookworm/main/binary-amd64/Packages";
      b.files.set(pk, flip(b.files.get(pk)!));
      const byHash = b.metadataPaths.find(
        (p) =>
          p.includes("binary-amd64/by-hash/") &&
          b.files.get(p)?.length === good.files.get(`${pk}.xz`)?.length,
      )!;
      b.files.delete(byHash);
      const r = await check("apt", b, verifier);
      expect(paths(r)).toContain(pk);
      expect(paths(r)).toContain(byHash);
      expect(r.problems.find((p) => p.path === pk)?.problem).toMatch(/SHA-256 is/);
    });

    it("reports a package that is missing or has other bytes", async () => {
      const b = clone(good);
      b.packages.delete("pool/hello/hello_1.0_all.deb");
      b.packages.set(
        "pool/bin/bin_2.0_amd64.deb",
        flip(b.packages.get("pool/bin/bin_2.0_amd64.deb")!),
      );
      const r = await check("apt", b, verifier);
      expect(
        r.problems.filter((p) => p.path === "pool/hello/hello_1.0_all.deb")[0]?.problem,
      ).toMatch(/missing/);
      expect(r.problems.find((p) => p.path === "pool/bin/bin_2.0_amd64.deb")?.problem).toMatch(
        /SHA-256/,
      );
    });

    it("reports a Release without its component's index", async () => {
      const b = clone(good);
      b.files.delete("dists/bookworm/InRelease");
      const rel = Buffer.from(b.files.get("dists/bookworm/Release")!)
        .toString()
        .replace("Architectures: amd64", "Architectures: amd64 arm64");
      b.files.set("dists/bookworm/Release", Buffer.from(rel));
      const r = await check("apt", b, null);
      expect(r.problems.map((p) => p.problem).join("\n")).toMatch(
        /no main\/binary-arm64\/Packages index/,
      );
    });
  });

  describe("yum", () => {
    let good: Built;
    beforeAll(async () => {
      const inputs = [
        { name: "tool", version: "1.0", release: "1", arch: "x86_64" },
        { name: "docs", version: "2.0", release: "1", arch: "noarch" },
      ].map((s) => ({
        packageName: s.name,
        version: s.version,
        arch: s.arch === "noarch" ? "all" : s.arch,
        filename: syntheticRpmFilename(s),
        type: "rpm",
        bytes: buildSyntheticRpm({ ...s, files: { [`/usr/share/${s.name}`]: "x" } }),
      }));
      good = await build("yum", el9, inputs, signer);
    });

    it("passes what the yum layout renders", async () => {
      const r = await check("yum", good, verifier);
      expect(r.problems).toEqual([]);
      expect(r.packages).toBe(2);
    });

    it("reports a bad repomd signature, a damaged primary and a wrong package", async () => {
      expect(paths(await check("yum", good, otherVerifier))).toEqual([
        "rhel/main/9/repodata/repomd.xml.asc",
      ]);
      const b = clone(good);
      const primary = b.metadataPaths.find((p) => p.endsWith("-primary.xml.gz"))!;
      b.files.set(primary, flip(b.files.get(primary)!));
      const rpm = [...b.packages.keys()][0]!;
      b.packages.set(rpm, flip(b.packages.get(rpm)!));
      const r = await check("yum", b, verifier);
      expect(paths(r)).toContain(primary);
    });

    it("reports a package with other bytes than primary says", async () => {
      const b = clone(good);
      const rpm = [...b.packages.keys()][0]!;
      b.packages.set(rpm, flip(b.packages.get(rpm)!));
      expect(paths(await check("yum", b, verifier))).toEqual([rpm]);
    });

    it("remembers what it read, and still reports what changed after (one checker, three runs)", async () => {
      const checker = createYumCheck();
      const run = (b: Built) =>
        checker({ reader: readerOf(b), metadataPaths: b.metadataPaths, verifier, scope: "r" });
      expect((await run(good)).problems).toEqual([]);
      // The same documents again (every member and element remembered), a package changed.
      const b = clone(good);
      const rpm = [...b.packages.keys()][1]!;
      b.packages.set(rpm, flip(b.packages.get(rpm)!));
      expect(paths(await run(b))).toEqual([rpm]);
      // A damaged primary after a good reading.
      const c = clone(good);
      const primary = c.metadataPaths.find((p) => p.endsWith("-primary.xml.gz"))!;
      c.files.set(primary, flip(c.files.get(primary)!));
      expect(paths(await run(c))).toContain(primary);
      expect((await run(good)).problems).toEqual([]);
    });
  });

  describe("pacman", () => {
    it("passes what the pacman layout renders, and catches a wrong package and db signature", async () => {
      const built = [
        buildPacmanPackage({ name: "hello", version: "1.0-1", arch: "x86_64" }),
        buildPacmanPackage({ name: "data", version: "2.0-1", arch: "any" }),
      ];
      const good = await build(
        "pacman",
        arch,
        built.map((p) => ({
          packageName: p.spec.name,
          version: p.spec.version,
          arch: p.spec.arch === "any" ? "all" : p.spec.arch!,
          filename: p.filename,
          type: "pacman",
          bytes: p.bytes,
        })),
        signer,
      );
      const r = await check("pacman", good, verifier);
      expect(r.problems).toEqual([]);
      expect(r.packages).toBe(2);
      expect(paths(await check("pacman", good, otherVerifier))).toContain("x86_64/pacman.db.sig");
      const b = clone(good);
      b.packages.set("x86_64/hello-1.0-1-x86_64.pkg.tar.zst", flip(built[0]!.bytes));
      expect(paths(await check("pacman", b, verifier))).toEqual([
        "x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
      ]);
    });

    it("reports `./name-ver/desc` entries, which pacman silently ignores", async () => {
      const desc =
        "%FILENAME%\nhello-1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\nhello\n\n%VERSION%\n1.0-1\n\n";
      const db = gzipSync(
        writeTar([
          { name: "./hello-1.0-1/", mtime: 0 },
          { name: "./hello-1.0-1/desc", content: Buffer.from(desc), mtime: 0 },
        ]),
      );
      const b: Built = {
        files: new Map([["x86_64/r.db", db]]),
        packages: new Map(),
        metadataPaths: ["x86_64/r.db"],
      };
      const r = await check("pacman", b, null);
      expect(r.problems.map((p) => p.problem)).toEqual([
        "entry ./hello-1.0-1/desc is not name-ver/desc; pacman ignores it",
      ]);
    });
  });

  describe("pypi", () => {
    it("passes what the pypi layout renders, and catches a wrong sha256", async () => {
      const w = buildWheel({ name: "demo-pkg", version: "1.0" });
      const good = await build(
        "pypi",
        none,
        [
          {
            packageName: "demo-pkg",
            version: "1.0",
            arch: "all",
            filename: w.filename,
            type: "python",
            bytes: w.bytes,
          },
        ],
        null,
      );
      const r = await check("pypi", good, null);
      expect(r.problems).toEqual([]);
      expect(r.packages).toBe(2); // the HTML link and the JSON entry
      const b = clone(good);
      const rel = [...b.packages.keys()][0]!;
      b.packages.set(rel, flip(w.bytes));
      expect(paths(await check("pypi", b, null))).toEqual([rel, rel]);
    });

    it("reports links that leave the repo or lack a hash", async () => {
      const page = Buffer.from(
        '<a href="../../../../etc/passwd#sha256=' +
          "0".repeat(64) +
          '">x</a><a href="../../packages/a/b.whl">y</a>',
      );
      const b: Built = {
        files: new Map([
          ["simple/index.html", Buffer.from('<a href="demo/">demo</a>')],
          ["simple/demo/index.html", page],
        ]),
        packages: new Map([["packages/a/b.whl", Buffer.from("w")]]),
        metadataPaths: ["simple/index.html", "simple/demo/index.html"],
      };
      const r = await check("pypi", b, null);
      expect(r.problems.map((p) => p.problem)).toEqual([
        'names "../../../../etc/passwd#sha256=' +
          "0".repeat(64) +
          '", which points outside the repo',
        "link ../../packages/a/b.whl has no #sha256= fragment",
      ]);
    });
  });

  describe("json", () => {
    it("passes what the json layout renders, and catches a tampered manifest", async () => {
      const bytes = Buffer.from("tool 1.0\n");
      const good = await build(
        "json",
        none,
        [
          {
            packageName: "tool",
            version: "1.0",
            arch: "all",
            filename: "tool_1.0.tar.gz",
            type: "tar",
            bytes,
          },
        ],
        signer,
      );
      expect((await check("json", good, verifier)).problems).toEqual([]);
      const b = clone(good);
      const m = "_repo_main/MANIFEST_all.json";
      b.files.set(
        m,
        Buffer.from(
          Buffer.from(b.files.get(m)!)
            .toString()
            .replace(/"size": \d+/, '"size": 1'),
        ),
      );
      const r = await check("json", b, verifier);
      expect(paths(r)).toEqual([`${m}.gpg`, "tool/tool_1.0.tar.gz"]);
    });
  });
});
