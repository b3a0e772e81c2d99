/**
 * The state-DB lock is a kernel lock (flock on `<state_db>.lock`): the PID in the file is for
 * humans, so a lock file naming a live unrelated process (a reboot reused the PID) never stops a
 * start, while a live agent's lock does, and a SIGKILLed agent's lock is free at once.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireStateLock, lockTool, type StateLock } from "../../src/agent/lock.js";
import { PackratError } from "../../src/errors.js";

/** The built lock module (global-setup builds dist/), for a holder in another process. */
const BUILT_LOCK = fileURLToPath(new URL("../../dist/src/agent/lock.js", import.meta.url));

/** Another agent process holding the lock until killed; resolves once it holds it. */
async function holdInChild(stateDb: string): Promise<ChildProcess> {
  const script = `
    const { acquireStateLock } = await import(${JSON.stringify(BUILT_LOCK)});
    acquireStateLock(${JSON.stringify(stateDb)});
    console.log("locked");
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("locked")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`lock holder exited ${code}: ${err}`)));
  });
  return child;
}

function expectLocked(fn: () => unknown): PackratError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PackratError);
    expect((err as PackratError).code).toBe("PACKRAT_STATE_LOCKED");
    return err as PackratError;
  }
  throw new Error("expected PACKRAT_STATE_LOCKED, the lock was taken");
}

describe("state DB lock", () => {
  let dir: string;
  let stateDb: string;
  const held: StateLock[] = [];
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "packrat-lock-"));
    stateDb = path.join(dir, "state.db");
  });
  afterEach(async () => {
    for (const l of held.splice(0)) l.release();
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("starts although the lock file names a live, unrelated process (a reboot reused the PID)", async () => {
    const unrelated = spawn("sleep", ["30"], { stdio: "ignore" });
    children.push(unrelated);
    expect(unrelated.pid).toBeGreaterThan(0);
    await writeFile(`${stateDb}.lock`, `${unrelated.pid}\n`);
    // Also PID 1, as an agent that was PID 1 in its container leaves it.
    const lock = acquireStateLock(stateDb);
    held.push(lock);
    expect(await readFile(`${stateDb}.lock`, "utf8")).toBe(`${process.pid}\n`);
    lock.release();
    held.pop();
    await writeFile(`${stateDb}.lock`, "1\n");
    held.push(acquireStateLock(stateDb));
  });

  it("refuses a second agent while the first lives, naming its PID", async () => {
    const child = await holdInChild(stateDb);
    children.push(child);
    const err = expectLocked(() => acquireStateLock(stateDb));
    expect(err.message).toContain(`pid ${child.pid}`);
    expect(err.message).toContain(`${stateDb}.lock`);
    // In one process too: a second context on the same DB is refused.
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    held.push(acquireStateLock(stateDb));
    expectLocked(() => acquireStateLock(stateDb));
  });

  it("takes over the lock of a SIGKILLed holder, whose PID stays in the file", async () => {
    const child = await holdInChild(stateDb);
    children.push(child);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect((await readFile(`${stateDb}.lock`, "utf8")).trim()).toBe(String(child.pid));
    held.push(acquireStateLock(stateDb));
  });

  it("two agents started together: exactly one wins", async () => {
    const results = await Promise.allSettled(
      [0, 1, 2, 3].map(async () => {
        const c = await holdInChild(stateDb);
        children.push(c);
        return c;
      }),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) {
      if (r.status === "rejected") expect(String(r.reason)).toMatch(/PACKRAT_STATE_LOCKED|in use/);
    }
  });

  it("release leaves the file (never unlinked) and frees the lock", () => {
    const lock = acquireStateLock(stateDb);
    lock.release();
    lock.release();
    const again = acquireStateLock(stateDb);
    held.push(again);
    expect(again.path).toBe(`${stateDb}.lock`);
  });

  it("refuses a symbolic link at the lock path, and names a missing flock(1)", async () => {
    await symlink(path.join(dir, "elsewhere"), `${stateDb}.lock`);
    expect(() => acquireStateLock(stateDb)).toThrow(/symbolic link/);
    await rm(`${stateDb}.lock`);
    const before = lockTool.flock;
    lockTool.flock = path.join(dir, "no-such-flock");
    try {
      expect(() => acquireStateLock(stateDb)).toThrow(/flock\(1\) was not found/);
    } finally {
      lockTool.flock = before;
    }
  });
});
