/**
 * The bucket under faults (issue 22), on a gateway of this file's own (radosgw is killed here;
 * the shared one serves the other S3 files at the same time): radosgw killed in the middle of
 * the agent's upload and started again, and the agent SIGKILLed in the middle of one. Each
 * converges with `verify --s3` clean, and at no point does the bucket hold a manifest naming
 * an object that is not there. Large files go up as multipart uploads.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDemoMaster, type DemoMaster } from "../../src/demo/sample-mirror.js";
import { generateSigningKey, type GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runCli, startCli } from "../support/cli.js";
import { startRgw, type RunningRgw } from "../support/rgw.js";
import {
  bucketListing,
  manifestsNameOnlyPresentObjects,
  syncCli,
  writeS3Conf,
} from "../support/s3-mirror.js";
import { s3Client, sharedRgw } from "../support/s3-test.js";

const shared = sharedRgw();

/** Wait until `check` is true, polling; fails after `timeoutMs`. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.skipIf(shared.rgw === null)("the bucket under faults (own gateway)", () => {
  let rgw: RunningRgw;
  let s3: S3Client;
  let work: string;
  let demo: DemoMaster;
  let key: GeneratedSigningKey;

  beforeAll(async () => {
    rgw = await startRgw();
    s3 = s3Client(rgw);
    work = await mkdtemp(path.join(tmpdir(), "packrat-s3-faults-"));
    demo = await startDemoMaster();
    key = await generateSigningKey({ name: "faults", email: "f@packrat.invalid", type: "ed25519" });
    await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
    // Enough bytes that an upload takes a while: forty 1 MiB files and three of 20 MiB (three
    // multipart parts each), random so nothing compresses them away.
    const files = [
      ...Array.from({ length: 40 }, (_, i) => ({ name: `blob${i}`, size: 1 << 20 })),
      ...Array.from({ length: 3 }, (_, i) => ({ name: `big${i}`, size: 20 << 20 })),
    ];
    for (const f of files) {
      demo.master.addPackageFile({
        package: f.name,
        distroVersion: "none",
        version: "1",
        type: "tar",
        arch: "all",
        filename: `${f.name}_1.tar.gz`,
        content: randomBytes(f.size),
        tags: ["prod"],
      });
    }
  }, 180_000);

  afterAll(async () => {
    await demo?.close();
    s3?.destroy();
    await rgw?.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function mirror(name: string) {
    const bucket = name;
    const prefix = "m/";
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ACL: "public-read" }));
    const conf = await writeS3Conf({
      file: path.join(work, `${name}.conf`),
      masterUrl: demo.master.url,
      root: path.join(work, `${name}-root`),
      stateDb: path.join(work, `${name}.db`),
      key,
      keyFile: path.join(work, "key.asc"),
      rgw,
      bucket,
      prefix,
    });
    return { bucket, prefix, conf };
  }

  test("radosgw killed mid-upload: the sync says the bucket is behind, the next one converges, verify --s3 is clean", async () => {
    const { bucket, prefix, conf } = await mirror("killed-gateway");
    const agent = startCli(["sync", "--config", conf], {
      env: { AWS_EC2_METADATA_DISABLED: "true" },
    });
    // Some objects are up, not all: kill the gateway now.
    await until(
      async () => (await bucketListing(s3, bucket, prefix)).size >= 10,
      "the first uploads",
    );
    expect(await manifestsNameOnlyPresentObjects(s3, bucket, prefix)).toEqual([]);
    await rgw.killRadosgw();
    const { code } = await agent.exited;
    expect(code).toBe(1);
    expect(agent.stdout).toMatch(/bucket .*(failed|not updated)/);
    await rgw.startRadosgw();
    expect(await manifestsNameOnlyPresentObjects(s3, bucket, prefix)).toEqual([]);

    const again = await syncCli(conf);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const verify = await runCli(["verify", "--s3", "--config", conf]);
    expect(verify.code, verify.stdout).toBe(0);
    const keys = await bucketListing(s3, bucket, prefix);
    expect([...keys.keys()].filter((k) => /big\d_1\.tar\.gz$/.test(k))).toHaveLength(3);
    expect(await manifestsNameOnlyPresentObjects(s3, bucket, prefix)).toEqual([]);
  }, 300_000);

  test("the agent SIGKILLed mid-upload converges when started again", async () => {
    const { bucket, prefix, conf } = await mirror("killed-agent");
    const agent = startCli(["sync", "--config", conf], {
      env: { AWS_EC2_METADATA_DISABLED: "true" },
    });
    await until(
      async () => (await bucketListing(s3, bucket, prefix)).size >= 10,
      "the first uploads",
    );
    agent.kill("SIGKILL");
    await agent.exited;
    expect(await manifestsNameOnlyPresentObjects(s3, bucket, prefix)).toEqual([]);

    const again = await syncCli(conf);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    // The kill came before the upload ended: the restart had something left to upload.
    expect(Number(/: (\d+) uploaded/.exec(again.stdout)?.[1])).toBeGreaterThan(0);
    const verify = await runCli(["verify", "--s3", "--config", conf]);
    expect(verify.code, verify.stdout).toBe(0);
    // A third pass finds nothing to do: the restart recorded what the killed one had put.
    const third = await syncCli(conf);
    expect(third.stdout).toMatch(/: 0 uploaded \(0 bytes\), 0 deleted/);
  }, 300_000);
});
