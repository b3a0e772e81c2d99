/**
 * The demo mirror (src/demo/sample-mirror.ts) published to a bucket by the built CLI: the
 * mirror.conf with an [s3] section, and a listing of what the bucket holds. Shared by the S3
 * publish tests.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import type { GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runCli, type CliResult } from "./cli.js";
import type { RgwInfo } from "./rgw.js";

export interface S3ConfOptions {
  file: string;
  masterUrl: string;
  root: string;
  stateDb: string;
  key: GeneratedSigningKey;
  keyFile: string;
  rgw: Pick<RgwInfo, "endpoint" | "region" | "accessKeyId" | "secretAccessKey">;
  bucket: string;
  prefix: string;
  /** Another endpoint (a closed port, for an unreachable bucket). */
  endpoint?: string;
  /** More [mirror] lines, e.g. "trigger_debounce_ms: 20". */
  mirrorExtra?: string[];
}

export async function writeS3Conf(o: S3ConfOptions): Promise<string> {
  await writeFile(
    o.file,
    [
      "[packrat]",
      `host: ${o.masterUrl}`,
      "name: demo",
      "[mirror]",
      `root_dir: ${o.root}`,
      `state_db: ${o.stateDb}`,
      `gpg_sign_key: ${o.key.signingKeyId}`,
      `gpg_key_file: ${o.keyFile}`,
      // Superseded files go at once, so a test sees deletions without waiting a day.
      "metadata_grace_seconds: 0",
      ...(o.mirrorExtra ?? []),
      "[s3]",
      `bucket: ${o.bucket}`,
      `prefix: ${o.prefix}`,
      `endpoint: ${o.endpoint ?? o.rgw.endpoint}`,
      `region: ${o.rgw.region}`,
      "path_style: yes",
      `access_key_id: ${o.rgw.accessKeyId}`,
      `secret_access_key: ${o.rgw.secretAccessKey}`,
      "acl: public-read",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return o.file;
}

export function syncCli(config: string, timeoutMs = 180_000): Promise<CliResult> {
  return runCli(["sync", "--config", config], {
    timeoutMs,
    env: { AWS_EC2_METADATA_DISABLED: "true" },
  });
}

/** Every object under the prefix: key (without the prefix) → ETag. */
export async function bucketListing(
  s3: S3Client,
  bucket: string,
  prefix: string,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) out.set(o.Key!.slice(prefix.length), o.ETag ?? "");
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/**
 * The publish-order invariant as a reader of the bucket sees it: every JSON manifest in the
 * bucket names only objects that are there. Returns what is missing.
 */
export async function manifestsNameOnlyPresentObjects(
  s3: S3Client,
  bucket: string,
  prefix: string,
): Promise<string[]> {
  const keys = await bucketListing(s3, bucket, prefix);
  const missing: string[] = [];
  for (const key of keys.keys()) {
    if (!/\/_repo_main\/MANIFEST_[^/]+\.json$/.test(key)) continue;
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: prefix + key }));
    const manifest = JSON.parse(await got.Body!.transformToString()) as Record<
      string,
      { path: string }[]
    >;
    const repoDir = key.slice(0, key.indexOf("/_repo_main/"));
    for (const entries of Object.values(manifest))
      for (const e of entries) {
        const k = path.posix.join(repoDir, e.path);
        if (!keys.has(k)) missing.push(k);
      }
  }
  return missing;
}
