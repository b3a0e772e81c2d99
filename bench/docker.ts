/**
 * Docker repos (issue 19): unpacking and publishing one large image, side by side with
 * `skopeo copy docker-archive:… oci:…` on the same archive.
 *
 *   npm run build && tsc -p bench/tsconfig.json && node dist/bench/docker.js [MiB]
 *
 * The image (default 200 MiB of random bytes in two layers, so nothing compresses) is built
 * from scratch by buildah and saved by podman as a docker-archive. Each round runs, on fresh
 * output directories:
 * - skopeo copy to an OCI layout, as skopeo does by default (gzips the layers) and with
 *   --dest-oci-accept-uncompressed-layers (copies them as they are, like the agent);
 * - ours, unpack + publish: the docker layout parses the archive (every digest checked) and the
 *   publisher writes the registry tree (blobs copied and hashed, manifests, tags), from the
 *   archive already on disk, as after a download;
 * - ours, full sync: the same from the fake master over loopback HTTP (download and its
 *   SHA-256 check included), archive dropped after publishing.
 * The best of 3 rounds is reported, and the bytes the docker tree holds after the full sync.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { link, mkdir, mkdtemp, rm, stat, writeFile, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { dockerLayout } from "../src/layout/docker.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../src/layout/index.js";
import { silentLogger } from "../src/log.js";
import { openStateStore } from "../src/state/db.js";
import { openFileSource, sha256File, walkTree } from "../src/sync/disk.js";
import { publishRepo } from "../src/sync/publish.js";
import type { DistroVersion, PackageFile, Repo } from "../src/types.js";
import {
  buildImage,
  imageStore,
  prepareStore,
  saveImage,
  tool,
} from "../test/support/docker-images.js";
import { MIRROR, TAG, makeEngine, startMirrorFixture } from "../test/support/mirror-fixture.js";

const run = promisify(execFile);
const mib = Number(process.argv[2] ?? "200");
const ROUNDS = 3;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), "packrat-bench-docker-"));
  try {
    const images = imageStore(path.join(work, "images"));
    await prepareStore(images);
    const big = path.join(work, "big");
    await mkdir(big);
    // Two layers: 3/4 and 1/4 of the size, random (incompressible) bytes.
    const sizes = [Math.round(mib * 0.75), mib - Math.round(mib * 0.75)];
    for (const [i, size] of sizes.entries()) {
      const name = `data${i}.bin`;
      await writeFile(path.join(big, name), randomBytes(size << 20));
    }
    // buildImage writes text files; copy the big ones with buildah directly.
    let from = "scratch";
    for (const [i] of sizes.entries()) {
      const container = await tool(images, "buildah", ["from", "--pull-never", from]);
      await tool(images, "buildah", ["copy", container, path.join(big, `data${i}.bin`), "/opt/"]);
      from = `localhost/big:${i}`;
      await tool(images, "buildah", ["commit", "--quiet", container, from]);
      await tool(images, "buildah", ["rm", container]);
    }
    await buildImage(images, "localhost/big:final", { from, files: { "etc/marker": "big\n" } });
    const archive = path.join(work, "big_1.0.tar");
    await saveImage(images, "localhost/big:final", archive, "docker-archive");
    await rm(big, { recursive: true });
    const archiveSize = (await stat(archive)).size;

    const results: Record<string, number[]> = {
      "skopeo copy (default: gzips layers)": [],
      "skopeo copy --dest-oci-accept-uncompressed-layers": [],
      "ours: unpack + publish (archive on disk)": [],
      "ours: full sync from the fake master (download, check, unpack, publish)": [],
    };
    const dv: DistroVersion = {
      uri: "/dv/docker",
      name: "docker",
      distro: "none",
      version: null,
      fileType: "docker",
      releaseNames: "",
    };
    const archiveSha = await sha256File(archive);
    const diskBytes: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const dir = path.join(work, `round${round}`);
      await mkdir(dir);
      results["skopeo copy (default: gzips layers)"]!.push(
        await timed(() =>
          run("skopeo", ["copy", "--quiet", `docker-archive:${archive}`, `oci:${dir}/s1:x`]),
        ),
      );
      results["skopeo copy --dest-oci-accept-uncompressed-layers"]!.push(
        await timed(() =>
          run("skopeo", [
            "copy",
            "--quiet",
            "--dest-oci-accept-uncompressed-layers",
            `docker-archive:${archive}`,
            `oci:${dir}/s2:x`,
          ]),
        ),
      );
      // Ours, from the archive in place.
      const root = path.join(dir, "root");
      const placed = path.join(root, "docker", "archives", "all", "big_1.0.tar");
      await mkdir(path.dirname(placed), { recursive: true });
      await link(archive, placed);
      const store = openStateStore(path.join(dir, "state.db"));
      const repo = {
        uri: "/repo/docker",
        name: "docker",
        filesystemDir: "docker",
        managerType: "docker",
        distroVersionUris: [dv.uri],
        tag: TAG,
        description: "",
        showOnlyLatest: false,
      } as Repo;
      const file = {
        uri: "/file/1",
        filename: "big_1.0.tar",
        arch: "all",
        sha256: archiveSha,
      } as PackageFile;
      results["ours: unpack + publish (archive on disk)"]!.push(
        await timed(async () => {
          const source = await openFileSource(placed);
          const meta = await dockerLayout
            .parse(source, "big_1.0.tar")
            .finally(() => source.close());
          await publishRepo(
            {
              layout: dockerLayout,
              repoDir: "docker",
              salt: "",
              input: {
                repo,
                distroVersions: new Map([[dv.uri, dv]]),
                packages: [
                  {
                    file,
                    distroVersion: dv,
                    paths: ["archives/all/big_1.0.tar"],
                    size: archiveSize,
                    sha256: archiveSha,
                    meta,
                  },
                ],
                signer: null,
                options: DEFAULT_LAYOUT_OPTIONS,
                now: new Date(),
              },
            },
            { root, store, log: silentLogger(), now: Date.now },
          );
        }),
      );
      store.close();
      // Ours, the whole pass.
      const fx = await startMirrorFixture();
      fx.master.addDistroVersion({
        name: "docker",
        distro: "none",
        version: null,
        fileType: "docker",
      });
      fx.master.addRepo({
        name: "docker-prod",
        filesystemDir: "docker",
        managerType: "docker",
        distroVersions: ["docker"],
        tag: TAG,
      });
      fx.master.setRepoList(MIRROR, ["docker-prod"]);
      fx.master.addPackageFile({
        package: "big",
        distroVersion: "docker",
        version: "1.0",
        type: "docker",
        arch: "all",
        filename: "big_1.0.tar",
        content: await readFile(archive),
        tags: [TAG],
      });
      const h = makeEngine(fx);
      results["ours: full sync from the fake master (download, check, unpack, publish)"]!.push(
        await timed(async () => {
          const report = await h.engine.fullSync({ force: true });
          if (report.failed.length > 0) throw new Error(JSON.stringify(report.failed));
        }),
      );
      // What stays on disk: the blobs (each inode once), no archive.
      const seen = new Set<number>();
      let onDisk = 0;
      for (const e of await walkTree(path.join(fx.root, "docker"))) {
        if (e.kind !== "file") continue;
        const st = await stat(path.join(fx.root, "docker", e.rel));
        if (seen.has(st.ino)) continue;
        seen.add(st.ino);
        onDisk += st.size;
      }
      diskBytes.push(onDisk);
      await h.close();
      await fx.close();
      await rm(dir, { recursive: true, force: true });
    }
    const best = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.min(...v)]));
    const skopeoRaw = best["skopeo copy --dest-oci-accept-uncompressed-layers"]!;
    const skopeoDefault = best["skopeo copy (default: gzips layers)"]!;
    const ours = best["ours: unpack + publish (archive on disk)"]!;
    console.log(
      `image: ${mib} MiB in 2 random layers; archive ${archiveSize} bytes; best of ${ROUNDS}`,
    );
    for (const [k, ms] of Object.entries(best)) console.log(`  ${k}: ${ms.toFixed(0)} ms`);
    console.log(
      `  ours (unpack + publish) / skopeo copy uncompressed: ${(ours / skopeoRaw).toFixed(2)}x; / skopeo copy default: ${(ours / skopeoDefault).toFixed(2)}x`,
    );
    console.log(
      `  on disk after the full sync: ${diskBytes[0]} bytes (${((diskBytes[0]! / archiveSize) * 100).toFixed(2)}% of the archive)`,
    );
    console.log(JSON.stringify({ mib, archiveSize, diskBytes, rounds: results }));
  } finally {
    await run("chmod", ["-R", "u+w", work]).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

await main();
