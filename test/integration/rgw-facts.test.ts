/**
 * Pins what the S3 publish target relies on, against the real RADOS Gateway (Ceph 16) the
 * integration-s3 globalSetup started, through @aws-sdk/client-s3 as the agent uses it (path
 * style, checksums WHEN_REQUIRED). If Ceph or the SDK changes one of these, this file says
 * which, before the publish tests fail in a harder-to-read way.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
  type S3ServiceException,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { aptS3Method, type RunningRgw } from "../support/rgw.js";
import { makeBucket, s3Client, sharedRgw } from "../support/s3-test.js";

const shared = sharedRgw();
const md5hex = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const md5b64 = (b: Uint8Array) => createHash("md5").update(b).digest("base64");

/** The S3 error an SDK call threw (its name and HTTP status), or null when it succeeded. */
async function s3Error(p: Promise<unknown>): Promise<{ name: string; status?: number } | null> {
  try {
    await p;
    return null;
  } catch (err) {
    const e = err as S3ServiceException;
    return { name: e.name, status: e.$metadata?.httpStatusCode };
  }
}

/** Anonymous GET with node:http (no SDK, no signature), optionally with another Host header. */
function anonymousGet(url: string, host?: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: host ? { host } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

describe.skipIf(shared.rgw === null)("RADOS Gateway facts (Ceph 16, @aws-sdk/client-s3)", () => {
  const rgw = shared.rgw as RunningRgw;
  const bucket = `facts${randomBytes(4).toString("hex")}`;
  let s3: S3Client;

  beforeAll(async () => {
    s3 = s3Client(rgw);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  afterAll(() => s3?.destroy());

  test("a single PUT answers ETag = MD5 of the body, quoted; HEAD says the same", async () => {
    const body = randomBytes(3000);
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "etag/one",
        Body: body,
        ContentMD5: md5b64(body),
      }),
    );
    expect(put.ETag).toBe(`"${md5hex(body)}"`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "etag/one" }));
    expect(head.ETag).toBe(`"${md5hex(body)}"`);
    expect(head.ContentLength).toBe(body.length);
  });

  test("a wrong Content-MD5 is refused with 400 BadDigest and nothing is stored", async () => {
    const body = randomBytes(1000);
    const err = await s3Error(
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: "digest/bad",
          Body: body,
          ContentMD5: md5b64(Buffer.from("something else")),
        }),
      ),
    );
    expect(err).toEqual({ name: "BadDigest", status: 400 });
    expect(
      await s3Error(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "digest/bad" }))),
    ).toEqual({
      name: "NotFound",
      status: 404,
    });
  });

  test("x-amz-checksum-sha256 is ignored by Ceph 16: a wrong one is stored, so use Content-MD5", async () => {
    const body = randomBytes(100);
    const wrong = createHash("sha256").update("something else").digest("base64");
    const put = await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: "sha/wrong", Body: body, ChecksumSHA256: wrong }),
    );
    expect(put.$metadata.httpStatusCode).toBe(200);
    expect(put.ChecksumSHA256).toBeUndefined();
    const head = await s3.send(
      new HeadObjectCommand({ Bucket: bucket, Key: "sha/wrong", ChecksumMode: "ENABLED" }),
    );
    expect(head.ETag).toBe(`"${md5hex(body)}"`);
    expect(head.ChecksumSHA256).toBeUndefined();
  });

  test("Content-Type, Cache-Control and x-amz-meta-* are stored and given back", async () => {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "headers/pkg.deb",
        Body: Buffer.from("deb"),
        ContentType: "application/vnd.debian.binary-package",
        CacheControl: "public, max-age=31536000, immutable",
        Metadata: { sha256: "ab".repeat(32) },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "headers/pkg.deb" }));
    expect({ type: head.ContentType, cache: head.CacheControl, meta: head.Metadata }).toEqual({
      type: "application/vnd.debian.binary-package",
      cache: "public, max-age=31536000, immutable",
      meta: { sha256: "ab".repeat(32) },
    });
  });

  test("If-None-Match: * makes creation atomic: of 8 concurrent creators one wins, 7 get 412", async () => {
    // The SDK sends PutObject's IfNoneMatch itself (no middleware needed in this version).
    const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`creator ${i}`));
    const results = await Promise.all(
      bodies.map((Body) =>
        s3Error(
          s3.send(
            new PutObjectCommand({ Bucket: bucket, Key: "lock/one", Body, IfNoneMatch: "*" }),
          ),
        ),
      ),
    );
    const winners = results.filter((r) => r === null);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => r !== null)).toEqual(
      Array.from({ length: 7 }, () => ({ name: "PreconditionFailed", status: 412 })),
    );
    // The stored body is the winner's, whole.
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "lock/one" }));
    const text = await got.Body!.transformToString();
    expect(bodies[results.indexOf(null)]!.toString()).toBe(text);
  });

  test("If-Match on PUT: the ETag unquoted replaces, quoted (as HEAD gives it) is refused", async () => {
    const first = await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: "cas/one", Body: Buffer.from("v1") }),
    );
    const quoted = first.ETag!;
    const unquoted = quoted.replace(/^"|"$/g, "");
    const withQuotes = await s3Error(
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: "cas/one",
          Body: Buffer.from("v2"),
          IfMatch: quoted,
        }),
      ),
    );
    const withoutQuotes = await s3Error(
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: "cas/one",
          Body: Buffer.from("v3"),
          IfMatch: unquoted,
        }),
      ),
    );
    const stale = await s3Error(
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: "cas/one",
          Body: Buffer.from("v4"),
          IfMatch: unquoted,
        }),
      ),
    );
    expect({ withQuotes, withoutQuotes, stale }).toEqual({
      withQuotes: { name: "PreconditionFailed", status: 412 },
      withoutQuotes: null,
      stale: { name: "PreconditionFailed", status: 412 },
    });
  });

  test("multipart: Complete answers an empty ETag; HEAD gives md5(part md5s)-N", async () => {
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(1234)];
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: "multi/one" }),
    );
    const uploaded = [];
    for (const [i, Body] of parts.entries()) {
      const part = await s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: "multi/one",
          UploadId,
          PartNumber: i + 1,
          Body,
          ContentMD5: md5b64(Body),
        }),
      );
      expect(part.ETag).toBe(`"${md5hex(Body)}"`);
      uploaded.push({ PartNumber: i + 1, ETag: part.ETag });
    }
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: "multi/one",
        UploadId,
        MultipartUpload: { Parts: uploaded },
      }),
    );
    const expected = `"${md5hex(Buffer.concat(parts.map((p) => createHash("md5").update(p).digest())))}-2"`;
    // Ceph 16 answers the Complete with an empty ETag element: never record that one.
    expect(done.ETag ?? "").toBe("");
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "multi/one" }));
    expect(head.ETag).toBe(expected);
    expect(head.ContentLength).toBe(5 * 1024 * 1024 + 1234);
  });

  test("a wrong Content-MD5 on UploadPart is refused with 400 BadDigest", async () => {
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: "multi/bad" }),
    );
    const err = await s3Error(
      s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: "multi/bad",
          UploadId,
          PartNumber: 1,
          Body: randomBytes(100),
          ContentMD5: md5b64(Buffer.from("x")),
        }),
      ),
    );
    expect(err).toEqual({ name: "BadDigest", status: 400 });
  });

  test("ListObjectsV2 pages hold at most 1000 keys; DeleteObjects takes 1000 and refuses 1001", async () => {
    const keys = Array.from({ length: 1001 }, (_, i) => `many/${String(i).padStart(4, "0")}`);
    const body = Buffer.from("x");
    for (let i = 0; i < keys.length; i += 32) {
      await Promise.all(
        keys
          .slice(i, i + 32)
          .map((Key) => s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body }))),
      );
    }
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: "many/", MaxKeys: 5000 }),
    );
    expect(page.KeyCount).toBe(1000);
    expect(page.IsTruncated).toBe(true);
    const rest = await s3.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: "many/",
        ContinuationToken: page.NextContinuationToken,
      }),
    );
    expect(rest.Contents?.map((c) => c.Key)).toEqual(["many/1000"]);

    // DeleteObjects requires a checksum: with WHEN_REQUIRED the SDK sends x-amz-checksum-crc32
    // (no Content-MD5), which Ceph 16 does not check but accepts. Over 1000 keys: 400 with an
    // empty body, which the SDK names "Unknown".
    const tooMany = await s3Error(
      s3.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })) },
        }),
      ),
    );
    expect(tooMany).toEqual({ name: "Unknown", status: 400 });
    expect((await rgw.bucketStats(bucket))?.objects).toBeGreaterThanOrEqual(1001);
    const deleted = await s3.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: keys.slice(0, 1000).map((Key) => ({ Key })), Quiet: true },
      }),
    );
    expect(deleted.Errors ?? []).toEqual([]);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "many/" }));
    expect(left.Contents?.map((c) => c.Key)).toEqual(["many/1000"]);
  });

  test("public-read objects are read anonymously over plain HTTP, path style; private ones are not", async () => {
    const body = Buffer.from("Packages body\n");
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "pub/dists/Packages",
        Body: body,
        ACL: "public-read",
      }),
    );
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "pub/private", Body: body }));
    const pub = await anonymousGet(`${rgw.endpoint}/${bucket}/pub/dists/Packages`);
    expect(pub.status).toBe(200);
    expect(pub.body.equals(body)).toBe(true);
    expect((await anonymousGet(`${rgw.endpoint}/${bucket}/pub/private`)).status).toBe(403);
    // A missing key: 403 in a private bucket, 404 only when the bucket itself is public-read
    // (listable by everyone), as on AWS. Clients that treat 404 and 403 differently care.
    expect((await anonymousGet(`${rgw.endpoint}/${bucket}/pub/missing`)).status).toBe(403);
    const open = await makeBucket(rgw, "facts-public", { publicRead: true });
    expect((await anonymousGet(`${rgw.endpoint}/${open}/missing`)).status).toBe(404);
    await s3.send(new PutObjectCommand({ Bucket: open, Key: "private", Body: body }));
    expect((await anonymousGet(`${rgw.endpoint}/${open}/private`)).status).toBe(403);
    // Virtual-host style with rgw_dns_name: the bucket in the Host header (any port).
    const vhost = await anonymousGet(
      `${rgw.endpoint}/pub/dists/Packages`,
      `${bucket}.${rgw.dnsName}:${rgw.port}`,
    );
    expect(vhost.status).toBe(200);
    expect(vhost.body.equals(body)).toBe(true);
  });

  test("a key ending in / (a PyPI page) can be PUT, GET and read anonymously", async () => {
    const html = Buffer.from("<html><body>pkg-1.0.tar.gz</body></html>\n");
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "simple/pkg/",
        Body: html,
        ContentType: "text/html",
        ACL: "public-read",
      }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "simple/pkg/" }));
    expect(got.ContentType).toBe("text/html");
    expect(await got.Body!.transformToString()).toBe(html.toString());
    const anon = await anonymousGet(`${rgw.endpoint}/${bucket}/simple/pkg/`);
    expect(anon.status).toBe(200);
    expect(anon.body.equals(html)).toBe(true);
    // Without the slash it is another (missing) key: S3 has no index documents.
    expect((await anonymousGet(`${rgw.endpoint}/${bucket}/simple/pkg`)).status).toBe(403);
  });

  test("a stream PUT with the SDK's default checksums goes out aws-chunked and Ceph 16 refuses it", async () => {
    const body = randomBytes(2048);
    const defaults = s3Client(rgw, {
      requestChecksumCalculation: "WHEN_SUPPORTED",
      responseChecksumValidation: "WHEN_SUPPORTED",
    });
    try {
      const err = await s3Error(
        defaults.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: "stream/default",
            Body: Readable.from([body]),
            ContentLength: body.length,
          }),
        ),
      );
      expect(err?.status).toBe(411);
      expect(err?.name).toBe("MissingContentLength");
    } finally {
      defaults.destroy();
    }
    // The same stream with WHEN_REQUIRED (and Content-MD5) is fine.
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "stream/required",
        Body: Readable.from([body]),
        ContentLength: body.length,
        ContentMD5: md5b64(body),
      }),
    );
    expect(put.ETag).toBe(`"${md5hex(body)}"`);
  });

  test("apt-transport-s3 fetches over TLS, virtual-host style, through aptS3Method's wrapper", async () => {
    const work = await mkdtemp(path.join(tmpdir(), "packrat-apt-s3-"));
    try {
      const body = randomBytes(5000);
      await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: "apt/dists/x/Release", Body: body }),
      );
      const { method } = await aptS3Method(rgw, work, [bucket]);
      // apt's method protocol: configure, acquire one URI, then EOF ends the method.
      const out = path.join(work, "Release");
      const child = spawn(method, [], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.stdin.end(
        "601 Configuration\nConfig-Item: Acquire::Retries=0\n\n" +
          `600 URI Acquire\nURI: s3://${bucket}/apt/dists/x/Release\nFilename: ${out}\n\n`,
      );
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      expect({ code, stderr, failure: /^400 .*$/m.exec(stdout)?.[0] ?? null }).toEqual({
        code: 0,
        stderr: "",
        failure: null,
      });
      expect(stdout).toMatch(/^201 URI Done$/m);
      expect(stdout).toContain(`SHA256-Hash: ${createHash("sha256").update(body).digest("hex")}`);
      expect((await readFile(out)).equals(body)).toBe(true);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
