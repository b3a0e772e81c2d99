import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { decompress } from "../../src/layout/formats/compress.js";
import { aptLayout, codenameOf, createAptLayout } from "../../src/layout/apt.js";
import type { RenderedFile, RenderResult } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { makeTestSigner } from "../support/test-signer.js";
import {
  buildDeb,
  controlText,
  publishDeb,
  renderInput,
  testDistroVersion,
  testRepo,
} from "../support/deb-builder.js";

const dec = new TextDecoder();
const bookworm = testDistroVersion("bookworm");
const trixie = testDistroVersion("trixie");

const deb = (fields: Record<string, string>) =>
  buildDeb({ control: controlText({ Maintainer: "T <t@example.com>", ...fields }) });

let pkgs: Awaited<ReturnType<typeof publishDeb>>[];
let result: RenderResult;

const file = (r: RenderResult, path: string): RenderedFile => {
  const f = r.files.find((x) => x.path === path);
  if (!f) throw new Error(`no ${path} in ${r.files.map((x) => x.path).join(", ")}`);
  return f;
};
const text = (r: RenderResult, path: string) => dec.decode(file(r, path).content);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  pkgs = [
    await publishDeb(
      deb({ Package: "zeta", Version: "1.0", Architecture: "amd64", Description: "z\n line" }),
      "zeta_1.0_amd64.deb",
      bookworm,
    ),
    await publishDeb(
      deb({ Package: "alpha-tools", Version: "1:0.5", Architecture: "all", Description: "a" }),
      "alpha-tools_0.5_all.deb",
      bookworm,
    ),
    await publishDeb(
      deb({ Package: "alpha-tools", Version: "1:0.5~rc1", Architecture: "all", Description: "a" }),
      "alpha-tools_0.5~rc1_all.deb",
      bookworm,
    ),
    await publishDeb(
      deb({ Package: "armonly", Version: "2", Architecture: "arm64", Description: "arm" }),
      "armonly_2_arm64.deb",
      bookworm,
    ),
    await publishDeb(
      deb({ Package: "newer", Version: "3", Architecture: "amd64", Description: "n" }),
      "newer_3_amd64.deb",
      trixie,
    ),
  ];
  result = await aptLayout.render(renderInput(pkgs, [bookworm, trixie]));
});

describe("apt placement", () => {
  it("puts a package in pool/<first 6 chars of the package name>/", () => {
    expect(pkgs[1]!.paths).toEqual(["pool/alpha-/alpha-tools_0.5_all.deb"]);
    expect(pkgs[0]!.paths).toEqual(["pool/zeta/zeta_1.0_amd64.deb"]);
  });
  it("refuses names that could escape the pool", async () => {
    const p = await publishDeb(
      deb({ Package: "xx", Version: "1", Architecture: "all" }),
      "x_1_all.deb",
      bookworm,
    );
    for (const bad of ["..", "a/b", "x y"]) {
      const err = (() => {
        try {
          aptLayout.placePackage({
            repo: testRepo(),
            file: { ...p.file, packageName: bad },
            distroVersion: bookworm,
            repoArches: [],
            options: DEFAULT_LAYOUT_OPTIONS,
          });
        } catch (e) {
          return e;
        }
      })();
      expect(isPackratError(err, "PACKRAT_UNSAFE_FILENAME")).toBe(true);
    }
  });
  it("names dists after the version, or the name when the version is null", () => {
    expect(codenameOf(testDistroVersion("deb12", "bookworm"))).toBe("bookworm");
    expect(codenameOf(testDistroVersion("sid", null))).toBe("sid");
  });
});

