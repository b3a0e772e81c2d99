/**
 * Repos published in place (issue 23, part 3): each source directory lies in root_dir and is
 * the served tree itself. The packages stay where the producer put them (in directories of its
 * own choosing) and the indexes name them there; the metadata is written beside them. Real
 * apt-get, dnf, pacman and pip read the source directories, signatures on. Nothing the
 * producer wrote is ever changed: every file of theirs is hashed before and after each sync. A
 * corrupt file is reported and stays; a package dropped where the agent writes metadata is
 * refused and stays; a producer's file at one of the agent's metadata paths makes that repo's
 * publish refuse (nothing overwritten) until it is moved away; a removed package leaves the
 * index.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { samplePackages } from "../../src/demo/sample-mirror.js";
import { startStaticServer, type StaticServer } from "../../src/demo/static-server.js";
import type { GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { runCli, startCli, type RunningCli } from "../support/cli.js";
import { pacmanKeyring, pipDownload, runPacman } from "../support/clients.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import { makeSourceMirror } from "../support/source-mirror.js";

/** Where the producer puts each sample package: repo, and a directory of its own choosing. */
const PRODUCER_DIR: Record<string, { repo: string; dir: string }> = {
  deb: { repo: "apt", dir: "builds/2026-12" },
  rpm: { repo: "yum", dir: "x86_64" },
  pacman: { repo: "arch", dir: "" },
  python: { repo: "pypi", dir: "dist" },
  tar: { repo: "files", dir: "releases" },
};

const FORMAT_OF_REPO: Record<string, string> = {
  apt: "apt",
  yum: "yum",
  arch: "pacman",
  pypi: "pypi",
  files: "json",
};

/** Every regular file under dir, relative, with its SHA-256. */
async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of await readdir(dir, { recursive: true })) {
    const full = path.join(dir, rel);
    if (!(await stat(full)).isFile()) continue;
    out.set(
      rel,
      createHash("sha256")
        .update(await readFile(full))
        .digest("hex"),
    );
  }
  return out;
}

