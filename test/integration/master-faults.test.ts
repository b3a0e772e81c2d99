/**
 * The master misbehaving (fake master fault switches): HTTP 500/502/404/401, hangs past the
 * timeout, resets mid-download, truncated bodies, wrong bytes, invalid JSON, a wrong
 * api-version, an empty repo list, failing polls. For each: nothing lost, nothing deleted,
 * retries bounded and backed off, one log line per change of the master's health, and
 * recovery once the fault clears.
 */
import { Writable } from "node:stream";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PackratError, isPackratError } from "../../src/errors.js";
import type { StateStore } from "../../src/state/state-store.js";
import type { SyncEngine } from "../../src/sync/engine.js";
import type { MasterClient } from "../../src/sync/master-types.js";
import { createLogger, type Logger } from "../../src/log.js";
import { MirrorDaemon } from "../../src/sync/daemon.js";
import { sha256File, walkTree } from "../../src/sync/disk.js";
import type { Fault } from "../support/fake-master.js";
import { createMasterClient } from "../../src/sync/master-client.js";
import { startCliMirror } from "../support/cli-mirror.js";
import {
  MIRROR,
  TAG,
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";

interface Captured {
  log: Logger;
  lines: () => { level: number; msg: string }[];
}

function captureLog(): Captured {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      cb();
    },
  });
  return {
    log: createLogger({ level: "debug", destination }),
    lines: () => lines.map((l) => JSON.parse(l) as { level: number; msg: string }),
  };
}

/** Every file under root_dir with its SHA-256 (the temp dir aside). */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await walkTree(root)) {
    if (e.kind !== "file" || e.rel.startsWith(".packrat-tmp")) continue;
    out.set(e.rel, await sha256File(path.join(root, e.rel)));
  }
  return out;
}

