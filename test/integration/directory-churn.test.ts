/**
 * The directory source under a burst (issue 23, "Done when"): 200 packages (.deb, .rpm,
 * .pkg.tar.zst, wheels) are copied into four watched directories at random intervals, some
 * written slowly in two halves, some renamed into place, with a corrupt file among them, while
 * the real apt-get, dnf and pacman read the published repos in a loop with signatures checked.
 * No client run fails; afterwards every client sees all 200; the burst made a handful of
 * publishes, not 200; deleting 20 takes them out of every index after the grace.
 */
import { appendFile, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildDeb, controlText } from "../../src/demo/packages/deb.js";
import { buildPacmanPackage } from "../../src/demo/packages/pacman.js";
import { buildWheel } from "../../src/demo/packages/python.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../../src/demo/packages/rpm.js";
import { startStaticServer, type StaticServer } from "../../src/demo/static-server.js";
import type { GeneratedSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { runCli, startCli, type RunningCli } from "../support/cli.js";
import { pacmanKeyring, pipDownload, runPacman, type ClientRun } from "../support/clients.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import { makeSourceMirror } from "../support/source-mirror.js";

const PER_FORMAT = 50;
const REPOS = { apt: "apt", yum: "yum", arch: "pacman", pypi: "pypi" } as const;
type RepoName = keyof typeof REPOS;

interface Upload {
  repo: RepoName;
  /** The package name clients ask for. */
  name: string;
  filename: string;
  bytes: Uint8Array;
}

function uploads(): Upload[] {
  const out: Upload[] = [];
  for (let i = 0; i < PER_FORMAT; i++) {
    const name = `burst-${i}`;
    out.push({
      repo: "apt",
      name,
      filename: `${name}_1.0-1_all.deb`,
      bytes: buildDeb({
        control: controlText({
          Package: name,
          Version: "1.0-1",
          Architecture: "all",
          Maintainer: "Burst <burst@packrat.invalid>",
          Description: `burst package ${i}\n Copied into an incoming directory.`,
        }),
        files: { [`usr/share/doc/${name}/README`]: `${name}\n` },
      }),
    });
    const rpm = {
      name,
      version: "1.0",
      release: "1",
      arch: "noarch",
      summary: `burst ${i}`,
      description: "Copied into an incoming directory.",
      files: { [`/usr/share/doc/${name}/README`]: `${name}\n` },
    };
    out.push({
      repo: "yum",
      name,
      filename: syntheticRpmFilename(rpm),
      bytes: buildSyntheticRpm(rpm),
    });
    const pkg = buildPacmanPackage({
      name,
      version: "1.0-1",
      arch: "any",
      desc: `burst ${i}`,
      files: { [`usr/share/doc/${name}/README`]: `${name}\n` },
    });
    out.push({ repo: "arch", name, filename: pkg.filename, bytes: pkg.bytes });
    const wheel = buildWheel({
      name,
      version: "1.0",
      requiresPython: ">=3.8",
      summary: `burst ${i}`,
    });
    out.push({ repo: "pypi", name, filename: wheel.filename, bytes: wheel.bytes });
  }
  // A deterministic shuffle: the formats interleave as separate pipelines' uploads would.
  let seed = 7;
  const rand = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe("a directory source under a burst of uploads, read by real clients", () => {
  let work: string;
  let incoming: string;
  let root: string;
  let conf: string;
  let key: GeneratedSigningKey;
  let server: StaticServer;
  let daemon: RunningCli;
  let gpgdir: string;
  const dnfBase = () => path.join(work, "dnf");

  const apt = (packages: string[] = []) =>
    runAptGet({
      repoUrl: `${server.url}/apt`,
      suite: "stable",
      components: ["main"],
      keyringPath: path.join(root, "repo-key.gpg"),
      archs: ["amd64"],
      packages,
    });
  const pacman = (commands: string[][] = []) =>
    runPacman({ work, gpgdir, repo: "arch", server: `${server.url}/arch/$arch`, commands });
  const dnf = (args: string[]) => runDnf({ base: dnfBase() }, args);

  beforeAll(async () => {
    ({ work, incoming, root, conf, key } = await makeSourceMirror({
      name: "dirchurn",
      repos: Object.fromEntries(Object.entries(REPOS).map(([repo, format]) => [repo, { format }])),
      mirror: ["metadata_grace_seconds: 5"],
    }));
    // Empty repos at first: published (signed, empty) by the first full sync.
    const first = await runCli(["sync", "--config", conf], { timeoutMs: 60_000 });
    expect(first.code, first.stdout + first.stderr).toBe(0);
    server = await startStaticServer(root);
    gpgdir = await pacmanKeyring(
      work,
      await readFile(path.join(root, "repo-key"), "utf8"),
      key.primaryFingerprint,
    );
    await writeDnfConfig({
      base: dnfBase(),
      repos: [{ id: "burst", baseUrl: `${server.url}/yum/el/main/9` }],
      keyFile: path.join(root, "repo-key"),
      packageGpgcheck: false,
    });
    daemon = startCli(["run", "--config", conf]);
    await daemon.waitForLog(/full sync finished/, 60_000);
  }, 120_000);

  afterAll(async () => {
    daemon?.kill("SIGKILL");
    await daemon?.exited;
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  test("clients never fail during the burst, and see all 200 after it", async () => {
    const all = uploads();
    let copying = true;
    const failures: string[] = [];
    let clientRuns = 0;
    // Real clients read the repos over and over while the files arrive.
    const readers = (async () => {
      while (copying) {
        const runs: [string, Promise<ClientRun>][] = [
          [
            "apt-get update",
            apt().then(
              () => ({ ok: true, output: "" }),
              (err: Error) => ({ ok: false, output: err.message }),
            ),
          ],
          ["pacman -Sy", pacman()],
          ["dnf makecache", dnf(["makecache"])],
        ];
        for (const [what, run] of runs) {
          const r = await run;
          clientRuns++;
          if (!r.ok) failures.push(`${what}: ${r.output.slice(0, 2000)}`);
        }
      }
    })();
    let seed = 11;
    const rand = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (const [i, u] of all.entries()) {
      const dest = path.join(incoming, u.repo, u.filename);
      if (i % 5 === 0) {
        // Written slowly, in place: the first half, a pause, the rest.
        await writeFile(dest, u.bytes.subarray(0, u.bytes.length >> 1));
        await new Promise((r) => setTimeout(r, 50 + rand() * 300));
        await appendFile(dest, u.bytes.subarray(u.bytes.length >> 1));
      } else if (i % 3 === 0) {
        const tmp = path.join(incoming, u.repo, `${u.filename}.part`);
        await writeFile(tmp, u.bytes);
        await rename(tmp, dest);
      } else {
        await writeFile(dest, u.bytes);
      }
      if (i === 100)
        await writeFile(path.join(incoming, "apt", "corrupt_1.0_all.deb"), "not a deb");
      await new Promise((r) => setTimeout(r, rand() * 60));
    }
    // Every name in every index (the source's own words: the published files), then stop the readers.
    const published = async () => {
      const packages = await readFile(
        path.join(root, "apt/dists/stable/main/binary-amd64/Packages"),
        "utf8",
      ).catch(() => "");
      return all
        .filter((u) => u.repo === "apt")
        .every((u) => packages.includes(`Package: ${u.name}\n`));
    };
    const deadline = Date.now() + 90_000;
    while (!(await published()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    // One more round of every client after the last publish.
    const target = clientRuns + 3;
    while (clientRuns < target) await new Promise((r) => setTimeout(r, 100));
    copying = false;
    await readers;
    expect(failures, failures.join("\n\n")).toEqual([]);
    expect(clientRuns).toBeGreaterThan(3);

    const names = (repo: RepoName) =>
      all
        .filter((u) => u.repo === repo)
        .map((u) => u.name)
        .sort();
    const aptAll = await apt(names("apt"));
    expect(aptAll.downloadedFiles).toHaveLength(PER_FORMAT);
    const dnfList = await dnf(["list", "--available", "burst-*"]);
    expect(dnfList.ok, dnfList.output).toBe(true);
    for (const n of names("yum"))
      expect(dnfList.output).toMatch(new RegExp(`^${n}\\.noarch\\s`, "m"));
    const sl = await pacman([["-Sl", "arch"]]);
    expect(sl.ok, sl.output).toBe(true);
    for (const n of names("arch")) expect(sl.output).toMatch(new RegExp(`^arch ${n} 1\\.0-1`, "m"));
    const pip = await pipDownload({
      work,
      indexUrl: `${server.url}/pypi/simple/`,
      requirement: names("pypi"),
    });
    expect(pip.ok, pip.output).toBe(true);
    expect(pip.files).toHaveLength(PER_FORMAT);

    // The burst was grouped: a few publishes per repo, not one per upload.
    const status = JSON.parse((await runCli(["status", "--json", "--config", conf])).stdout) as {
      repos: { name: string; generation: number }[];
    };
    for (const r of status.repos) expect(r.generation, r.name).toBeLessThan(PER_FORMAT / 2);
    expect(JSON.stringify(status)).toContain("corrupt_1.0_all.deb");
  }, 300_000);

  test("deleting 20 takes them out of every index after the grace", async () => {
    const gone = (repo: RepoName) =>
      Array.from({ length: 5 }, (_, i) => ({ repo, name: `burst-${i}` }));
    const all = uploads();
    for (const repo of Object.keys(REPOS) as RepoName[]) {
      for (const g of gone(repo)) {
        const u = all.find((x) => x.repo === repo && x.name === g.name)!;
        await rm(path.join(incoming, repo, u.filename));
      }
    }
    const aptGone = async () => {
      const packages = await readFile(
        path.join(root, "apt/dists/stable/main/binary-amd64/Packages"),
        "utf8",
      );
      return !packages.includes("Package: burst-0\n") && !packages.includes("Package: burst-4\n");
    };
    const deadline = Date.now() + 60_000;
    while (!(await aptGone()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    expect(await aptGone()).toBe(true);
    // Each repo follows its own directory: ask each client until its index has caught up.
    const eventually = async (what: string, check: () => Promise<boolean>) => {
      const end = Date.now() + 60_000;
      while (!(await check())) {
        if (Date.now() > end) {
          const log = daemon.stderr.split("\n").slice(-40).join("\n");
          throw new Error(
            `${what} still lists a removed package; the daemon's last lines:\n${log}`,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    await eventually("dnf", async () => {
      const list = await dnf(["list", "--available", "--refresh", "burst-*"]);
      return (
        list.ok &&
        !/^burst-[0-4]\.noarch/m.test(list.output) &&
        /^burst-5\.noarch/m.test(list.output)
      );
    });
    await eventually("pacman", async () => {
      const sl = await pacman([["-Sl", "arch"]]);
      return sl.ok && !/^arch burst-[0-4] /m.test(sl.output) && /^arch burst-5 /m.test(sl.output);
    });
    await eventually("pip", async () => {
      const gone = await pipDownload({
        work,
        indexUrl: `${server.url}/pypi/simple/`,
        requirement: "burst-0",
      });
      const kept = await pipDownload({
        work,
        indexUrl: `${server.url}/pypi/simple/`,
        requirement: "burst-5",
      });
      return !gone.ok && kept.ok;
    });
    // After the grace the files themselves are gone from the tree as well.
    const pool = path.join(root, "apt/pool/burst-/burst-0_1.0-1_all.deb");
    const graceEnd = Date.now() + 30_000;
    while (
      Date.now() < graceEnd &&
      (await readFile(pool).then(
        () => true,
        () => false,
      ))
    )
      await new Promise((r) => setTimeout(r, 500));
    expect(
      await readFile(pool).then(
        () => true,
        () => false,
      ),
    ).toBe(false);
  }, 180_000);
});
