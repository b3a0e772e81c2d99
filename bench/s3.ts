/**
 * The bucket side by side (issue 22): the agent publishing N generated .debs as a signed apt
 * repo and copying it into a bucket of a real Ceph RADOS Gateway, against `s3cmd sync` and
 * `aws s3 sync` of the very tree the agent published, into the same gateway (bench/s3-peers.ts).
 *
 *   npm run build && tsc -p bench/tsconfig.json && node dist/bench/s3.js [--n 10000] [--work DIR]
 *
 * Cases, ours:
 *   cold   the replica round after the first full sync (the whole tree into an empty bucket);
 *   +1     one new package on the master → incrementalSync (list, download, render, sign,
 *          switch in on disk, then the bucket round): ends when the bucket's InRelease names it;
 *   none   a no-change full sync's bucket round (a listing of the prefix, nothing sent).
 * Peers: cold and +1 (a new .deb and a changed small file) of the same tree. Prints JSON and
 * writes bench/results/s3.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import path from "node:path";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { startFakeMaster } from "../src/demo/fake-master.js";
import { createLayouts } from "../src/layout/index.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../src/layout/index.js";
import { silentLogger } from "../src/log.js";
import { Replica } from "../src/publish/replica.js";
import { S3Store } from "../src/publish/s3-store.js";
import { generateSigningKey } from "../src/signing/keygen.js";
import { loadSigner } from "../src/signing/openpgp-signer.js";
import { publicKeyFiles } from "../src/signing/public-key.js";
import { openStateStore } from "../src/state/db.js";
import { SyncEngine } from "../src/sync/engine.js";
import { createMasterClient } from "../src/sync/master-client.js";
import { startRgw } from "../test/support/rgw.js";
import { s3Client } from "../test/support/s3-test.js";
import { buildPackage } from "./generate.js";
import { runS3Peers, type S3PeerResult } from "./s3-peers.js";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

async function main(): Promise<void> {
  process.env.AWS_EC2_METADATA_DISABLED = "true";
  const n = Number(arg("n", "10000"));
  const work = arg("work", "") || (await mkdtemp(path.join(tmpdir(), "packrat-bench-s3-")));
  await mkdir(work, { recursive: true });
  const say = (s: string) => process.stderr.write(`[s3 bench] ${s}\n`);
  say(`N = ${n}, work ${work}; starting the gateway`);
  const rgw = await startRgw({ parentDir: work });
  const master = await startFakeMaster({ minPollTimeout: 1 });
  const log = silentLogger();
  try {
    master.addDistroVersion({
      name: "bookworm",
      distro: "debian",
      version: "bookworm",
      fileType: "deb",
    });
    master.addRepo({
      name: "bench-apt",
      filesystemDir: "apt",
      managerType: "apt",
      distroVersions: ["bookworm"],
      tag: "prod",
    });
    master.addMirror({ name: "bench", repos: ["bench-apt"] });
    /** The i-th generated .deb, tagged on the master; returns it. */
    const tag = (i: number) => {
      const built = buildPackage("deb", i);
      master.addPackageFile({
        package: built.entry.name,
        distroVersion: "bookworm",
        version: built.entry.version,
        type: "deb",
        arch: built.entry.arch,
        filename: built.entry.filename,
        content: built.bytes,
        tags: ["prod"],
      });
      return built;
    };
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += tag(i).bytes.length;
    say(`${n} debs (${(bytes / 1048576).toFixed(1)} MiB) on the fake master`);

    const key = await generateSigningKey({ name: "bench", type: "ed25519" });
    const keyFile = path.join(work, "key.asc");
    await writeFile(keyFile, key.armoredSecretKey, { mode: 0o600 });
    const signer = await loadSigner({ keyFile, signKeyId: null, passphraseFile: null });
    const root = path.join(work, "root");
    const store = openStateStore(path.join(work, "state.db"));
    const bucket = "ours";
    const s3 = s3Client(rgw);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    s3.destroy();
    const replica = new Replica({
      store: new S3Store({
        bucket,
        prefix: "",
        endpoint: rgw.endpoint,
        region: rgw.region,
        pathStyle: true,
        credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
        acl: null,
      }),
      state: store,
      root,
      log,
      now: Date.now,
      graceMs: 86_400_000,
      concurrency: Number(arg("concurrency", "8")),
      keep: [],
    });
    const client = createMasterClient({
      host: master.url,
      name: "bench",
      psk: null,
      proxy: null,
      requestTimeoutMs: 60_000,
      log,
    });
    const layouts = createLayouts();
    const engine = new SyncEngine({
      settings: {
        rootDir: root,
        keepFileList: [],
        downloadConcurrency: 4,
        deepVerifyEvery: 0,
        maxRemovalRatio: 0.5,
        metadataGraceSeconds: 86400,
      },
      client,
      store,
      log,
      signer,
      layoutFor: layouts.layoutFor,
      forgetRepos: layouts.forgetRepos,
      layoutOptions: { ...DEFAULT_LAYOUT_OPTIONS, mirrorDescription: "bench" },
      rootFiles: publicKeyFiles(signer, "repo-key").map((f) => ({
        path: f.path,
        content: typeof f.content === "string" ? new TextEncoder().encode(f.content) : f.content,
      })),
      replicas: [replica],
    });

    const cold = await engine.fullSync();
    const coldRound = cold.buckets[0]!;
    if (coldRound.error || coldRound.failed.length > 0)
      throw new Error(`cold round failed: ${JSON.stringify(coldRound).slice(0, 2000)}`);
    say(
      `ours cold: full sync ${cold.durationMs} ms, of which the bucket round ${coldRound.durationMs} ms for ${coldRound.uploaded} objects`,
    );

    const { entry } = tag(n + 1);
    const started = performance.now();
    // As the daemon does: a quick generation (the slow compressions follow in a settle pass).
    const plus = await engine.incrementalSync("bench-apt", [entry.name]);
    const plusMs = performance.now() - started;
    const plusRound = plus.buckets[0]!;
    say(
      `ours +1: ${plusMs.toFixed(0)} ms end to end, bucket round ${plusRound.durationMs} ms, ${plusRound.uploaded} objects`,
    );

    // The full sync after the quick +1 publishes the complete generation (the slow
    // compressions): that one has something to upload. The one after it has nothing.
    await engine.fullSync();
    const none = await engine.fullSync();
    const noneRound = none.buckets[0]!;
    say(
      `ours no-change full sync: ${none.durationMs} ms, bucket round (a listing) ${noneRound.durationMs} ms, ${noneRound.uploaded} uploaded`,
    );
    await client.close();
    replica.close();
    store.close();

    say("peers: s3cmd sync and aws s3 sync of the same tree");
    const peers: S3PeerResult[] = process.argv.includes("--no-peers")
      ? []
      : await runS3Peers({
          tree: root,
          gateway: rgw,
          work: path.join(work, "peers"),
          countObjects: async (b) => (await rgw.bucketStats(b))?.objects ?? null,
        });

    const coldSeconds = coldRound.durationMs / 1000;
    const ours = {
      cold: {
        seconds: coldSeconds,
        objects: coldRound.uploaded,
        bytes: coldRound.uploadedBytes,
        objectsPerSec: Number((coldRound.uploaded / coldSeconds).toFixed(1)),
        mibPerSec: Number((coldRound.uploadedBytes / 1048576 / coldSeconds).toFixed(2)),
      },
      plus1: {
        seconds: plusMs / 1000,
        bucketRoundSeconds: plusRound.durationMs / 1000,
        objects: plusRound.uploaded,
      },
      noChange: { seconds: noneRound.durationMs / 1000, uploaded: noneRound.uploaded },
    };
    const awsCold = peers.find((p) => p.tool === "aws" && p.case === "cold");
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30) },
      n,
      ours,
      peers,
      ratios: {
        coldVsAws: awsCold ? Number((awsCold.seconds / coldSeconds).toFixed(2)) : null,
        coldVsS3cmd: (() => {
          const p = peers.find((x) => x.tool === "s3cmd" && x.case === "cold");
          return p ? Number((p.seconds / coldSeconds).toFixed(2)) : null;
        })(),
      },
    };
    const out = JSON.stringify(result, null, 2);
    await mkdir("bench/results", { recursive: true });
    await writeFile("bench/results/s3.json", `${out}\n`);
    process.stdout.write(`${out}\n`);
  } finally {
    await master.close();
    await rgw.stop();
    if (!process.argv.includes("--work")) await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err instanceof Error ? err.stack : err)}\n`);
  process.exitCode = 1;
});
