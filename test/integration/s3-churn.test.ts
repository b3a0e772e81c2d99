/**
 * Bucket readers under churn (issue 22): while the real agent (`run`, with [s3]) applies more
 * than 100 changes from the master, loops of the real `apt-get update` and `dnf makecache`
 * reading the bucket anonymously over plain HTTP (signatures on) never fail: the bucket never
 * shows an InRelease or repomd.xml naming an object that is not uploaded yet. The agent reaches
 * the gateway through a proxy that delays each request, so each upload takes long enough for
 * a reader to land between two of them (on loopback a wrong order would go unseen).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { samplePackages, startDemoMaster, type DemoMaster } from "../../src/demo/sample-mirror.js";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { runCli, startCli, type RunningCli } from "../support/cli.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import { startDelayProxy, type DelayProxy } from "../support/delay-proxy.js";
import type { RunningRgw } from "../support/rgw.js";
import { syncCli, writeS3Conf } from "../support/s3-mirror.js";
import { s3Client, sharedRgw } from "../support/s3-test.js";

const shared = sharedRgw();
const ROUNDS = 14;

interface ReaderStats {
  attempts: number;
  failures: string[];
}

describe.skipIf(shared.rgw === null)("bucket readers under churn", () => {
  const rgw = shared.rgw as RunningRgw;
  const bucket = `packrat-churn-${process.pid}`;
  const prefix = "churn/";
  let s3: S3Client;
  let work: string;
  let demo: DemoMaster;
  let conf: string;
  let root: string;
  let agent: RunningCli | null = null;
  let slow: DelayProxy;

  beforeAll(async () => {
    s3 = s3Client(rgw);
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ACL: "public-read" }));
    work = await mkdtemp(path.join(tmpdir(), "packrat-s3-churn-"));
    root = path.join(work, "root");
    demo = await startDemoMaster();
    slow = await startDelayProxy(rgw.port, 100);
    const key = await generateSigningKey({ name: "churn", email: "c@x.invalid", type: "ed25519" });
    await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
    conf = await writeS3Conf({
      file: path.join(work, "mirror.conf"),
      masterUrl: demo.master.url,
      root,
      stateDb: path.join(work, "state.db"),
      key,
      keyFile: path.join(work, "key.asc"),
      rgw,
      bucket,
      prefix,
      endpoint: slow.url,
      mirrorExtra: ["trigger_debounce_ms: 20", "watch_tree: no"],
    });
    const first = await syncCli(conf);
    expect(first.code, first.stdout + first.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    if (agent && agent.child.exitCode === null) {
      agent.kill("SIGKILL");
      await agent.exited;
    }
    await demo?.close();
    await slow?.close();
    s3?.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it("apt-get update and dnf makecache on the bucket never fail while the agent applies 100+ changes", async () => {
    agent = startCli(["run", "--config", conf], { env: { AWS_EC2_METADATA_DISABLED: "true" } });
    await agent.waitForLog(/"msg":"full sync finished"/, 60_000);
    const base = `${rgw.endpoint}/${bucket}/${prefix}`;

    let churning = true;
    const apt: ReaderStats = { attempts: 0, failures: [] };
    const dnf: ReaderStats = { attempts: 0, failures: [] };
    const aptLoop = (async () => {
      while (churning || apt.attempts < 3) {
        apt.attempts++;
        try {
          await runAptGet({
            repoUrl: `${base}apt`,
            suite: "bookworm",
            components: ["main"],
            keyringPath: path.join(root, "repo-key.gpg"),
            archs: ["amd64"],
          });
        } catch (err) {
          apt.failures.push(String(err).slice(0, 3000));
        }
      }
    })();
    const dnfSetup = {
      base: path.join(work, "dnf"),
      repos: [{ id: "bucket-el9", baseUrl: `${base}yum/rhel/main/9/` }],
      keyFile: path.join(root, "repo-key"),
      packageGpgcheck: false,
    };
    await writeDnfConfig(dnfSetup);
    const dnfLoop = (async () => {
      while (churning || dnf.attempts < 3) {
        dnf.attempts++;
        const r = await runDnf(dnfSetup, ["makecache"], 60_000);
        if (!r.ok) dnf.failures.push(r.output.slice(0, 3000));
      }
    })();

    const started = Date.now();
    let changes = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      demo.tagRound(round);
      changes += samplePackages(round).length;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(changes).toBeGreaterThanOrEqual(100);
    // Caught up when the bucket's apt index names the last version.
    const packagesUrl = `${base}apt/dists/bookworm/main/binary-amd64/Packages`;
    const caughtUp = async () =>
      (
        await fetch(packagesUrl)
          .then((r) => r.text())
          .catch(() => "")
      ).includes(`Version: 1.${ROUNDS}-1\n`);
    for (const until = Date.now() + 90_000; !(await caughtUp()) && Date.now() < until;)
      await new Promise((r) => setTimeout(r, 100));
    expect(await caughtUp(), "the bucket caught up").toBe(true);
    churning = false;
    await Promise.all([aptLoop, dnfLoop]);
    const rounds = agent.stderr.split("\n").filter((l) => l.includes('"msg":"bucket updated"'));
    console.log(
      `s3 churn: ${changes} changes in ${Date.now() - started} ms, ${rounds.length} bucket rounds; ` +
        `apt-get update ${apt.attempts} attempts / ${apt.failures.length} failures, ` +
        `dnf makecache ${dnf.attempts} attempts / ${dnf.failures.length} failures`,
    );
    expect(apt.failures).toEqual([]);
    expect(dnf.failures).toEqual([]);
    expect(apt.attempts).toBeGreaterThanOrEqual(3);
    expect(dnf.attempts).toBeGreaterThanOrEqual(3);
    // Several bucket rounds ran while the readers read (how many depends on the machine).
    expect(rounds.length).toBeGreaterThanOrEqual(2);

    agent.kill("SIGTERM");
    expect((await agent.exited).code).toBe(0);
    const verify = await runCli(["verify", "--s3", "--config", conf]);
    expect(verify.code, verify.stdout).toBe(0);
  }, 240_000);
});
