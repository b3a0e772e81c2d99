/**
 * ObjectStore over S3 (AWS, Ceph RADOS Gateway, MinIO...) with @aws-sdk/client-s3: the client
 * the field uses from Node, and the only one that reads the standard credential chain
 * (environment, ~/.aws/credentials, instance or container role) when mirror.conf names none.
 *
 * Choices, each for a reason measured against a Ceph 16 gateway (docs/operations.md):
 * - every body is a Buffer with Content-MD5, which every S3 server verifies (a wrong one is
 *   400 BadDigest and nothing is stored); x-amz-checksum-sha256 is newer and Ceph 16 ignores it;
 * - request checksums are WHEN_REQUIRED: the SDK's default sends a stream as `aws-chunked` with a
 *   trailing checksum, which Ceph 16 refuses (MissingContentLength);
 * - files above one part go up as a multipart upload of 8 MiB Buffers, each with its own MD5,
 *   so a part that fails (503 SlowDown) is retried by the SDK alone, and a body that fails its
 *   SHA-256 check is aborted before CompleteMultipartUpload (nothing becomes visible);
 * - the ETag of a completed multipart upload comes from a HEAD: Ceph answers the Complete with
 *   an empty one.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type ObjectCannedACL,
} from "@aws-sdk/client-s3";
import { PackratError } from "../errors.js";
import type { ObjectBody, ObjectStore, PutHeaders, StoredObject } from "./object-store.js";

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix, empty or ending in "/". */
  prefix: string;
  /** null: AWS for the region. */
  endpoint: string | null;
  region: string;
  pathStyle: boolean;
  /** null: the SDK's default credential chain. */
  credentials: { accessKeyId: string; secretAccessKey: string } | null;
  /** A canned ACL on every object (`public-read` for a bucket served over plain HTTP). */
  acl: string | null;
  /** Bytes per multipart part, and the size above which a file goes up in parts. */
  partSize?: number;
  requestTimeoutMs?: number;
}

export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
/** DeleteObjects takes at most this many keys (Ceph: 1001 is a 400 with an empty body). */
const DELETE_BATCH = 1000;

function md5Base64(buf: Uint8Array): string {
  return createHash("md5").update(buf).digest("base64");
}