describe("master faults", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;
  let cap: Captured;
  let sleeps: number[];

  const engineWith = (requestTimeoutMs = 2000) => {
    const client = createMasterClient({
      host: fx.master.url,
      name: MIRROR,
      psk: null,
      proxy: null,
      requestTimeoutMs,
      log: cap.log,
    });
    return makeEngine(fx, {
      log: cap.log,
      deps: {
        client,
        retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 40 },
        sleep: (ms) => {
          sleeps.push(ms);
          return Promise.resolve();
        },
      },
    });
  };

  beforeEach(async () => {
    fx = await startMirrorFixture({
      debs: [
        ["hello", "1.0"],
        ["world", "2.0"],
      ],
      json: [["tool", "1.0"]],
    });
    cap = captureLog();
    sleeps = [];
    h = engineWith();
    const first = await h.engine.fullSync();
    expect(first.failed).toEqual([]);
  });
  afterEach(async () => {
    await h.close();
    await fx.close();
  });

  const apiFaults: [string, Fault][] = [
    ["HTTP 500 on the mirror", { kind: "status", status: 500, uri: "Repo/Mirror" }],
    ["HTTP 502 on DESCRIBE", { kind: "status", status: 502, method: "DESCRIBE" }],
    ["HTTP 404 on the repo list", { kind: "status", status: 404, uri: "Repo/Repo" }],
    [
      "HTTP 401 on the file list",
      { kind: "status", status: 401, method: "LIST", uri: "PackageFile" },
    ],
    ["invalid JSON from the mirror", { kind: "invalid-json", uri: "Repo/Mirror" }],
    ["a wrong api-version", { kind: "api-version", version: "1.0" }],
    ["a reset connection on the file list", { kind: "reset", method: "LIST", uri: "PackageFile" }],
  ];

  for (const [label, fault] of apiFaults) {
    it(`${label}: the sync fails with a clear error, the tree stays, the next sync recovers`, async () => {
      const before = await snapshot(fx.root);
      fx.addDeb("newpkg", "1.0");
      fx.master.faults.set(fault);
      const err = await h.engine.fullSync().catch((e: unknown) => e);
      expect(isPackratError(err), String(err)).toBe(true);
      expect(await snapshot(fx.root)).toEqual(before);
      expect(h.store.lastSyncRun("full")?.result).toBe("failed");
      fx.master.faults.clear();
      const report = await h.engine.fullSync();
      expect(report.failed).toEqual([]);
      expect(report.downloaded).toBe(1);
      const after = await snapshot(fx.root);
      for (const [rel] of before)
        if (rel.includes("/pool/") || rel.startsWith("json/tool"))
          expect(after.has(rel), rel).toBe(true);
      expect(after.has("apt/pool/newpkg/newpkg_1.0_all.deb")).toBe(true);
    });
  }

  it("a hang past the request timeout fails the sync in bounded time and keeps the tree", async () => {
    await h.close();
    h = engineWith(300);
    const before = await snapshot(fx.root);
    fx.master.faults.set({ kind: "hang", uri: "Repo/Mirror" });
    const started = Date.now();
    const err = await h.engine.fullSync().catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_MASTER_TIMEOUT"), String(err)).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await snapshot(fx.root)).toEqual(before);
    fx.master.faults.clear();
    expect((await h.engine.fullSync()).failed).toEqual([]);
  });

  const fileFaults: [string, Fault][] = [
    ["a reset mid-download", { kind: "reset", uri: "/files/" }],
    ["a truncated body", { kind: "truncate", uri: "/files/" }],
    ["bytes that do not match sha256", { kind: "wrong-bytes", uri: "/files/" }],
    ["HTTP 500 on the file", { kind: "status", status: 500, uri: "/files/" }],
    ["a hang on the file", { kind: "hang", uri: "/files/" }],
  ];
  for (const [label, fault] of fileFaults) {
    it(`${label}: bounded retries with backoff, nothing partial published, the rest published, recovery`, async () => {
      if (fault.kind === "hang") {
        await h.close();
        h = engineWith(300);
      }
      const before = await snapshot(fx.root);
      const id = fx.addDeb("newpkg", "1.0");
      fx.addDeb("other", "1.0");
      fx.master.faults.set({ ...fault, uri: fx.master.fileUrl(id) });
      const filesBefore = fx.master.requests.filter((r) => r.uri === fx.master.fileUrl(id)).length;
      const report = await h.engine.fullSync();
      const attempts =
        fx.master.requests.filter((r) => r.uri === fx.master.fileUrl(id)).length - filesBefore;
      expect(attempts).toBe(3); // the retry policy's attempts, no more
      expect(sleeps.length).toBeGreaterThanOrEqual(2);
      expect(sleeps.every((ms) => ms <= 40)).toBe(true);
      expect(report.failed.map((f) => f.file)).toEqual(["apt/pool/newpkg/newpkg_1.0_all.deb"]);
      const after = await snapshot(fx.root);
      expect(after.has("apt/pool/newpkg/newpkg_1.0_all.deb")).toBe(false);
      expect(after.has("apt/pool/other/other_1.0_all.deb")).toBe(true);
      for (const [rel, sha] of before)
        if (rel.includes("/pool/")) expect(after.get(rel), rel).toBe(sha);
      const packages = after.get("apt/dists/bookworm/main/binary-amd64/Packages");
      expect(packages).toBeDefined();
      const failures = cap.lines().filter((l) => l.msg.startsWith("not published:"));
      expect(failures).toHaveLength(1);
      fx.master.faults.clear();
      const again = await h.engine.fullSync();
      expect(again.failed).toEqual([]);
      expect((await snapshot(fx.root)).has("apt/pool/newpkg/newpkg_1.0_all.deb")).toBe(true);
      expect(h.store.listDownloadFailures()).toEqual([]);
    });
  }

  it("an empty repo list removes nothing (safety valve), and the tree recovers when the repos return", async () => {
    const before = await snapshot(fx.root);
    fx.master.setRepoList(MIRROR, []);
    const err = await h.engine.fullSync().catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_SAFETY_VALVE"), String(err)).toBe(true);
    expect(h.store.lastSyncRun("full")?.result).toBe("refused");
    expect(h.store.listRepos()).toHaveLength(2);
    const after = await snapshot(fx.root);
    expect(after, `sync result: ${String(err)}`).toEqual(before);
    fx.master.setRepoList(MIRROR, ["prod-apt", "prod-json"]);
    const report = await h.engine.fullSync();
    expect(report.failed).toEqual([]);
    expect(await snapshot(fx.root)).toEqual(before);
  });

  it("an untagged file set that would empty a repo is refused, not applied", async () => {
    const before = await snapshot(fx.root);
    for (const id of fx.ids.values()) fx.master.untag(id, TAG);
    const err = await h.engine.fullSync().catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_SAFETY_VALVE"), String(err)).toBe(true);
    expect(await snapshot(fx.root)).toEqual(before);
  });

  it("failing polls: backoff, one log line when the master goes and one when it returns", async () => {
    const pollSleeps: number[] = [];
    const daemon = new MirrorDaemon({
      engine: h.engine,
      client: h.client,
      store: h.store,
      log: cap.log,
      settings: { fullSyncInterval: 3600, pollTimeout: 1, triggerDebounceMs: 10 },
      sleep: (ms) => {
        pollSleeps.push(ms);
        return new Promise((r) => setTimeout(r, 5));
      },
    });
    fx.master.faults.set({ kind: "status", status: 502, uri: "(poll)", times: 6 });
    daemon.start();
    try {
      for (let t = 0; t < 400 && pollSleeps.length < 6; t++)
        await new Promise((r) => setTimeout(r, 10));
      expect(pollSleeps.length).toBeGreaterThanOrEqual(6);
      // Recovery: a change is picked up once polls work again.
      for (let t = 0; t < 400 && fx.master.openPolls < 2; t++)
        await new Promise((r) => setTimeout(r, 10));
      fx.addDeb("late", "1.0");
      for (let t = 0; t < 500; t++) {
        if ((await snapshot(fx.root)).has("apt/pool/late/late_1.0_all.deb")) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      expect((await snapshot(fx.root)).has("apt/pool/late/late_1.0_all.deb")).toBe(true);
    } finally {
      await daemon.stop(5000);
    }
    const msgs = cap.lines().map((l) => l.msg);
    expect(msgs.filter((m) => m.startsWith("master unreachable"))).toHaveLength(1);
    expect(msgs.filter((m) => m === "master reachable again")).toHaveLength(1);
    // Backoff: every wait is at least the 1 s floor and they do not shrink to zero.
    expect(pollSleeps.every((ms) => ms >= 1000)).toBe(true);
  });
});

