/**
 * Tiny Python distributions (the demo's sample packages and the tests' fixtures), built in memory (never committed as binaries):
 * - buildWheel(): a pure-Python wheel (zip) with `<dist>-<ver>.dist-info/METADATA`, WHEEL
 *   and RECORD.
 * - buildSdist(): an sdist (.tar.gz, .tar.xz, .tar.bz2, .tar.lzma or .zip, compressed by the
 *   real xz and bzip2) with PKG-INFO where sdists have it, elsewhere or nowhere, and an in-tree
 *   PEP 517 backend with no build requirements, so `pip download` can prepare its metadata
 *   offline.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { zipSync } from "fflate";
import { writeTar } from "../../layout/formats/tar.js";

export interface PythonDistSpec {
  name: string;
  version: string;
  requiresPython?: string;
  summary?: string;
  /** More metadata lines, e.g. ["Requires-Dist: requests>=2"]. */
  extraHeaders?: string[];
}

export interface BuiltDist {
  filename: string;
  bytes: Uint8Array;
  spec: PythonDistSpec;
}

const enc = new TextEncoder();

/** PEP 427 / sdist file name component: runs of -_. become _. */
export function distName(name: string): string {
  return name.replace(/[-_.]+/g, "_");
}

export function coreMetadata(spec: PythonDistSpec): string {
  const lines = ["Metadata-Version: 2.1", `Name: ${spec.name}`, `Version: ${spec.version}`];
  lines.push(`Summary: ${spec.summary ?? `${spec.name} test distribution`}`);
  if (spec.requiresPython !== undefined) lines.push(`Requires-Python: ${spec.requiresPython}`);
  lines.push(...(spec.extraHeaders ?? []));
  return `${lines.join("\n")}\n\nA long description\nwith: colons in the body\n`;
}

function recordLine(path: string, data: Uint8Array): string {
  const digest = createHash("sha256").update(data).digest("base64url");
  return `${path},sha256=${digest},${data.length}`;
}

/**
 * `fileName`: the project the wheel's file (and .dist-info directory) names, when it differs
 * from the Name in its METADATA (spec.name).
 */
export function buildWheel(spec: PythonDistSpec, fileName: string = spec.name): BuiltDist {
  const dist = distName(fileName);
  const info = `${dist}-${spec.version}.dist-info`;
  const files: Record<string, Uint8Array> = {
    [`${dist.toLowerCase()}/__init__.py`]: enc.encode(`__version__ = "${spec.version}"\n`),
    [`${info}/METADATA`]: enc.encode(coreMetadata(spec)),
    [`${info}/WHEEL`]: enc.encode(
      "Wheel-Version: 1.0\nGenerator: packrat-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    ),
  };
  const record = [...Object.entries(files).map(([p, d]) => recordLine(p, d)), `${info}/RECORD,,`];
  files[`${info}/RECORD`] = enc.encode(`${record.join("\n")}\n`);
  const bytes = zipSync(files, { level: 6, mtime: new Date("2024-01-01T00:00:00Z") });
  return { filename: `${dist}-${spec.version}-py3-none-any.whl`, bytes, spec };
}

const BACKEND = `"""A PEP 517 backend that only prepares metadata (enough for pip download)."""
import os

def get_requires_for_build_wheel(config_settings=None):
    return []

def get_requires_for_build_sdist(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    # From the backend itself, not PKG-INFO: some test sdists have none, or not at the top.
    metadata = METADATA
    fields = dict(line.split(": ", 1) for line in metadata.split("\\n\\n")[0].splitlines())
    name = "{}-{}.dist-info".format(fields["Name"].replace("-", "_"), fields["Version"])
    os.makedirs(os.path.join(metadata_directory, name))
    with open(os.path.join(metadata_directory, name, "METADATA"), "w", encoding="utf-8") as f:
        f.write(metadata)
    return name

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("test sdists are for download only")

def build_sdist(sdist_directory, config_settings=None):
    raise RuntimeError("test sdists are for download only")
`;

const PYPROJECT = `[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
`;

export type SdistFormat = "tar.gz" | "tar.xz" | "tar.bz2" | "tar.lzma" | "zip";

/**
 * Where PKG-INFO goes: "top" (`<name>-<version>/PKG-INFO`, as sdists are made), "egg-info"
 * (only `<name>-<version>/<name>.egg-info/PKG-INFO`, as in some hand-made sdists), "none".
 */
export type PkgInfoPlace = "top" | "egg-info" | "none";

export function buildSdist(
  spec: PythonDistSpec,
  format: SdistFormat = "tar.gz",
  pkgInfo: PkgInfoPlace = "top",
): BuiltDist {
  const top = `${distName(spec.name)}-${spec.version}`;
  const metadata = coreMetadata(spec);
  const files: Record<string, Uint8Array> = {
    [`${top}/pyproject.toml`]: enc.encode(PYPROJECT),
    [`${top}/backend.py`]: enc.encode(`METADATA = ${JSON.stringify(metadata)}\n${BACKEND}`),
    [`${top}/${distName(spec.name).toLowerCase()}/__init__.py`]: enc.encode("\n"),
  };
  if (pkgInfo === "top") files[`${top}/PKG-INFO`] = enc.encode(metadata);
  if (pkgInfo === "egg-info") {
    files[`${top}/${distName(spec.name)}.egg-info/PKG-INFO`] = enc.encode(metadata);
  }
  const filename = `${top}.${format}`;
  if (format === "zip") {
    return { filename, bytes: zipSync(files, { mtime: new Date("2024-01-01T00:00:00Z") }), spec };
  }
  const mtime = 1704067200;
  const entries = [
    { name: `${top}/`, mtime },
    ...Object.entries(files).map(([name, content]) => ({ name, content, mtime })),
  ];
  const tar = writeTar(entries);
  // The real compressors, so the archives are what sdist tools and people make.
  const compressed =
    format === "tar.gz"
      ? gzipSync(tar)
      : format === "tar.xz"
        ? execFileSync("xz", ["-c", "-6"], { input: tar })
        : format === "tar.bz2"
          ? execFileSync("bzip2", ["-c", "-9"], { input: tar })
          : execFileSync("xz", ["-c", "--format=lzma"], { input: tar });
  return { filename, bytes: new Uint8Array(compressed), spec };
}
