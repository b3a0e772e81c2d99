/**
 * The real apt-get against a rendered, signed tree served over HTTP, with a private
 * configuration (test/support/apt-client.ts): update with signature checking, by-hash
 * fetches, downloads of every package, two dists in one repo, two repos side by side, and
 * rejection of a tampered InRelease and a corrupted Packages.xz.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aptLayout } from "../../src/layout/apt.js";
import type { RenderedFile } from "../../src/layout/types.js";
import { AptGetError, runAptGet } from "../support/apt-client.js";
import type { FixtureDeb } from "../support/deb-builder.js";
import {
  buildFixtureDebs,
  publishDeb,
  renderInput,
  testDistroVersion,
  testRepo,
} from "../support/deb-builder.js";
import type { StaticServer } from "../support/static-server.js";
import { startStaticServer } from "../support/static-server.js";
import { makeTestSigner } from "../support/test-signer.js";
import { writeTree } from "../support/write-tree.js";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

let dir: string;
let server: StaticServer;
let keyring: string;
let debs: FixtureDeb[];
let trixieDebs: FixtureDeb[];
let files: RenderedFile[];

/** Render one repo (two dists) into <dir>/<repoName>. */
async function publishRepo(repoName: string) {
  const { signer } = await makeTestSigner();
  const repo = testRepo(repoName);
  const bookworm = testDistroVersion("deb12", "bookworm");
  const trixie = testDistroVersion("trixie");
  const published = [
    ...(await Promise.all(debs.map((d) => publishDeb(d.bytes, d.filename, bookworm, repo)))),
    ...(await Promise.all(trixieDebs.map((d) => publishDeb(d.bytes, d.filename, trixie, repo)))),
  ];
  const result = await aptLayout.render(
    renderInput(published, [bookworm, trixie], { repo, signer }),
  );
  expect(result.warnings).toEqual([]);
  await writeTree(path.join(dir, repoName), result.files, published);
  return { signer, result };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-apt-repo-"));
  debs = await buildFixtureDebs(dir);
  trixieDebs = await buildFixtureDebs(dir, [
    { name: "trixie-only", version: "5.0-1", arch: "amd64", compression: "xz" },
  ]);
  const { signer, result } = await publishRepo("prod-apt");
  files = result.files;
  keyring = path.join(dir, "prod-apt.gpg");
  await writeFile(keyring, signer.publicKeyBinary());
  server = await startStaticServer(dir);
});

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const apt = (
  suite: string,
  archs: string[],
  packages: string[],
  repoName = "prod-apt",
  key = keyring,
) =>
  runAptGet({
    repoUrl: `${server.url}/${repoName}`,
    suite,
    components: ["main"],
    keyringPath: key,
    archs,
    packages,
  });

describe("apt-get against the rendered repo", () => {
  it("updates with signature checking, fetches indexes by hash, downloads every package", async () => {
    const amd64 = debs.filter((d) => d.arch === "amd64" || d.arch === "all");
    // apt-get download picks the candidate (newest) version; ask for each version explicitly.
    const wanted = amd64.map((d) => `${d.name}=${d.version}`);
    const r = await apt("bookworm", ["amd64"], wanted);
    expect(r.updateOutput).toMatch(/Get:\d+ \S+ bookworm InRelease/);
    expect(r.downloadedFiles).toHaveLength(amd64.length);
    expect(Object.values(r.downloadedSha256).sort()).toEqual(
      amd64.map((d) => sha256(d.bytes)).sort(),
    );

    const indexUrls = r.fetchedUrls.filter((u) => u.includes("/binary-amd64/"));
    expect(indexUrls.length).toBeGreaterThan(0);
    for (const u of indexUrls) expect(u).toMatch(/\/binary-amd64\/by-hash\/SHA256\/[0-9a-f]{64}$/);
    // The by-hash file apt fetched is the Packages.xz the Release names.
    const xzFile = files.find((f) => f.path === "dists/bookworm/main/binary-amd64/Packages.xz")!;
    expect(indexUrls).toContain(
      `${server.url}/prod-apt/dists/bookworm/main/binary-amd64/by-hash/SHA256/${sha256(xzFile.content)}`,
    );
    expect(
      server.requests.filter(
        (q) => q.status !== 200 && q.path.includes("/prod-apt/dists/bookworm/"),
      ),
    ).toEqual(
      // apt may probe for optional files (none here): anything else 404ing is a layout bug.
      [],
    );
  });

  it("serves arm64 with its own package and the Architecture: all ones", async () => {
    const r = await apt("bookworm", ["arm64"], ["armtool", "tiny", "hello-data"]);
    expect(r.downloadedFiles).toEqual([
      "armtool_1.0-1_arm64.deb",
      "hello-data_0.9~beta+dfsg-1~bpo12+1_all.deb",
      "tiny_3_all.deb",
    ]);
  });

  it("keeps the second dist to its own packages", async () => {
    const r = await apt("trixie", ["amd64"], ["trixie-only"]);
    expect(r.downloadedFiles).toEqual(["trixie-only_5.0-1_amd64.deb"]);
    await expect(apt("trixie", ["amd64"], ["tiny"])).rejects.toThrow(AptGetError);
    await expect(apt("bookworm", ["amd64"], ["trixie-only"])).rejects.toThrow(AptGetError);
  });

  it("works for a second repo beside the first, each with its own key", async () => {
    const { signer } = await publishRepo("other-apt");
    const otherKey = path.join(dir, "other-apt.gpg");
    await writeFile(otherKey, signer.publicKeyBinary());
    const r = await apt("trixie", ["amd64"], ["trixie-only"], "other-apt", otherKey);
    expect(r.downloadedFiles).toEqual(["trixie-only_5.0-1_amd64.deb"]);
    // The first repo's key does not vouch for the second repo.
    await expect(apt("trixie", ["amd64"], [], "other-apt", keyring)).rejects.toThrow(
      /NO_PUBKEY|not signed|signature/i,
    );
  });

  it("rejects a tampered InRelease", async () => {
    const file = path.join(dir, "prod-apt", "dists", "trixie", "InRelease");
    const original = await readFile(file, "utf8");
    try {
      await writeFile(file, original.replace("Components: main", "Components: main contrib"));
      const err = await apt("trixie", ["amd64"], []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AptGetError);
      expect((err as AptGetError).output).toMatch(/BADSIG|signatures were invalid|not signed/);
    } finally {
      await writeFile(file, original);
    }
  });

  it("rejects a corrupted Packages.xz", async () => {
    const xzFile = files.find((f) => f.path === "dists/trixie/main/binary-amd64/Packages.xz")!;
    const targets = [
      path.join(dir, "prod-apt", xzFile.path),
      path.join(
        dir,
        "prod-apt",
        "dists/trixie/main/binary-amd64/by-hash/SHA256",
        sha256(xzFile.content),
      ),
    ];
    try {
      for (const t of targets) {
        const bytes = new Uint8Array(xzFile.content);
        bytes[bytes.length >> 1]! ^= 0xff;
        await writeFile(t, bytes);
      }
      const err = await apt("trixie", ["amd64"], []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AptGetError);
      expect((err as AptGetError).output).toMatch(
        /Hash Sum mismatch|File has unexpected size|Failed to fetch/,
      );
    } finally {
      for (const t of targets) await writeFile(t, xzFile.content);
    }
    // Restored, the dist works again (the failure was the corruption, not the setup).
    await expect(apt("trixie", ["amd64"], [])).resolves.toBeDefined();
  });
});