describe("apt indexes", () => {
  it("publishes amd64 and the present arches; `all` packages in each", () => {
    const amd64 = text(result, "dists/bookworm/main/binary-amd64/Packages");
    const arm64 = text(result, "dists/bookworm/main/binary-arm64/Packages");
    expect(amd64.match(/^Package: .*/gm)).toEqual([
      "Package: alpha-tools",
      "Package: alpha-tools",
      "Package: zeta",
    ]);
    expect(arm64.match(/^Package: .*/gm)).toEqual([
      "Package: alpha-tools",
      "Package: alpha-tools",
      "Package: armonly",
    ]);
    // Debian version order: the ~rc1 comes first.
    expect(amd64.match(/^Version: .*/gm)).toEqual([
      "Version: 1:0.5~rc1",
      "Version: 1:0.5",
      "Version: 1.0",
    ]);
  });
  it("writes stanzas in dpkg-scanpackages' form", () => {
    const amd64 = text(result, "dists/bookworm/main/binary-amd64/Packages");
    const z = pkgs[0]!;
    const meta = z.meta as { md5: string; sha1: string; sha256: string };
    expect(
      amd64.endsWith(
        `Package: zeta\nVersion: 1.0\nArchitecture: amd64\nMaintainer: T <t@example.com>\n` +
          `Filename: pool/zeta/zeta_1.0_amd64.deb\nSize: ${z.size}\nMD5sum: ${meta.md5}\n` +
          `SHA1: ${meta.sha1}\nSHA256: ${meta.sha256}\nDescription: z\n line\n\n`,
      ),
    ).toBe(true);
    expect(amd64.split("\n\n")).toHaveLength(4);
  });
  it("keeps each dist to its own packages", () => {
    expect(text(result, "dists/trixie/main/binary-amd64/Packages")).toMatch(/^Package: newer\n/);
    expect(text(result, "dists/trixie/main/binary-amd64/Packages")).not.toMatch(/zeta/);
    expect(result.files.some((f) => f.path.startsWith("dists/trixie/main/binary-arm64"))).toBe(
      false,
    );
  });
  it("compresses deterministically: gzip with mtime 0 and no name, xz", async () => {
    const plain = file(result, "dists/bookworm/main/binary-amd64/Packages").content;
    const gz = file(result, "dists/bookworm/main/binary-amd64/Packages.gz").content;
    expect([...gz.subarray(3, 8)]).toEqual([0, 0, 0, 0, 0]); // FLG (no FNAME) and MTIME
    expect(new Uint8Array(gunzipSync(gz))).toEqual(new Uint8Array(plain));
    const xzed = file(result, "dists/bookworm/main/binary-amd64/Packages.xz").content;
    expect(new Uint8Array(await decompress(xzed, "xz", 1 << 30))).toEqual(new Uint8Array(plain));
  });
  it("writes a per-arch Release", () => {
    expect(text(result, "dists/bookworm/main/binary-arm64/Release")).toBe(
      "Archive: bookworm\nOrigin: prod-apt\nLabel: prod-apt\nCodename: bookworm\nComponent: main\nArchitecture: arm64\n",
    );
  });
});

