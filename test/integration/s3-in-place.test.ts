/**
 * A bucket repo published in place (issue 23, the s3apt case), against the real RADOS Gateway:
 * a pipeline puts .debs into s3://bucket/pool/ and the agent writes the signed apt index beside
 * them (s3://bucket/pool/dists/...), with [s3] publishing into the same bucket. apt-get reads it
 * over plain HTTP. No source object is ever written or deleted: each one's ETag and
 * LastModified are compared before and after every sync. An object the producer put at one of
 * the agent's metadata keys is not overwritten (the repo's new generation is held back) until
 * it is moved away; a deleted package leaves the index.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { generateSigningKey, type GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { runCli } from "../support/cli.js";
import { sampleDeb } from "../support/mirror-fixture.js";
import { aptS3Method, type RunningRgw } from "../support/rgw.js";
import { s3Client, sharedRgw, writeS3cmdConfig } from "../support/s3-test.js";

const run = promisify(execFile);
const shared = sharedRgw();

describe.skipIf(shared.rgw === null)(
  "a bucket repo published in place (real RADOS Gateway)",
  () => {
    const rgw = shared.rgw as RunningRgw;
    const bucket = `packrat-inplace-${process.pid}`;
    let s3: S3Client;
    let work: string;
    let key: GeneratedSigningKey;
    let s3cfg: string;
    let conf: string;
    /** The producer's objects: key → `ETag LastModified` as last put. */
    const producer = new Map<string, string>();

    const objects = async (prefix: string): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      let token: string | undefined;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? [])
          out.set(o.Key!, `${o.ETag} ${o.LastModified?.toISOString()}`);
        token = page.NextContinuationToken;
      } while (token);
      return out;
    };

    /** `s3cmd put` into the bucket, readable by anyone (as apt over HTTP needs), as CI would. */
    const put = async (keyName: string, content: Uint8Array | string) => {
      const file = path.join(work, "upload");
      await writeFile(file, content);
      await run("s3cmd", ["-c", s3cfg, "put", "--acl-public", file, `s3://${bucket}/${keyName}`]);
      producer.set(keyName, (await objects(keyName)).get(keyName)!);
    };

    const get = async (keyName: string): Promise<string> => {
      try {
        const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: keyName }));
        return (await out.Body?.transformToString()) ?? "";
      } catch {
        return "";
      }
    };

    const expectSourceUntouched = async () => {
      const now = await objects("pool/");
      const changed = [...producer].filter(([k, v]) => now.get(k) !== v).map(([k]) => k);
      expect(changed).toEqual([]);
    };

    beforeAll(async () => {
      s3 = s3Client(rgw);
      await s3.send(new CreateBucketCommand({ Bucket: bucket, ACL: "public-read" }));
      work = await mkdtemp(path.join(tmpdir(), "packrat-s3inplace-"));
      key = await generateSigningKey({
        name: "inpl",
        email: "inpl@packrat.invalid",
        type: "ed25519",
      });
      await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
      s3cfg = await writeS3cmdConfig(rgw, path.join(work, "s3cfg"));
      conf = path.join(work, "mirror.conf");
      await writeFile(
        conf,
        [
          "[mirror]",
          `root_dir: ${path.join(work, "root")}`,
          `state_db: ${path.join(work, "state.db")}`,
          `gpg_sign_key: ${key.signingKeyId}`,
          `gpg_key_file: ${path.join(work, "key.asc")}`,
          "metadata_grace_seconds: 0",
          "[repo apt]",
          "format: apt",
          `source: s3://${bucket}/pool/`,
          "publish: in-place",
          "version: bookworm",
          "[s3]",
          `bucket: ${bucket}`,
          `endpoint: ${rgw.endpoint}`,
          `region: ${rgw.region}`,
          "path_style: yes",
          `access_key_id: ${rgw.accessKeyId}`,
          `secret_access_key: ${rgw.secretAccessKey}`,
          "acl: public-read",
          "",
        ].join("\n"),
        { mode: 0o600 },
      );
      for (const [name, version] of [
        ["first-pkg", "1.0"],
        ["second-pkg", "2.0"],
      ] as const) {
        const deb = sampleDeb(name, version);
        await put(`pool/builds/${deb.filename}`, deb.content);
      }
      await put("pool/broken_1.0_all.deb", "not an ar archive");
    }, 120_000);

    afterAll(async () => {
      s3?.destroy();
      if (work) await rm(work, { recursive: true, force: true });
    });

    test("sync writes the signed index beside the packages in the bucket; apt-get reads it; no source object changes", async () => {
      const sync = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
      expect(sync.stdout).toMatch(/, 1 skipped$/m);
      expect(sync.stdout).toMatch(/broken_1\.0_all\.deb/);
      await expectSourceUntouched();
      const packages = await get("pool/dists/bookworm/main/binary-amd64/Packages");
      expect(packages).toMatch(/^Filename: builds\/first-pkg_1\.0_all\.deb$/m);
      expect(await get("pool/dists/bookworm/InRelease")).toContain("BEGIN PGP SIGNED MESSAGE");
      // No copy of a package anywhere in the bucket: the only new keys are the agent's.
      const added = [...(await objects(""))].filter(([k]) => !producer.has(k)).map(([k]) => k);
      for (const k of added)
        expect(k).toMatch(/^(pool\/dists\/bookworm\/.+|repo-key(\.gpg)?|\.packrat-agent\.lock)$/);

      const apt = await runAptGet({
        repoUrl: `${rgw.endpoint}/${bucket}/pool`,
        suite: "bookworm",
        components: ["main"],
        keyringPath: path.join(work, "root", "repo-key.gpg"),
        archs: ["amd64"],
        packages: ["first-pkg", "second-pkg"],
      });
      expect(apt.downloadedFiles).toEqual(["first-pkg_1.0_all.deb", "second-pkg_2.0_all.deb"]);

      // The s3apt way: apt-transport-s3 reading `deb s3://bucket/pool …` with credentials.
      const method = await aptS3Method(rgw, path.join(work, "s3-method"), [bucket]);
      const viaS3 = await runAptGet({
        repoUrl: `s3://${bucket}/pool`,
        suite: "bookworm",
        components: ["main"],
        keyringPath: path.join(work, "root", "repo-key.gpg"),
        archs: ["amd64"],
        packages: ["first-pkg", "second-pkg"],
        extraConfig: method.aptConfig,
      });
      expect(viaS3.updateOutput).toMatch(/Get:\d+ s3:\/\/\S+ bookworm InRelease/);
      expect(viaS3.downloadedFiles).toEqual(["first-pkg_1.0_all.deb", "second-pkg_2.0_all.deb"]);
    }, 300_000);

    test("an object the producer put at a metadata key is never overwritten; a deleted package leaves the index", async () => {
      // The producer replaces the agent's InRelease with its own, and a new package arrives.
      await put("pool/dists/bookworm/InRelease", "the producer's own InRelease\n");
      const deb = sampleDeb("third-pkg", "3.0");
      await put(`pool/builds/${deb.filename}`, deb.content);
      const refused = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
      expect(refused.code).toBe(1);
      expect(refused.stdout + refused.stderr).toMatch(
        /pool\/dists\/bookworm\/InRelease holds an object the agent did not put/,
      );
      expect(await get("pool/dists/bookworm/InRelease")).toBe("the producer's own InRelease\n");
      await expectSourceUntouched();

      // Moved away: the next sync publishes, with the new package.
      await run("s3cmd", ["-c", s3cfg, "del", `s3://${bucket}/pool/dists/bookworm/InRelease`]);
      producer.delete("pool/dists/bookworm/InRelease");
      const again = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
      expect(again.stdout).toMatch(/, 1 skipped$/m);
      expect(await get("pool/dists/bookworm/InRelease")).toContain("BEGIN PGP SIGNED MESSAGE");
      expect(await get("pool/dists/bookworm/main/binary-amd64/Packages")).toContain(
        "Package: third-pkg",
      );

      // The producer deletes a package: it leaves the index; the other objects stay.
      const gone = `pool/builds/${sampleDeb("second-pkg", "2.0").filename}`;
      await run("s3cmd", ["-c", s3cfg, "del", `s3://${bucket}/${gone}`]);
      producer.delete(gone);
      await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
      const index = await get("pool/dists/bookworm/main/binary-amd64/Packages");
      expect(index).not.toContain("second-pkg");
      expect(index).toContain("third-pkg");
      await expectSourceUntouched();
    }, 300_000);
  },
);
