/**
 * Docker repos end to end (issue 19), with real tools and no network: images built from
 * scratch by buildah and saved by podman (docker-archive and OCI archive), put on the fake
 * master as docker PackageFiles beside the sample apt and json repos; one sync; the real nginx
 * with the shipped etc/nginx/packrat-docker.conf serves the tree; skopeo inspects and copies
 * every tag, podman pulls into a throwaway store. Then a version removed on the master, and a
 * bad archive that is skipped while everything else publishes.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { layoutFor } from "../../src/layout/index.js";
import { walkTree } from "../../src/sync/disk.js";
import { verifyTree } from "../../src/sync/verify-tree.js";
import {
  buildImage,
  imageStore,
  prepareStore,
  saveImage,
  tool,
  type ImageStore,
} from "../support/docker-images.js";
import {
  MIRROR,
  TAG,
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { writeAgentConfig } from "../support/agent-config.js";
import { runCli } from "../support/cli.js";
import { startNginx, type RunningNginx } from "../support/nginx.js";

const run = promisify(execFile);
const DOCKER_CONFIG = fileURLToPath(
  new URL("../../etc/nginx/packrat-docker.conf", import.meta.url),
);
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

let work: string;
let images: ImageStore;
let fx: MirrorFixture;
let h: EngineHarness;
let nginx: RunningNginx;
let registry: string;
const archives = new Map<string, string>();
const ids = new Map<string, number>();

/** Layer digests of an archive as skopeo reads it (the originals). */
async function archiveLayers(file: string, transport: "docker-archive" | "oci-archive") {
  const out = await tool(images, "skopeo", ["inspect", `${transport}:${file}`], { global: false });
  return (JSON.parse(out) as { Layers: string[] }).Layers;
}

async function skopeo(args: string[]): Promise<string> {
  return tool(images, "skopeo", args, { global: false });
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "packrat-docker-"));
  images = imageStore(path.join(work, "images"));
  await prepareStore(images);
  // base (one layer) → app:1.0 and app:1.10 share it (two layers each: multi-layer);
  // tool:2.0 alone, saved as an OCI archive (gzip layers); multi:1.0 for two platforms.
  await buildImage(images, "localhost/base:1", {
    from: "scratch",
    files: { "etc/os-release": "ID=packrat-test\n" },
  });
  await buildImage(images, "localhost/app:1.0", {
    from: "localhost/base:1",
    files: { "usr/share/app/VERSION": "1.0\n" },
    labels: { "org.packrat.test": "app-1.0" },
    env: { APP_VERSION: "1.0" },
  });
  await buildImage(images, "localhost/app:1.10", {
    from: "localhost/base:1",
    files: { "usr/share/app/VERSION": "1.10\n" },
    labels: { "org.packrat.test": "app-1.10" },
  });
  await buildImage(images, "localhost/app:1.9", {
    from: "localhost/base:1",
    files: { "usr/share/app/VERSION": "1.9\n" },
  });
  await buildImage(images, "localhost/tool:2.0", {
    from: "scratch",
    files: { "usr/bin/tool": "#!/bin/sh\necho tool\n" },
    labels: { "org.packrat.test": "tool" },
  });
  for (const arch of ["amd64", "arm64"])
    await buildImage(images, `localhost/multi-${arch}:1.0`, {
      from: "scratch",
      files: { "etc/arch": `${arch}\n` },
      arch,
    });
  const save = async (key: string, ref: string, format: "docker-archive" | "oci-archive") => {
    const file = path.join(work, `${key}.tar`);
    await saveImage(images, ref, file, format);
    archives.set(key, file);
  };
  await save("app_1.0", "localhost/app:1.0", "docker-archive");
  await save("app_1.10", "localhost/app:1.10", "docker-archive");
  await save("app_1.9", "localhost/app:1.9", "oci-archive");
  await save("tool_2.0", "localhost/tool:2.0", "oci-archive");
  await save("multi_1.0_amd64", "localhost/multi-amd64:1.0", "docker-archive");
  await save("multi_1.0_arm64", "localhost/multi-arm64:1.0", "docker-archive");

  fx = await startMirrorFixture({ debs: [["hello", "1.0-1"]], json: [["tool", "1.2"]] });
  fx.master.addDistroVersion({ name: "docker", distro: "none", version: null, fileType: "docker" });
  fx.master.addRepo({
    name: "docker-prod",
    filesystemDir: "docker",
    managerType: "docker",
    distroVersions: ["docker"],
    tag: TAG,
  });
  fx.master.setRepoList(MIRROR, ["prod-apt", "prod-json", "docker-prod"]);
  const add = async (name: string, version: string, key: string, arch = "all") => {
    const id = fx.master.addPackageFile({
      package: name,
      distroVersion: "docker",
      version,
      type: "docker",
      arch,
      filename: `${name}_${version}.tar`,
      content: await readFile(archives.get(key)!),
      tags: [TAG],
    });
    ids.set(key, id);
  };
  await add("app", "1.0", "app_1.0");
  await add("app", "1.10", "app_1.10");
  await add("app", "1.9", "app_1.9");
  await add("tool", "2.0", "tool_2.0");
  await add("multi", "1.0", "multi_1.0_amd64", "x86_64");
  await add("multi", "1.0", "multi_1.0_arm64", "aarch64");
  // Grace 0: a removed version's files go at the next full sync's cleanup.
  h = makeEngine(fx, { settings: { metadataGraceSeconds: 0 } });
  const report = await h.engine.fullSync();
  expect(report.failed).toEqual([]);
  expect(report.published.sort()).toEqual(["docker-prod", "prod-apt", "prod-json"]);
  nginx = await startNginx({ root: path.join(fx.root, "docker"), configPath: DOCKER_CONFIG });
  registry = `127.0.0.1:${nginx.port}`;
}, 180_000);

