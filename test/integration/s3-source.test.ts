/**
 * A bucket as the source of a repo (issue 23, the S3 source), against the real RADOS Gateway:
 * `s3cmd put` of .debs into s3://bucket/pool/ → the agent (no master) publishes a signed apt
 * index into the same bucket under mirror/, which apt-get reads over plain HTTP and through
 * apt-transport-s3. With RGW bucket notifications pushed to the agent a new upload reaches the
 * index long before a poll would list the bucket; a forged event (an object that does not
 * exist) changes nothing; without notifications the listing each poll makes catches up.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand, GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { generateSigningKey, type GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { startCli, type RunningCli } from "../support/cli.js";
import { sampleDeb } from "../support/mirror-fixture.js";
import { aptS3Method, type RunningRgw } from "../support/rgw.js";
import { s3Client, sharedRgw, writeS3cmdConfig } from "../support/s3-test.js";

const run = promisify(execFile);
const shared = sharedRgw();

describe.skipIf(shared.rgw === null)(
  "a bucket as the source of a repo (real RADOS Gateway)",
  () => {
    const rgw = shared.rgw as RunningRgw;
    const bucket = `packrat-source-${process.pid}`;
    let s3: S3Client;
    let work: string;
    let key: GeneratedSigningKey;
    let s3cfg: string;
    let awsEnv: NodeJS.ProcessEnv;
    let daemon: RunningCli | null = null;

    /** Each daemon publishes under its own prefix (one agent per bucket prefix: the lock). */
    const conf = async (name: string, prefix: string, extra: string[]) => {
      const file = path.join(work, name);
      await writeFile(
        file,
        [
          "[mirror]",
          `root_dir: ${path.join(work, `root-${name}`)}`,
          `state_db: ${path.join(work, `${name}.db`)}`,
          `gpg_sign_key: ${key.signingKeyId}`,
          `gpg_key_file: ${path.join(work, "key.asc")}`,
          "metadata_grace_seconds: 0",
          ...extra,
          "[repo apt]",
          "format: apt",
          `source: s3://${bucket}/pool/`,
          "version: bookworm",
          "[s3]",
          `bucket: ${bucket}`,
          `prefix: ${prefix}`,
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
      return file;
    };

    /** `s3cmd put` of a new .deb into the source prefix, as a CI pipeline would. */
    const put = async (name: string, version: string) => {
      const deb = sampleDeb(name, version);
      const file = path.join(work, deb.filename);
      await writeFile(file, deb.content);
      await run("s3cmd", ["-c", s3cfg, "put", file, `s3://${bucket}/pool/${deb.filename}`]);
      return deb;
    };

    /** The apt index the agent published into the bucket under `prefix`. */
    const bucketPackages = async (prefix = "mirror/") => {
      try {
        const out = await s3.send(
          new GetObjectCommand({
            Bucket: bucket,
            Key: `${prefix}apt/dists/bookworm/main/binary-amd64/Packages`,
          }),
        );
        return (await out.Body?.transformToString()) ?? "";
      } catch {
        return "";
      }
    };

    const until = async (what: string, check: () => Promise<boolean>, timeoutMs: number) => {
      const end = Date.now() + timeoutMs;
      while (!(await check())) {
        if (Date.now() > end)
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    beforeAll(async () => {
      s3 = s3Client(rgw);
      await s3.send(new CreateBucketCommand({ Bucket: bucket, ACL: "public-read" }));
      work = await mkdtemp(path.join(tmpdir(), "packrat-s3src-"));
      key = await generateSigningKey({
        name: "src",
        email: "src@packrat.invalid",
        type: "ed25519",
      });
      await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
      s3cfg = await writeS3cmdConfig(rgw, path.join(work, "s3cfg"));
      awsEnv = {
        ...process.env,
        AWS_ACCESS_KEY_ID: rgw.accessKeyId,
        AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
        AWS_DEFAULT_REGION: rgw.region,
        AWS_EC2_METADATA_DISABLED: "true",
        AWS_PAGER: "",
      };
      await put("first-pkg", "1.0");
    }, 60_000);

    afterAll(async () => {
      daemon?.kill("SIGKILL");
      await daemon?.exited;
      s3?.destroy();
      await rm(work, { recursive: true, force: true });
    });

    test("with RGW notifications, an upload reaches the signed index in the bucket at once", async () => {
      // Polls would list the bucket only every 60 s: what arrives sooner came through an event.
      const file = await conf("events.conf", "mirror/", [
        "poll_timeout: 60",
        "source_events_listen: 127.0.0.1:0",
      ]);
      daemon = startCli(["run", "--config", file]);
      const listening = await daemon.waitForLog(/listening for bucket notifications/, 60_000);
      const endpoint = (JSON.parse(listening) as { url: string }).url;
      await daemon.waitForLog(/full sync finished/, 60_000);
      await until(
        "the first package in the bucket's index",
        async () => (await bucketPackages()).includes("Package: first-pkg\n"),
        30_000,
      );

      // An RGW topic that pushes to the agent, and the bucket's notification configuration.
      const topic = await run(
        "aws",
        [
          "--endpoint-url",
          rgw.endpoint,
          "sns",
          "create-topic",
          "--name",
          `packrat-${process.pid}`,
          "--attributes",
          `push-endpoint=${endpoint}`,
        ],
        { env: awsEnv },
      );
      const arn = (JSON.parse(topic.stdout) as { TopicArn: string }).TopicArn;
      await run(
        "aws",
        [
          "--endpoint-url",
          rgw.endpoint,
          "s3api",
          "put-bucket-notification-configuration",
          "--bucket",
          bucket,
          "--notification-configuration",
          JSON.stringify({
            TopicConfigurations: [
              {
                Id: "packrat",
                TopicArn: arn,
                Events: ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                // Only the source prefix: the agent's own uploads under mirror/ need no events.
                // It also keeps radosgw alive: Ceph 16.2.15 aborts when it pushes a (non-
                // persistent) notification from a multi-object delete, which the agent's bucket
                // cleanup under mirror/ is (a persistent topic avoids that, at ~20 s latency).
                Filter: { Key: { FilterRules: [{ Name: "prefix", Value: "pool/" }] } },
              },
            ],
          }),
        ],
        { env: awsEnv },
      );

      const started = Date.now();
      await put("second-pkg", "2.0");
      const uploaded = Date.now();
      await until(
        "the upload in the bucket's index",
        async () => (await bucketPackages()).includes("Package: second-pkg\n"),
        30_000,
      );
      const seconds = (Date.now() - uploaded) / 1000;
      console.log(
        `s3 source: upload (s3cmd put, ${uploaded - started} ms) → signed index in the bucket names it: ${seconds.toFixed(2)} s`,
      );
      expect(daemon.stderr).toMatch(/"msg":"published"/);

      // A forged event: an object that is not there. Refused after a HEAD; nothing changes.
      const before = await bucketPackages();
      const forged = await fetch(endpoint, {
        method: "POST",
        body: JSON.stringify({
          Records: [
            {
              eventName: "ObjectCreated:Put",
              s3: { bucket: { name: bucket }, object: { key: "pool/forged_6.6_all.deb" } },
            },
          ],
        }),
      });
      expect(forged.status).toBe(200);
      await daemon.waitForLog(/bucket event refused/, 10_000);
      expect(await bucketPackages()).toBe(before);
      expect(before).not.toContain("forged");

      // apt-get reads the published index from the bucket: over plain HTTP, and through
      // apt-transport-s3 (deb s3://bucket/...), signature checked.
      const root = path.join(work, "root-events.conf");
      const http = await runAptGet({
        repoUrl: `${rgw.endpoint}/${bucket}/mirror/apt`,
        suite: "bookworm",
        components: ["main"],
        keyringPath: path.join(root, "repo-key.gpg"),
        archs: ["amd64"],
        packages: ["first-pkg", "second-pkg"],
      });
      expect(http.downloadedFiles).toEqual(["first-pkg_1.0_all.deb", "second-pkg_2.0_all.deb"]);
      const method = await aptS3Method(rgw, path.join(work, "apt-s3"), [bucket]);
      const viaS3 = await runAptGet({
        repoUrl: `s3://${bucket}/mirror/apt`,
        suite: "bookworm",
        components: ["main"],
        keyringPath: path.join(root, "repo-key.gpg"),
        archs: ["amd64"],
        packages: ["second-pkg"],
        extraConfig: method.aptConfig,
      });
      expect(viaS3.downloadedFiles).toEqual(["second-pkg_2.0_all.deb"]);
      // The source prefix holds what the pipeline put there, and nothing else.
      const listing = await run("s3cmd", ["-c", s3cfg, "ls", `s3://${bucket}/pool/`]);
      expect(
        listing.stdout
          .trim()
          .split("\n")
          .map((l) => l.split("/").pop())
          .sort(),
      ).toEqual(["first-pkg_1.0_all.deb", "second-pkg_2.0_all.deb"]);
      daemon.kill("SIGTERM");
      await daemon.exited;
      daemon = null;
    }, 240_000);

    test("without notifications, the listing each poll makes catches up", async () => {
      // The first test's daemon, if it failed before stopping it: never leave one running.
      daemon?.kill("SIGKILL");
      await daemon?.exited;
      const file = await conf("listing.conf", "mirror2/", ["poll_timeout: 10"]);
      daemon = startCli(["run", "--config", file]);
      await daemon.waitForLog(/full sync finished/, 60_000);
      await until(
        "the first packages",
        async () => (await bucketPackages("mirror2/")).includes("Package: second-pkg\n"),
        30_000,
      );
      await put("third-pkg", "3.0");
      const uploaded = Date.now();
      await until(
        "the upload in the bucket's index",
        async () => (await bucketPackages("mirror2/")).includes("Package: third-pkg\n"),
        40_000,
      );
      console.log(
        `s3 source without notifications (poll_timeout 10 s): upload → index: ${((Date.now() - uploaded) / 1000).toFixed(2)} s`,
      );
    }, 180_000);
  },
);