function unquote(etag: string | undefined): string {
  return (etag ?? "").replace(/^"|"$/g, "");
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Why an S3 call failed, said so the operator knows what to change. */
export function bucketError(err: unknown, doing: string, where: string): PackratError {
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? e.code ?? "Error";
  const detail = `${name}${status ? ` (HTTP ${status})` : ""}: ${e.message ?? String(err)}`;
  let hint: string;
  if (["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden"].includes(name))
    hint =
      "the bucket refuses the credentials: check [s3] access_key_id / secret_access_key, or AWS_ACCESS_KEY_ID / AWS_PROFILE / ~/.aws/credentials, and the bucket policy";
  else if (name === "NoSuchBucket")
    hint = "create the bucket first (e.g. `aws s3 mb s3://BUCKET`), or fix [s3] bucket";
  else if (name === "CredentialsProviderError")
    hint =
      "no credentials found: set [s3] access_key_id and secret_access_key, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials";
  else if (status === 503 || name === "SlowDown")
    hint = "the bucket is throttling; the agent retries with backoff";
  else if (status === undefined)
    hint = "the endpoint cannot be reached: check [s3] endpoint and the network";
  else hint = "the local tree is published; the bucket is retried on the next pass";
  return new PackratError("PACKRAT_BUCKET", `${where}: ${doing} failed: ${detail}`, {
    hint,
    cause: err,
  });
}

export class S3Store implements ObjectStore {
  readonly target: string;
  readonly description: string;
  private readonly client: S3Client;
  private readonly partSize: number;

  constructor(private readonly opts: S3StoreOptions) {
    this.partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    const endpoint = opts.endpoint ?? `https://s3.${opts.region}.amazonaws.com`;
    this.target = `s3://${opts.bucket}/${opts.prefix} @ ${endpoint}`;
    this.description = `s3://${opts.bucket}/${opts.prefix}`;
    this.client = new S3Client({
      region: opts.region,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      forcePathStyle: opts.pathStyle,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 5,
      retryMode: "adaptive",
      requestHandler: {
        connectionTimeout: 5_000,
        requestTimeout: opts.requestTimeoutMs ?? 120_000,
      },
    });
  }

  private key(rel: string): string {
    return `${this.opts.prefix}${rel}`;
  }

  private where(rel?: string): string {
    return rel === undefined ? this.description : `s3://${this.opts.bucket}/${this.key(rel)}`;
  }

  private async call<T>(doing: string, rel: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw bucketError(err, doing, this.where(rel));
    }
  }

  private get acl(): ObjectCannedACL | undefined {
    return (this.opts.acl ?? undefined) as ObjectCannedACL | undefined;
  }

  async put(rel: string, body: ObjectBody, headers: PutHeaders): Promise<string> {
    const common = {
      Bucket: this.opts.bucket,
      Key: this.key(rel),
      ContentType: headers.contentType,
      CacheControl: headers.cacheControl,
      Metadata: { sha256: headers.sha256 },
      ...(this.acl ? { ACL: this.acl } : {}),
    };
    if (body.size <= this.partSize) {
      // Every part is read (and the body checked) before the PUT goes out.
      const chunks: Buffer[] = [];
      for await (const part of body.parts(this.partSize)) chunks.push(part);
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const out = await this.call("PUT", rel, () =>
        this.client.send(
          new PutObjectCommand({ ...common, Body: bytes, ContentMD5: md5Base64(bytes) }),
        ),
      );
      return unquote(out.ETag);
    }
    const created = await this.call("starting a multipart upload", rel, () =>
      this.client.send(new CreateMultipartUploadCommand(common)),
    );
    const uploadId = created.UploadId!;
    try {
      const parts: { ETag: string; PartNumber: number }[] = [];
      for await (const part of body.parts(this.partSize)) {
        const PartNumber = parts.length + 1;
        const out = await this.call(`uploading part ${PartNumber}`, rel, () =>
          this.client.send(
            new UploadPartCommand({
              Bucket: this.opts.bucket,
              Key: this.key(rel),
              UploadId: uploadId,
              PartNumber,
              Body: part,
              ContentMD5: md5Base64(part),
            }),
          ),
        );
        parts.push({ ETag: out.ETag ?? "", PartNumber });
      }
      await this.call("completing a multipart upload", rel, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.opts.bucket,
            Key: this.key(rel),
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
        ),
      );
    } catch (err) {
      await this.client
        .send(
          new AbortMultipartUploadCommand({
            Bucket: this.opts.bucket,
            Key: this.key(rel),
            UploadId: uploadId,
          }),
        )
        .catch(() => undefined); // a later reconcile aborts what is left (abortStaleUploads)
      throw err;
    }
    // Ceph answers CompleteMultipartUpload with an empty ETag; HEAD has the real one.
    const head = await this.call("HEAD after a multipart upload", rel, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: this.key(rel) })),
    );
    return unquote(head.ETag);
  }

  async createIfAbsent(rel: string, content: Uint8Array): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.opts.bucket,
          Key: this.key(rel),
          Body: content,
          ContentMD5: md5Base64(content),
          ContentType: "application/json",
          IfNoneMatch: "*",
        }),
      );
      return true;
    } catch (err) {
      const e = err as SdkError;
      if (e.$metadata?.httpStatusCode === 412 || e.name === "PreconditionFailed") return false;
      throw bucketError(err, "creating the lock object", this.where(rel));
    }
  }

  async get(rel: string): Promise<Uint8Array | null> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.key(rel) }),
      );
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
    } catch (err) {
      const e = err as SdkError;
      if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return null;
      throw bucketError(err, "GET", this.where(rel));
    }
  }

  /**
   * The object's bytes as a stream, or null if there is none: a bucket source reads packages
   * this way (never whole in memory).
   */
  async openStream(rel: string): Promise<{ size: number | null; body: Readable } | null> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.key(rel) }),
      );
      const body = out.Body as Readable | undefined;
      return { size: out.ContentLength ?? null, body: body ?? Readable.from([]) };
    } catch (err) {
      const e = err as SdkError;
      if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return null;
      throw bucketError(err, "GET", this.where(rel));
    }
  }

  /** Is there an object at `rel`? (HEAD: how a bucket source checks what an event claims.) */
  async exists(rel: string): Promise<boolean> {
    try {
      await this.client.send(
        new HeadObjectCommand({ Bucket: this.opts.bucket, Key: this.key(rel) }),
      );
      return true;
    } catch (err) {
      const e = err as SdkError;
      if (e.name === "NotFound" || e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404)
        return false;
      throw bucketError(err, "HEAD", this.where(rel));
    }
  }

  /** The bucket and key prefix (for matching bucket notifications to a source). */
  get location(): { bucket: string; prefix: string } {
    return { bucket: this.opts.bucket, prefix: this.opts.prefix };
  }

  async *list(): AsyncIterable<StoredObject[]> {
    let token: string | undefined;
    do {
      const out = await this.call("listing", undefined, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.opts.bucket,
            Prefix: this.opts.prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      yield (out.Contents ?? []).map((o) => ({
        key: (o.Key ?? "").slice(this.opts.prefix.length),
        size: o.Size ?? 0,
        etag: unquote(o.ETag),
      }));
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const out = await this.call(`deleting ${batch.length} objects`, undefined, () =>
        this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.opts.bucket,
            Delete: { Objects: batch.map((k) => ({ Key: this.key(k) })), Quiet: true },
          }),
        ),
      );
      const failed = (out.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
      if (failed.length > 0) {
        const first = failed[0]!;
        throw new PackratError(
          "PACKRAT_BUCKET",
          `${this.description}: ${failed.length} of ${batch.length} deletions failed, e.g. ${first.Key}: ${first.Code} ${first.Message ?? ""}`,
          { hint: "they are tried again on the next pass" },
        );
      }
    }
  }

  async abortStaleUploads(before: number): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadMarker: string | undefined;
    for (;;) {
      const out = await this.call("listing multipart uploads", undefined, () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.opts.bucket,
            Prefix: this.opts.prefix,
            ...(keyMarker ? { KeyMarker: keyMarker } : {}),
            ...(uploadMarker ? { UploadIdMarker: uploadMarker } : {}),
          }),
        ),
      );
      for (const u of out.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated?.getTime() ?? 0) >= before) continue;
        await this.call(
          "aborting a stale multipart upload",
          u.Key.slice(this.opts.prefix.length),
          () =>
            this.client.send(
              new AbortMultipartUploadCommand({
                Bucket: this.opts.bucket,
                Key: u.Key,
                UploadId: u.UploadId,
              }),
            ),
        );
        aborted++;
      }
      if (!out.IsTruncated) return aborted;
      keyMarker = out.NextKeyMarker;
      uploadMarker = out.NextUploadIdMarker;
    }
  }

  close(): void {
    this.client.destroy();
  }
}
