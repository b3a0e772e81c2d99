/**
 * The agent against the REAL packrat master (../shared/realmaster: packrat@3e72655 on
 * cinp-python 0.12 and Debian 12's Django 3.2), on SQLite and on PostgreSQL, driven as an
 * operator would: files in through load.py (the master's own upload and `tag` action), then the
 * real `tag`, `fail` and `deprocate` actions as root, and the ORM for what the API has no action
 * for (untag, logging sessions out). Real apt-get and dnf read what the agent publishes, with
 * signature checking on.
 *
 * This Django refuses anonymous reads (403), so the agent must log in: mirror "e2e" has a psk,
 * for which load.py makes a Django user "e2e" with the view permissions.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { runAptGet } from "../support/apt-client.js";
import { runCli, startCli, type RunningCli } from "../support/cli.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import { buildE2eCatalog, E2E_MIRROR, E2E_PSK } from "../support/real-master-catalog.js";
import {
  realMasterHome,
  startRealMaster,
  type RealMaster,
  type RealMasterDb,
} from "../support/real-master.js";
import { startStaticServer, type StaticServer } from "../support/static-server.js";

const home = realMasterHome();
if (home === null) {
  // Loud, not silent: CI sets PACKRAT_REQUIRE_REALMASTER and then this suite must run.
  console.warn("the real packrat master is not available (../shared/realmaster): suite skipped");
  if (process.env.PACKRAT_REQUIRE_REALMASTER) {
    throw new Error("PACKRAT_REQUIRE_REALMASTER is set but ../shared/realmaster is missing");
  }
}

async function until(
  fn: () => Promise<boolean> | boolean,
  ms: number,
  what: string,
): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(home === null).each<RealMasterDb>(["pg", "sqlite"])(
  "the agent against the real packrat master on %s",
  (db) => {
    let master: RealMaster;
    let dir: string;
    let config: string;
    let root: string;
    let server: StaticServer;
    /** Real PackageFile ids by file name. */
    const ids = new Map<string, number>();
    let agent: RunningCli | null = null;
    const bulk = db === "sqlite" ? 300 : 0;

    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), `packrat-real-${db}-`));
      master = await startRealMaster(db);
      const built = await buildE2eCatalog(path.join(dir, "files"), { bulk });
      const report = await master.load(built.catalog);
      // The master's own upload takes the RPM, the json tarball and the sdist; it refuses
      // today's .deb files (docs/master-api.md), which load.py then makes through the ORM.
      expect(report.refused.map((r) => r.name).filter((n) => !n.endsWith(".deb"))).toEqual([]);
      for (const [name, catalogId] of built.byName)
        ids.set(name, report.id_map[String(catalogId)]!);
      const key = await generateSigningKey({ name: "packrat real-master test", type: "ed25519" });
      const keyFile = path.join(dir, "signing-key.asc");
      await writeFile(keyFile, key.armoredSecretKey, { mode: 0o600 });
      root = path.join(dir, "root");
      config = path.join(dir, "mirror.conf");
      await writeFile(
        config,
        [
          "[packrat]",
          `host: ${master.url}`,
          `name: ${E2E_MIRROR}`,
          `psk: ${E2E_PSK}`,
          "",
          "[mirror]",
          `root_dir: ${root}`,
          `state_db: ${path.join(dir, "state", "state.db")}`,
          `gpg_key_file: ${keyFile}`,
          `gpg_sign_key: ${key.signingKeyId}`,
          "full_sync_interval: 3600",
          // packrat's dev server (gunicorn) kills a worker silent for 30 s: keep polls under it.
          "poll_timeout: 10",
          "trigger_debounce_ms: 100",
          "watch_tree: no",
          // debug: every answered master request is logged, polls included (the SQLite test waits on them)
          "log_level: debug",
          "",
        ].join("\n"),
        { mode: 0o600 },
      );
      server = await startStaticServer(root);
    }, 600_000);

    afterAll(async () => {
      if (agent) {
        agent.kill("SIGKILL");
        await agent.exited;
      }
      await server?.close();
      await master?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    const packages = () =>
      readFile(path.join(root, "e2e-apt/dists/bookworm/main/binary-amd64/Packages"), "utf8").catch(
        () => "",
      );
    const lastHeartbeat = async () =>
      (
        (await master.cinp("GET", `/api/v2/Repo/Mirror:${E2E_MIRROR}:`)).json() as {
          last_heartbeat: string | null;
        }
      ).last_heartbeat;

    it("syncs every repo, logging in as the mirror's user; apt-get and dnf accept it; verify passes; heartbeat recorded", async () => {
      expect(await lastHeartbeat()).toBeNull();
      const res = await runCli(["sync", "--config", config], { timeoutMs: 300_000 });
      expect(res.code, `${res.stdout}\n${res.stderr.slice(-4000)}`).toBe(0);
      expect(res.stderr).toContain("the master refuses anonymous reads; logging in");
      expect(res.stderr).not.toMatch(/"level":50/);
      const text = await packages();
      for (const name of ["hello", "world", "doomed", "oldie"])
        expect(text).toMatch(new RegExp(`^Package: ${name}$`, "m"));
      expect(text).not.toMatch(/^Package: pending$/m); // tagged stage only
      expect(await lastHeartbeat()).toMatch(/\+00:00$/);

      const apt = await runAptGet({
        repoUrl: `${server.url}/e2e-apt`,
        suite: "bookworm",
        components: ["main"],
        keyringPath: path.join(root, "repo-key.gpg"),
        archs: ["amd64"],
        packages: ["hello", "world"],
      });
      expect(apt.downloadedFiles).toEqual(["hello_1.0-1_all.deb", "world_1.0-1_all.deb"]);

      const dnf = {
        base: path.join(dir, "dnf"),
        repos: [{ id: "e2e-el9", baseUrl: `${server.url}/e2e-yum/rhel/main/9/` }],
        keyFile: path.join(root, "repo-key"),
        packageGpgcheck: false,
      };
      await writeDnfConfig(dnf);
      const listed = await runDnf(dnf, [
        "repoquery",
        "--available",
        "--qf",
        "%{name}-%{version}-%{release}",
      ]);
      expect(listed.ok, listed.output).toBe(true);
      expect(listed.output).toContain("tool-1.0-1.el9");

      const manifest = await readFile(
        path.join(root, "e2e-json/_repo_main/MANIFEST_all.json"),
        "utf8",
      );
      expect(manifest).toContain("bundle/bundle_1.2.tar");
      expect(
        await readFile(path.join(root, "e2e-pypi/simple/e2epkg/index.html"), "utf8"),
      ).toContain("e2epkg-1.0.tar.gz");
      if (bulk > 0) {
        const bulkManifest = JSON.parse(
          await readFile(path.join(root, "e2e-bulk/_repo_main/MANIFEST_all.json"), "utf8"),
        ) as Record<string, unknown>;
        expect(Object.keys(bulkManifest)).toHaveLength(bulk);
      }

      const verify = await runCli(["verify", "--deep", "--config", config]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    }, 300_000);

    it("a second `sync --full` downloads nothing and republishes nothing", async () => {
      const res = await runCli(["sync", "--full", "--config", config], { timeoutMs: 120_000 });
      expect(res.code, res.stderr.slice(-3000)).toBe(0);
      expect(res.stdout).toMatch(/: 0 downloaded, .* 0 republished, 0 failed/);
    }, 120_000);

    it("under `run`: a tag, a fail and a deprocate through the real actions, an untag through the ORM", async () => {
      agent = startCli(["run", "--config", config]);
      await agent.waitForLog(/full sync finished/, 120_000);
      if (db === "pg") {
        // packrat LISTENs only while a poll waits, so a change made before the polls are open is
        // not announced. Prove them open with the master's own Repo.notify, until every repo's
        // poll has answered and the agent applied it.
        const repos = ["e2e-apt", "e2e-yum", "e2e-json", "e2e-pypi"];
        const applied = () =>
          repos.every((r) =>
            agent!.stderr
              .split("\n")
              .some(
                (l) =>
                  l.includes("applying changes from the master") && l.includes(`"repo":"${r}"`),
              ),
          );
        await until(
          async () => {
            await master.orm(
              "from packrat.Repo.models import Repo\nfrom packrat.Package.models import Package\n" +
                `for r in Repo.objects.filter(pk__in=${JSON.stringify(repos)}): r.notify(Package(name='probe'))`,
            );
            await new Promise((r) => setTimeout(r, 300));
            return applied();
          },
          30_000,
          "every repo's poll to answer a notify",
        );
      }
      const fullSyncs = () =>
        agent!.stderr.split("\n").filter((l) => l.includes("full sync finished")).length;
      const viaFullSync = async (what: string, done: () => Promise<boolean>) => {
        // SQLite's poll never announces anything: a full sync brings the change.
        if (db === "sqlite") {
          const before = fullSyncs();
          agent!.kill("SIGUSR1");
          await until(() => fullSyncs() > before, 60_000, `the full sync after ${what}`);
        }
        return until(done, db === "pg" ? 10_000 : 30_000, what);
      };

      await master.tag(ids.get("pending_1.0-1_all.deb")!, "prod");
      const tagged = await viaFullSync("the tag", async () =>
        /^Package: pending$/m.test(await packages()),
      );
      if (db === "pg") expect(tagged).toBeLessThan(5000);

      await master.fail(ids.get("doomed_1.0-1_all.deb")!);
      await master.deprocate(ids.get("oldie_1.0-1_all.deb")!);
      await viaFullSync("the fail", async () => !/^Package: doomed$/m.test(await packages()));
      expect(await packages()).toMatch(/^Package: oldie$/m); // deprecated: still published

      // No untag action on the master, so no notification: the next full sync applies it.
      await master.untag(ids.get("world_1.0-1_all.deb")!, "prod");
      const before = fullSyncs();
      agent.kill("SIGUSR1");
      await until(() => fullSyncs() > before, 60_000, "the full sync after the untag");
      await until(async () => !/^Package: world$/m.test(await packages()), 10_000, "world gone");

      const status = await runCli(["status", "--json", "--config", config]);
      const parsed = JSON.parse(status.stdout) as {
        repos: { name: string; failed: { count: number }; deprecated: { count: number } }[];
      };
      const apt = parsed.repos.find((r) => r.name === "e2e-apt")!;
      expect([apt.failed.count, apt.deprecated.count]).toEqual([1, 1]);
    }, 240_000);

    it.runIf(db === "sqlite")(
      "says, once, that this master gives no change triggers, and still converges by full syncs",
      async () => {
        const polled = () =>
          agent!.stderr.split("\n").filter((l) => /"url":"[^"]*Repo:e2e-bulk:\(poll\)"/.test(l))
            .length;
        const fullSyncs = () =>
          agent!.stderr.split("\n").filter((l) => l.includes("full sync finished")).length;
        for (const n of [0, 1]) {
          await master.fail(ids.get(`bulk${n}_1.tar`)!);
          // A whole poll after the fail answers [] at its timeout: SQLite's poll only sleeps.
          const seen = polled();
          await until(() => polled() >= seen + 2, 40_000, "two polls of e2e-bulk to end");
          const before = fullSyncs();
          agent!.kill("SIGUSR1");
          await until(() => fullSyncs() > before, 60_000, "the full sync");
          const manifest = JSON.parse(
            await readFile(path.join(root, "e2e-bulk/_repo_main/MANIFEST_all.json"), "utf8"),
          ) as Record<string, unknown>;
          expect(Object.keys(manifest)).not.toContain(`bulk${n}`);
        }
        expect(
          agent!.stderr.split("\n").filter((l) => l.includes("gives no change triggers")),
        ).toHaveLength(1);
        const status = await runCli(["status", "--config", config]);
        expect(status.stdout).toMatch(
          /^change triggers: unavailable since .*full sync every 3600 s/m,
        );
      },
      180_000,
    );

    it("logs in again when the master forgets its sessions", async () => {
      await master.logoutEveryone();
      const before = agent!.stderr
        .split("\n")
        .filter((l) => l.includes("full sync finished")).length;
      agent!.kill("SIGUSR1");
      await until(
        () =>
          agent!.stderr.split("\n").filter((l) => l.includes("full sync finished")).length > before,
        60_000,
        "a full sync after the logout",
      );
      expect(agent!.stderr).toContain("master session no longer valid; logging in again");
    }, 120_000);
  },
);
