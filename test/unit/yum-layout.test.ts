import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { decompress } from "../../src/layout/formats/compress.js";
import {
  headerSignatureTag,
  signaturePubkeyAlgo,
  signRpm,
} from "../../src/layout/formats/rpm-sign.js";
import { SigTag } from "../../src/layout/formats/rpm-tags.js";
import { bufferSource, type PublishedPackage, type RenderInput } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { yumLayout } from "../../src/layout/yum.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";
import { gpgv } from "../support/gpg.js";
import {
  buildSyntheticRpm,
  syntheticRpmFilename,
  type SyntheticRpmInput,
} from "../support/rpm-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

const rhel9: DistroVersion = {
  uri: "/dv/rhel9",
  name: "rhel9",
  distro: "rhel",
  version: "9",
  fileType: "rpm",
  releaseNames: "",
};
const centos: DistroVersion = {
  ...rhel9,
  uri: "/dv/centos",
  name: "centos7",
  distro: "centos",
  version: null,
};
const repo: Repo = {
  uri: "/repo/y",
  name: "y",
  description: "",
  filesystemDir: "y",
  managerType: "yum",
  distroVersionUris: [rhel9.uri, centos.uri],
  tag: "",
  showOnlyLatest: false,
};

function fileFor(filename: string, arch: string, dv = rhel9): PackageFile {
  return {
    uri: `/pf/${filename}`,
    packageName: filename.split("-")[0]!,
    distroVersionUri: dv.uri,
    version: "1",
    type: "rpm",
    arch,
    fileUrl: `/files/${filename}`,
    filename,
    sha256: "0".repeat(64),
    tags: [],
    failedAt: null,
    deprecatedAt: null,
  };
}

async function published(input: SyntheticRpmInput, dv = rhel9): Promise<PublishedPackage> {
  const bytes = buildSyntheticRpm(input);
  const filename = syntheticRpmFilename(input);
  const meta = await yumLayout.parse(bufferSource(bytes), filename);
  const file = fileFor(filename, input.arch === "noarch" || !input.arch ? "all" : input.arch, dv);
  const paths = yumLayout.placePackage({
    repo,
    file,
    distroVersion: dv,
    repoArches: [],
    options: DEFAULT_LAYOUT_OPTIONS,
  });
  return {
    file,
    distroVersion: dv,
    paths,
    size: bytes.length,
    sha256: meta.sha256 as string,
    meta,
  };
}

const changelog = Array.from({ length: 15 }, (_, i) => ({
  time: 1700000000 - i * 86400,
  author: `Dev ${i} <d${i}@x.invalid> - 1-${15 - i}`,
  text: `- change ${i}`,
}));

