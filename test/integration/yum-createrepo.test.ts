/**
 * Differential test: our primary/filelists/other against createrepo_c's for the same RPMs
 * (rpmbuild-made binary and source packages, plus synthetic ones). Entries are compared
 * package by package as text, after removing the one field we cannot know: createrepo_c's
 * <time file="..."> is the file's mtime, ours is the build time (layouts never stat).
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bufferSource,
  DEFAULT_LAYOUT_OPTIONS,
  type PublishedPackage,
} from "../../src/layout/types.js";
import { yumLayout } from "../../src/layout/yum.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";
import {
  buildRpmsWithRpmbuild,
  buildSyntheticRpm,
  STANDARD_SPECS,
  syntheticRpmFilename,
  type SyntheticRpmInput,
} from "../support/rpm-builder.js";

const run = promisify(execFile);

const dv: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:rhel9:",
  name: "rhel9",
  distro: "rhel",
  version: "9",
  fileType: "rpm",
  releaseNames: "",
};
const repo: Repo = {
  uri: "/api/v2/Repo/Repo:yum:",
  name: "yum",
  description: "",
  filesystemDir: "yum",
  managerType: "yum",
  distroVersionUris: [dv.uri],
  tag: "",
  showOnlyLatest: false,
};

const synthetic: SyntheticRpmInput[] = [
  {
    name: "syn-gz",
    version: "2.0",
    release: "1",
    epoch: 1,
    arch: "x86_64",
    description: 'odd chars: <&> "quoted" ü',
    files: { "/usr/bin/syn": "x", "/usr/sbin/synd": "y", "/opt/syn/data": "z" },
    requires: [{ name: "glibc" }],
    compress: "gzip",
  },
  { name: "syn-plain", version: "1", release: "0.1", files: { "/etc/syn.conf": "c" } },
];

let dir: string;
let ours: Record<string, string>;
let theirs: Record<string, string>;

function packagesOf(xml: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of xml.matchAll(/<package[ >][\s\S]*?<\/package>/g)) {
    const block = m[0].replace(/<time file="\d+"/, '<time file="X"');
    const name = /<name>([^<]*)<\/name>|name="([^"]*)"/.exec(block);
    const arch = /<arch>([^<]*)<\/arch>|arch="([^"]*)"/.exec(block);
    out.set(`${name?.[1] ?? name?.[2]}.${arch?.[1] ?? arch?.[2]}`, block);
  }
  return out;
}

async function readRepodata(repodata: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await readdir(repodata)) {
    const m = /-(primary|filelists|other)\.xml\.gz$/.exec(f);
    if (m?.[1]) out[m[1]] = gunzipSync(await readFile(path.join(repodata, f))).toString("utf8");
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-createrepo-"));
  const specs = [...STANDARD_SPECS, { ...STANDARD_SPECS[0]!, source: true }];
  const builtPaths = await buildRpmsWithRpmbuild(path.join(dir, "build"), specs);
  const rpms: { filename: string; bytes: Uint8Array }[] = [];
  for (const p of builtPaths) rpms.push({ filename: path.basename(p), bytes: await readFile(p) });
  for (const s of synthetic)
    rpms.push({ filename: syntheticRpmFilename(s), bytes: buildSyntheticRpm(s) });

  const root = path.join(dir, "tree");
  const published: PublishedPackage[] = [];
  for (const { filename, bytes } of rpms) {
    const meta = await yumLayout.parse(bufferSource(bytes), filename);
    const arch = meta.arch as string;
    const file: PackageFile = {
      uri: `/api/v2/Package/PackageFile:${filename}:`,
      packageName: meta.name as string,
      distroVersionUri: dv.uri,
      version: "1",
      type: "rpm",
      arch: arch === "noarch" ? "all" : arch,
      fileUrl: `/files/${filename}`,
      filename,
      sha256: meta.sha256 as string,
      tags: [],
      failedAt: null,
      deprecatedAt: null,
    };
    const paths = yumLayout.placePackage({
      repo,
      file,
      distroVersion: dv,
      repoArches: [],
      options: DEFAULT_LAYOUT_OPTIONS,
    });
    for (const p of paths) {
      await mkdir(path.dirname(path.join(root, p)), { recursive: true });
      await writeFile(path.join(root, p), bytes);
    }
    published.push({
      file,
      distroVersion: dv,
      paths,
      size: bytes.length,
      sha256: file.sha256,
      meta,
    });
  }
  const result = await yumLayout.render({
    repo,
    distroVersions: new Map([[dv.uri, dv]]),
    packages: published,
    signer: null,
    options: { ...DEFAULT_LAYOUT_OPTIONS, rpmChangelogLimit: 10 },
    now: new Date(1_700_000_000_000),
  });
  const ourDir = path.join(dir, "ours");
  for (const f of result.files) {
    await mkdir(path.dirname(path.join(ourDir, f.path)), { recursive: true });
    await writeFile(path.join(ourDir, f.path), f.content);
  }
  ours = await readRepodata(path.join(ourDir, "rhel/main/9/repodata"));

  // createrepo_c over a copy of the same package tree.
  const crRoot = path.join(dir, "cr");
  const repoRoot = path.join(root, "rhel/main/9");
  for (const sub of await readdir(repoRoot)) {
    await mkdir(path.join(crRoot, sub), { recursive: true });
    for (const f of await readdir(path.join(repoRoot, sub))) {
      await copyFile(path.join(repoRoot, sub, f), path.join(crRoot, sub, f));
    }
  }
  await run("createrepo_c", ["--quiet", "--changelog-limit", "10", crRoot]);
  theirs = await readRepodata(path.join(crRoot, "repodata"));
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("yum metadata against createrepo_c", () => {
  for (const type of ["primary", "filelists", "other"] as const) {
    it(`${type}.xml has the same entries`, () => {
      const a = packagesOf(ours[type] ?? "");
      const b = packagesOf(theirs[type] ?? "");
      expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
      expect(a.size).toBe(5);
      for (const [key, block] of b) expect(a.get(key), key).toBe(block);
    });
  }

  it("covers an epoch, noarch, x86_64, src, weak deps, pre-requires and ghosts", () => {
    const primary = ours.primary ?? "";
    expect(primary).toContain('<version epoch="2" ver="1.0" rel="3"/>');
    expect(primary).toContain("<arch>noarch</arch>");
    expect(primary).toContain("<arch>src</arch>");
    expect(primary).toMatch(/<rpm:recommends>\s*<rpm:entry name="vim"\/>/);
    expect(primary).toContain('<rpm:entry name="/bin/sh" pre="1"/>');
    expect(ours.filelists).toContain('<file type="ghost">/var/log/hello.log</file>');
    expect(ours.other).toContain("second entry");
  });
});
