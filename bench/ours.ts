/**
 * Our side of every case, run as its own process so its wall time and peak RSS are its own
 * (the fake master, which holds the whole corpus in memory, lives in the bench driver).
 * The argument is one JSON object naming the operation. The last stdout line is a JSON result;
 * `ms` covers the operation only: a daemon is already running when a change arrives, so
 * module loading and opening the state DB are not part of its answer time.
 *
 *   node dist/bench/ours.js '{"op":"full","masterUrl":...}'
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { describeError } from "../src/errors.js";
import { createLayouts } from "../src/layout/index.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../src/layout/index.js";
import { silentLogger } from "../src/log.js";
import { loadSigner } from "../src/signing/openpgp-signer.js";
import { openStateStore } from "../src/state/db.js";
import { MirrorDaemon } from "../src/sync/daemon.js";
import { SyncEngine } from "../src/sync/engine.js";
import { verifyTree } from "../src/sync/verify-tree.js";
import { createSignatureVerifier } from "../src/signing/verify.js";
import { createMasterClient } from "../src/sync/master-client.js";

export interface OursArgs {
  op: "full" | "deep" | "incremental" | "daemon" | "series";
  masterUrl: string;
  mirror: string;
  root: string;
  stateDb: string;
  keyFile: string | null;
  downloadConcurrency?: number;
  /**
   * incremental: the repo and the package names a poll would have named. series: the repo;
   * the package names then arrive on stdin, one line per pass, as polls reach a daemon.
   */
  repo?: string;
  packages?: string[];
  /** daemon: trigger_debounce_ms. */
  debounceMs?: number;
}

export interface OursResult {
  ms: number;
  /** CPU time (user + system, every thread) of the operation alone. */
  cpuMs: number;
  report?: unknown;
  /** BENCH_SPANS=1: wall time (ms) and calls of the engine's and client's steps. */
  spans?: Record<string, { ms: number; calls: number }>;
}

const spans: Record<string, { ms: number; calls: number }> = {};

/**
 * Wall-time spans without touching src/: wrap methods on the prototype (or object) so each
 * call's time, awaits included, adds to its span. CPU profiles miss time spent waiting on the
 * disk, the master or the thread pool; these do not. Nested spans overlap, as in a flame chart.
 */
function traceMethods(target: object, label: string, names: readonly string[]): void {
  const obj = target as Record<string, unknown>;
  for (const name of names) {
    const original = obj[name];
    if (typeof original !== "function") continue;
    obj[name] = function (this: unknown, ...a: unknown[]): unknown {
      const started = performance.now();
      const span = (spans[`${label}.${name}`] ??= { ms: 0, calls: 0 });
      span.calls++;
      const done = () => (span.ms += performance.now() - started);
      const out: unknown = (original as (...x: unknown[]) => unknown).apply(this, a);
      if (out instanceof Promise) return out.finally(done);
      done();
      return out;
    };
  }
}

async function main(args: OursArgs): Promise<OursResult> {
  const log = silentLogger();
  const store = openStateStore(args.stateDb);
  const client = createMasterClient({
    host: args.masterUrl,
    name: args.mirror,
    psk: null,
    proxy: null,
    requestTimeoutMs: 60_000,
    log,
  });
  const signer = args.keyFile
    ? await loadSigner({ keyFile: args.keyFile, signKeyId: null, passphraseFile: null })
    : null;
  const layouts = createLayouts();
  if (process.env.BENCH_SPANS) {
    traceMethods(SyncEngine.prototype, "engine", [
      "syncRepos",
      "publish",
      "metaFor",
      "cleanup",
      "planRepos",
      "rowsFor",
      "checkSanity",
      "fetchOne",
      "writeRootFiles",
      "parseNew",
      "packageSignature",
    ]);
    traceMethods(client, "client", ["listPackageFiles", "getRepos", "heartbeat", "checkVersion"]);
    traceMethods(store, "store", [
      "getFingerprint",
      "putFingerprint",
      "getPackageMeta",
      "putPackageMeta",
      "replacePackageFiles",
      "recordGeneration",
      "listPackageFiles",
      "listPublishedFiles",
      "transaction",
    ]);
    if (signer)
      traceMethods(signer, "signer", [
        "signCleartext",
        "signDetachedArmored",
        "signDetachedBinary",
      ]);
    for (const name of ["apt", "yum", "pacman", "json"]) {
      const layout = layouts.layoutFor(name);
      if (layout) traceMethods(layout, `layout-${name}`, ["render", "parse"]);
    }
  }
  const engine = new SyncEngine({
    settings: {
      rootDir: args.root,
      keepFileList: [],
      downloadConcurrency: args.downloadConcurrency ?? 4,
      deepVerifyEvery: 0,
      maxRemovalRatio: 0.5,
      metadataGraceSeconds: 86400,
    },
    client,
    store,
    log,
    signer,
    layoutFor: layouts.layoutFor,
    forgetRepos: layouts.forgetRepos,
    layoutOptions: { ...DEFAULT_LAYOUT_OPTIONS, mirrorDescription: "packrat bench" },
  });
  try {
    if (args.op === "daemon") return await runDaemon(args, engine, client, store, log);
    if (args.op === "series") return await runSeries(args, engine);
    const started = performance.now();
    const cpu = process.cpuUsage();
    if (args.op === "deep") {
      // What `packrat-agent verify --deep` runs: every repo read back as its clients would,
      // and every package file re-hashed (issue 25's "verify --deep" row).
      const verified = await verifyTree({
        root: args.root,
        store,
        keepFileList: [],
        deep: true,
        verifier: signer ? await createSignatureVerifier(signer.publicKeyArmored()) : null,
        rootFiles: [],
      });
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      if (!verified.ok)
        throw new Error(
          `verify --deep found problems: ${JSON.stringify(verified.problems.slice(0, 5))}`,
        );
      return {
        ms,
        cpuMs: (used.user + used.system) / 1000,
        report: { hashed: verified.filesHashed, published: [] },
      };
    }
    const report =
      args.op === "incremental"
        ? await engine.incrementalSync(args.repo ?? "", args.packages ?? [])
        : await engine.fullSync();
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    if (report.failed.length > 0 || report.refused) {
      throw new Error(`sync did not finish cleanly: ${JSON.stringify(report).slice(0, 2000)}`);
    }
    return { ms, cpuMs, report, ...(process.env.BENCH_SPANS ? { spans } : {}) };
  } finally {
    await client.close();
    store.close();
  }
}

