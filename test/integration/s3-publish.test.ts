/**
 * Publishing to a real bucket (issue 22): the demo's mirror (apt, yum, pacman, PyPI, JSON) from
 * the fake master, synced by the built CLI with an [s3] section against the Ceph RADOS Gateway
 * the integration-s3 globalSetup started, then read from the bucket over plain HTTP by the real
 * apt-get, dnf, pacman and pip with signature checking on.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDemoMaster, type DemoMaster } from "../../src/demo/sample-mirror.js";
import { generateSigningKey, type GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { runCli, startCli } from "../support/cli.js";
import { pacmanKeyring, pipDownload, runPacman } from "../support/clients.js";
import { startDelayProxy } from "../support/delay-proxy.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import { sampleDeb } from "../support/mirror-fixture.js";
import { aptS3Method, type RunningRgw } from "../support/rgw.js";
import { bucketListing, syncCli, writeS3Conf } from "../support/s3-mirror.js";
import { s3Client, sharedRgw } from "../support/s3-test.js";

const shared = sharedRgw();

describe.skipIf(shared.rgw === null)("publishing to a bucket (real RADOS Gateway)", () => {
  const rgw = shared.rgw as RunningRgw;
  const bucket = `packrat-publish-${process.pid}`;
  const prefix = "mirror/prod/";
  let s3: S3Client;
  let work: string;
  let demo: DemoMaster;
  let key: GeneratedSigningKey;
  let conf: string;
  let root: string;
  /** The published mirror's base URL in the bucket, as an anonymous client reads it. */
  let base: string;

  const writeConf = (
    file: string,
    over: { stateDb?: string; endpoint?: string; root?: string } = {},
  ) =>
    writeS3Conf({
      file,
      masterUrl: demo.master.url,
      root: over.root ?? root,
      stateDb: over.stateDb ?? path.join(work, "state.db"),
      key,
      keyFile: path.join(work, "key.asc"),
      rgw,
      bucket,
      prefix,
      ...(over.endpoint ? { endpoint: over.endpoint } : {}),
    });
  const sync = (config = conf) => syncCli(config);
  /** A new .deb tagged for the apt repo on the master, as a CI pipeline would. */
  const tagDeb = (name: string, version: string) => {
    const deb = sampleDeb(name, version);
    demo.master.addPackageFile({
      package: name,
      distroVersion: "bookworm",
      version,
      type: "deb",
      arch: "all",
      filename: deb.filename,
      content: deb.content,
      tags: ["prod"],
    });
  };
  const listing = () => bucketListing(s3, bucket, prefix);

  beforeAll(async () => {
    s3 = s3Client(rgw);
    // Public, as a bucket that serves a mirror to anonymous clients is (a missing key is then
    // a 404, not a 403).
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ACL: "public-read" }));
    work = await mkdtemp(path.join(tmpdir(), "packrat-s3-"));
    root = path.join(work, "root");
    demo = await startDemoMaster();
    key = await generateSigningKey({
      name: "s3 test",
      email: "s3@packrat.invalid",
      type: "ed25519",
    });
    await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
    conf = await writeConf(path.join(work, "mirror.conf"));
    base = `${rgw.endpoint}/${bucket}/${prefix.slice(0, -1)}`;
    const first = await sync();
    expect(first.stderr).not.toMatch(/"level":50/);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      /^bucket s3:\/\/packrat-publish-\d+\/mirror\/prod\/: \d+ uploaded/m,
    );
  }, 240_000);

  afterAll(async () => {
    await demo?.close();
    s3?.destroy();
    await rm(work, { recursive: true, force: true });
  });

  test("apt-get, dnf, pacman and pip read the bucket with signatures checked", async () => {
    const apt = await runAptGet({
      repoUrl: `${base}/apt`,
      suite: "bookworm",
      components: ["main"],
      keyringPath: path.join(root, "repo-key.gpg"),
      archs: ["amd64"],
      packages: ["hello-demo", "packrat-tools"],
    });
    expect(apt.downloadedFiles).toEqual([
      "hello-demo_1.0-1_all.deb",
      "packrat-tools_1.0-1_amd64.deb",
    ]);
    // Every byte came from the bucket: apt fetched by-hash indexes and the packages there.
    expect(apt.fetchedUrls.every((u) => u.startsWith(`${base}/apt/`))).toBe(true);

    const dnfBase = path.join(work, "dnf");
    await writeDnfConfig({
      base: dnfBase,
      repos: [{ id: "demo", baseUrl: `${base}/yum/rhel/main/9` }],
      keyFile: path.join(root, "repo-key"),
      packageGpgcheck: false,
    });
    const dnf = await runDnf({ base: dnfBase }, ["download", "--destdir", dnfBase, "hello-demo"]);
    expect(dnf.ok, dnf.output).toBe(true);
    expect(dnf.output).toMatch(/hello-demo-1\.0-1\.el9\.noarch\.rpm/);

    const gpgdir = await pacmanKeyring(
      work,
      await readFile(path.join(root, "repo-key"), "utf8"),
      key.primaryFingerprint,
    );
    const pacman = await runPacman({
      work,
      gpgdir,
      repo: "arch",
      server: `${base}/arch/$arch`,
      commands: [["-Sw", "hello-demo", "hello-demo-doc"]],
    });
    expect(pacman.ok, pacman.output).toBe(true);

    // pip asks for simple/hello-demo/: S3 serves it from the key ending in "/".
    const pip = await pipDownload({
      work,
      indexUrl: `${base}/pypi/simple/`,
      requirement: "hello-demo",
    });
    expect(pip.ok, pip.output).toBe(true);
    expect(pip.files.sort()).toEqual(["hello_demo-1.0-py3-none-any.whl"]);
  }, 300_000);

  test("apt-get reads the bucket through apt-transport-s3 (deb s3://…, its own credentials, TLS)", async () => {
    const method = await aptS3Method(rgw, path.join(work, "apt-s3"), [bucket]);
    const apt = await runAptGet({
      repoUrl: `s3://${bucket}/${prefix}apt`,
      suite: "bookworm",
      components: ["main"],
      keyringPath: path.join(root, "repo-key.gpg"),
      archs: ["amd64"],
      packages: ["hello-demo"],
      extraConfig: method.aptConfig,
    });
    expect(apt.downloadedFiles).toContain("hello-demo_1.0-1_all.deb");
    expect(apt.updateOutput).toMatch(
      /s3:\/\/packrat-publish-\d+\/mirror\/prod\/apt bookworm InRelease/,
    );
  }, 120_000);

  test("objects carry their type and cache rules: immutable packages, short-lived entry points", async () => {
    const head = (k: string) => s3.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix + k }));
    const deb = await head("apt/pool/hello-/hello-demo_1.0-1_all.deb");
    expect(deb.CacheControl).toBe("public, max-age=31536000, immutable");
    expect(deb.ContentType).toBe("application/vnd.debian.binary-package");
    const inRelease = await head("apt/dists/bookworm/InRelease");
    expect(inRelease.CacheControl).toBe("no-cache");
    const page = await head("pypi/simple/hello-demo/");
    expect(page.ContentType).toMatch(/^text\/html/);
  });

  test("a no-change sync uploads nothing; a new package uploads it and the metadata it changes, nothing else", async () => {
    const again = await sync();
    expect(again.code, again.stdout).toBe(0);
    expect(again.stdout).toMatch(/: 0 uploaded \(0 bytes\), 0 deleted/);

    const before = await listing();
    tagDeb("bucket-newcomer", "2.0-1");
    const one = await sync();
    expect(one.code, one.stdout).toBe(0);
    const uploaded = Number(/: (\d+) uploaded/.exec(one.stdout)?.[1]);
    const after = await listing();
    const changed = [...after].filter(([k, etag]) => before.get(k) !== etag).map(([k]) => k);
    // What the agent says it uploaded is exactly what changed in the bucket: the package and
    // the apt repo's metadata, and nothing of the other repos.
    expect(changed.length).toBe(uploaded);
    expect(changed.filter((k) => k.endsWith(".deb"))).toEqual([
      expect.stringMatching(/bucket-newcomer_2\.0-1_all\.deb$/),
    ]);
    expect(changed.every((k) => k.startsWith("apt/"))).toBe(true);
    expect(changed).toContain("apt/dists/bookworm/InRelease");
    expect(uploaded).toBeLessThan(20);
  }, 240_000);

  test("verify --s3 finds an object deleted and one replaced behind the agent's back; the next full sync repairs both", async () => {
    const ok = await runCli(["verify", "--s3", "--config", conf]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);

    const keys = [...(await listing()).keys()];
    const pkg = keys.find((k) => k.endsWith("hello-demo_1.0-1_all.deb"))!;
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: prefix + pkg }));
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}json/_repo_main/MANIFEST_all.json`,
        Body: "{}",
      }),
    );
    const bad = await runCli(["verify", "--s3", "--config", conf]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`${pkg}: missing from the bucket`);
    expect(bad.stdout).toMatch(/MANIFEST_all\.json: changed in the bucket/);

    const repaired = await sync();
    expect(repaired.code, repaired.stdout).toBe(0);
    expect(repaired.stdout).toMatch(/2 repaired after someone else changed them/);
    const clean = await runCli(["verify", "--s3", "--config", conf]);
    expect(clean.code, clean.stdout).toBe(0);
  }, 240_000);

  test("a second agent on the same bucket and prefix is refused, and puts nothing there", async () => {
    const before = await listing();
    const other = await writeConf(path.join(work, "other.conf"), {
      stateDb: path.join(work, "other.db"),
      root: path.join(work, "other-root"),
    });
    const res = await sync(other);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/bucket not updated: .*another agent publishes here/);
    expect(await listing()).toEqual(before);
  }, 120_000);

  test("the running agent brings a bucket that was down up to date by itself, with no further change on the master", async () => {
    const proxy = await startDelayProxy(rgw.port, 0);
    const runConf = await writeConf(path.join(work, "run.conf"), { endpoint: proxy.url });
    // The records are per endpoint: a first sync through the proxy uploads everything once.
    expect((await sync(runConf)).code).toBe(0);
    const agent = startCli(["run", "--config", runConf], {
      env: { AWS_EC2_METADATA_DISABLED: "true" },
    });
    try {
      await agent.waitForLog(/"msg":"full sync finished"/, 60_000);
      // As packrat's own poll does, the fake master tells only polls already waiting.
      for (const end = Date.now() + 30_000; demo.master.openPolls < 5 && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 20));
      proxy.setDown(true);
      tagDeb("while-daemon-bucket-down", "1.0-1");
      await agent.waitForLog(/bucket not brought up to date/, 60_000);
      proxy.setDown(false);
      const inBucket = async () =>
        [...(await listing()).keys()].some((k) =>
          k.endsWith("while-daemon-bucket-down_1.0-1_all.deb"),
        );
      const deadline = Date.now() + 60_000;
      while (!(await inBucket()) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      expect(await inBucket()).toBe(true);
    } finally {
      agent.kill("SIGTERM");
      await agent.exited;
      await proxy.close();
    }
  }, 180_000);

  test("with the bucket unreachable the local tree still publishes, status says how far behind the bucket is, and it catches up", async () => {
    const down = await writeConf(path.join(work, "down.conf"), {
      endpoint: "http://127.0.0.1:9",
    });
    tagDeb("while-bucket-down", "1.0-1");
    const res = await sync(down);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(
      /bucket not updated: .*cannot be reached|bucket not updated: .*ECONNREFUSED/,
    );
    const local = await runCli(["verify", "--config", down]);
    expect(local.code, local.stdout).toBe(0);
    const status = await runCli(["status", "--json", "--config", down]);
    const bucketStatus = (
      JSON.parse(status.stdout) as { bucket: { behind: { repo: string }[]; lastError: string } }
    ).bucket;
    // A bucket the agent never reached through this endpoint: every repo is behind.
    expect(bucketStatus.behind.map((r) => r.repo)).toContain("demo-apt");
    expect(bucketStatus.lastError).toBeTruthy();
    expect(
      [...(await listing()).keys()].some((k) => k.endsWith("while-bucket-down_1.0-1_all.deb")),
    ).toBe(false);

    const back = await sync();
    expect(back.code, back.stdout).toBe(0);
    const caughtUp = JSON.parse((await runCli(["status", "--json", "--config", conf])).stdout) as {
      bucket: { behind: unknown[] };
    };
    expect(caughtUp.bucket.behind).toEqual([]);
    expect(
      [...(await listing()).keys()].some((k) => k.endsWith("while-bucket-down_1.0-1_all.deb")),
    ).toBe(true);
  }, 240_000);
});
