/**
 * Superseded files are removed by a full sync's cleanup once metadata_grace_seconds have passed.
 * When the grace is shorter than full_sync_interval, a pass that published brings the next full
 * sync forward to the end of the grace (src/sync/daemon.ts), so a removed package's own files
 * do not outlive it by up to an interval.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/log.js";
import type { StateStore } from "../../src/state/state-store.js";
import { MirrorDaemon } from "../../src/sync/daemon.js";
import type { SyncEngine } from "../../src/sync/engine.js";
import type { MasterClient } from "../../src/sync/master-types.js";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** A daemon whose first full sync publishes and later ones do not; returns their start times. */
async function fullSyncTimes(grace: number | undefined, runForMs: number): Promise<number[]> {
  const times: number[] = [];
  const engine = {
    fullSync: () => {
      times.push(Date.now());
      return Promise.resolve({
        failed: [],
        published: times.length === 1 ? ["prod-apt"] : [],
        announcedChanges: [],
        buckets: [],
      });
    },
    onDetachedDownload: () => undefined,
    abortDownloads: () => undefined,
    downloadsIdle: () => Promise.resolve(),
    downloadsInFlight: 0,
  } as unknown as SyncEngine;
  // Polls that never answer (a quiet master).
  const client = { poll: () => new Promise(() => undefined) } as unknown as MasterClient;
  const store = { listRepos: () => [], replacedOnDisk: () => null } as unknown as StateStore;
  const daemon = new MirrorDaemon({
    engine,
    client,
    store,
    log: silentLogger(),
    settings: {
      fullSyncInterval: 900,
      pollTimeout: 30,
      triggerDebounceMs: 10,
      ...(grace === undefined ? {} : { metadataGraceSeconds: grace }),
    },
  });
  const start = Date.now();
  daemon.start();
  await vi.advanceTimersByTimeAsync(runForMs);
  void daemon.stop(10);
  await vi.advanceTimersByTimeAsync(5000);
  return times.map((t) => Math.round((t - start) / 1000));
}

describe("the full sync after a publish, when the grace is short", () => {
  it("comes when the grace of what was superseded ends", async () => {
    const [first, second, third] = await fullSyncTimes(60, 1_000_000);
    expect(second! - first!).toBe(61);
    // Nothing was published by that one: back to the interval.
    expect(third! - second!).toBe(900);
  });

  it("waits for the interval when the grace is longer (the default, a day)", async () => {
    const [first, second] = await fullSyncTimes(86_400, 1_000_000);
    expect(second! - first!).toBe(900);
  });
});