afterAll(async () => {
  await nginx?.stop();
  await h?.close();
  await fx?.close();
  if (work) {
    // buildah's vfs layers may be read-only directories: make them removable first.
    await run("chmod", ["-R", "u+w", work]).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
});

describe("a docker repo served by nginx with the shipped config", () => {
  it("answers /v2/ with the API version header, and HEAD too", async () => {
    for (const method of ["GET", "HEAD"]) {
      const res = await fetch(`http://${registry}/v2/`, { method });
      expect(res.status).toBe(200);
      expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    }
    const catalog = await (await fetch(`http://${registry}/v2/_catalog`)).json();
    expect(catalog).toEqual({ repositories: ["app", "multi", "tool"] });
  });

  it("serves manifests with their media type, digests and cache lifetimes; blobs as octet streams", async () => {
    const tag = await fetch(`http://${registry}/v2/app/manifests/1.0`, { method: "HEAD" });
    expect(tag.status).toBe(200);
    expect(tag.headers.get("content-type")).toBe(OCI_MANIFEST);
    expect(tag.headers.get("cache-control")).toBe("no-cache");
    const body = await (await fetch(`http://${registry}/v2/app/manifests/1.0`)).text();
    const manifest = JSON.parse(body) as { layers: { digest: string }[] };
    const { createHash } = await import("node:crypto");
    const digest = `sha256:${createHash("sha256").update(body).digest("hex")}`;
    const byDigest = await fetch(`http://${registry}/v2/app/manifests/${digest}`);
    expect(byDigest.headers.get("content-type")).toBe(OCI_MANIFEST);
    expect(byDigest.headers.get("docker-content-digest")).toBe(digest);
    expect(byDigest.headers.get("cache-control")).toContain("immutable");
    const blob = await fetch(`http://${registry}/v2/app/blobs/${manifest.layers[0]!.digest}`, {
      method: "HEAD",
    });
    expect(blob.status).toBe(200);
    expect(blob.headers.get("content-type")).toBe("application/octet-stream");
    expect(blob.headers.get("cache-control")).toContain("max-age=31536000");
    const index = await fetch(`http://${registry}/v2/multi/manifests/1.0`);
    expect(index.headers.get("content-type")).toBe(OCI_INDEX);
    expect((await fetch(`http://${registry}/v2/multi/_indexes/1.0`)).status).toBe(404);
    expect((await fetch(`http://${registry}/v2/app/manifests/9.9`)).status).toBe(404);
  });

  it("skopeo inspects and copies every tag; latest is the highest version (1.10); layers as originals", async () => {
    const list = (await (await fetch(`http://${registry}/v2/app/tags/list`)).json()) as {
      tags: string[];
    };
    expect(list.tags).toEqual(["1.0", "1.10", "1.9", "latest"]);
    const sources: Record<string, [string, "docker-archive" | "oci-archive"]> = {
      "app:1.0": ["app_1.0", "docker-archive"],
      "app:1.10": ["app_1.10", "docker-archive"],
      "app:1.9": ["app_1.9", "oci-archive"],
      "app:latest": ["app_1.10", "docker-archive"],
      "tool:2.0": ["tool_2.0", "oci-archive"],
      "tool:latest": ["tool_2.0", "oci-archive"],
    };
    for (const [ref, [key, transport]] of Object.entries(sources)) {
      const inspected = JSON.parse(
        await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/${ref}`]),
      ) as { Layers: string[]; Labels: Record<string, string> | null };
      const original = await archiveLayers(archives.get(key)!, transport);
      expect(inspected.Layers, ref).toEqual(original);
      const dest = path.join(work, "copies", ref.replace(":", "-"));
      await mkdir(path.dirname(dest), { recursive: true });
      await skopeo([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        // skopeo gzips uncompressed layers into an OCI layout unless told not to: the digests
        // compared are then those the registry served.
        "--dest-oci-accept-uncompressed-layers",
        `docker://${registry}/${ref}`,
        `oci:${dest}:${ref.split(":")[1]}`,
      ]);
      const copied = (
        JSON.parse(await skopeo(["inspect", `oci:${dest}:${ref.split(":")[1]}`])) as {
          Layers: string[];
        }
      ).Layers;
      expect(copied, ref).toEqual(original);
    }
    const latest = JSON.parse(
      await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/app:latest`]),
    ) as { Labels: Record<string, string> };
    expect(latest.Labels["org.packrat.test"]).toBe("app-1.10");
  });

  it("the two-platform tag is an image index: each platform resolves to its own image", async () => {
    for (const arch of ["amd64", "arm64"]) {
      const out = JSON.parse(
        await skopeo([
          "inspect",
          "--tls-verify=false",
          "--override-arch",
          arch,
          "--override-os",
          "linux",
          `docker://${registry}/multi:1.0`,
        ]),
      ) as { Architecture: string; Layers: string[] };
      expect(out.Architecture).toBe(arch);
      expect(out.Layers).toEqual(
        await archiveLayers(archives.get(`multi_1.0_${arch}`)!, "docker-archive"),
      );
    }
  });

  it("podman pulls into a throwaway store and shows the original config", async () => {
    const pull = imageStore(path.join(work, "pull"));
    await prepareStore(pull);
    await tool(pull, "podman", ["pull", "--quiet", "--tls-verify=false", `${registry}/app:1.0`]);
    const inspected = JSON.parse(
      await tool(pull, "podman", ["image", "inspect", `${registry}/app:1.0`]),
    ) as {
      Config: { Env: string[]; Labels: Record<string, string> };
      RootFS: { Layers: string[] };
    }[];
    const original = JSON.parse(
      await tool(images, "podman", ["image", "inspect", "localhost/app:1.0"]),
    ) as typeof inspected;
    expect(inspected[0]!.Config.Labels["org.packrat.test"]).toBe("app-1.0");
    expect(inspected[0]!.Config.Env).toEqual(original[0]!.Config.Env);
    expect(inspected[0]!.RootFS.Layers).toEqual(original[0]!.RootFS.Layers);
  });

  it("verify finds the docker tree whole, and a changed blob is named", async () => {
    const report = await verifyTree({
      root: fx.root,
      store: h.store,
      keepFileList: [],
      deep: true,
      verifier: null,
      layoutFor,
    });
    expect(report.problems).toEqual([]);
    expect(report.packageRefs).toBeGreaterThan(5);
    const layers = await archiveLayers(archives.get("tool_2.0")!, "oci-archive");
    const blob = path.join(fx.root, "docker", "v2", "tool", "blobs", layers[0]!);
    const good = await readFile(blob);
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 1;
    await writeFile(blob, bad);
    try {
      const tampered = await verifyTree({
        root: fx.root,
        store: h.store,
        keepFileList: [],
        deep: true,
        verifier: null,
        layoutFor,
      });
      expect(tampered.problems.map((p) => p.path)).toContain(`docker/v2/tool/blobs/${layers[0]}`);
    } finally {
      await writeFile(blob, good);
    }
  });

  it("stores a layer shared by images once", async () => {
    const blobs = path.join(fx.root, "docker", "v2", "app", "blobs");
    const base = (await archiveLayers(archives.get("app_1.0")!, "docker-archive"))[0]!;
    expect((await stat(path.join(blobs, base))).nlink).toBe(1);
    // app's three versions each have the base layer; one file holds it.
    const names = await readdir(blobs);
    expect(names.filter((n) => n === base)).toHaveLength(1);
  });
});