describe("repos published in place (the source directory is the served tree)", () => {
  let work: string;
  let root: string;
  let conf: string;
  let key: GeneratedSigningKey;
  let server: StaticServer;
  /** The producer's files: relative to root_dir → sha256, as the producer last wrote them. */
  const producer = new Map<string, string>();

  const drop = async (rel: string, content: Uint8Array | string) => {
    const full = path.join(root, rel);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
    // Dropped a minute ago: complete (a file written within the settle time is not taken yet).
    const minuteAgo = new Date(Date.now() - 60_000);
    await utimes(full, minuteAgo, minuteAgo);
    producer.set(rel, createHash("sha256").update(content).digest("hex"));
  };

  /**
   * Every producer file is still there with the bytes the producer wrote (read one by one: the
   * agent may be writing its own files meanwhile).
   */
  const expectProducerFilesUntouched = async () => {
    const changed: string[] = [];
    for (const [rel, sha] of producer) {
      const bytes = await readFile(path.join(root, rel)).catch(() => null);
      if (bytes === null || createHash("sha256").update(bytes).digest("hex") !== sha)
        changed.push(rel);
    }
    expect(changed).toEqual([]);
  };

  const readIndex = (rel: string) => readFile(path.join(root, rel), "utf8").catch(() => "");

  beforeAll(async () => {
    ({ work, root, conf, key } = await makeSourceMirror({
      name: "inplace",
      inPlace: true,
      repos: Object.fromEntries(
        Object.entries(FORMAT_OF_REPO).map(([repo, format]) => [
          repo,
          { format, lines: format === "apt" ? ["version: bookworm"] : [] },
        ]),
      ),
      mirror: ["description: In place", "metadata_grace_seconds: 0"],
    }));
    for (const pkg of samplePackages(0)) {
      const { repo, dir } = PRODUCER_DIR[pkg.type]!;
      await drop(path.posix.join(repo, dir, pkg.filename), pkg.content);
    }
    // Not a package, though it is named like one: reported and skipped, and left.
    await drop("apt/builds/broken_1.0_all.deb", "this is not an ar archive");
    // A real package where apt's metadata goes: refused (not indexed), and left.
    const deb = samplePackages(0).find((p) => p.type === "deb")!;
    await drop(`apt/dists/${deb.filename}`, deb.content);
    server = await startStaticServer(root);
  }, 60_000);

  let daemon: RunningCli | null = null;

  afterAll(async () => {
    daemon?.kill("SIGKILL");
    await daemon?.exited;
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  test("sync writes the indexes beside the packages, and real clients install from the source", async () => {
    const before = await hashTree(root);
    expect([...before.keys()].sort()).toEqual([...producer.keys()].sort());
    const sync = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
    expect(sync.stdout).toMatch(/^synced 5 repo\(s\), 8 file\(s\).*, 2 skipped$/m);
    expect(sync.stdout).toMatch(/skipped: \/local\/Repo:apt:builds\/broken_1\.0_all\.deb: .*not/);
    expect(sync.stdout).toMatch(/skipped: \/local\/Repo:apt:dists\/.*where the apt layout writes/);
    expect(sync.code, sync.stdout + sync.stderr).toBe(1);
    await expectProducerFilesUntouched();
    // Nothing was copied: the only new files are the agent's metadata (and public keys).
    const after = await hashTree(root);
    const added = [...after.keys()].filter((rel) => !producer.has(rel));
    for (const rel of added) {
      expect(rel).toMatch(
        /^(repo-key(\.gpg)?|apt\/dists\/bookworm\/.*|yum\/repodata\/.*|arch\/arch\.(db|files)(\.tar\.gz)?(\.sig)?|arch\/[^/]+\.pkg\.tar\.zst\.sig|pypi\/simple\/.*|files\/_repo_main\/.*)$/,
      );
    }

    // The indexes name each package where the producer put it.
    const packages = await readIndex("apt/dists/bookworm/main/binary-amd64/Packages");
    expect(packages).toMatch(/^Filename: builds\/2026-12\/hello-demo_1\.0-1_all\.deb$/m);
    expect(await readIndex("yum/repodata/repomd.xml")).toContain("primary");

    const base = server.url;
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

    const dnfBase = path.join(work, "dnf");
    await writeDnfConfig({
      base: dnfBase,
      repos: [{ id: "inplace", baseUrl: `${base}/yum` }],
      keyFile: path.join(root, "repo-key"),
      packageGpgcheck: false,
    });
    const dnf = await runDnf({ base: dnfBase }, ["download", "--destdir", dnfBase, "hello-demo"]);
    expect(dnf.ok, dnf.output).toBe(true);

    const gpgdir = await pacmanKeyring(
      work,
      await readFile(path.join(root, "repo-key"), "utf8"),
      key.primaryFingerprint,
    );
    const pacman = await runPacman({
      work,
      gpgdir,
      repo: "arch",
      server: `${base}/arch`,
      commands: [["-Sw", "hello-demo", "hello-demo-doc"]],
    });
    expect(pacman.ok, pacman.output).toBe(true);

    const pip = await pipDownload({
      work,
      indexUrl: `${base}/pypi/simple/`,
      requirement: "hello-demo",
    });
    expect(pip.ok, pip.output).toBe(true);
    expect(pip.files).toEqual(["hello_demo-1.0-py3-none-any.whl"]);

    // verify reads the in-place trees as clients do, and calls no producer file unexpected.
    const verify = await runCli(["verify", "--config", conf], { timeoutMs: 120_000 });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);

    // Both refused files are in status, with their reasons.
    const status = await runCli(["status", "--json", "--config", conf]);
    expect(status.stdout).toMatch(/broken_1\.0_all\.deb/);
    expect(status.stdout).toMatch(/dists\/hello-demo_1\.0-1_all\.deb/);
  }, 300_000);

  test("a producer file at a metadata path is never overwritten: the repo's publish is refused", async () => {
    // The producer writes its own simple index where the agent's is, and a new wheel arrives.
    const ours = await readIndex("pypi/simple/index.html");
    expect(ours).toContain("hello-demo");
    await drop("pypi/simple/index.html", "<html>the producer's own page</html>\n");
    const wheel = samplePackages(1).find((p) => p.type === "python")!;
    await drop(`pypi/dist/${wheel.filename}`, wheel.content);

    const sync = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
    expect(sync.code).toBe(1);
    expect(sync.stdout + sync.stderr).toMatch(
      /pypi is published in place and 1 file\(s\) the agent did not write lie where its metadata goes \(pypi\/simple\/index\.html\)/,
    );
    await expectProducerFilesUntouched();
    // The other repos are published as before.
    expect(await readIndex("apt/dists/bookworm/InRelease")).toContain("SHA256:");

    // Once the producer moves it away, the repo publishes again, with the new wheel.
    await rm(path.join(root, "pypi/simple/index.html"));
    producer.delete("pypi/simple/index.html");
    const again = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
    expect(again.stdout).toMatch(/, 2 skipped$/m);
    expect(await readIndex("pypi/simple/hello-demo/index.html")).toContain(wheel.filename);
    await expectProducerFilesUntouched();
  }, 300_000);

  test("a removed package leaves the index; the agent's superseded metadata goes, the producer's files stay", async () => {
    const packages = () => readIndex("apt/dists/bookworm/main/binary-amd64/Packages");
    expect(await packages()).toContain("packrat-tools_1.0-1_amd64.deb");
    const gone = "apt/builds/2026-12/packrat-tools_1.0-1_amd64.deb";
    await rm(path.join(root, gone));
    producer.delete(gone);
    const byHashBefore = await readdir(
      path.join(root, "apt/dists/bookworm/main/binary-amd64/by-hash/SHA256"),
    );
    expect(byHashBefore.length).toBeGreaterThan(0);

    // Two passes: the first publishes without it, the second (grace 0) removes what the first
    // superseded.
    for (let i = 0; i < 2; i++) {
      const sync = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
      expect(sync.stdout).toMatch(/, 2 skipped$/m);
    }
    expect(await packages()).not.toContain("packrat-tools");
    expect(await packages()).toContain("hello-demo_1.0-1_all.deb");
    const byHashAfter = await readdir(
      path.join(root, "apt/dists/bookworm/main/binary-amd64/by-hash/SHA256"),
    );
    // The agent's superseded by-hash indexes went (grace 0); the current ones are there.
    expect(byHashAfter.filter((h) => byHashBefore.includes(h)).length).toBeLessThan(
      byHashBefore.length,
    );
    expect(byHashAfter.length).toBeGreaterThan(0);
    await expectProducerFilesUntouched();
  }, 300_000);

  test("the daemon publishes a package renamed into place, named where it lies", async () => {
    daemon = startCli(["run", "--config", conf, "--log-level", "debug"]);
    await daemon.waitForLog(/full sync/i, 60_000);
    const packages = () => readIndex("apt/dists/bookworm/main/binary-amd64/Packages");
    const next = samplePackages(2).find((p) => p.type === "deb" && p.package === "packrat-tools")!;
    const rel = `apt/builds/2026-12/${next.filename}`;
    const tmp = path.join(root, "apt/builds/2026-12", `.${next.filename}.part`);
    await writeFile(tmp, next.content);
    await rename(tmp, path.join(root, rel));
    producer.set(rel, createHash("sha256").update(next.content).digest("hex"));
    const deadline = Date.now() + 45_000;
    while (!(await packages()).includes(`Filename: builds/2026-12/${next.filename}`)) {
      if (Date.now() > deadline) throw new Error("the daemon did not publish the new package");
      await new Promise((r) => setTimeout(r, 100));
    }
    await expectProducerFilesUntouched();
  }, 180_000);
});
