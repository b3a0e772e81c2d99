/**
 * The crash harness: start the real CLI, SIGKILL it at a chosen moment (a delay after start,
 * or the Nth log line matching a pattern), check that no partial file sits at a final path,
 * restart to completion, and check the tree as its clients read it (verify --deep).
 * Used by test/integration/crash.test.ts (CI-sized) and bench/soak-crash.ts (longer).
 */
import { rm } from "node:fs/promises";
import { createSignatureVerifier } from "../../src/signing/verify.js";
import { openStateStore } from "../../src/state/db.js";
import { verifyTree } from "../../src/sync/verify-tree.js";
import { startCli } from "../support/cli.js";
import { partialFiles, type CliMirror } from "../support/cli-mirror.js";
import { readFile } from "node:fs/promises";
import path from "node:path";

export type KillAt = ({ afterMs: number } | { onLog: RegExp; nth?: number; extraMs?: number }) & {
  /** Runs once the process logs this, before the kill point is counted (e.g. master changes). */
  after?: { log: RegExp; action: () => Promise<void> };
};

export interface KillOutcome {
  /** false when the process finished before the kill point (nothing was interrupted). */
  killed: boolean;
  partial: string[];
  /** ms from the restart to a finished sync. */
  recoverMs: number;
  problems: string[];
}

function countMatches(text: string, re: RegExp): number {
  return text.split("\n").filter((l) => re.test(l)).length;
}

/** Start `args`, kill at `at`, return whether it was still running. */
export async function startAndKill(m: CliMirror, args: string[], at: KillAt): Promise<boolean> {
  const child = startCli([...args, "--config", m.confPath]);
  let done = false;
  void child.exited.then(() => (done = true));
  const waitForLine = (re: RegExp, nth: number, from: number) =>
    new Promise<void>((resolve) => {
      const started = Date.now();
      const tick = () => {
        if (done || countMatches(child.stderr, re) - from >= nth || Date.now() - started > 30_000)
          resolve();
        else setTimeout(tick, 2);
      };
      tick();
    });
  let baseline = 0;
  if (at.after) {
    const { log, action } = at.after;
    await waitForLine(log, 1, 0);
    if (!done) await action();
    if ("onLog" in at) baseline = countMatches(child.stderr, at.onLog);
  }
  if ("afterMs" in at) {
    await Promise.race([new Promise((r) => setTimeout(r, at.afterMs)), child.exited]);
  } else {
    await waitForLine(at.onLog, at.nth ?? 1, baseline);
    if (at.extraMs) await new Promise((r) => setTimeout(r, at.extraMs));
  }
  const killed = !done;
  if (killed) child.child.kill("SIGKILL");
  await child.exited;
  return killed;
}

/** verify --deep in process (the same code the CLI runs), as a list of problem lines. */
export async function verifyInProcess(m: CliMirror): Promise<string[]> {
  const store = openStateStore(m.stateDb, { readonly: true });
  try {
    const key = await readFile(path.join(m.root, "repo-key"), "utf8");
    const report = await verifyTree({
      root: m.root,
      store,
      keepFileList: [],
      deep: true,
      verifier: await createSignatureVerifier(key),
      rootFiles: ["repo-key", "repo-key.gpg"],
    });
    return report.problems.map((p) => `${p.path}: ${p.problem}`);
  } finally {
    store.close();
  }
}

/**
 * One crash round: kill, check for partial files, restart `sync` to completion, verify.
 * `beforeRestart` runs between the kill and the restart (e.g. what a reboot leaves behind).
 */
export async function crashRound(
  m: CliMirror,
  args: string[],
  at: KillAt,
  beforeRestart?: () => Promise<void>,
): Promise<KillOutcome> {
  const killed = await startAndKill(m, args, at);
  const partial = await partialFiles(m);
  await beforeRestart?.();
  const started = Date.now();
  const sync = await m.cli(["sync"]);
  const recoverMs = Date.now() - started;
  const problems =
    sync.code === 0
      ? await verifyInProcess(m)
      : [`restart failed (exit ${sync.code}): ${sync.stderr.slice(-2000)}`];
  return { killed, partial, recoverMs, problems };
}

/** Forget everything on the agent's side: the next sync is an initial one. */
export async function wipeAgent(m: CliMirror): Promise<void> {
  await rm(m.root, { recursive: true, force: true });
  await rm(path.dirname(m.stateDb), { recursive: true, force: true });
}
