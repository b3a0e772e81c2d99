import { existsSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sha256Bytes, sha256File, walkTree } from "../../src/sync/disk.js";
import { writeAgentConfig } from "../support/agent-config.js";
import { runCli, startCli, type RunningCli } from "../support/cli.js";
import { sampleDeb, startMirrorFixture, type MirrorFixture } from "../support/mirror-fixture.js";

/** Poll until fn() is truthy; returns the elapsed ms. */
async function until(
  fn: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - start;
    if (Date.now() - start > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("the real CLI against the fake master", () => {
  let fx: MirrorFixture;
  let config: string;
  let agent: RunningCli | null = null;

  beforeEach(async () => {
    fx = await startMirrorFixture({
      debs: [
        ["hello", "1.0-1"],
        ["world", "0.9-3"],
      ],
      json: [["tool", "1.2"]],
    });
    config = await writeAgentConfig(fx);
  });
  afterEach(async () => {
    if (agent) {
      agent.kill("SIGKILL");
      await agent.exited;
      agent = null;
    }
    await fx.close();
  });

  const packagesFile = () => path.join(fx.root, "apt/dists/bookworm/main/binary-amd64/Packages");
  const packagesText = async () =>
    existsSync(packagesFile()) ? readFile(packagesFile(), "utf8") : "";
  const manifest = async () =>
    readFile(path.join(fx.root, "json/_repo_main/MANIFEST_all.json"), "utf8");

  it("`sync` puts both repos in place and exits 0; `status --json` reports them", async () => {
    const res = await runCli(["sync", "--config", config]);
    expect(res.stderr).not.toMatch(/"level":50/);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/synced 2 repo\(s\), 3 file\(s\): 3 downloaded/);
    expect(await packagesText()).toContain("Package: world");
    expect(await manifest()).toContain("tool/tool_1.2.tar.gz");
    const status = await runCli(["status", "--json", "--config", config]);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as {
      lastFullSync: { result: string };
      repos: { name: string; files: number; generation: number }[];
    };
    expect(parsed.lastFullSync.result).toBe("ok");
    expect(parsed.repos.map((r) => [r.name, r.files, r.generation])).toEqual([
      ["prod-apt", 2, 1],
      ["prod-json", 1, 1],
    ]);
    const verify = await runCli(["verify", "--config", config]);
    expect(verify.stdout).toMatch(/verify: ok/);
    expect(verify.code).toBe(0);
  });

  it("`sync` skips a malformed package file only, exits 1 naming it, and `status --json` counts it", async () => {
    const liar = fx.ids.get("world_0.9-3_all.deb")!;
    fx.master.faults.add({ kind: "field", fileId: liar, field: "sha256", value: 42 });
    const res = await runCli(["sync", "--config", config]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/synced 2 repo\(s\), 2 file\(s\): 2 downloaded.*, 1 skipped/);
    expect(res.stdout).toContain(
      `skipped: /api/v2/Package/PackageFile:${liar}:: package file ${fx.master.url}/api/v2/Package/PackageFile:${liar}:: field "sha256" is number 42, expected a string`,
    );
    expect(res.stderr).toMatch(/"code":"PACKRAT_MASTER_PROTOCOL".*"msg":"package file skipped: /);
    expect(await packagesText()).toContain("Package: hello");
    expect(await packagesText()).not.toContain("Package: world");
    const status = await runCli(["status", "--json", "--config", config]);
    const parsed = JSON.parse(status.stdout) as {
      repos: { name: string; files: number; skipped: { uri: string; error: string }[] }[];
    };
    const apt = parsed.repos.find((r) => r.name === "prod-apt")!;
    expect(apt.files).toBe(1);
    expect(apt.skipped.map((s) => s.uri)).toEqual([`/api/v2/Package/PackageFile:${liar}:`]);
    expect(apt.skipped[0]!.error).toMatch(/field "sha256" is number 42/);
    expect((await runCli(["status", "--config", config])).stdout).toMatch(
      /^repo prod-apt \(apt, apt\): 1 files \[1 skipped\]/m,
    );
  });

  it("`sync` refuses to run while another agent holds the state DB", async () => {
    agent = startCli(["run", "--config", config]);
    await agent.waitForLog(/full sync finished/);
    const second = await runCli(["sync", "--config", config]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/in use by another packrat-agent \(pid \d+/);
    // status reads the state DB read-only, so it works while the daemon holds it.
    const status = await runCli(["status", "--config", config]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^last full sync: ok at /m);
    expect(status.stdout).toMatch(/^repo prod-apt \(apt, apt\): 2 files, .* generation 1/m);
  });

  it("`run` applies a tag and a fail from the master within 2 s, and an untag at the next full sync", async () => {
    agent = startCli(["run", "--config", config]);
    await agent.waitForLog(/full sync finished/);
    // Give the pollers a moment to open their long-polls: the master forgets changes made while no poll is open.
    await until(() => fx.master.openPolls >= 2, 5000, "polls to open");
    const id = fx.addDeb("fresh", "3.0");
    const added = await until(
      async () => (await packagesText()).includes("Package: fresh"),
      5000,
      "fresh in Packages",
    );
    expect(added).toBeLessThan(2000);
    expect(existsSync(path.join(fx.root, "apt/pool/fresh/fresh_3.0_all.deb"))).toBe(true);
    // packrat announces a fail to the repos holding the file; a failed file is not published.
    await until(() => fx.master.openPolls >= 2, 5000, "polls to reopen");
    fx.master.fail(id);
    const failed = await until(
      async () => !(await packagesText()).includes("Package: fresh"),
      5000,
      "failed fresh gone from Packages",
    );
    expect(failed).toBeLessThan(2000);
    // An untag has no action on the master and notifies nothing: the full sync applies it.
    const other = fx.addDeb("other", "1.0");
    await until(async () => (await packagesText()).includes("Package: other"), 5000, "other");
    fx.master.untag(other, "prod");
    agent.kill("SIGUSR1");
    await until(
      async () => !(await packagesText()).includes("Package: other"),
      10_000,
      "untagged other gone from Packages after the full sync",
    );
  });

  it("200 tag changes within a second cause a handful of publishes and an exact end state", async () => {
    agent = startCli(["run", "--config", config]);
    await agent.waitForLog(/full sync finished/);
    await until(() => fx.master.openPolls >= 2, 5000, "polls to open");
    const ids: number[] = [];
    for (let i = 0; i < 40; i++) ids.push(fx.addDeb(`burst${i}`, "1.0"));
    for (let round = 0; round < 4; round++) {
      for (const [i, id] of ids.entries()) {
        if ((i + round) % 2 === 0) fx.master.untag(id, "prod");
        else fx.master.tag(id, "prod");
      }
    }
    // End state: odd-indexed packages tagged after round 3 ((i+3)%2 !== 0 → i even tagged).
    const expected = ids.map((_, i) => `burst${i}`).filter((_, i) => (i + 3) % 2 !== 0);
    await until(
      async () => {
        const text = await packagesText();
        const present = [...text.matchAll(/^Package: (burst\d+)$/gm)].map((m) => m[1]);
        return present.length === expected.length && expected.every((n) => present.includes(n));
      },
      15_000,
      "the burst's end state",
    );
    // A full sync afterwards agrees with what the incremental passes published.
    agent.kill("SIGUSR1");
    await agent.waitForLog(/"reason":"SIGUSR1"/);
    const publishes = agent.stderr
      .split("\n")
      .filter((l) => l.includes('"msg":"published"') && l.includes("prod-apt")).length;
    expect(publishes).toBeLessThanOrEqual(12);
  });

  it("repairs a pool file deleted by hand within 5 s while `run` is going", async () => {
    agent = startCli(["run", "--config", config]);
    await agent.waitForLog(/full sync finished/);
    const pool = path.join(fx.root, "apt/pool/hello/hello_1.0-1_all.deb");
    await rm(pool);
    const back = await until(() => existsSync(pool), 8000, "the deleted file to come back");
    expect(back).toBeLessThan(5000);
  });

  it("`run` notices its state directory deleted under it, says so, and rebuilds it as a restart does", async () => {
    agent = startCli(["run", "--config", config]);
    await agent.waitForLog(/full sync finished/);
    await until(() => fx.master.openPolls >= 2, 5000, "polls to open");
    // The whole state directory: the DB, its -wal/-shm and the lock file.
    await rm(path.dirname(fx.stateDb), { recursive: true, force: true });
    fx.addDeb("after-rm", "1.0");
    const line = await agent.waitForLog(/was deleted while the agent runs/);
    expect(line).toContain(fx.stateDb);
    await until(
      async () => (await packagesText()).includes("Package: after-rm"),
      10_000,
      "after-rm in Packages",
    );
    await until(
      () => agent!.stderr.split("\n").filter((l) => /full sync finished/.test(l)).length >= 2,
      10_000,
      "the rebuilding full sync",
    );
    // A new state DB, private, holding the mirror again; the lock is the daemon's again.
    expect(statSync(fx.stateDb).mode & 0o777).toBe(0o600);
    const status = await runCli(["status", "--json", "--config", config]);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as { repos: { name: string; files: number }[] };
    expect(parsed.repos.map((r) => [r.name, r.files])).toEqual([
      ["prod-apt", 3],
      ["prod-json", 1],
    ]);
    const second = await runCli(["sync", "--config", config]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/in use by another packrat-agent \(pid \d+/);
  });

  it("SIGHUP with a broken config keeps running on the old one; a good one is taken", async () => {
    agent = startCli(["run", "--config", config]);
    await agent.waitForLog(/full sync finished/);
    const good = await readFile(config, "utf8");
    await writeFile(config, good.replace("full_sync_interval: 600", "full_sync_interval: ten"));
    agent.kill("SIGHUP");
    const line = await agent.waitForLog(/config reload failed/);
    expect(line).toMatch(/full_sync_interval = \\"ten\\": expected whole seconds/);
    await writeFile(config, good);
    agent.kill("SIGHUP");
    await agent.waitForLog(/config reloaded/);
    // Still working: a change is applied.
    await until(() => fx.master.openPolls >= 2, 5000, "polls to reopen");
    fx.addDeb("after-hup", "1.0");
    await until(
      async () => (await packagesText()).includes("Package: after-hup"),
      5000,
      "after-hup in Packages",
    );
  });

  it("SIGTERM during a download stops cleanly and leaves no partial file", async () => {
    const id = fx.addDeb("slow", "1.0");
    fx.master.faults.set({ kind: "delay", ms: 3000, uri: fx.master.fileUrl(id) });
    agent = startCli(["run", "--config", config]);
    await until(
      () => fx.master.requests.some((r) => r.uri === fx.master.fileUrl(id)),
      10_000,
      "the slow download to start",
    );
    agent.kill("SIGTERM");
    const { code } = await agent.exited;
    const agentLog = agent.stderr;
    agent = null;
    expect(code).toBe(0);
    const files = (await walkTree(fx.root)).filter((e) => e.kind === "file").map((e) => e.rel);
    // The pass was let finish within the stop deadline: the file is whole, or absent; never partial.
    const slow = "apt/pool/slow/slow_1.0_all.deb";
    if (files.includes(slow)) {
      expect(await sha256File(path.join(fx.root, slow))).toBe(
        sha256Bytes(sampleDeb("slow", "1.0").content),
      );
    }
    expect(files.filter((f) => f.startsWith(".packrat-tmp/"))).toEqual([]);
    expect(agentLog).toMatch(/"msg":"stopped"/);
  });

  it("SIGKILL in the middle of a sync, then a restart, converges to the exact tree", async () => {
    for (let i = 0; i < 20; i++) fx.addDeb(`bulk${i}`, "1.0");
    agent = startCli(["run", "--config", config]);
    await until(
      () => fx.master.requests.filter((r) => r.uri.startsWith("/files/")).length >= 5,
      10_000,
      "downloads to start",
    );
    agent.kill("SIGKILL");
    await agent.exited;
    agent = null;
    const res = await runCli(["sync", "--config", config]);
    expect(res.code).toBe(0);
    const text = await packagesText();
    for (let i = 0; i < 20; i++) expect(text).toContain(`Package: bulk${i}\n`);
    const verify = await runCli(["verify", "--deep", "--config", config]);
    expect(verify.stdout).toMatch(/verify: ok/);
  });
});

describe("CLI exit codes", () => {
  it("exits 78 (EX_CONFIG) on an invalid config, naming the line, and 2 on a usage error", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "packrat-conf-"));
    try {
      const conf = path.join(dir, "mirror.conf");
      await writeFile(
        conf,
        "[packrat]\nhost: http://packrat\nname: m\n[mirror]\nroot_dir: /srv/x\nfull_sync_interval: ten\n",
      );
      const bad = await runCli(["sync", "--config", conf]);
      expect(bad.code).toBe(78);
      expect(bad.stderr).toContain(
        'mirror.conf:6: [mirror] full_sync_interval = "ten": expected whole seconds',
      );
      const missing = await runCli(["sync", "--config", path.join(dir, "nope.conf")]);
      expect(missing.code).toBe(78);
      expect((await runCli(["sync", "--bogus"])).code).toBe(2);
      expect((await runCli(["frobnicate"])).code).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
