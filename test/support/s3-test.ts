/**
 * For S3 test files (test/integration/{rgw,s3}-*.test.ts): the shared gateway the globalSetup
 * started, or a loud skip when there is none (see rgw-global-setup.ts).
 */
import { writeFile } from "node:fs/promises";
import { CreateBucketCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { attachRgw, type RunningRgw } from "./rgw.js";

/** The shared gateway, or null with the reason it is missing (the caller skips). */
export function sharedRgw(): { rgw: RunningRgw; skip: null } | { rgw: null; skip: string } {
  const dir = process.env.PACKRAT_TEST_S3_DIR;
  if (dir) return { rgw: attachRgw(dir), skip: null };
  const why =
    process.env.PACKRAT_TEST_S3_SKIP ??
    "PACKRAT_TEST_S3_DIR is not set: run this file in the integration-s3 project (its globalSetup starts the gateway)";
  if (process.env.PACKRAT_REQUIRE_RGW === "1") throw new Error(`PACKRAT_REQUIRE_RGW=1: ${why}`);
  console.warn(`\n*** WARNING: S3 tests SKIPPED: ${why} ***\n`);
  return { rgw: null, skip: why };
}

/**
 * An SDK client for the gateway, path style, with the checksums Ceph 16 understands: the
 * SDK's default (CRC32 on every PUT, streams sent `aws-chunked` with a trailer) is refused by
 * RGW 16 (MissingContentLength), so checksums only WHEN_REQUIRED, and Content-MD5 by hand.
 */
export function s3Client(
  rgw: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string },
  extra: Partial<S3ClientConfig> = {},
): S3Client {
  return new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    ...extra,
  });
}

/**
 * A new bucket with a unique name from `stem` (no dots: apt-transport-s3 refuses them), owned by
 * the gateway's user. `publicRead`: anyone may list it, so a missing key reads 404, not 403, to
 * anonymous clients; objects still need their own public-read ACL to be read anonymously.
 */
export async function makeBucket(
  rgw: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string },
  stem: string,
  options: { publicRead?: boolean } = {},
): Promise<string> {
  const name = `${stem}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 63);
  const s3 = s3Client(rgw);
  try {
    await s3.send(
      new CreateBucketCommand({
        Bucket: name,
        ...(options.publicRead ? { ACL: "public-read" as const } : {}),
      }),
    );
  } finally {
    s3.destroy();
  }
  return name;
}

/** An s3cmd config for the gateway (plain HTTP, path style, SigV4) at `file`, mode 0600. */
export async function writeS3cmdConfig(rgw: RunningRgw, file: string): Promise<string> {
  const url = new URL(rgw.endpoint);
  await writeFile(
    file,
    [
      "[default]",
      `access_key = ${rgw.accessKeyId}`,
      `secret_key = ${rgw.secretAccessKey}`,
      `host_base = ${url.host}`,
      `host_bucket = ${url.host}`,
      "use_https = False",
      `bucket_location = ${rgw.region}`,
      "signature_v2 = False",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return file;
}
