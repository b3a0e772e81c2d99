/**
 * Test .deb files, two ways:
 * - buildDebWithDpkg: the real `dpkg-deb --build` (integration and differential tests);
 * - buildDeb: a pure-TypeScript builder (ar + control.tar.{gz,xz,zst,} + data.tar.gz), fast
 *   enough for benchmarks that need 10,000 synthetic packages, and able to make broken ones.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Compression } from "../../src/layout/formats/compress.js";
import { aptLayout } from "../../src/layout/apt.js";
import { parseDeb } from "../../src/layout/formats/deb.js";
import type { PackageMeta, PublishedPackage, RenderInput } from "../../src/layout/types.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";

const run = promisify(execFile);
export {
  buildDeb,
  compressWith,
  concat,
  controlText,
  makeAr,
  makeTar,
  type DebSpec,
  type TarInput,
} from "../../src/demo/packages/deb.js";
import { type DebSpec } from "../../src/demo/packages/deb.js";

const DPKG_COMPRESSION: Record<Compression, string> = {
  none: "none",
  gzip: "gzip",
  xz: "xz",
  zstd: "zstd",
};

/**
 * Build `<outDir>/<name>` with `dpkg-deb --build --root-owner-group -Z<type>` (which compresses
 * control.tar and data.tar alike). Returns the file's bytes.
 */
