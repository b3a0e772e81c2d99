/**
 * Test .deb files, two ways:
 * - buildDebWithDpkg: the real `dpkg-deb --build` (integration and differential tests);
 * - buildDeb: a pure-TypeScript builder (ar + control.tar.{gz,xz,zst,} + data.tar.gz), fast
 *   enough for benchmarks that need 10,000 synthetic packages, and able to make broken ones.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import type { Compression } from "../../src/layout/formats/compress.js";
import { aptLayout } from "../../src/layout/apt.js";
import { zstdCompress } from "../../src/layout/formats/compress.js";
import { parseDeb } from "../../src/layout/formats/deb.js";
import type { PackageMeta, PublishedPackage, RenderInput } from "../../src/layout/types.js";
import { bufferSource, DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/types.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";

const run = promisify(execFile);
const encoder = new TextEncoder();

export interface DebSpec {
  /** The control file's text, exactly (must end with "\n"). */
  control: string;
  /** Extra files for the data tarball: path (relative, no leading "./") → content. */
  files?: Record<string, string | Uint8Array>;
  /** Compression of control.tar (dpkg-deb: of both members). Default gzip. */
  compression?: Compression;
}

/** A control file from fields (multi-line values: continuation lines as given). */
export function controlText(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}\n`)
    .join("");
}

// ---- tar and ar writers -------------------------------------------------------------------

export interface TarInput {
  name: string;
  content?: Uint8Array;
  directory?: boolean;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/** A ustar archive (names ≤ 100 bytes), root-owned, mtime 0, ended by two zero blocks. */
export function makeTar(entries: readonly TarInput[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const entry of entries) {
    const content = entry.content ?? new Uint8Array(0);
    const header = new Uint8Array(512);
    const put = (offset: number, text: string) => header.set(encoder.encode(text), offset);
    put(0, entry.name);
    put(100, octal(entry.directory ? 0o755 : 0o644, 8));
    put(108, octal(0, 8));
    put(116, octal(0, 8));
    put(124, octal(entry.directory ? 0 : content.length, 12));
    put(136, octal(0, 12));
    put(148, "        ");
    put(156, entry.directory ? "5" : "0");
    put(257, "ustar\0");
    put(263, "00");
    put(265, "root");
    put(297, "root");
    let sum = 0;
    for (const b of header) sum += b;
    put(148, sum.toString(8).padStart(6, "0") + "\0 ");
    blocks.push(header);
    if (!entry.directory && content.length > 0) {
      const padded = new Uint8Array(Math.ceil(content.length / 512) * 512);
      padded.set(content);
      blocks.push(padded);
    }
  }
  blocks.push(new Uint8Array(1024));
  return concat(blocks);
}

/** An ar archive as dpkg-deb writes it (mtime 0, root, mode 100644). */
export function makeAr(members: readonly { name: string; content: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode("!<arch>\n")];
  for (const m of members) {
    const header =
      m.name.padEnd(16) +
      "0".padEnd(12) +
      "0".padEnd(6) +
      "0".padEnd(6) +
      "100644".padEnd(8) +
      String(m.content.length).padEnd(10) +
      "`\n";
    parts.push(encoder.encode(header), m.content);
    if (m.content.length % 2 === 1) parts.push(encoder.encode("\n"));
  }
  return concat(parts);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function compressWith(data: Uint8Array, compression: Compression): Uint8Array {
  switch (compression) {
    case "none":
      return data;
    case "gzip":
      return gzipSync(data);
    case "xz":
      // The real xz, as dpkg-deb would: test builders stay synchronous.
      return execFileSync("xz", ["-c", "-6", "--check=crc64"], { input: data, maxBuffer: 1 << 30 });
    case "zstd":
      return zstdCompress(data);
  }
}

const SUFFIX: Record<Compression, string> = { none: "", gzip: ".gz", xz: ".xz", zstd: ".zst" };

/** A .deb built in memory: no processes, no disk. */
export function buildDeb(spec: DebSpec): Uint8Array {
  const compression = spec.compression ?? "gzip";
  const controlTar = makeTar([
    { name: "./", directory: true },
    { name: "./control", content: encoder.encode(spec.control) },
  ]);
  const dataEntries: TarInput[] = [{ name: "./", directory: true }];
  for (const [name, content] of Object.entries(spec.files ?? {})) {
    dataEntries.push({
      name: `./${name}`,
      content: typeof content === "string" ? encoder.encode(content) : content,
    });
  }
  return makeAr([
    { name: "debian-binary", content: encoder.encode("2.0\n") },
    { name: `control.tar${SUFFIX[compression]}`, content: compressWith(controlTar, compression) },
    { name: "data.tar.gz", content: gzipSync(makeTar(dataEntries)) },
  ]);
}

// ---- the real dpkg-deb ----------------------------------------------------------------------

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
