/**
 * Test images built by the real tools from scratch, no network: buildah (`from scratch`,
 * `copy`, `config`, `commit`) into a throwaway vfs store, then `podman save` as a
 * docker-archive or an OCI archive. Unprivileged-friendly: BUILDAH_ISOLATION=chroot, the vfs
 * storage driver, --root/--runroot in a temp dir; nothing is cached outside it.
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface ImageStore {
  dir: string;
  /** `--storage-driver vfs --root … --runroot …` for buildah, podman and skopeo. */
  storageArgs: string[];
  env: NodeJS.ProcessEnv;
}

export function imageStore(dir: string): ImageStore {
  return {
    dir,
    storageArgs: [
      "--storage-driver",
      "vfs",
      "--root",
      path.join(dir, "storage"),
      "--runroot",
      path.join(dir, "run"),
    ],
    env: {
      ...process.env,
      BUILDAH_ISOLATION: "chroot",
      // podman and buildah read these; keep them inside the temp dir.
      XDG_RUNTIME_DIR: path.join(dir, "xdg-run"),
      XDG_CONFIG_HOME: path.join(dir, "xdg-config"),
      XDG_DATA_HOME: path.join(dir, "xdg-data"),
      CONTAINERS_REGISTRIES_CONF: path.join(dir, "registries.conf"),
    },
  };
}

export async function tool(
  store: ImageStore,
  cmd: "buildah" | "podman" | "skopeo",
  args: string[],
  opts: { global?: boolean } = {},
): Promise<string> {
  const full = opts.global === false ? args : [...store.storageArgs, ...args];
  try {
    const { stdout } = await run(cmd, full, {
      env: store.env,
      maxBuffer: 64 << 20,
      timeout: 120_000,
    });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${full.join(" ")}: ${e.stderr ?? e.message}`);
  }
}

export async function prepareStore(store: ImageStore): Promise<void> {
  for (const d of ["storage", "run", "xdg-run", "xdg-config", "xdg-data", "ctx"])
    await mkdir(path.join(store.dir, d), { recursive: true, mode: 0o700 });
  // No registries to search, no network: the tests name every image fully.
  await writeFile(path.join(store.dir, "registries.conf"), "unqualified-search-registries = []\n");
}

export interface LayerSpec {
  /** Files (path in the image → text). */
  files: Record<string, string>;
}

/**
 * An image `ref` (e.g. localhost/app:1.0) on top of `from` ("scratch" or an earlier ref), one
 * new layer holding `files`, with the config's Env/Labels/arch as given.
 */
export async function buildImage(
  store: ImageStore,
  ref: string,
  opts: {
    from: string;
    files: Record<string, string>;
    arch?: string;
    labels?: Record<string, string>;
    env?: Record<string, string>;
  },
): Promise<void> {
  const ctx = path.join(store.dir, "ctx", ref.replace(/[^a-z0-9.]/gi, "_"));
  await mkdir(ctx, { recursive: true });
  const container = await tool(store, "buildah", ["from", "--pull-never", opts.from]);
  try {
    for (const [file, text] of Object.entries(opts.files)) {
      const local = path.join(ctx, file.replace(/\//g, "_"));
      await writeFile(local, text);
      await tool(store, "buildah", ["copy", container, local, `/${file}`]);
    }
    const config: string[] = [];
    for (const [k, v] of Object.entries(opts.labels ?? {})) config.push("--label", `${k}=${v}`);
    for (const [k, v] of Object.entries(opts.env ?? {})) config.push("--env", `${k}=${v}`);
    if (opts.arch) config.push("--arch", opts.arch);
    if (config.length > 0) await tool(store, "buildah", ["config", ...config, container]);
    await tool(store, "buildah", ["commit", "--quiet", container, ref]);
  } finally {
    await tool(store, "buildah", ["rm", container]).catch(() => undefined);
  }
}

/** `podman save` of one image, as a docker-archive or an OCI archive. */
export async function saveImage(
  store: ImageStore,
  ref: string,
  dest: string,
  format: "docker-archive" | "oci-archive",
): Promise<void> {
  await tool(store, "podman", ["save", "--quiet", "--format", format, "-o", dest, ref]);
}
