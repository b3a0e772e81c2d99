/**
 * Test pacman packages, built during test setup (never committed as binaries):
 * - buildPacmanPackage(): pure TypeScript, a .PKGINFO, an optional .MTREE and the files, as
 *   tar + zstd/xz/gzip. Fast enough for benchmarks that need 10,000 packages.
 * - buildPacmanPackageWithBsdtar(): the same input packed by the real bsdtar the way makepkg
 *   packs (`bsdtar -cnf - .PKGINFO .MTREE *`), for differential tests against repo-add.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { PacmanPublishedPackage } from "../../src/layout/pacman.js";
import type { PackageMeta } from "../../src/layout/types.js";
import type { DistroVersion, Repo } from "../../src/types.js";

const run = promisify(execFile);

export {
  buildPacmanPackage,
  compressPacman,
  pacmanFilename,
  pkginfoText,
  type BuiltPacmanPackage,
  type PacmanCompression,
  type PacmanPackageSpec,
} from "../../src/demo/packages/pacman.js";
import {
  pacmanFilename,
  pkginfoText,
  type BuiltPacmanPackage,
  type PacmanPackageSpec,
} from "../../src/demo/packages/pacman.js";

/** The same package packed by the real bsdtar (pax format, as makepkg does). */
export async function buildPacmanPackageWithBsdtar(
  spec: PacmanPackageSpec,
): Promise<BuiltPacmanPackage> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-pkgbuild-"));
  try {
    const root = path.join(dir, "pkg");
    await mkdir(root);
    await writeFile(path.join(root, ".PKGINFO"), pkginfoText(spec));
    const top = new Set<string>();
    for (const [p, content] of Object.entries(spec.files ?? {})) {
      await mkdir(path.dirname(path.join(root, p)), { recursive: true });
      await writeFile(path.join(root, p), content);
      top.add(p.split("/")[0]!);
    }
    const members = [".PKGINFO"];
    if (spec.mtree ?? true) {
      // makepkg: bsdtar --format=mtree ... | gzip > .MTREE
      await run(
        "sh",
        [
          "-c",
          `LANG=C bsdtar -czf .MTREE --format=mtree --options='!all,use-set,type,uid,gid,mode,time,size,sha256,link' .PKGINFO ${[...top].join(" ")}`,
        ],
        { cwd: root },
      );
      members.push(".MTREE");
    }
    members.push(...[...top].sort());
    const flag = { zst: "--zstd", xz: "--xz", gz: "--gzip" }[spec.compression ?? "zst"];
    const out = path.join(dir, pacmanFilename(spec));
    // makepkg packs `.PKGINFO .BUILDINFO .MTREE *` the same way (recursing into directories).
    await run("bsdtar", ["--no-fflags", "-cf", out, flag, ...members], { cwd: root });
    return { filename: pacmanFilename(spec), bytes: new Uint8Array(await readFile(out)), spec };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A PublishedPackage as the sync engine would hand it to render(), for layout tests. */
export function publishedPacman(
  built: BuiltPacmanPackage,
  meta: PackageMeta,
  paths: string[],
  signature?: Uint8Array,
): PacmanPublishedPackage {
  const arch = built.spec.arch ?? "x86_64";
  return {
    file: {
      uri: `/api/v2/Package/PackageFile:${built.filename}:`,
      packageName: built.spec.name,
      distroVersionUri: "/api/v2/Attrib/DistroVersion:arch:",
      version: built.spec.version,
      type: "pacman",
      arch: arch === "any" ? "all" : arch,
      fileUrl: `/files/${built.filename}`,
      filename: built.filename,
      sha256: createHash("sha256").update(built.bytes).digest("hex"),
      tags: [],
      failedAt: null,
      deprecatedAt: null,
    },
    distroVersion: ARCH_DISTRO_VERSION,
    paths,
    size: built.bytes.length,
    sha256: createHash("sha256").update(built.bytes).digest("hex"),
    meta,
    ...(signature ? { signature } : {}),
  };
}

export const ARCH_DISTRO_VERSION: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:arch:",
  name: "arch",
  distro: "arch",
  version: null,
  fileType: "pacman",
  releaseNames: "",
};

export function pacmanRepo(filesystemDir = "testrepo"): Repo {
  return {
    uri: `/api/v2/Repo/Repo:${filesystemDir}:`,
    name: filesystemDir,
    description: "pacman test repo",
    filesystemDir,
    managerType: "pacman",
    distroVersionUris: [ARCH_DISTRO_VERSION.uri],
    tag: "",
    showOnlyLatest: false,
  };
}

/**
 * A package built by the real makepkg from a PKGBUILD (with .BUILDINFO, makepkg's own .MTREE
 * and pax headers). makepkg refuses to run as root, so as root it runs as `nobody` (setpriv)
 * in a directory that user owns.
 */
export async function buildPacmanPackageWithMakepkg(
  pkgbuild: string,
  pkgext: ".pkg.tar.zst" | ".pkg.tar.xz" | ".pkg.tar.gz" = ".pkg.tar.zst",
): Promise<{ filename: string; bytes: Uint8Array }> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-makepkg-"));
  try {
    await writeFile(path.join(dir, "PKGBUILD"), pkgbuild);
    const env = [
      `HOME=${dir}`,
      `PKGDEST=${dir}`,
      `SRCDEST=${dir}`,
      `BUILDDIR=${dir}/build`,
      `PKGEXT=${pkgext}`,
    ];
    const makepkg = ["env", ...env, "makepkg", "--nodeps", "--noconfirm", "--skipinteg"];
    if (process.getuid?.() === 0) {
      await run("chown", ["-R", "nobody", dir]);
      await run("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", ...makepkg], {
        cwd: dir,
      });
    } else {
      await run(makepkg[0]!, makepkg.slice(1), { cwd: dir });
    }
    const filename = (await readdir(dir)).find((f) => f.endsWith(pkgext));
    if (!filename) throw new Error(`makepkg made no ${pkgext} in ${dir}`);
    return { filename, bytes: new Uint8Array(await readFile(path.join(dir, filename))) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
