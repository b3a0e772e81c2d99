/**
 * The long fuzz run of the package parsers (issue 18; the bounded one is
 * test/fuzz/parsers.fuzz.test.ts). Same harness and targets, for a time or a count per parser,
 * with a random seed unless one is given, and each parser in a worker thread under a watchdog:
 * a synchronous loop that never returns cannot be interrupted in-process, so the main thread
 * watches the worker's input counter and terminates a worker stuck on one input.
 *
 *   npx tsc -p bench/tsconfig.json && node dist/bench/fuzz.js [--seconds 30 | --count 100000]
 *     [--target deb --target rpm ...] [--seed N] [--path P] [--max-ms 2000] [--hang-seconds 60]
 *   node dist/bench/fuzz.js --self-test     (the watchdog catches a parser that never returns)
 *
 * Prints the inputs tried per parser (and how many parsed, how many were refused, the slowest
 * and the largest memory growth); each failure with its seed and fast-check path, which replay
 * it: `--target T --seed S --path P`. Exit status 1 if any parser failed.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import fc from "fast-check";
import { PackratError } from "../src/errors.js";
import { fuzzProperty, newTally } from "../test/fuzz/harness.js";
import type { Bounds, Target, Tally } from "../test/fuzz/harness.js";
import { allTargets } from "../test/fuzz/targets.js";

interface Job {
  target: string;
  seconds: number | null;
  count: number | null;
  seed: number;
  path: string | null;
  bounds: Bounds;
  /** Int32Array[1]: the number of the input being judged (the watchdog's heartbeat). */
  progress: SharedArrayBuffer;
}

interface Report {
  target: string;
  tally: Tally;
  seed: number;
  failed: boolean;
  /** What failed, with the shrunk input's label. */
  error: string | null;
  /** fast-check's path to the failing input (with --seed, replays it). */
  path: string | null;
  hung: boolean;
}

/** --self-test: a parser that spins forever on its third input; the watchdog must say so. */
const SELF_TEST = "self-test-hang";

function findTarget(name: string): Target | undefined {
  if (name === SELF_TEST) {
    const deb = allTargets()[0]!;
    let calls = 0;
    const spin: Target["parse"] = () => {
      if (++calls === 3) for (;;);
      return Promise.reject(new PackratError("PACKRAT_PACKAGE_INVALID", "refused"));
    };
    return { ...deb, name, parse: spin };
  }
  return allTargets().find((t) => t.name === name);
}

async function runJob(job: Job): Promise<Report> {
  const target = findTarget(job.target);
  if (!target) throw new Error(`no fuzz target ${job.target}`);
  const tally = newTally();
  const progress = new Int32Array(job.progress);
  const property = fuzzProperty(target, tally, job.bounds, (i) => Atomics.store(progress, 0, i));
  const details = await fc.check(property, {
    seed: job.seed,
    ...(job.path !== null ? { path: job.path } : {}),
    numRuns: job.count ?? Number.MAX_SAFE_INTEGER,
    ...(job.seconds !== null
      ? { interruptAfterTimeLimit: job.seconds * 1000, markInterruptAsFailure: false }
      : {}),
  });
  return {
    target: job.target,
    tally,
    seed: job.seed,
    failed: details.failed,
    error: details.failed ? String(details.errorInstance) : null,
    path: details.failed ? details.counterexamplePath : null,
    hung: false,
  };
}

