/**
 * SIGKILL the real agent at many points of an initial sync, of incremental changes applied by
 * `run`, and of cleanup; after each kill, no partial file sits at a final path, a restart
 * completes, and verify --deep passes (FIELD_NOTES §1: never a broken moment).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import {
  crashRound,
  startAndKill,
  wipeAgent,
  type KillAt,
  type KillOutcome,
} from "./crash-harness.js";
import {
  lockNamesLiveProcess,
  startCliMirror,
  TAG,
  type CliMirror,
} from "../support/cli-mirror.js";

describe("crash: SIGKILL at many points, then restart", () => {
  let m: CliMirror;
  const outcomes: KillOutcome[] = [];
  const expectRecovered = (o: KillOutcome, label: string) => {
    expect(o.partial, `${label}: partial files at final paths`).toEqual([]);
    expect(o.problems, `${label}: verify --deep after restart`).toEqual([]);
    outcomes.push(o);
  };

  beforeAll(async () => {
    m = await startCliMirror();
    for (let i = 0; i < 12; i++) m.addDeb(`pkg${String(i).padStart(2, "0")}`, "1.0");
    for (let i = 0; i < 6; i++) m.addJson(`tool${i}`, "1.0");
    // Slow file downloads a little, so that kills land among downloads too.
    m.master.faults.add({ kind: "delay", ms: 10, uri: "/files/" });
    await m.writeConfig({ metadata_grace_seconds: 0, download_concurrency: 2 });
  });
  afterAll(async () => {
    const killed = outcomes.filter((o) => o.killed).length;
    const worst = Math.max(0, ...outcomes.map((o) => o.recoverMs));
    console.log(
      `crash test: ${outcomes.length} rounds, ${killed} kills, slowest recovery ${worst} ms`,
    );
    await m.close();
  });

  it("during the initial sync", async () => {
    // Kill points: the Nth request to the master (metadata, then downloads), then each
    // publish step; debug logging names every request.
    const points: KillAt[] = [
      ...[2, 5, 8].map((nth) => ({ onLog: /"msg":"master request"/, nth })),
      ...[1, 4, 8, 12, 16].map((nth) => ({ onLog: /^downloads: \d+\//, nth })),
      { onLog: /"msg":"self-check passed"/ },
      { onLog: /"msg":"published"/ },
    ];
    let killed = 0;
    for (const [i, at] of points.entries()) {
      await wipeAgent(m);
      const o = await crashRound(m, ["sync", "--log-level", "debug"], at);
      expectRecovered(o, `initial sync, kill point ${i}`);
      if (o.killed) killed++;
    }
    expect(killed).toBeGreaterThanOrEqual(8);
  }, 240_000);

  it("while `run` applies changes from the master", async () => {
    let killed = 0;
    let round = 0;
    for (let i = 0; killed < 6 && i < 12; i++) {
      round++;
      // New versions, one old version untagged, a tag moved back: all announced by polls.
      const o = await crashRound(m, ["run"], {
        after: { log: /"msg":"full sync finished"/, action: () => changeSome(m, round) },
        onLog: /"msg":"(applying changes from the master|published)"/,
        nth: 1 + (i % 3),
        extraMs: (i * 7) % 40,
      });
      expectRecovered(o, `run round ${round}`);
      if (o.killed) killed++;
    }
    expect(killed).toBeGreaterThanOrEqual(6);
  }, 240_000);

  it("during cleanup", async () => {
    let killed = 0;
    for (let i = 0; killed < 6 && i < 12; i++) {
      // Untag a few packages so that the next full sync removes their files.
      const ids = [0, 1, 2].map((k) => m.addDeb(`gone${i}-${k}`, "1.0"));
      const sync = await m.cli(["sync"]);
      expect(sync.code, sync.stderr).toBe(0);
      for (const id of ids) m.master.untag(id, TAG);
      const o = await crashRound(m, ["sync"], {
        onLog: /"msg":"removing a file nothing names"/,
        nth: 1 + (i % 3),
      });
      expectRecovered(o, `cleanup round ${i}`);
      if (o.killed) killed++;
    }
    expect(killed).toBeGreaterThanOrEqual(6);
  }, 240_000);

  it("during a reboot-like restart whose lock file names a live, unrelated process", async () => {
    // A crash (SIGKILL of `run` mid-sync), then a "reboot": the lock file now names a process
    // that is alive but is not an agent. The restart must start anyway; it is killed too, the
    // lock again names a live stranger, and the next start recovers everything.
    const strangers: ChildProcess[] = [];
    try {
      let killed = 0;
      for (let i = 0; i < 3; i++) {
        await wipeAgent(m);
        m.addDeb(`reboot${i}`, "1.0");
        const first = await startAndKill(m, ["run", "--log-level", "debug"], {
          onLog: /"msg":"master request"/,
          nth: 3 + 2 * i,
        });
        strangers.push(await lockNamesLiveProcess(m));
        const o = await crashRound(
          m,
          ["run", "--log-level", "debug"],
          { onLog: /"msg":"(master request|published)"/, nth: 4 + 3 * i },
          async () => {
            strangers.push(await lockNamesLiveProcess(m));
          },
        );
        expect(o.killed, "the restart after the reboot started (the lock did not stop it)").toBe(
          true,
        );
        expectRecovered(o, `reboot round ${i}`);
        if (first && o.killed) killed++;
      }
      expect(killed).toBeGreaterThanOrEqual(2);
    } finally {
      for (const s of strangers) s.kill("SIGKILL");
    }
  }, 90_000);

  it("killed the agent at least 20 times in all", () => {
    expect(outcomes.filter((o) => o.killed).length).toBeGreaterThanOrEqual(20);
  });
});

/** Some master changes for `run` to apply: a new version, an untag, a re-tag. */
async function changeSome(m: CliMirror, round: number): Promise<void> {
  // Wait for the pollers to be listening: a change made between two polls is only picked up by
  // the next full sync (FIELD_NOTES §3).
  for (let t = 0; t < 200 && m.master.openPolls < 2; t++)
    await new Promise((r) => setTimeout(r, 10));
  for (let k = 0; k < 4; k++) {
    const pkg = `pkg${String((round * 4 + k) % 12).padStart(2, "0")}`;
    m.addDeb(pkg, `1.${round}`);
    const old = m.ids.get(`${pkg}_1.${round - 1}_all.deb`);
    if (old !== undefined && k % 2 === 0) m.master.untag(old, TAG);
    m.addJson(`tool${(round + k) % 6}`, `1.${round}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
