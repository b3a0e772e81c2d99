/**
 * Repos without a master (issue 23, the directory source): mirror.conf has no [packrat], each
 * [repo NAME] names a format and a directory; the built CLI publishes what is in those
 * directories, signed, and the real apt-get, dnf, pacman and pip read it with signature
 * checking on. The daemon then follows the directories: a package copied in (written slowly,
 * or renamed into place) is published without a full sync, one removed leaves the index, a
 * corrupt one is reported and skipped, and nothing in a source directory is ever changed.
 */
import { createHash } from "node:crypto";
import { appendFile, utimes, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
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

/** The directory (and repo) each sample package goes to, by its packrat file type. */
const REPO_OF_TYPE: Record<string, string> = {
  deb: "apt",
  rpm: "yum",
  pacman: "arch",
  python: "pypi",
  tar: "files",
};

const FORMAT_OF_REPO: Record<string, string> = {
  apt: "apt",
  yum: "yum",
  arch: "pacman",
  pypi: "pypi",
  files: "json",
};

/** Resolve when `check` holds (polled every 100 ms), or fail after `timeoutMs`. */
async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const full = path.join(dir, name);
    try {
      out[name] = createHash("sha256")
        .update(await readFile(full))
        .digest("hex");
    } catch {
      out[name] = "dir";
    }
  }
  return out;
}

describe("a directory as the source of repos (no master)", () => {
  let work: string;
  let incoming: string;
  let root: string;
  let conf: string;
  let key: GeneratedSigningKey;
  let server: StaticServer;
  let daemon: RunningCli | null = null;

  const readIndex = (rel: string) => readFile(path.join(root, rel), "utf8").catch(() => "");

  beforeAll(async () => {
    ({ work, incoming, root, conf, key } = await makeSourceMirror({
      name: "dirsrc",
      repos: Object.fromEntries(
        Object.entries(FORMAT_OF_REPO).map(([repo, format]) => [
          repo,
          {
            format,
            lines: [
              ...(format === "apt" ? ["version: bookworm"] : []),
              ...(format === "yum" ? ["distro: rocky", "version: 9"] : []),
            ],
          },
        ]),
      ),
      mirror: ["description: Incoming", "metadata_grace_seconds: 0", "trigger_debounce_ms: 0"],
    }));
    const dropped: string[] = [];
    for (const pkg of samplePackages(0)) {
      dropped.push(path.join(incoming, REPO_OF_TYPE[pkg.type]!, pkg.filename));
      await writeFile(dropped[dropped.length - 1]!, pkg.content);
    }
    // Not a package, though it is named like one: reported and skipped, never fatal.
    dropped.push(path.join(incoming, "apt", "broken_1.0_all.deb"));
    await writeFile(dropped[dropped.length - 1]!, "this is not an ar archive");
    // Dropped a minute ago: complete (a file written within the settle time is not taken yet).
    const minuteAgo = new Date(Date.now() - 60_000);
    for (const file of dropped) await utimes(file, minuteAgo, minuteAgo);
    server = await startStaticServer(root);
  }, 60_000);

  afterAll(async () => {
    daemon?.kill("SIGKILL");
    await daemon?.exited;
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  test("sync publishes every format, signed, and real clients read it", async () => {
    const before = await snapshot(incoming);
    const sync = await runCli(["sync", "--config", conf], { timeoutMs: 120_000 });
    // Every package is published; the corrupt file is named with its reason, and (as for a
    // master's file the agent cannot use) the exit code says something was skipped.
    expect(sync.stdout).toMatch(/^synced 5 repo\(s\), 8 file\(s\).*, 1 skipped$/m);
    expect(sync.stdout).toMatch(/skipped: \/local\/Repo:apt:broken_1\.0_all\.deb: .*not/);
    expect(sync.code, sync.stdout + sync.stderr).toBe(1);
    // The sources are read, never written.
    expect(await snapshot(incoming)).toEqual(before);

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
      repos: [{ id: "incoming", baseUrl: `${base}/yum/rocky/main/9` }],
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
      server: `${base}/arch/$arch`,
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

    // The corrupt file is in status, named with its reason.
    const status = await runCli(["status", "--json", "--config", conf]);
    expect(status.stdout).toMatch(/broken_1\.0_all\.deb/);
  }, 300_000);

  test("the daemon publishes what is copied in, without a full sync, and drops what is removed", async () => {
    daemon = startCli(["run", "--config", conf, "--log-level", "debug"]);
    await daemon.waitForLog(/full sync/i, 60_000);
    const packages = () => readIndex("apt/dists/bookworm/main/binary-amd64/Packages");
    await until("the first full sync to publish", async () =>
      (await packages()).includes("hello-demo"),
    );

    const next = samplePackages(1).filter((p) => p.type === "deb");
    // One written slowly (its first half, then the rest after a pause), one renamed into place.
    const slow = next[0]!;
    const slowPath = path.join(incoming, "apt", slow.filename);
    await writeFile(slowPath, slow.content.subarray(0, 200));
    await new Promise((r) => setTimeout(r, 500)); // a writer pausing mid-file (what is tested)
    await appendFile(slowPath, slow.content.subarray(200));
    const renamed = next[1]!;
    const tmp = path.join(incoming, "apt", `.${renamed.filename}.tmp`);
    await writeFile(tmp, renamed.content);
    await rename(tmp, path.join(incoming, "apt", renamed.filename));

    await until(
      "both new versions in the signed index",
      async () => {
        const release = await readIndex("apt/dists/bookworm/InRelease");
        const index = await packages();
        return (
          index.includes("Version: 1.1-1\n") &&
          (index.match(/Version: 1\.1-1\n/g) ?? []).length === 2 &&
          release !== ""
        );
      },
      45_000,
    );
    // The slow file is listed at its full size, not as the half first written.
    const index = await packages();
    expect(index).toContain(`Size: ${slow.content.length}\n`);

    // Removing a file takes its package out of the index (grace 0 here).
    await rm(path.join(incoming, "apt", renamed.filename));
    await until(
      "the removed package out of the index",
      async () => !(await packages()).includes(renamed.filename),
      45_000,
    );
    expect(await packages()).toContain(slow.filename);
  }, 180_000);
});