describe("apt Release", () => {
  it("has the header fields in dpkg's Release order", () => {
    const release = text(result, "dists/bookworm/Release");
    expect(release.split("MD5Sum:")[0]).toBe(
      "Origin: prod-apt\nLabel: prod-apt\nSuite: bookworm\nCodename: bookworm\n" +
        "Date: Fri, 02 Jan 2026 03:04:05 UTC\nAcquire-By-Hash: yes\nArchitectures: amd64 arm64\n" +
        "Components: main\nDescription: Production apt\n",
    );
    expect(release).not.toMatch(/SHA512/);
  });
  it("lists every index file with correct sizes and hashes, and each has a by-hash copy", () => {
    const release = text(result, "dists/bookworm/Release");
    const indexPaths = result.files
      .filter((f) => f.path.startsWith("dists/bookworm/main/") && !f.path.includes("/by-hash/"))
      .map((f) => f.path);
    expect(indexPaths).toHaveLength(8);
    for (const algo of ["md5", "sha1", "sha256"] as const) {
      const section = release.split(
        { md5: "MD5Sum:\n", sha1: "SHA1:\n", sha256: "SHA256:\n" }[algo],
      )[1]!;
      for (const path of indexPaths) {
        const f = file(result, path);
        const name = path.slice("dists/bookworm/".length);
        const hash = createHash(algo).update(f.content).digest("hex");
        expect(section).toContain(` ${hash} ${String(f.content.length).padStart(16)} ${name}\n`);
      }
    }
    for (const path of indexPaths) {
      const f = file(result, path);
      const dir = path.slice(0, path.lastIndexOf("/"));
      const byHash = file(result, `${dir}/by-hash/SHA256/${sha256(f.content)}`);
      expect(byHash.content).toEqual(f.content);
      expect(byHash.contentAddressed).toBe(true);
      expect(byHash.stage).toBeLessThan(f.stage);
    }
  });
  it("adds Valid-Until when configured", async () => {
    const r = await aptLayout.render(
      renderInput(pkgs, [bookworm, trixie], {
        options: { ...DEFAULT_LAYOUT_OPTIONS, aptValidUntilSeconds: 86400 },
      }),
    );
    expect(text(r, "dists/bookworm/Release")).toMatch(
      /\nDate: Fri, 02 Jan 2026 03:04:05 UTC\nValid-Until: Sat, 03 Jan 2026 03:04:05 UTC\n/,
    );
  });
  it("publishes the configured architectures only", async () => {
    const r = await aptLayout.render(
      renderInput(pkgs, [bookworm], {
        options: { ...DEFAULT_LAYOUT_OPTIONS, aptArchitectures: ["x86_64", "i386"] },
      }),
    );
    expect(text(r, "dists/bookworm/Release")).toMatch(/\nArchitectures: amd64 i386\n/);
    expect(text(r, "dists/bookworm/main/binary-i386/Packages").match(/^Package: .*/gm)).toEqual([
      "Package: alpha-tools",
      "Package: alpha-tools",
    ]);
    expect(r.files.some((f) => f.path.includes("binary-arm64"))).toBe(false);
  });
  it("publishes unsigned with one warning, signed with InRelease last", async () => {
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatch(/unsigned/);
    expect(result.files.some((f) => /InRelease|Release\.gpg/.test(f.path))).toBe(false);
    const { signer } = await makeTestSigner();
    const signed = await aptLayout.render(renderInput(pkgs, [bookworm], { signer }));
    expect(signed.warnings).toEqual([]);
    const inRelease = file(signed, "dists/bookworm/InRelease");
    expect(dec.decode(inRelease.content)).toMatch(/^-----BEGIN PGP SIGNED MESSAGE-----\n/);
    expect(dec.decode(inRelease.content)).toContain(
      text(signed, "dists/bookworm/Release").split("\n")[0]!,
    );
    expect(text(signed, "dists/bookworm/Release.gpg")).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
    const maxStage = Math.max(...signed.files.map((f) => f.stage));
    expect(inRelease.stage).toBe(maxStage);
    expect(file(signed, "dists/bookworm/Release").stage).toBeLessThan(maxStage);
  });
  it("is deterministic and sorted", async () => {
    const again = await aptLayout.render(renderInput([...pkgs].reverse(), [trixie, bookworm]));
    expect(again.files.map((f) => [f.path, sha256(f.content), f.stage])).toEqual(
      result.files.map((f) => [f.path, sha256(f.content), f.stage]),
    );
    for (const f of result.files) {
      expect(f.path).not.toMatch(/^\/|\.\./);
    }
  });
  it("renders the same bytes with warm caches as a cold render, after packages come and go", async () => {
    const more = await Promise.all(
      ["aaa", "mmm", "zzz", "alpha-tools"].map((name, i) =>
        publishDeb(
          deb({ Package: name, Version: `0.${i}`, Architecture: "all", Description: name }),
          `${name}_0.${i}_all.deb`,
          bookworm,
        ),
      ),
    );
    const warmRepo = testRepo("warm-apt");
    // Warm the caches of repo warm-apt, then change its packages (two added, one dropped).
    await aptLayout.render(renderInput(pkgs, [bookworm, trixie], { repo: warmRepo }));
    const next = [...pkgs.slice(1), ...more];
    const warm = await aptLayout.render(renderInput(next, [bookworm, trixie], { repo: warmRepo }));
    const cold = await aptLayout.render(
      renderInput([...next].reverse(), [bookworm, trixie], { repo: testRepo("cold-apt") }),
    );
    const packages = (r: RenderResult) =>
      dec.decode(file(r, "dists/bookworm/main/binary-amd64/Packages").content);
    expect(packages(warm)).toBe(packages(cold));
    expect(packages(warm)).toMatch(/Package: aaa[\s\S]*Package: alpha-tools[\s\S]*Package: zzz/);
  });
  it("drops the render caches of repos that left the mirror", async () => {
    const layout = createAptLayout();
    await layout.render(renderInput(pkgs, [bookworm]));
    await layout.render(renderInput(pkgs, [bookworm], { repo: testRepo("leaving-apt") }));
    expect(layout.cachedDists()).toContainEqual(["leaving-apt", "bookworm"]);
    layout.forgetRepos!(new Set(["prod-apt"]));
    expect(layout.cachedDists().map(([repo]) => repo)).not.toContain("leaving-apt");
    expect(layout.cachedDists()).toContainEqual(["prod-apt", "bookworm"]);
  });

  it("keeps its render caches to itself: two layouts share nothing", async () => {
    const a = createAptLayout();
    const b = createAptLayout();
    await a.render(renderInput(pkgs, [bookworm], { repo: testRepo("only-in-a") }));
    expect(a.cachedDists()).toContainEqual(["only-in-a", "bookworm"]);
    expect(b.cachedDists()).toEqual([]);
  });
  it("publishes an empty dist for a distro version without packages", async () => {
    const r = await aptLayout.render(renderInput([], [bookworm]));
    expect(text(r, "dists/bookworm/main/binary-amd64/Packages")).toBe("");
    expect(text(r, "dists/bookworm/Release")).toMatch(/\nArchitectures: amd64\n/);
  });
});

