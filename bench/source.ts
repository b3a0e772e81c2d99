/**
 * A bucket as the source (issue 23): N .debs in s3://bucket/pool/ of a real Ceph RADOS Gateway,
 * published by the agent (no master) as a signed apt repo; then a burst of M more uploads with
 * RGW bucket notifications pushed to the running daemon: the time from the start of the burst
 * until the published index names all M, and how many publishes that took. Beside it, what an
 * s3apt-style rebuild costs for the same N + M packages: a full `dpkg-scanpackages` of local
 * copies of every .deb (a lower bound: s3apt reads each object from the bucket), gzip, and the
 * upload of the index with `aws s3 cp`.
 *
 *   npm run build && tsc -p bench/tsconfig.json && node dist/bench/source.js [--n 10000] [--m 1000]
 *
 * Prints JSON and writes bench/results/source.json.
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { generateSigningKey } from "../src/signing/keygen.js";
import { startRgw } from "../test/support/rgw.js";
import { s3Client } from "../test/support/s3-test.js";
import { buildPackage } from "./generate.js";

const run = promisify(execFile);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const BIN = path.resolve(import.meta.dirname, "..", "..", "bin", "packrat-agent");

async function main(): Promise<void> {
  process.env.AWS_EC2_METADATA_DISABLED = "true";
  const n = Number(arg("n", "10000"));
  const m = Number(arg("m", "1000"));
  const work = await mkdtemp(path.join(tmpdir(), "packrat-bench-source-"));
  const say = (s: string) => process.stderr.write(`[source bench] ${s}\n`);
  say(`N = ${n}, M = ${m}, work ${work}; starting the gateway`);
  const rgw = await startRgw({ parentDir: work });
  const bucket = "bench-source";
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
    AWS_DEFAULT_REGION: rgw.region,
    AWS_PAGER: "",
  };
  const aws = (args: string[]) =>
    run("aws", ["--endpoint-url", rgw.endpoint, ...args], { env, maxBuffer: 64 << 20 });
  let daemon: ReturnType<typeof spawn> | null = null;
  try {
    const s3 = s3Client(rgw);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    // The corpus: N, then M more, as separate local directories (the uploads' sources).
    const first = path.join(work, "first");
    const burst = path.join(work, "burst");
    await mkdir(first);
    await mkdir(burst);
    for (let i = 0; i < n + m; i++) {
      const { entry, bytes } = buildPackage("deb", i);
      await writeFile(path.join(i < n ? first : burst, entry.filename), bytes);
    }
    say(`uploading ${n} .debs`);
    let t = Date.now();
    await aws(["s3", "cp", "--recursive", "--quiet", first, `s3://${bucket}/pool/`]);
    const uploadN = Date.now() - t;

    const key = await generateSigningKey({
      name: "bench",
      email: "b@packrat.invalid",
      type: "ed25519",
    });
    await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
    const root = path.join(work, "root");
    const conf = path.join(work, "mirror.conf");
    await writeFile(
      conf,
      [
        "[mirror]",
        `root_dir: ${root}`,
        `state_db: ${path.join(work, "state.db")}`,
        `gpg_sign_key: ${key.signingKeyId}`,
        `gpg_key_file: ${path.join(work, "key.asc")}`,
        "poll_timeout: 600",
        "source_events_listen: 127.0.0.1:0",
        "[repo apt]",
        "format: apt",
        `source: s3://${bucket}/pool/`,
        "[s3]",
        `bucket: ${bucket}`,
        "prefix: mirror/",
        `endpoint: ${rgw.endpoint}`,
        `region: ${rgw.region}`,
        "path_style: yes",
        `access_key_id: ${rgw.accessKeyId}`,
        `secret_access_key: ${rgw.secretAccessKey}`,
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    say("cold: sync of the bucket source");
    t = Date.now();
    await run(process.execPath, [BIN, "sync", "--config", conf], { env, maxBuffer: 64 << 20 });
    const cold = Date.now() - t;

    say("starting the daemon and the RGW notification");
    let stderr = "";
    daemon = spawn(process.execPath, [BIN, "run", "--config", conf], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    daemon.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const waitLog = async (re: RegExp) => {
      while (!re.test(stderr)) await new Promise((r) => setTimeout(r, 50));
      return stderr.split("\n").find((l) => re.test(l))!;
    };
    const url = (JSON.parse(await waitLog(/listening for bucket notifications/)) as { url: string })
      .url;
    await waitLog(/full sync finished/);
    const topic = await aws([
      "sns",
      "create-topic",
      "--name",
      "bench",
      "--attributes",
      `push-endpoint=${url}`,
    ]);
    const arn = (JSON.parse(topic.stdout) as { TopicArn: string }).TopicArn;
    await aws([
      "s3api",
      "put-bucket-notification-configuration",
      "--bucket",
      bucket,
      "--notification-configuration",
      JSON.stringify({
        TopicConfigurations: [
          {
            Id: "bench",
            TopicArn: arn,
            Events: ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            Filter: { Key: { FilterRules: [{ Name: "prefix", Value: "pool/" }] } },
          },
        ],
      }),
    ]);
    const packages = path.join(root, "apt/dists/stable/main/binary-amd64/Packages");
    // Publishes are counted by the repo's generation number, before and after (a log line may
    // still be on its way when the index is seen).
    const generation = async (): Promise<number> => {
      const out = await run(process.execPath, [BIN, "status", "--json", "--config", conf], {
        env,
        maxBuffer: 64 << 20,
      });
      const status = JSON.parse(out.stdout) as {
        repos: { name: string; generation: number | null }[];
      };
      return status.repos.find((r) => r.name === "apt")?.generation ?? 0;
    };
    const generationBefore = await generation();
    say(`burst: ${m} uploads`);
    t = Date.now();
    await aws(["s3", "cp", "--recursive", "--quiet", burst, `s3://${bucket}/pool/`]);
    const uploadM = Date.now() - t;
    const last = buildPackage("deb", n + m - 1).entry.name;
    const firstOfBurst = buildPackage("deb", n).entry.name;
    for (;;) {
      const text = await readFile(packages, "utf8").catch(() => "");
      if (text.includes(`Package: ${last}\n`) && text.includes(`Package: ${firstOfBurst}\n`)) {
        const count = (text.match(/^Package: /gm) ?? []).length;
        if (count >= n + m) break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const burstToIndex = Date.now() - t;
    // The complete generation that follows a quick one comes after 2 s of quiet: count it too.
    await new Promise((r) => setTimeout(r, 3000));
    const publishes = (await generation()) - generationBefore;
    daemon.kill("SIGTERM");

    say("peer: dpkg-scanpackages of every .deb + gzip + upload");
    const all = path.join(work, "all");
    await mkdir(path.join(all, "pool"), { recursive: true });
    await run("sh", ["-c", `cp ${first}/*.deb ${burst}/*.deb ${all}/pool/`], {
      maxBuffer: 64 << 20,
    });
    t = Date.now();
    await run(
      "sh",
      [
        "-c",
        `cd ${all} && dpkg-scanpackages --multiversion pool > Packages 2>/dev/null && gzip -9kf Packages`,
      ],
      { maxBuffer: 64 << 20 },
    );
    await aws([
      "s3",
      "cp",
      "--quiet",
      path.join(all, "Packages.gz"),
      `s3://${bucket}/scan/Packages.gz`,
    ]);
    const peer = Date.now() - t;

    const result = {
      date: new Date().toISOString(),
      machine: {
        cpus: cpus().length,
        model: cpus()[0]?.model,
        memGiB: Math.round(totalmem() / 2 ** 30),
      },
      n,
      m,
      uploadNms: uploadN,
      coldSyncMs: cold,
      burstUploadMs: uploadM,
      burstToIndexMs: burstToIndex,
      publishesForBurst: publishes,
      peerScanAndUploadMs: peer,
      ratio: Number((peer / burstToIndex).toFixed(2)),
    };
    console.log(JSON.stringify(result, null, 2));
    await writeFile(
      path.join(import.meta.dirname, "..", "..", "bench", "results", "source.json"),
      JSON.stringify(result, null, 2) + "\n",
    );
  } finally {
    daemon?.kill("SIGKILL");
    await rgw.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