/** Run one target in a worker; terminate it if its input counter stops for hangMs. */
function runInWorker(job: Job, hangMs: number): Promise<Report> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: job });
    const progress = new Int32Array(job.progress);
    let last = -1;
    let since = Date.now();
    const watchdog = setInterval(() => {
      const now = Atomics.load(progress, 0);
      if (now !== last) {
        last = now;
        since = Date.now();
        return;
      }
      if (Date.now() - since < hangMs) return;
      clearInterval(watchdog);
      void worker.terminate();
      resolve({
        target: job.target,
        tally: { ...newTally(), tried: now + 1 },
        seed: job.seed,
        failed: true,
        error: `input #${now} did not return within ${hangMs / 1000} s (a synchronous hang)`,
        // The path of the n-th generated input is its number (while not yet shrinking).
        path: String(now),
        hung: true,
      });
    }, 250);
    worker.once("message", (report: Report) => {
      clearInterval(watchdog);
      resolve(report);
    });
    worker.once("error", (err) => {
      clearInterval(watchdog);
      reject(err);
    });
    worker.once("exit", (code) => {
      clearInterval(watchdog);
      if (code !== 0) reject(new Error(`${job.target}: worker exited with ${code}`));
    });
  });
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string" },
      count: { type: "string" },
      target: { type: "string", multiple: true },
      seed: { type: "string" },
      path: { type: "string" },
      "max-ms": { type: "string", default: "2000" },
      "max-growth-mib": { type: "string", default: "64" },
      "hang-seconds": { type: "string", default: "60" },
      "self-test": { type: "boolean", default: false },
    },
  });
  if (values["self-test"]) {
    const report = await runInWorker(
      {
        target: SELF_TEST,
        seconds: null,
        count: 10,
        seed: 1,
        path: null,
        bounds: { maxMs: 2000, maxGrowth: 64 << 20 },
        progress: new SharedArrayBuffer(4),
      },
      3000,
    );
    const ok = report.hung && report.path === "2";
    console.log(`watchdog self-test: ${ok ? "ok" : "FAILED"} (${report.error})`);
    process.exitCode = ok ? 0 : 1;
    return;
  }
  const names = allTargets().map((t) => t.name);
  const targets = values.target ?? names;
  for (const t of targets) if (!names.includes(t)) throw new Error(`unknown target ${t}`);
  const count = values.count !== undefined ? Number(values.count) : null;
  const seconds =
    values.seconds !== undefined ? Number(values.seconds) : count === null ? 30 : null;
  const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
  const bounds: Bounds = {
    maxMs: Number(values["max-ms"]),
    maxGrowth: Number(values["max-growth-mib"]) * 2 ** 20,
  };
  console.log(
    `fuzzing ${targets.join(", ")}: ${seconds !== null ? `${seconds} s` : `${count} inputs`} each, seed ${seed}, bounds ${bounds.maxMs} ms and ${mib(bounds.maxGrowth)} per input`,
  );
  const reports: Report[] = [];
  for (const target of targets) {
    const started = Date.now();
    const report = await runInWorker(
      {
        target,
        seconds,
        count,
        seed,
        path: values.path ?? null,
        bounds,
        progress: new SharedArrayBuffer(4),
      },
      Number(values["hang-seconds"]) * 1000,
    );
    reports.push(report);
    const t = report.tally;
    const rate = t.tried / ((Date.now() - started) / 1000);
    console.log(
      `${target.padEnd(8)} ${String(t.tried).padStart(8)} inputs (${rate.toFixed(0)}/s): ${t.records} records, ${t.refused} refused; slowest ${t.slowestMs.toFixed(0)} ms, most growth ${mib(t.largestGrowth)}${report.failed ? "  FAILED" : ""}`,
    );
  }
  const failures = reports.filter((r) => r.failed);
  for (const r of failures) {
    console.log(
      `\n${r.target} FAILED: ${r.error}\n  replay: node dist/bench/fuzz.js --target ${r.target} --seed ${r.seed} --path ${r.path} --count 1`,
    );
  }
  const total = reports.reduce((n, r) => n + r.tally.tried, 0);
  console.log(`\n${total} inputs in all, ${failures.length} parser(s) failed`);
  process.exitCode = failures.length > 0 ? 1 : 0;
}

if (isMainThread) {
  await main();
} else {
  parentPort!.postMessage(await runJob(workerData as Job));
}