describe("apt describe", () => {
  it("gives the stanza the agent would publish", () => {
    const z = pkgs[0]!;
    const stanza = aptLayout.describe(z.meta, "zeta_1.0_amd64.deb");
    expect(text(result, "dists/bookworm/main/binary-amd64/Packages")).toContain(stanza);
  });
  it("refuses metadata that is not a .deb record", () => {
    expect(() => aptLayout.describe({ format: "rpm" }, "x.deb")).toThrow(/not a \.deb record/);
  });
});

describe("apt render checks", () => {
  it("warns when the control Architecture and the master's arch disagree", async () => {
    const p = await publishDeb(
      deb({ Package: "mixed", Version: "1", Architecture: "amd64", Description: "m" }),
      "mixed_1_amd64.deb",
      bookworm,
      testRepo(),
      "arm64",
    );
    const r = await aptLayout.render(renderInput([p], [bookworm]));
    expect(r.warnings.some((w) => /Architecture amd64 but the master says arm64/.test(w))).toBe(
      true,
    );
  });
  it("warns about the same name, version and arch published twice", async () => {
    const a = await publishDeb(
      deb({ Package: "twice", Version: "1", Architecture: "all", Description: "a" }),
      "twice_1_all.deb",
      bookworm,
    );
    const b = await publishDeb(
      deb({ Package: "twice", Version: "1", Architecture: "all", Description: "b" }),
      "twice_1_all_rebuilt.deb",
      bookworm,
    );
    const r = await aptLayout.render(renderInput([a, b], [bookworm]));
    expect(r.warnings.some((w) => /twice 1 \(all\) is published twice/.test(w))).toBe(true);
  });
  it("refuses two different files at one pool path", async () => {
    const a = await publishDeb(
      deb({ Package: "clash", Version: "1", Architecture: "all", Description: "a" }),
      "clash_1_all.deb",
      bookworm,
    );
    const b = await publishDeb(
      deb({ Package: "clash", Version: "1", Architecture: "all", Description: "b" }),
      "clash_1_all.deb",
      trixie,
    );
    await expect(aptLayout.render(renderInput([a, b], [bookworm, trixie]))).rejects.toMatchObject({
      code: "PACKRAT_MASTER_INCONSISTENT",
    });
  });
  it("leaves `all` out of the architecture list", async () => {
    const r = await aptLayout.render(
      renderInput(pkgs, [bookworm], {
        options: { ...DEFAULT_LAYOUT_OPTIONS, aptArchitectures: ["all", "arm64"] },
      }),
    );
    expect(text(r, "dists/bookworm/Release")).toMatch(/\nArchitectures: arm64\n/);
  });
});
