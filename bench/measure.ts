/**
 * Running one timed step in a child process: wall time from spawn to exit, CPU time and peak RSS
 * from GNU time (`/usr/bin/time -f '%M %U %S'`, the largest resident set of the process and its children,
 * which is what a peer tool's pipeline of processes costs at its worst moment).
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

export interface StepResult {
  ms: number;
  /** User + system CPU time of the process and its children: steadier than wall time on a busy machine. */
  cpuMs: number;
  rssKb: number;
  stdout: string;
  /** Stopped at StepOptions.timeoutMs: ms is a lower bound. */
  timedOut?: boolean;
}

export interface StepOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each stdout line as it arrives (the daemon case talks over stdout). */
  onLine?: (line: string) => void;
  /** Receives the child's stdin (the daemon case closes it to stop the child). */
  onStdin?: (stdin: NodeJS.WritableStream) => void;
  /** Stop the step (its whole process group) after this long; the result is a lower bound. */
  timeoutMs?: number;
}

export async function runStep(
  argv: readonly string[],
  opts: StepOptions = {},
): Promise<StepResult> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-bench-time-"));
  const rssFile = path.join(dir, "rss");
  try {
    const started = performance.now();
    const child = spawn("/usr/bin/time", ["-f", "%M %U %S", "-o", rssFile, ...argv], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            timedOut = true;
            if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
          }, opts.timeoutMs);
    opts.onStdin?.(child.stdin);
    if (!opts.onStdin) child.stdin.end();
    let stdout = "";
    let stderr = "";
    let partial = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      stdout += chunk;
      if (!opts.onLine) return;
      partial += chunk;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) opts.onLine(line);
    });
    child.stderr.on("data", (chunk: string) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", resolve);
    });
    if (timer) clearTimeout(timer);
    const ms = performance.now() - started;
    if (timedOut) return { ms, cpuMs: Number.NaN, rssKb: Number.NaN, stdout, timedOut };
    if (code !== 0) {
      throw new Error(
        `${argv.join(" ").slice(0, 300)} exited ${code}: ${stderr.slice(-2000) || stdout.slice(-2000)}`,
      );
    }
    // GNU time writes "Command exited with non-zero status" lines first; the figures come last.
    const last = (await readFile(rssFile, "utf8")).trim().split("\n").pop() ?? "";
    const [rss, user, sys] = last.split(" ").map(Number);
    return { ms, cpuMs: ((user ?? NaN) + (sys ?? NaN)) * 1000, rssKb: rss ?? NaN, stdout };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A bash script as one step (peers are pipelines: index, compress, sign). */
export function runScript(script: string, opts: StepOptions = {}): Promise<StepResult> {
  return runStep(["bash", "-euo", "pipefail", "-c", script], opts);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}