describe("master faults through the real CLI", () => {
  it("a wrong api-version and a failing master: `sync` exits non-zero with a clear message, the tree stays", async () => {
    const m = await startCliMirror();
    try {
      m.addDeb("hello", "1.0");
      const first = await m.cli(["sync"]);
      expect(first.code, first.stderr).toBe(0);
      const before = await snapshot(m.root);
      m.addDeb("newer", "1.0");
      m.master.faults.set({ kind: "api-version", version: "1.7" });
      const wrong = await m.cli(["sync"]);
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toMatch(/1\.7/);
      expect(await snapshot(m.root)).toEqual(before);
      m.master.faults.set({ kind: "status", status: 500 });
      const down = await m.cli(["sync"]);
      expect(down.code).not.toBe(0);
      expect(down.stderr).toMatch(/500/);
      expect(await snapshot(m.root)).toEqual(before);
      m.master.faults.clear();
      const again = await m.cli(["sync"]);
      expect(again.code, again.stderr).toBe(0);
      expect((await snapshot(m.root)).has("apt/pool/newer/newer_1.0_all.deb")).toBe(true);
      const verify = await m.cli(["verify", "--deep"]);
      expect(verify.code, verify.stdout).toBe(0);
    } finally {
      await m.close();
    }
  });
});

describe("a master that stays down, seen by the daemon", () => {
  /**
   * The daemon retries a failing full sync with backoff (5 s, then up to 5 min). The issue asks
   * for one log line per change of state: one error when full syncs start failing, debug lines
   * for the retries, one info line when they succeed again.
   */
  it("logs one error when full syncs start failing and one line when they recover", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const cap = captureLog();
    let down = true;
    const fullSyncs: number[] = [];
    const engine = {
      fullSync: () => {
        fullSyncs.push(Date.now());
        return down
          ? Promise.reject(
              new PackratError("PACKRAT_MASTER_HTTP", "master answered 502 to DESCRIBE /api/v2/"),
            )
          : Promise.resolve({ failed: [], published: [], announcedChanges: [], buckets: [] });
      },
      onDetachedDownload: () => undefined,
      abortDownloads: () => undefined,
      downloadsIdle: () => Promise.resolve(),
      downloadsInFlight: 0,
    } as unknown as SyncEngine;
    const client = {
      poll: () =>
        new Promise((_, reject) =>
          setTimeout(() => reject(new PackratError("PACKRAT_MASTER_HTTP", "502")), 10),
        ),
    } as unknown as MasterClient;
    const store = { listRepos: () => [], replacedOnDisk: () => null } as unknown as StateStore;
    const daemon = new MirrorDaemon({
      engine,
      client,
      store,
      log: cap.log,
      settings: { fullSyncInterval: 900, pollTimeout: 30, triggerDebounceMs: 10 },
    });
    try {
      daemon.start();
      await vi.advanceTimersByTimeAsync(20 * 60_000);
      expect(fullSyncs.length).toBeGreaterThanOrEqual(4); // retried, with backoff
      down = false;
      await vi.advanceTimersByTimeAsync(10 * 60_000);
      const loud = cap.lines().filter((l) => l.level >= 40 && /full sync/.test(l.msg));
      expect(loud).toHaveLength(1);
      const recovered = cap
        .lines()
        .filter((l) => l.level === 30 && l.msg === "full sync succeeded again");
      expect(recovered).toHaveLength(1);
    } finally {
      void daemon.stop(10);
      await vi.advanceTimersByTimeAsync(5000);
      vi.useRealTimers();
    }
  });
});