/**
 * One process applying one change after another, as the running daemon does: it warms its
 * render caches first (SyncEngine.warm), then applies changes. Prints "ready", then
 * for each package name read from stdin one JSON line {ms, cpuMs, report}.
 */
async function runSeries(args: OursArgs, engine: SyncEngine): Promise<OursResult> {
  const started = performance.now();
  // As the daemon does after its first full sync: fill the render caches.
  await engine.warm(args.repo ?? "");
  process.stdout.write("ready\n");
  // BENCH_SERIES_PROF=<dir>: a V8 CPU profile of the changes alone (not the warm-up before
  // them, nor the settle after), which is what case b measures.
  const profDir = process.env.BENCH_SERIES_PROF;
  const profiler = profDir ? new Session() : null;
  if (profiler) {
    profiler.connect();
    await profiler.post("Profiler.enable");
    await profiler.post("Profiler.start");
  }
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const name = line.trim();
    if (!name) continue;
    const t0 = performance.now();
    const cpu = process.cpuUsage();
    const report = await engine.incrementalSync(args.repo ?? "", [name]);
    const ms = performance.now() - t0;
    const used = process.cpuUsage(cpu);
    if (report.failed.length > 0) throw new Error(`pass failed: ${JSON.stringify(report.failed)}`);
    process.stdout.write(
      `${JSON.stringify({ ms, cpuMs: (used.user + used.system) / 1000, report, ...(process.env.BENCH_SPANS ? { spans } : {}) })}\n`,
    );
    for (const k of Object.keys(spans)) delete spans[k];
  }
  if (profiler && profDir) {
    const { profile } = await profiler.post("Profiler.stop");
    await writeFile(
      path.join(profDir, `series-${args.repo ?? ""}-${process.pid}.cpuprofile`),
      JSON.stringify(profile),
    );
    profiler.disconnect();
  }
  // What the daemon does once the repo is quiet: the complete generation (Packages.xz).
  await engine.settle(args.repo ?? "");
  const used = process.cpuUsage();
  return { ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
}

/**
 * The daemon as `run` drives it: prints "ready" after its first full sync, then
 * "synced <epoch ms>" after every incremental pass; stops when stdin closes.
 */
async function runDaemon(
  args: OursArgs,
  engine: SyncEngine,
  client: ReturnType<typeof createMasterClient>,
  store: ReturnType<typeof openStateStore>,
  log: ReturnType<typeof silentLogger>,
): Promise<OursResult> {
  let ready = false;
  const daemon = new MirrorDaemon({
    engine,
    client,
    store,
    log,
    settings: {
      fullSyncInterval: 24 * 3600,
      pollTimeout: 30,
      triggerDebounceMs: args.debounceMs ?? 250,
    },
    onSync: (report, err) => {
      if (err) {
        process.stderr.write(`sync failed: ${describeError(err)}\n`);
        return;
      }
      const now = performance.timeOrigin + performance.now();
      if (!ready) {
        ready = true;
        process.stdout.write("ready\n");
      } else if (report?.kind === "incremental") {
        process.stdout.write(`synced ${now}\n`);
      }
    },
  });
  const started = performance.now();
  daemon.start();
  await new Promise<void>((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
  await daemon.stop(10_000);
  const used = process.cpuUsage();
  return { ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
}

const result = await main(JSON.parse(process.argv[2] ?? "{}") as OursArgs);
process.stdout.write(`${JSON.stringify(result)}\n`);
