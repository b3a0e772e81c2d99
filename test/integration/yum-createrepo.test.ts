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
import { bufferSource, type PublishedPackage } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { yumLayout } from "../../src/layout/yum.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";
import {
  buildRpmsWithRpmbuild,
  buildSyntheticRpm,
  STANDARD_SPECS,
  syntheticRpmFilename,
  type SpecInput,
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

/**
 * Packages as they exist in the wild but rpmbuild no longer makes by default: text in
 * ISO-8859-1 (summary, description, a requirement, a provide, a file and a changelog author),
 * and changelog entries that share a date.
 */
const REAL_WORLD_SPECS: readonly SpecInput[] = [
  {
    name: "latin",
    version: "1.0",
    release: "1",
    arch: "noarch",
    latin1: true,
    // « and » are 0xAB and 0xBB: createrepo_c drops 0x80-0xBF as misencoded cp1252.
    summary: "R\u00e9sum\u00e9 \u00abquoted\u00bb caf\u00e9",
    description: "Une description en fran\u00e7ais: \u00e0 bient\u00f4t.",
    preamble: ["Requires: \u00e0\u00e1\u00e2\u00e3\u00e4\u00e5\u00e7", "Provides: caf\u00e9 = 1.0"],
    files: { "/usr/share/latin/caf\u00e9.txt": "x", "/usr/bin/latin-\u00e9": "y" },
    changelog: [["Tue Jan 02 2024", "Jos\u00e9 Tester <jose@example.invalid>", "\u00e9t\u00e9"]],
  },
  {
    name: "sameday",
    version: "2.0",
    release: "1",
    arch: "noarch",
    files: { "/usr/share/sameday/a": "a" },
    changelog: [
      ["Tue Jan 02 2024", "Ann <ann@example.invalid> - 2.0-1", "third that day"],
      ["Tue Jan 02 2024", "Bob <bob@example.invalid> - 1.9-1", "second that day"],
      ["Tue Jan 02 2024", "Cid <cid@example.invalid> - 1.8-1", "first that day"],
      ["Mon Jan 01 2024", "Dee <dee@example.invalid> - 1.7-1", "the day before"],
      ["Mon Jan 01 2024", "Eve <eve@example.invalid> - 1.6-1", "also the day before"],
    ],
  },
];

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
/** other.xml with a changelog limit of 2: which dates move depends on the entries kept. */
let oursOther2: string;
let theirsOther2: string;

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
  const specs = [...STANDARD_SPECS, { ...STANDARD_SPECS[0]!, source: true }, ...REAL_WORLD_SPECS];
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
  const renderOurs = async (limit: number): Promise<Record<string, string>> => {
    const result = await yumLayout.render({
      repo,
      distroVersions: new Map([[dv.uri, dv]]),
      packages: published,
      signer: null,
      options: { ...DEFAULT_LAYOUT_OPTIONS, rpmChangelogLimit: limit },
      now: new Date(1_700_000_000_000),
    });
    const ourDir = path.join(dir, `ours-${limit}`);
    for (const f of result.files) {
      await mkdir(path.dirname(path.join(ourDir, f.path)), { recursive: true });
      await writeFile(path.join(ourDir, f.path), f.content);
    }
    return readRepodata(path.join(ourDir, "rhel/main/9/repodata"));
  };

  // createrepo_c over a copy of the same package tree.
  const repoRoot = path.join(root, "rhel/main/9");
  const renderTheirs = async (limit: number): Promise<Record<string, string>> => {
    const crRoot = path.join(dir, `cr-${limit}`);
    for (const sub of await readdir(repoRoot)) {
      await mkdir(path.join(crRoot, sub), { recursive: true });
      for (const f of await readdir(path.join(repoRoot, sub))) {
        await copyFile(path.join(repoRoot, sub, f), path.join(crRoot, sub, f));
      }
    }
    await run("createrepo_c", ["--quiet", "--changelog-limit", String(limit), crRoot]);
    return readRepodata(path.join(crRoot, "repodata"));
  };
  ours = await renderOurs(10);
  theirs = await renderTheirs(10);
  oursOther2 = (await renderOurs(2)).other ?? "";
  theirsOther2 = (await renderTheirs(2)).other ?? "";
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
      expect(a.size).toBe(7);
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

  it("writes ISO-8859-1 header text as createrepo_c does, so a requirement keeps its name", () => {
    const latin = packagesOf(ours.primary ?? "").get("latin.noarch") ?? "";
    // The name the package requires, as UTF-8 (attributes carry it as character references).
    expect(latin).toContain('<rpm:entry name="&#xE0;&#xE1;&#xE2;&#xE3;&#xE4;&#xE5;&#xE7;"/>');
    expect(latin).toContain('<rpm:entry name="caf&#xE9;" flags="EQ" epoch="0" ver="1.0"/>');
    expect(latin).toContain("<summary>Résumé quoted café</summary>");
    expect(latin).toContain("<description>Une description en français: à bientôt.</description>");
    expect(latin).toContain("<file>/usr/bin/latin-é</file>");
    expect(latin).not.toContain("\ufffd");
    expect(ours.filelists).toContain("<file>/usr/share/latin/café.txt</file>");
    expect(ours.other).toContain('author="Jos&#xE9; Tester &lt;jose@example.invalid&gt;"');
    expect(ours.other).toContain(">- été</changelog>");
  });

  it("moves changelog entries that share a date one second apart, as createrepo_c does", () => {
    const dates = (xml: string) =>
      [...(packagesOf(xml).get("sameday.noarch") ?? "").matchAll(/date="(\d+)">- ([^<]*)</g)].map(
        (m) => `${m[2]}@${m[1]}`,
      );
    const jan1 = Date.UTC(2024, 0, 1, 12) / 1000; // rpm stores a changelog day at noon UTC
    const jan2 = jan1 + 86_400;
    // Oldest first, as other.xml lists them; each repeat one second later than the one before.
    expect(dates(ours.other ?? "")).toEqual([
      `also the day before@${jan1}`,
      `the day before@${jan1 + 1}`,
      `first that day@${jan2}`,
      `second that day@${jan2 + 1}`,
      `third that day@${jan2 + 2}`,
    ]);
    // With two entries kept only one repeat is seen, so the newest moves by one second only.
    expect(dates(oursOther2)).toEqual([`second that day@${jan2}`, `third that day@${jan2 + 1}`]);
    expect([...packagesOf(oursOther2)]).toEqual([...packagesOf(theirsOther2)]);
  });
});
