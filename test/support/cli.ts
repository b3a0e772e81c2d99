/**
 * Spawning the real CLI (dist/, built by global-setup) for end-to-end tests and the benches:
 * `runCli` to completion, `startCli` in the background. The one way tests start the agent.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * bin/packrat-agent, found by walking up from this file: the same path whether this runs from
 * the sources (vitest) or compiled under dist/ (bench/soak-crash.ts).
 */
function findBin(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "bin", "packrat-agent");
    if (existsSync(candidate) && existsSync(path.join(dir, "package.json"))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`bin/packrat-agent not found above ${import.meta.url}`);
    dir = up;
  }
}
export const BIN = findBin();

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string>;
}

export interface RunningCli {
  child: ChildProcess;
  /** Everything written to stderr so far (JSON log lines). */
  readonly stderr: string;
  readonly stdout: string;
  /** Resolves when a log line's msg matches. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the process has exited, with all it wrote. */
  exited: Promise<CliResult>;
  kill(signal?: NodeJS.Signals): void;
}

/** Run `packrat-agent ARGS` to completion (SIGKILL after `timeoutMs`, default 60 s). */
export async function runCli(
  args: string[],
  opts: CliOptions & { timeoutMs?: number } = {},
): Promise<CliResult> {
  const running = startCli(args, opts);
  const timer = setTimeout(() => running.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  try {
    return await running.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Start `packrat-agent ARGS` in the background (e.g. `run`). */
export function startCli(args: string[], opts: CliOptions = {}): RunningCli {
  const child = spawn(process.execPath, [BIN, ...args], {
    // Every pass of every agent the tests start compares its in-memory state model with SQLite.
    env: { PACKRAT_CHECK_MODEL: "1", ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let stdout = "";
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      const line = stderr.split("\n").find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    child,
    get stderr() {
      return stderr;
    },
    get stdout() {
      return stdout;
    },
    waitForLog(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`timed out waiting for log ${re}; stderr:\n${stderr.slice(-3000)}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
        check();
      });
    },
    exited,
    kill: (signal = "SIGTERM") => child.kill(signal),
  };
}
