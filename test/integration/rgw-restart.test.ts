/**
 * radosgw killed in the middle of an upload, then started again (what the S3 target's fault
 * tests do): on its own gateway, since killing the shared one would fail whatever other S3
 * file runs at the same time. Pins: the interrupted PUT fails at the client, stores nothing,
 * and leaves the object it was replacing whole; radosgw comes back on the same ports with
 * everything it had.
 */
import { createHash, randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startRgw, type RunningRgw } from "../support/rgw.js";
import { s3Client, sharedRgw } from "../support/s3-test.js";

const shared = sharedRgw();

describe.skipIf(shared.rgw === null)("radosgw killed mid-upload and started again", () => {
  let rgw: RunningRgw;
  let s3: S3Client;
  const bucket = "restart";

  beforeAll(async () => {
    rgw = await startRgw();
    s3 = s3Client(rgw, { maxAttempts: 1 });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }, 120_000);
  afterAll(async () => {
    s3?.destroy();
    await rgw?.stop();
  });

  test("the interrupted PUT fails, stores nothing, and the old object stays whole", async () => {
    const old = randomBytes(100_000);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "replaced", Body: old }));
    const pidBefore = rgw.radosgwPid;
    expect(pidBefore).not.toBeNull();

    // Two uploads, each with half its body sent when radosgw dies: a new key and a replacement.
    const size = 4 * 1024 * 1024;
    const uploads = ["fresh", "replaced"].map((Key) => {
      const body = new PassThrough();
      const bytes = randomBytes(size);
      const sent = s3
        .send(new PutObjectCommand({ Bucket: bucket, Key, Body: body, ContentLength: size }))
        .then(
          () => "stored",
          (err: Error) => `failed: ${err.name}`,
        );
      body.write(bytes.subarray(0, size / 2));
      return { body, bytes, sent };
    });
    await rgw.killRadosgw();
    expect(rgw.radosgwPid).toBeNull();
    for (const u of uploads) u.body.end(u.bytes.subarray(size / 2));
    for (const u of uploads) expect(await u.sent).toMatch(/^failed: /);

    const started = Date.now();
    await rgw.startRadosgw();
    const restartMs = Date.now() - started;
    expect(rgw.radosgwPid).not.toBe(pidBefore);
    expect(restartMs).toBeLessThan(20_000);

    const fresh = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "fresh" })).then(
      () => "exists",
      (err: Error) => err.name,
    );
    expect(fresh).toBe("NotFound");
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "replaced" }));
    const body = Buffer.from(await got.Body!.transformToByteArray());
    expect(createHash("sha256").update(body).digest("hex")).toBe(
      createHash("sha256").update(old).digest("hex"),
    );
    expect(await rgw.bucketStats(bucket)).toEqual({ objects: 1, bytes: old.length });
  });
});