async function input(overrides: Partial<RenderInput> = {}): Promise<RenderInput> {
  return {
    repo,
    distroVersions: new Map([
      [rhel9.uri, rhel9],
      [centos.uri, centos],
    ]),
    packages: [
      await published({ name: "zeta", version: "1", release: "1", arch: "x86_64", changelog }),
      await published({ name: "alpha", version: "2", release: "1", epoch: 4 }),
    ],
    signer: null,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date(1_700_000_000_000),
    ...overrides,
  };
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("yumLayout.placePackage", () => {
  const place = (file: PackageFile, dv: DistroVersion) =>
    yumLayout.placePackage({
      repo,
      file,
      distroVersion: dv,
      repoArches: [],
      options: DEFAULT_LAYOUT_OPTIONS,
    });

  it("puts packages under <distro>/main/<version>/<arch>/ with all → noarch", () => {
    expect(place(fileFor("a-1-1.x86_64.rpm", "x86_64"), rhel9)).toEqual([
      "rhel/main/9/x86_64/a-1-1.x86_64.rpm",
    ]);
    expect(place(fileFor("a-1-1.noarch.rpm", "all"), rhel9)).toEqual([
      "rhel/main/9/noarch/a-1-1.noarch.rpm",
    ]);
  });

  it("uses the distro version's name when its version is null", () => {
    expect(place(fileFor("a-1-1.noarch.rpm", "all"), centos)).toEqual([
      "centos/main/centos7/noarch/a-1-1.noarch.rpm",
    ]);
  });

  it("refuses a distro or version that would escape the tree", () => {
    for (const dv of [
      { ...rhel9, distro: ".." },
      { ...rhel9, version: "9/../../x" },
      { ...rhel9, version: "" },
    ]) {
      let err: unknown;
      try {
        place(fileFor("a-1-1.noarch.rpm", "all"), dv);
      } catch (e) {
        err = e;
      }
      expect(isPackratError(err, "PACKRAT_UNSAFE_FILENAME")).toBe(true);
    }
  });
});

describe("yumLayout.render", () => {
  it("writes checksum-named repodata whose repomd entries match the bytes", async () => {
    const { files, warnings } = await yumLayout.render(await input());
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/unsigned/);
    const paths = files.map((f) => f.path);
    // Every distro version gets a repo, even one without packages.
    expect(paths).toContain("centos/main/centos7/repodata/repomd.xml");
    expect(paths.some((p) => p.endsWith(".asc"))).toBe(false);
    const repomd = files.find((f) => f.path === "rhel/main/9/repodata/repomd.xml")!;
    expect(repomd.stage).toBe(1);
    expect(repomd.contentAddressed).toBe(false);
    const xml = Buffer.from(repomd.content).toString("utf8");
    expect(xml).toContain("<revision>1700000000</revision>");
    for (const type of ["primary", "filelists", "other"]) {
      const data = new RegExp(
        `<data type="${type}">\\s*<checksum type="sha256">(\\w+)</checksum>\\s*<open-checksum type="sha256">(\\w+)</open-checksum>\\s*<location href="([^"]+)"/>\\s*<timestamp>(\\d+)</timestamp>\\s*<size>(\\d+)</size>\\s*<open-size>(\\d+)</open-size>`,
      ).exec(xml);
      expect(data, type).not.toBeNull();
      const [, checksum, openChecksum, href, , size, openSize] = data!;
      expect(href).toBe(`repodata/${checksum}-${type}.xml.gz`);
      const file = files.find((f) => f.path === `rhel/main/9/${href}`)!;
      expect(file.contentAddressed).toBe(true);
      expect(file.stage).toBe(0);
      expect(sha(file.content)).toBe(checksum);
      expect(file.content.length).toBe(Number(size));
      const open = gunzipSync(file.content);
      expect(sha(open)).toBe(openChecksum);
      expect(open.length).toBe(Number(openSize));
    }
  });

  it("is deterministic and sorts packages by name", async () => {
    const a = await yumLayout.render(await input());
    const reversed = await input();
    const b = await yumLayout.render({ ...reversed, packages: [...reversed.packages].reverse() });
    expect(b.files.map((f) => [f.path, sha(f.content)])).toEqual(
      a.files.map((f) => [f.path, sha(f.content)]),
    );
    const primary = a.files.find((f) => /rhel\/main\/9\/.*-primary/.test(f.path))!;
    const text = gunzipSync(primary.content).toString("utf8");
    expect(text.indexOf("<name>alpha</name>")).toBeLessThan(text.indexOf("<name>zeta</name>"));
    expect(text).toContain('<location href="noarch/alpha-2-1.noarch.rpm"/>');
    expect(text).toContain('<location href="x86_64/zeta-1-1.x86_64.rpm"/>');
    expect(text).toContain('packages="2"');
  });

  it("keeps rpm_changelog_limit changelogs, newest ones, oldest first", async () => {
    const { files } = await yumLayout.render(
      await input({ options: { ...DEFAULT_LAYOUT_OPTIONS, rpmChangelogLimit: 3 } }),
    );
    const other = files.find((f) => /rhel\/main\/9\/.*-other/.test(f.path))!;
    const text = gunzipSync(other.content).toString("utf8");
    expect([...text.matchAll(/<changelog[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual([
      "- change 2",
      "- change 1",
      "- change 0",
    ]);
  });

  it("compresses with zstd when asked", async () => {
    const { files } = await yumLayout.render(
      await input({ options: { ...DEFAULT_LAYOUT_OPTIONS, yumCompression: "zstd" } }),
    );
    const primary = files.find((f) =>
      /rhel\/main\/9\/repodata\/[0-9a-f]{64}-primary\.xml\.zst$/.test(f.path),
    )!;
    expect(
      Buffer.from(await decompress(primary.content, "zstd", 1 << 30)).toString("utf8"),
    ).toContain("<name>zeta</name>");
  });

  it("signs repomd.xml: .asc in the last stage, verified by gpgv", async () => {
    const { signer } = await makeTestSigner();
    const { files, warnings } = await yumLayout.render(await input({ signer }));
    expect(warnings).toEqual([]);
    const repomd = files.find((f) => f.path === "rhel/main/9/repodata/repomd.xml")!;
    const asc = files.find((f) => f.path === "rhel/main/9/repodata/repomd.xml.asc")!;
    expect(asc.stage).toBeGreaterThan(repomd.stage);
    expect((await gpgv(signer.publicKeyBinary(), asc.content, repomd.content)).ok).toBe(true);
    const tampered = Buffer.from(repomd.content);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 3) ^ 1, tampered.length - 3);
    expect((await gpgv(signer.publicKeyBinary(), asc.content, tampered)).ok).toBe(false);
  });

  it("warns when metadata was parsed from other bytes than those published", async () => {
    const base = await input();
    const [first, ...rest] = base.packages;
    const moved = { ...first!, sha256: "f".repeat(64) };
    const { warnings } = await yumLayout.render({ ...base, packages: [moved, ...rest] });
    expect(warnings.some((w) => w.includes("header-range"))).toBe(true);
  });
});

describe("yumLayout.describe", () => {
  it("prints the primary.xml entry", async () => {
    const pkg = await published({
      name: "demo",
      version: "3",
      release: "1",
      arch: "x86_64",
      summary: "A & B",
    });
    const text = yumLayout.describe(pkg.meta, pkg.file.filename);
    expect(text).toContain("<name>demo</name>");
    expect(text).toContain("<summary>A &amp; B</summary>");
    expect(text).toContain('<location href="x86_64/demo-3-1.x86_64.rpm"/>');
    expect(text).toContain(`<checksum type="sha256" pkgid="YES">${pkg.sha256}</checksum>`);
  });

  it("refuses metadata that is not an RPM's", () => {
    expect(() => yumLayout.describe({ format: "deb" }, "x.deb")).toThrow(/not RPM metadata/);
  });
});

describe("RPM signing helpers", () => {
  it("picks the signature tag rpm uses for each key algorithm", () => {
    expect(headerSignatureTag(1)).toBe(SigTag.RSA);
    expect(headerSignatureTag(17)).toBe(SigTag.DSA);
    expect(headerSignatureTag(22)).toBe(SigTag.DSA);
    expect(() => headerSignatureTag(27)).toThrow(/algorithm 27/);
  });

  it("reads the algorithm of an openpgp.js signature packet", async () => {
    const { signer } = await makeTestSigner();
    expect(signaturePubkeyAlgo(await signer.signDetachedBinary(new Uint8Array([1, 2, 3])))).toBe(
      22,
    );
  });

  it("refuses to sign a file whose header digest is wrong", async () => {
    const { signer } = await makeTestSigner();
    const bytes = Buffer.from(buildSyntheticRpm({ name: "x", version: "1", release: "1" }));
    const meta = await yumLayout.parse(bufferSource(bytes), "x.rpm");
    const at = (meta.headerEnd as number) - 2;
    bytes.writeUInt8(bytes.readUInt8(at) ^ 1, at);
    await expect(signRpm(bufferSource(bytes), "x.rpm", signer)).rejects.toMatchObject({
      code: "PACKRAT_PACKAGE_INVALID",
    });
  });

  it("keeps the header and payload byte for byte", async () => {
    const { signer } = await makeTestSigner();
    const bytes = buildSyntheticRpm({
      name: "x",
      version: "1",
      release: "1",
      files: { "/a": "a" },
    });
    const before = await yumLayout.parse(bufferSource(bytes), "x.rpm");
    const signed = await signRpm(bufferSource(bytes), "x.rpm", signer);
    const after = await yumLayout.parse(bufferSource(signed), "x.rpm");
    expect(Buffer.from(signed.subarray(after.headerStart as number))).toEqual(
      Buffer.from(bytes.subarray(before.headerStart as number)),
    );
    expect((after.headerStart as number) % 8).toBe(0);
  });
});
