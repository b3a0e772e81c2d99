/**
 * What a mirror of a real packrat master must make of what that master means: tags as the
 * joined string, files that change in place (failed, deprecated, untagged between LIST and
 * GET), malformed objects that skip one file only, the serve policy, and a master whose polls
 * never announce anything (packrat on SQLite).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { MirrorDaemon, TRIGGERS_KEY, type TriggersStatus } from "../../src/sync/daemon.js";
import {
  makeEngine,
  sampleDeb,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { startFakeMaster } from "../support/fake-master.js";

async function until(fn: () => Promise<boolean> | boolean, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("a mirror of a packrat master", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;

  beforeEach(async () => {
    fx = await startMirrorFixture({ debs: [["hello", "1.0"]] });
    h = makeEngine(fx);
  });
  afterEach(async () => {
    await h.close();
    await fx.close();
  });

  const packages = async (dir = "apt") => {
    const p = path.join(fx.root, dir, "dists/bookworm/main/binary-amd64/Packages");
    return existsSync(p) ? readFile(p, "utf8") : "";
  };

  it('files a PackageFile tagged "prod, stage" in the stage repo too, and an untagged one in none', async () => {
    fx.master.addRepo({
      name: "stage-apt",
      filesystemDir: "stage",
      managerType: "apt",
      distroVersions: ["bookworm"],
      tag: "stage",
    });
    fx.master.setRepoList("mirror1", ["prod-apt", "prod-json", "stage-apt"]);
    fx.addDeb("both", "1.0", ["prod", "stage"]);
    fx.addDeb("stageonly", "1.0", ["stage"]);
    fx.addDeb("nowhere", "1.0", []);
    const report = await h.engine.fullSync();
    expect(report.failed).toEqual([]);
    const prod = await packages("apt");
    const stage = await packages("stage");
    expect(prod).toMatch(/^Package: both$/m);
    expect(prod).not.toMatch(/^Package: stageonly$/m);
    expect(stage).toMatch(/^Package: both$/m);
    expect(stage).toMatch(/^Package: stageonly$/m);
    for (const text of [prod, stage]) expect(text).not.toMatch(/^Package: nowhere$/m);
  });

  it("leaves out a file listed for the repo whose tags no longer hold the repo's tag", async () => {
    const id = fx.addDeb("moving", "1.0");
    // Untagged between the LIST and the GET: the object no longer says prod.
    fx.master.faults.add({ kind: "field", fileId: id, field: "tags", value: "dev" });
    await h.engine.fullSync();
    expect(await packages()).not.toMatch(/^Package: moving$/m);
    expect(await packages()).toMatch(/^Package: hello$/m);
  });

  it("skips a malformed file only, says which and why, and keeps one that synced before", async () => {
    const liar = fx.addDeb("liar", "1.0");
    const kept = fx.addDeb("kept", "1.0");
    await h.engine.fullSync();
    expect(await packages()).toMatch(/^Package: kept$/m);
    fx.master.faults.add({ kind: "field", fileId: liar, field: "sha256", value: 42 });
    fx.master.faults.add({ kind: "field", fileId: kept, field: "version", value: null });
    fx.addDeb("fresh", "1.0");
    const report = await h.engine.fullSync();
    expect(report.skipped.map((s) => s.uri).sort()).toEqual(
      [liar, kept].map((id) => `/api/v2/Package/PackageFile:${id}:`).sort(),
    );
    const text = await packages();
    // The rest of the repo syncs; the skipped files stay as the last sync left them.
    expect(text).toMatch(/^Package: fresh$/m);
    expect(text).toMatch(/^Package: kept$/m);
    expect(text).toMatch(/^Package: liar$/m);
    expect(existsSync(path.join(fx.root, "apt/pool/kept/kept_1.0_all.deb"))).toBe(true);
    const skipped = h.store.listSkippedFiles();
    expect(skipped.map((s) => [s.repo, s.code])).toEqual([
      ["prod-apt", "PACKRAT_MASTER_PROTOCOL"],
      ["prod-apt", "PACKRAT_MASTER_PROTOCOL"],
    ]);
    expect(skipped.map((s) => s.reason).join("\n")).toMatch(
      /field "sha256" is number 42, expected a string/,
    );
    // Once the master sends it properly again, it is no longer counted.
    fx.master.faults.clear();
    await h.engine.fullSync();
    expect(h.store.listSkippedFiles()).toEqual([]);
  });

  it("takes a failed file out of the indexes, keeps a deprecated one, and keeps both on disk", async () => {
    const bad = fx.addDeb("bad", "1.0");
    const old = fx.addDeb("old", "1.0");
    await h.engine.fullSync();
    fx.master.fail(bad);
    fx.master.deprecate(old);
    const report = await h.engine.fullSync();
    expect(report.announcedChanges).toEqual(["prod-apt"]);
    const text = await packages();
    expect(text).not.toMatch(/^Package: bad$/m);
    expect(text).toMatch(/^Package: old$/m);
    // The dropped package stays for the grace period: a client mid-fetch still gets it.
    expect(existsSync(path.join(fx.root, "apt/pool/bad/bad_1.0_all.deb"))).toBe(true);
    const rows = h.store.listPackageFiles("prod-apt");
    expect(rows.filter((r) => r.file.failedAt !== null).map((r) => r.file.packageName)).toEqual([
      "bad",
    ]);
    expect(rows.filter((r) => r.file.deprecatedAt !== null).map((r) => r.file.packageName)).toEqual(
      ["old"],
    );
  });

  it("follows the policy of each repo: failed files published, deprecated ones not", async () => {
    await h.close();
    h = makeEngine(fx, {
      deps: {
        servePolicy: (repo) =>
          repo === "prod-apt"
            ? { publishFailed: true, publishDeprecated: false }
            : { publishFailed: false, publishDeprecated: true },
      },
    });
    const bad = fx.addDeb("bad", "1.0");
    const old = fx.addDeb("old", "1.0");
    fx.master.fail(bad);
    fx.master.deprecate(old);
    await h.engine.fullSync();
    const text = await packages();
    expect(text).toMatch(/^Package: bad$/m);
    expect(text).not.toMatch(/^Package: old$/m);
    expect(existsSync(path.join(fx.root, "apt/pool/old/old_1.0_all.deb"))).toBe(false);
  });

  it("applies a fail announced by the poll in an incremental pass", async () => {
    const bad = fx.addDeb("bad", "1.0");
    await h.engine.fullSync();
    expect(await packages()).toMatch(/^Package: bad$/m);
    fx.master.fail(bad);
    const report = await h.engine.incrementalSync("prod-apt", ["bad", "bad", "not-in-this-repo"]);
    expect(report.failed).toEqual([]);
    expect(await packages()).not.toMatch(/^Package: bad$/m);
    expect(await packages()).toMatch(/^Package: hello$/m);
  });
});

describe("a master that sends tags as an array", () => {
  it("files its package files as the string form does", async () => {
    const fx = await startMirrorFixture({ debs: [["hello", "1.0"]], master: { tagsAs: "array" } });
    const h = makeEngine(fx);
    try {
      fx.addDeb("both", "1.0", ["dev", "prod"]);
      fx.addDeb("devonly", "1.0", ["dev"]);
      const report = await h.engine.fullSync();
      expect(report.skipped).toEqual([]);
      const text = await readFile(
        path.join(fx.root, "apt/dists/bookworm/main/binary-amd64/Packages"),
        "utf8",
      );
      expect(text).toMatch(/^Package: both$/m);
      expect(text).not.toMatch(/^Package: devonly$/m);
      expect(
        h.store.listPackageFiles("prod-apt").find((r) => r.file.packageName === "both")!.file.tags,
      ).toEqual(["dev", "prod"]);
    } finally {
      await h.close();
      await fx.close();
    }
  });
});

describe("a master whose polls announce nothing (packrat on SQLite)", () => {
  it("converges through the full sync and says, once, that triggers are unavailable", async () => {
    const fx = await startMirrorFixture({ debs: [["hello", "1.0"]] });
    await fx.master.close();
    // The same mirror on a master whose poll sleeps its timeout and answers [].
    const master = await startFakeMaster({ minPollTimeout: 1, pollMode: "sleep" });
    master.addDistroVersion({
      name: "bookworm",
      distro: "debian",
      version: "bookworm",
      fileType: "deb",
    });
    master.addRepo({
      name: "prod-apt",
      filesystemDir: "apt",
      managerType: "apt",
      distroVersions: ["bookworm"],
      tag: "prod",
    });
    master.addMirror({ name: "mirror1", repos: ["prod-apt"] });
    const add = (name: string) => {
      const deb = sampleDeb(name, "1.0");
      master.addPackageFile({
        package: name,
        distroVersion: "bookworm",
        version: "1.0",
        type: "deb",
        arch: "all",
        ...deb,
        tags: ["prod"],
      });
    };
    add("first");
    const lines: string[] = [];
    const log = createLogger({
      level: "info",
      destination: { write: (s: string) => lines.push(s) },
    });
    const h = makeEngine({ ...fx, master }, { log });
    let passes = 0;
    const daemon = new MirrorDaemon({
      engine: h.engine,
      client: h.client,
      store: h.store,
      log,
      settings: { fullSyncInterval: 3600, pollTimeout: 1, triggerDebounceMs: 10 },
      onSync: () => passes++,
    });
    const packages = () =>
      readFile(path.join(fx.root, "apt/dists/bookworm/main/binary-amd64/Packages"), "utf8").catch(
        () => "",
      );
    const polls = () => master.requests.filter((r) => r.uri.endsWith("(poll)")).length;
    try {
      daemon.start();
      await until(() => passes >= 1, 10_000, "the first full sync");
      for (const name of ["second", "third"]) {
        add(name);
        // A whole poll after the change, answered [] at its timeout: the master said nothing.
        const seen = polls();
        await until(() => polls() >= seen + 2, 10_000, "a poll that sleeps through the change");
        expect(await packages()).not.toContain(`Package: ${name}\n`);
        const before = passes;
        daemon.requestFullSync("test");
        await until(() => passes > before, 10_000, "the full sync");
        expect(await packages()).toContain(`Package: ${name}\n`);
      }
      const status = JSON.parse(h.store.getValue(TRIGGERS_KEY) ?? "null") as TriggersStatus;
      expect(status.available).toBe(false);
      expect(status.message).toMatch(
        /this master gives no change triggers .* changes arrive with the full sync every 3600 s/,
      );
      const said = lines.filter((l) => l.includes("gives no change triggers"));
      expect(said).toHaveLength(1);
    } finally {
      await daemon.stop(2000);
      await h.close();
      await master.close();
      await fx.close();
    }
  });
});