export async function buildDebWithDpkg(
  outDir: string,
  name: string,
  spec: DebSpec,
): Promise<Uint8Array> {
  const root = await mkdtemp(path.join(tmpdir(), "packrat-debroot-"));
  try {
    await mkdir(path.join(root, "DEBIAN"));
    await writeFile(path.join(root, "DEBIAN", "control"), spec.control);
    for (const [rel, content] of Object.entries(
      spec.files ?? { "usr/share/doc/x/README": "x\n" },
    )) {
      await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await writeFile(path.join(root, rel), content);
    }
    const out = path.join(outDir, name);
    await run("dpkg-deb", [
      `-Z${DPKG_COMPRESSION[spec.compression ?? "gzip"]}`,
      "--root-owner-group",
      "--build",
      root,
      out,
    ]);
    return new Uint8Array(await readFile(out));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

// ---- render inputs for apt layout tests -----------------------------------------------------

export function testRepo(name = "prod-apt", overrides: Partial<Repo> = {}): Repo {
  return {
    uri: `/api/v2/Repo/Repo:${name}:`,
    name,
    description: "Production apt",
    filesystemDir: name,
    managerType: "apt",
    distroVersionUris: [],
    tag: "prod",
    showOnlyLatest: false,
    ...overrides,
  };
}

export function testDistroVersion(name: string, version: string | null = name): DistroVersion {
  return {
    uri: `/api/v2/Attrib/DistroVersion:${name}:`,
    name,
    distro: "debian",
    version,
    fileType: "deb",
    releaseNames: "",
  };
}

let nextFileId = 1;

/** A PublishedPackage for a .deb's bytes: parsed, placed where the apt layout puts it. */
export async function publishDeb(
  bytes: Uint8Array,
  filename: string,
  dv: DistroVersion,
  repo: Repo = testRepo(),
  packratArch?: string,
): Promise<PublishedPackage & { content: Uint8Array }> {
  const meta = await parseDeb(bufferSource(bytes), filename);
  const packageName = meta.control.find(([n]) => n === "Package")?.[1] ?? "x";
  const arch = meta.control.find(([n]) => n === "Architecture")?.[1] ?? "all";
  const file: PackageFile = {
    uri: `/api/v2/Package/PackageFile:${nextFileId++}:`,
    packageName,
    distroVersionUri: dv.uri,
    version: meta.control.find(([n]) => n === "Version")?.[1] ?? "0",
    type: "deb",
    arch: packratArch ?? (arch === "amd64" ? "x86_64" : arch),
    fileUrl: `/files/${filename}`,
    filename,
    sha256: meta.sha256,
    tags: [repo.tag],
    failedAt: null,
    deprecatedAt: null,
  };
  const paths = aptLayout.placePackage({
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
    sha256: meta.sha256,
    meta: meta as unknown as PackageMeta,
    content: bytes,
  };
}

export function renderInput(
  packages: readonly PublishedPackage[],
  distroVersions: readonly DistroVersion[],
  overrides: Partial<RenderInput> = {},
): RenderInput {
  return {
    repo: testRepo(),
    distroVersions: new Map(distroVersions.map((dv) => [dv.uri, dv])),
    packages,
    signer: null,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date("2026-01-02T03:04:05Z"),
    ...overrides,
  };
}

// ---- the fixture set of the apt integration and differential tests ---------------------------
// Built with the real dpkg-deb: epochs, tildes, Architecture all, multi-line descriptions,
// Depends/Pre-Depends/Provides, and every control.tar compression (dpkg-deb -Z applies to both
// members).

export interface FixtureDeb {
  filename: string;
  name: string;
  version: string;
  arch: string;
  compression: Compression;
  bytes: Uint8Array;
}

interface FixtureSpec {
  name: string;
  version: string;
  arch: string;
  compression: Compression;
  extra?: string;
}

export const FIXTURE_SPECS: readonly FixtureSpec[] = [
  {
    name: "hello-packrat",
    version: "1:2.0~rc1-3",
    arch: "amd64",
    compression: "gzip",
    extra:
      "Depends: libc6 (>= 2.3), hello-data | hello-extra\nPre-Depends: dpkg (>= 1.15)\nProvides: hello\n" +
      "Section: misc\nPriority: optional\nHomepage: https://example.com/hello\n" +
      "Description: says hello\n A longer text that spans\n several lines.\n .\n   An indented block\n stays indented.\n",
  },
  {
    name: "hello-packrat",
    version: "1:2.0-1",
    arch: "amd64",
    compression: "xz",
    extra: "Depends: libc6\nDescription: says hello, final\n",
  },
  {
    name: "hello-data",
    version: "0.9~beta+dfsg-1~bpo12+1",
    arch: "all",
    compression: "zstd",
    extra:
      "Multi-Arch: foreign\nX-Packrat-Note: custom field\nDescription: shared data\n for hello\n",
  },
  {
    name: "tiny",
    version: "3",
    arch: "all",
    compression: "none",
    extra: "Description: no compression at all\n",
  },
  {
    name: "armtool",
    version: "1.0-1",
    arch: "arm64",
    compression: "xz",
    extra: "Description: an arm64-only package\n",
  },
];

export function fixtureFilename(spec: { name: string; version: string; arch: string }): string {
  // The file name dpkg-name would give, epoch dropped (":" is not a safe filename character).
  return `${spec.name}_${spec.version.replace(/^[0-9]+:/, "")}_${spec.arch}.deb`;
}

export async function buildFixtureDebs(
  dir: string,
  specs: readonly FixtureSpec[] = FIXTURE_SPECS,
): Promise<FixtureDeb[]> {
  const out: FixtureDeb[] = [];
  for (const spec of specs) {
    const filename = fixtureFilename(spec);
    const control =
      `Package: ${spec.name}\nVersion: ${spec.version}\nArchitecture: ${spec.arch}\n` +
      `Maintainer: Packrat Tests <tests@packrat.invalid>\nInstalled-Size: 1\n${spec.extra ?? "Description: x\n"}`;
    const bytes = await buildDebWithDpkg(dir, filename, {
      control,
      compression: spec.compression,
      files: { [`usr/share/doc/${spec.name}/README`]: `${spec.name} ${spec.version}\n` },
    });
    out.push({
      filename,
      name: spec.name,
      version: spec.version,
      arch: spec.arch,
      compression: spec.compression,
      bytes,
    });
  }
  return out;
}
