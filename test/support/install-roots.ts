/**
 * Throwaway Debian systems for the install tests: minimal root filesystems made by mmdebstrap
 * (cached as tarballs for the day, so one CI run bootstraps each suite once), unpacked into a
 * temp dir and entered with chroot in a private mount namespace (unshare), so the /proc and
 * /dev mounts vanish with the command and never outlive a failed test.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const exec = promisify(execFile);

export const REPO = path.resolve(import.meta.dirname, "../..");

/** CI (.ci/run) sets this: there the install tests must run, never skip. */
export const INSTALL_TESTS_REQUIRED = process.env.PACKRAT_REQUIRE_INSTALL_TESTS === "1";

function onPath(tool: string): boolean {
  return (process.env.PATH ?? "")
    .split(":")
    .some((dir) => dir !== "" && existsSync(path.join(dir, tool)));
}

/** Why these tests cannot run here (null: they can): root and the named tools are needed. */
export function missingForInstallTests(tools: string[]): string | null {
  if (process.getuid?.() !== 0) return "not root";
  const missing = tools.filter((t) => !onPath(t));
  return missing.length > 0 ? `missing ${missing.join(", ")}` : null;
}

export interface Run {
  stdout: string;
  stderr: string;
}

export async function sh(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeout?: number; cwd?: string } = {},
): Promise<Run> {
  try {
    const r = await exec(cmd, args, {
      env: opts.env ?? process.env,
      timeout: opts.timeout ?? 300_000,
      maxBuffer: 64 << 20,
      cwd: opts.cwd,
    });
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(
      `${cmd} ${args.join(" ")} failed: ${e.message}\n--- stdout\n${e.stdout ?? ""}\n--- stderr\n${e.stderr ?? ""}`,
      { cause: err },
    );
  }
}

const CACHE_DIR =
  process.env.PACKRAT_MMDEBSTRAP_CACHE ?? path.join(tmpdir(), "packrat-mmdebstrap-cache");
const DEBIAN_MIRROR = process.env.PACKRAT_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";

/**
 * A tarball of a minimal `suite` (mmdebstrap --variant=apt: the Essential set and apt, nothing
 * else; documentation left out), with its apt lists kept so apt can resolve dependencies from the archive. Named by the
 * UTC day: lists older than that may point at packages a point release has removed.
 */
export async function bootstrapTarball(suite: string): Promise<string> {
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, "");
  const arch = (await sh("dpkg", ["--print-architecture"])).stdout.trim();
  const tarball = path.join(CACHE_DIR, `${suite}-${arch}-${day}-v2.tar`);
  if (existsSync(tarball)) return tarball;
  await mkdir(CACHE_DIR, { recursive: true });
  const partial = `${tarball}.${process.pid}.partial.tar`;
  try {
    await sh(
      "mmdebstrap",
      [
        "--quiet",
        "--variant=apt",
        "--skip=cleanup/apt/lists",
        // Smaller tarballs, quicker to unpack for every test: the apt lists kept compressed,
        // and no documentation, manual pages or translations (as Debian's container images).
        '--aptopt=Acquire::GzipIndexes "true"',
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        `--architectures=${arch}`,
        suite,
        partial,
        DEBIAN_MIRROR,
      ],
      { timeout: 300_000 },
    );
    await rename(partial, tarball);
  } finally {
    await rm(partial, { force: true });
  }
  return tarball;
}

/** Unpack `tarball` into a new temp dir and give it the host's resolver. */
export async function unpackRoot(tarball: string, prefix: string): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), `packrat-${prefix}-`));
  await sh("tar", ["-C", root, "-xf", tarball]);
  await copyFile("/etc/resolv.conf", path.join(root, "etc/resolv.conf"));
  return root;
}

// Runs "$@" chrooted into $R, with /proc and /dev mounted in a private mount namespace.
const ENTER = `R=$1; shift
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
exec chroot "$R" "$@"`;

/** Run a command inside `root` (same network namespace as the host: 127.0.0.1 is shared). */
export function inRoot(
  root: string,
  args: string[],
  opts: { env?: Record<string, string>; timeout?: number } = {},
): Promise<Run> {
  const env = Object.entries({
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    DEBIAN_FRONTEND: "noninteractive",
    LANG: "C.UTF-8",
    ...opts.env,
  }).map(([k, v]) => `${k}=${v}`);
  return sh(
    "unshare",
    [
      "--mount",
      "--fork",
      "--propagation",
      "private",
      "sh",
      "-c",
      ENTER,
      "sh",
      root,
      "env",
      "-i",
      ...env,
      ...args,
    ],
    { timeout: opts.timeout ?? 300_000 },
  );
}

/** Remove a root made by unpackRoot (nothing is mounted in it outside inRoot's namespace). */
export async function removeRoot(root: string | undefined): Promise<void> {
  if (root) await rm(root, { recursive: true, force: true });
}

/**
 * Build the .deb with packaging/build-deb.sh from the checked-out node_modules (the same Node
 * runs the tests and the bundled runtime), uncompressed to save CI time.
 */
export async function buildDeb(
  outDir: string,
  version: string,
  opts: { stageOut?: string } = {},
): Promise<string> {
  const { stdout } = await sh(path.join(REPO, "packaging/build-deb.sh"), [outDir], {
    env: {
      ...process.env,
      PACKRAT_DEB_REUSE_NODE_MODULES: "1",
      PACKRAT_DEB_COMPRESSION: "none",
      PACKRAT_DEB_VERSION: version,
      PACKRAT_NODE: process.execPath,
      ...(opts.stageOut ? { PACKRAT_DEB_STAGE_OUT: opts.stageOut } : {}),
    },
    timeout: 240_000,
  });
  return stdout.trim().split("\n").pop()!;
}

/**
 * "The previous build" for upgrade tests, without a second build: the tree build-deb.sh staged
 * (PACKRAT_DEB_STAGE_OUT) packed again with `deb`'s control files under another version, which
 * `packrat-agent --version` reports too.
 */
export async function repackAs(
  deb: string,
  stage: string,
  version: string,
  outDir: string,
): Promise<string> {
  const tree = await mkdtemp(path.join(tmpdir(), "packrat-repack-"));
  try {
    await sh("cp", ["-a", `${stage}/.`, tree]);
    await sh("dpkg-deb", ["--control", deb, path.join(tree, "DEBIAN")]);
    const control = path.join(tree, "DEBIAN/control");
    await writeFile(
      control,
      (await readFile(control, "utf8")).replace(/^Version: .*$/m, `Version: ${version}`),
    );
    const pkgJson = path.join(tree, "usr/lib/packrat-agent/package.json");
    const pkg = JSON.parse(await readFile(pkgJson, "utf8")) as { version: string };
    await writeFile(pkgJson, `${JSON.stringify({ ...pkg, version }, null, 2)}\n`);
    const sums = await sh("sh", [
      "-c",
      "cd \"$1\" && find . -path ./DEBIAN -prune -o -type f -printf '%P\\0' | sort -z | xargs -0 md5sum",
      "sh",
      tree,
    ]);
    await writeFile(path.join(tree, "DEBIAN/md5sums"), sums.stdout);
    await mkdir(outDir, { recursive: true });
    const arch = /^Architecture: (\S+)$/m.exec(await readFile(control, "utf8"))?.[1] ?? "all";
    const out = path.join(outDir, `packrat-agent_${version}_${arch}.deb`);
    await sh("dpkg-deb", ["--root-owner-group", "-Znone", "--build", tree, out]);
    return out;
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}
