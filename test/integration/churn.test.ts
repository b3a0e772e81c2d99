/**
 * Readers under churn (FIELD_NOTES §1, §2): while the real agent (`run`) applies 200+ changes
 * from the master (new versions, untags, re-tags), loops of the real `apt-get update` (private
 * config, Signed-By) and `dnf makecache` (private config, repo_gpgcheck=1) against the tree
 * served by the real nginx never fail.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAptGet } from "../support/apt-client.js";
import { startCli, type RunningCli } from "../support/cli.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import { startNginx, type RunningNginx } from "../support/nginx.js";
import { verifyInProcess } from "./crash-harness.js";
import { startCliMirror, TAG, type CliMirror } from "../support/cli-mirror.js";

const CHANGES = 210;

interface ReaderStats {
  attempts: number;
  failures: string[];
}

describe("readers under churn", () => {
  let m: CliMirror;
  let nginx: RunningNginx;
  let agent: RunningCli | null = null;
  let work: string;

  beforeAll(async () => {
    m = await startCliMirror({ yum: true });
    for (let i = 0; i < 10; i++) {
      m.addDeb(`deb${i}`, "1.0");
      m.addRpm(`rpm${i}`, "1.0");
    }
    for (let i = 0; i < 3; i++) m.addJson(`js${i}`, "1.0");
    await m.writeConfig({ trigger_debounce_ms: 20 });
    const sync = await m.cli(["sync"]);
    expect(sync.code, sync.stderr).toBe(0);
    nginx = await startNginx({ root: m.root });
    work = await mkdtemp(path.join(tmpdir(), "packrat-churn-"));
  });
  afterAll(async () => {
    if (agent && agent.child.exitCode === null) {
      agent.kill("SIGKILL");
      await agent.exited;
    }
    await nginx?.stop();
    await rm(work, { recursive: true, force: true });
    await m?.close();
  });

  it(`apt-get update and dnf makecache never fail while the agent applies ${CHANGES} changes`, async () => {
    agent = startCli(["run", "--config", m.confPath]);
    await agent.waitForLog(/"msg":"full sync finished"/, 30_000);

    let churning = true;
    const apt: ReaderStats = { attempts: 0, failures: [] };
    // apt quietly falls back to the plain name when a by-hash file is missing (FIELD_NOTES §7):
    // count the runs that fetched anything else than by-hash for the indexes.
    const plainFetches: string[] = [];
    let byHashFetches = 0;
    const dnf: ReaderStats = { attempts: 0, failures: [] };
    const aptLoop = (async () => {
      while (churning || apt.attempts < 3) {
        apt.attempts++;
        try {
          const run = await runAptGet({
            repoUrl: `${nginx.url}/apt`,
            suite: "bookworm",
            components: ["main"],
            keyringPath: path.join(m.root, "repo-key.gpg"),
            archs: ["amd64"],
          });
          byHashFetches += run.fetchedUrls.filter((u) => u.includes("/by-hash/SHA256/")).length;
          plainFetches.push(...run.fetchedUrls.filter((u) => /\/Packages(\.\w+)?$/.test(u)));
        } catch (err) {
          apt.failures.push(String(err).slice(0, 3000));
        }
      }
    })();
    const dnfSetup = {
      base: path.join(work, "dnf"),
      repos: [{ id: "packrat-el9", baseUrl: `${nginx.url}/yum/rhel/main/9/` }],
      keyFile: path.join(m.root, "repo-key"),
      packageGpgcheck: false,
    };
    await writeDnfConfig(dnfSetup);
    const dnfLoop = (async () => {
      while (churning || dnf.attempts < 3) {
        dnf.attempts++;
        const r = await runDnf(dnfSetup, ["makecache"], 60_000);
        if (!r.ok) dnf.failures.push(r.output.slice(0, 3000));
      }
    })();

    // The changes: new versions, untags of old ones, re-tags, spread over every repo.
    const started = Date.now();
    const published = () =>
      agent!.stderr.split("\n").filter((l) => l.includes('"msg":"published"')).length;
    const publishedBefore = published();
    let changes = 0;
    for (let round = 1; changes < CHANGES; round++) {
      for (let i = 0; i < 10 && changes < CHANGES; i++) {
        m.addDeb(`deb${i}`, `1.${round}`);
        m.addRpm(`rpm${i}`, `1.${round}`);
        changes += 2;
        const oldDeb = m.ids.get(`deb${i}_1.${round - 1}_all.deb`);
        if (oldDeb !== undefined && (i + round) % 2 === 0) {
          m.master.untag(oldDeb, TAG);
          changes++;
        }
        if (round % 3 === 0 && oldDeb !== undefined) {
          m.master.tag(oldDeb, TAG);
          changes++;
        }
        if (i % 4 === 0) {
          m.addJson(`js${i % 3}`, `1.${round}`);
          changes++;
        }
        await new Promise((r) => setTimeout(r, 110));
      }
    }
    // Let the agent catch up (the last new version is in the apt index), then stop the readers
    // after their current attempt.
    const lastDeb = [...m.ids.keys()].filter((f) => f.startsWith("deb")).pop();
    const lastVersion = lastDeb?.split("_")[1];
    const packagesFile = path.join(m.root, "apt/dists/bookworm/main/binary-amd64/Packages");
    const caughtUp = async () =>
      (await readFile(packagesFile, "utf8").catch(() => "")).includes(`Version: ${lastVersion}\n`);
    for (const until = Date.now() + 60_000; !(await caughtUp()) && Date.now() < until;)
      await new Promise((r) => setTimeout(r, 50));
    expect(await caughtUp(), `the agent published ${lastDeb}`).toBe(true);
    churning = false;
    await Promise.all([aptLoop, dnfLoop]);
    const publishes = published() - publishedBefore;
    console.log(
      `churn: ${changes} changes in ${Date.now() - started} ms, ${publishes} publishes; ` +
        `apt-get update ${apt.attempts} attempts / ${apt.failures.length} failures, ` +
        `dnf makecache ${dnf.attempts} attempts / ${dnf.failures.length} failures`,
    );
    expect(apt.failures).toEqual([]);
    expect(plainFetches).toEqual([]);
    expect(byHashFetches).toBeGreaterThanOrEqual(apt.attempts);
    expect(dnf.failures).toEqual([]);
    expect(apt.attempts).toBeGreaterThanOrEqual(3);
    expect(dnf.attempts).toBeGreaterThanOrEqual(3);
    // Several generations switched while the readers read (how many depends on the machine).
    expect(publishes).toBeGreaterThanOrEqual(6);

    // And the tree the agent leaves behind is whole.
    agent.kill("SIGTERM");
    expect((await agent.exited).code).toBe(0);
    expect(await verifyInProcess(m)).toEqual([]);
  }, 120_000);
});
