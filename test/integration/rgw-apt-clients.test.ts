/**
 * The two ways the real apt-get reads a signed repo out of the test gateway, with signature
 * checking on (test/support/apt-client.ts): through apt-transport-s3 (`deb s3://BUCKET/…`,
 * signed requests, TLS, virtual-host style, via aptS3Method's wrapper) and anonymously over
 * plain HTTP, path style, from public-read objects. The tree is the apt layout's own rendering
 * (as apt-repo.test.ts), put into the bucket with the SDK: what the S3 publish target has to
 * produce, minus the agent.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aptLayout } from "../../src/layout/apt.js";
import { runAptGet } from "../support/apt-client.js";
import {
  buildFixtureDebs,
  publishDeb,
  renderInput,
  testDistroVersion,
  testRepo,
  type FixtureDeb,
} from "../support/deb-builder.js";
import { aptS3Method, type RunningRgw } from "../support/rgw.js";
import { makeBucket, s3Client, sharedRgw } from "../support/s3-test.js";
import { makeTestSigner } from "../support/test-signer.js";
import { writeTree } from "../support/write-tree.js";

const shared = sharedRgw();
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function listFiles(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(path.join(root, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    if ((await stat(path.join(root, r))).isDirectory()) out.push(...(await listFiles(root, r)));
    else out.push(r);
  }
  return out;
}

describe.skipIf(shared.rgw === null)("apt-get reads a signed repo from the gateway", () => {
  const rgw = shared.rgw as RunningRgw;
  let dir: string;
  let bucket: string;
  let keyring: string;
  let amd64: FixtureDeb[];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "packrat-rgw-apt-"));
    const debs = await buildFixtureDebs(dir);
    amd64 = debs.filter((d) => d.arch === "amd64" || d.arch === "all");
    const { signer } = await makeTestSigner();
    const repo = testRepo("prod-apt");
    const bookworm = testDistroVersion("deb12", "bookworm");
    const published = await Promise.all(
      debs.map((d) => publishDeb(d.bytes, d.filename, bookworm, repo)),
    );
    const rendered = await aptLayout.render(renderInput(published, [bookworm], { repo, signer }));
    const tree = path.join(dir, "tree");
    await writeTree(tree, rendered.files, published);
    keyring = path.join(dir, "prod-apt.gpg");
    await writeFile(keyring, signer.publicKeyBinary());

    bucket = await makeBucket(rgw, "aptclient", { publicRead: true });
    const s3 = s3Client(rgw);
    try {
      for (const rel of await listFiles(tree)) {
        const Body = await readFile(path.join(tree, rel));
        const ContentMD5 = createHash("md5").update(Body).digest("base64");
        await s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `prod-apt/${rel}`,
            Body,
            ContentMD5,
            ACL: "public-read",
          }),
        );
      }
    } finally {
      s3.destroy();
    }
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const wanted = () => amd64.map((d) => `${d.name}=${d.version}`);
  const expectEveryPackage = (got: Record<string, string>) =>
    expect(Object.values(got).sort()).toEqual(amd64.map((d) => sha256(d.bytes)).sort());

  it("through apt-transport-s3 (deb s3://…, TLS, virtual-host style)", async () => {
    const method = await aptS3Method(rgw, path.join(dir, "s3-method"), [bucket]);
    const r = await runAptGet({
      repoUrl: `s3://${bucket}/prod-apt`,
      suite: "bookworm",
      components: ["main"],
      keyringPath: keyring,
      archs: ["amd64"],
      packages: wanted(),
      extraConfig: method.aptConfig,
    });
    expect(r.updateOutput).toMatch(/Get:\d+ s3:\/\/\S+ bookworm InRelease/);
    expectEveryPackage(r.downloadedSha256);
  });

  it("anonymously over plain HTTP, path style (public-read objects)", async () => {
    const r = await runAptGet({
      repoUrl: `${rgw.endpoint}/${bucket}/prod-apt`,
      suite: "bookworm",
      components: ["main"],
      keyringPath: keyring,
      archs: ["amd64"],
      packages: wanted(),
    });
    expect(r.updateOutput).toMatch(/Get:\d+ http:\S+ bookworm InRelease/);
    // apt fetched the indexes by hash, from the bucket.
    expect(r.fetchedUrls.some((u) => u.includes("/by-hash/SHA256/"))).toBe(true);
    expectEveryPackage(r.downloadedSha256);
  });
});
