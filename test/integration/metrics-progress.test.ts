import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createProgress } from "../../src/agent/cli/progress.js";
import { startMetricsServer, type MetricsServer } from "../../src/agent/metrics.js";
import { silentLogger } from "../../src/log.js";
import {
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";

describe("metrics endpoint", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;
  let metrics: MetricsServer;

  beforeEach(async () => {
    fx = await startMirrorFixture({ debs: [["hello", "1.0"]], json: [["tool", "1"]] });
    h = makeEngine(fx);
  });
  afterEach(async () => {
    await metrics.close();
    await h.close();
    await fx.close();
  });

  it("exports sync counts, downloads and freshness gauges on /metrics", async () => {
    metrics = await startMetricsServer("127.0.0.1:0", h.store, silentLogger());
    const report = await h.engine.fullSync();
    metrics.recordSync(report, null);
    const res = await fetch(`http://${metrics.address}/metrics`);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toMatch(/^packrat_agent_syncs_total\{kind="full",result="ok"\} 1$/m);
    expect(body).toMatch(/^packrat_agent_downloads_total 2$/m);
    expect(body).toMatch(/^packrat_agent_publishes_total 2$/m);
    const since = /^packrat_agent_seconds_since_last_successful_sync ([\d.]+)$/m.exec(body);
    expect(Number(since?.[1])).toBeGreaterThanOrEqual(0);
    expect(Number(since?.[1])).toBeLessThan(60);
    expect(body).toMatch(/^packrat_agent_seconds_since_master_contact [\d.]+$/m);
    expect((await fetch(`http://${metrics.address}/other`)).status).toBe(404);
  });
});

describe("download progress", () => {
  it("prints a plain line per tenth when not on a terminal", () => {
    const lines: string[] = [];
    const stream = {
      isTTY: false,
      write: (s: string) => lines.push(s),
    } as unknown as NodeJS.WriteStream;
    const p = createProgress(stream);
    p.hooks.onPlan?.(20, null);
    for (let i = 0; i < 20; i++) {
      p.hooks.onBytes?.(1024);
      p.hooks.onFile?.();
    }
    p.stop();
    expect(lines.length).toBe(11); // the first file, then every tenth up to 100%
    expect(lines[0]).toMatch(/^downloads: 1\/20 files/);
    expect(lines.at(-1)).toMatch(/^downloads: 20\/20 files, 20\.0 KiB, .*\/s\n$/);
  });
});
