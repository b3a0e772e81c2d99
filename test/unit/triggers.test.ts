import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TriggerCoalescer } from "../../src/sync/triggers.js";

describe("TriggerCoalescer", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("coalesces a burst of 500 notifications into one pass with every name", async () => {
    const runs: string[][] = [];
    const c = new TriggerCoalescer(
      250,
      (_repo, pkgs) => (runs.push(pkgs), Promise.resolve()),
      () => {},
    );
    for (let i = 0; i < 500; i++) c.notify("r", [`p${i % 50}`]);
    await vi.advanceTimersByTimeAsync(300);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toHaveLength(50);
  });

  it("starts at once after a quiet spell, and waits the window right after a pass", async () => {
    const runs: [string[], number][] = [];
    const c = new TriggerCoalescer(
      250,
      (_repo, pkgs) => (runs.push([pkgs, performance.now()]), Promise.resolve()),
      () => {},
    );
    const t0 = performance.now();
    c.notify("r", ["a"]);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs.map(([p]) => p)).toEqual([["a"]]);
    expect(runs[0]![1] - t0).toBeLessThan(5);
    // 100 ms after that pass: inside the window, so it waits for the window's end.
    await vi.advanceTimersByTimeAsync(99);
    c.notify("r", ["b"]);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(60);
    expect(runs.map(([p]) => p)).toEqual([["a"], ["b"]]);
    // Quiet again for longer than the window: immediate.
    await vi.advanceTimersByTimeAsync(1000);
    c.notify("r", ["c"]);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs.map(([p]) => p)).toEqual([["a"], ["b"], ["c"]]);
  });

  it("runs another pass for changes that arrive while one runs (dirty flag)", async () => {
    const runs: string[][] = [];
    let release: () => void = () => {};
    const c = new TriggerCoalescer(
      100,
      (_repo, pkgs) => {
        runs.push(pkgs);
        return new Promise<void>((r) => (release = r));
      },
      () => {},
    );
    c.notify("r", ["a"]);
    await vi.advanceTimersByTimeAsync(150);
    expect(runs).toEqual([["a"]]);
    c.notify("r", ["b"]);
    c.notify("r", ["c"]);
    await vi.advanceTimersByTimeAsync(500);
    expect(runs).toHaveLength(1); // still running: no overlap
    release();
    await vi.advanceTimersByTimeAsync(150);
    expect(runs).toEqual([["a"], ["b", "c"]]);
  });

  it("keeps repos independent and reports errors without stopping", async () => {
    const runs: string[] = [];
    const errors: string[] = [];
    const c = new TriggerCoalescer(
      50,
      (repo) => (
        runs.push(repo),
        repo === "bad" ? Promise.reject(new Error("boom")) : Promise.resolve()
      ),
      (repo) => errors.push(repo),
    );
    c.notify("good", ["x"]);
    c.notify("bad", ["y"]);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs.sort()).toEqual(["bad", "good"]);
    expect(errors).toEqual(["bad"]);
    c.notify("bad", ["z"]);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs).toHaveLength(3);
  });
});