describe("disk: about 1x", () => {
  /** Bytes of the distinct files (inodes) under a directory. */
  async function diskBytes(dir: string): Promise<number> {
    const seen = new Set<number>();
    let total = 0;
    for (const e of await walkTree(dir)) {
      if (e.kind !== "file") continue;
      const st = await stat(path.join(dir, e.rel));
      if (seen.has(st.ino)) continue;
      seen.add(st.ino);
      total += st.size;
    }
    return total;
  }

  it("keeps the blobs, not the archives; a second sync downloads nothing", async () => {
    const tree = path.join(fx.root, "docker");
    const left = (await walkTree(tree)).filter(
      (e) => e.rel.startsWith("archives/") && e.kind === "file",
    );
    expect(left).toEqual([]);
    let archiveBytes = 0;
    for (const file of archives.values()) archiveBytes += (await stat(file)).size;
    const used = await diskBytes(tree);
    // Blobs are the archives' layers and configs; the tar framing and manifest.json are not kept.
    console.log(`docker tree: ${used} bytes on disk for ${archiveBytes} bytes of archives`);
    expect(used).toBeLessThan(archiveBytes);
    const again = await h.engine.fullSync();
    expect(again.downloaded).toBe(0);
    expect(again.failed).toEqual([]);
    const deep = await h.engine.fullSync({ deep: true });
    expect(deep.downloaded).toBe(0);
  });

  it("a blob deleted by hand brings its archive back for a pass, and goes again", async () => {
    const layers = await archiveLayers(archives.get("tool_2.0")!, "oci-archive");
    const blob = path.join(fx.root, "docker", "v2", "tool", "blobs", layers[0]!);
    await rm(blob);
    const report = await h.engine.fullSync();
    expect(report.downloaded).toBe(1);
    expect(report.published).toContain("docker-prod");
    expect(existsSync(blob)).toBe(true);
    expect(existsSync(path.join(fx.root, "docker", "archives", "all", "tool_2.0.tar"))).toBe(false);
    await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/tool:2.0`]);
  });
});

describe("changes on the master", () => {
  it("removing a version removes its tag, manifest and unshared blobs; the shared layer stays", async () => {
    const before = JSON.parse(
      await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/app:1.0`]),
    ) as { Layers: string[]; Digest: string };
    const [shared, own] = before.Layers as [string, string];
    fx.master.removePackageFile(ids.get("app_1.0")!);
    const report = await h.engine.fullSync({ force: true });
    expect(report.failed).toEqual([]);
    const list = (await (await fetch(`http://${registry}/v2/app/tags/list`)).json()) as {
      tags: string[];
    };
    expect(list.tags).toEqual(["1.10", "1.9", "latest"]);
    expect((await fetch(`http://${registry}/v2/app/manifests/1.0`)).status).toBe(404);
    expect((await fetch(`http://${registry}/v2/app/manifests/${before.Digest}`)).status).toBe(404);
    const blobs = path.join(fx.root, "docker", "v2", "app", "blobs");
    expect(existsSync(path.join(blobs, own))).toBe(false);
    expect(existsSync(path.join(blobs, shared))).toBe(true);
    await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/app:1.10`]);
  });

  it("a new version named by a poll (an incremental pass) is served, its archive dropped", async () => {
    const id = fx.master.addPackageFile({
      package: "tool",
      distroVersion: "docker",
      version: "2.1",
      type: "docker",
      arch: "all",
      filename: "tool_2.1.tar",
      content: await readFile(archives.get("app_1.9")!),
      tags: [TAG],
    });
    ids.set("tool_2.1", id);
    const report = await h.engine.incrementalSync("docker-prod", ["tool"]);
    expect(report.failed).toEqual([]);
    expect(report.downloaded).toBe(1);
    const list = (await (await fetch(`http://${registry}/v2/tool/tags/list`)).json()) as {
      tags: string[];
    };
    expect(list.tags).toEqual(["2.0", "2.1", "latest"]);
    const latest = JSON.parse(
      await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/tool:latest`]),
    ) as { Layers: string[] };
    expect(latest.Layers).toEqual(await archiveLayers(archives.get("app_1.9")!, "oci-archive"));
    expect(existsSync(path.join(fx.root, "docker", "archives", "all", "tool_2.1.tar"))).toBe(false);
  });

  it("a bad archive is skipped and named; the rest of the repo and the other repos publish", async () => {
    fx.master.addPackageFile({
      package: "broken",
      distroVersion: "docker",
      version: "1.0",
      type: "docker",
      arch: "all",
      filename: "broken_1.0.tar",
      content: new TextEncoder().encode("not an image archive\n".repeat(50)),
      tags: [TAG],
    });
    // A name docker refuses: skipped before download.
    fx.master.addPackageFile({
      package: "Bad",
      distroVersion: "docker",
      version: "1.0",
      type: "docker",
      arch: "all",
      filename: "Bad_1.0.tar",
      content: await readFile(archives.get("tool_2.0")!),
      tags: [TAG],
    });
    fx.addDeb("extra", "1.0");
    const report = await h.engine.fullSync();
    expect(report.skipped.map((s) => s.error).join("\n")).toMatch(
      /Bad_1\.0\.tar: "Bad" is not a valid image repository name/,
    );
    // The docker repo's inputs are what they were (the bad file is left out): nothing to redo.
    expect(report.published).toEqual(["prod-apt"]);
    expect(report.failed).toEqual([]);
    const catalog = await (await fetch(`http://${registry}/v2/_catalog`)).json();
    expect(catalog).toEqual({ repositories: ["app", "multi", "tool"] });
    await skopeo(["inspect", "--tls-verify=false", `docker://${registry}/tool:2.1`]);
    const meta = h.store.packageMetaStatus("docker");
    const bad = [...meta]
      .filter(([, ok]) => !ok)
      .map(([sha]) => h.store.getPackageMeta(sha, "docker"));
    expect(bad).toHaveLength(1);
    expect(bad[0]!.error).toMatch(/broken_1\.0\.tar: not an image archive/);
    // Both are counted in status --json, by the real CLI.
    const config = await writeAgentConfig(fx);
    const res = await runCli(["status", "--json", "--config", config]);
    expect(res.code, res.stderr).toBe(0);
    const status = JSON.parse(res.stdout) as {
      repos: { name: string; skipped: { error: string }[]; unreadable: { file: string }[] }[];
    };
    const docker = status.repos.find((r) => r.name === "docker-prod")!;
    expect(docker.unreadable.map((u) => u.file)).toEqual(["broken_1.0.tar"]);
    expect(docker.skipped.map((u) => u.error).join("\n")).toMatch(/Bad_1\.0\.tar/);
  });
});
