/**
 * The benchmark driver (`npm run bench`, issue 9): generates the corpus, serves it from the fake
 * master, and runs every case side by side with the established tools on the same files:
 *   a. cold: index and sign N packages already on disk;
 *   b. +1: one new package into the N-package repo, until a signed entry point names it;
 *   c. no-change full sync, and a deep verify against sha256sum of the same bytes;
 *   d. trigger latency: a tag on the master until the published index names the package;
 *   e. download throughput of large files against curl;
 *   f. peak RSS of every run (GNU time).
 * Writes bench/results/latest.{json,md}, bench/results/ratios.svg (and n<N>.* of the same) and
 * bench/RESULTS.md (issue 25's targets, from the last run at each N).
 *
 *   node dist/bench/run.js [--n 1000] [--runs 3] [--work DIR] [--cases a,b,c,d,e]
 *                          [--triggers 50] [--download-mb 256] [--slow-s 60]
 *                          [--peer-timeout-s 600] [--peer-cold-timeout-s S|tool=S,...]
 *                          [--skip-peers a,b]
 *                          [--formats deb,rpm,pacman] [--no-peers]
 *                          [--debounces 250,0]
 * Environment: BENCH_SPANS=1 logs where our time goes (wall-time spans of the engine's steps);
 * BENCH_CPU_PROF=<dir> writes a V8 CPU profile of every run of ours; BENCH_SERIES_PROF=<dir> one
 * of case b's changes alone (without the process's warm-up and settle).
 */
import { link, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { generateSigningKey } from "../src/signing/keygen.js";
import { startFakeMaster, type FakeMaster } from "../src/demo/fake-master.js";
import { FORMATS, buildPackage, generateCorpus, type Corpus, type Format } from "./generate.js";
import { median, percentile, runScript, runStep, type StepResult } from "./measure.js";
import type { OursArgs, OursResult } from "./ours.js";
import { haveTool, listFiles, peersFor, setupGpg, type Peer } from "./peers.js";
import { writeReport, writeSummary, type BenchResults, type Measurement } from "./report.js";

interface Options {
  n: number;
  runs: number;
  work: string;
  cases: Set<string>;
  triggers: number;
  downloadMb: number;
  slowMs: number;
  peerTimeoutMs: number;
  /** Cold runs of a peer stop after this (default: peerTimeoutMs); see --peer-cold-timeout-s. */
  peerColdTimeoutMs: (tool: string) => number;
  /** Peers left out of this run (--skip-peers). */
  skipPeers: Set<string>;
  formats: Format[];
  peers: boolean;
  debounces: number[];
}

function parseOptions(argv: readonly string[]): Options {
  const get = (name: string, fallback: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
  };
  const n = Number(get("n", "1000"));
  return {
    n,
    runs: Number(get("runs", "3")),
    work: path.resolve(get("work", path.join(os.tmpdir(), `packrat-bench-${n}`))),
    cases: new Set(get("cases", "a,b,c,d,e").split(",")),
    triggers: Number(get("triggers", "50")),
    downloadMb: Number(get("download-mb", "256")),
    slowMs: Number(get("slow-s", "60")) * 1000,
    peerTimeoutMs: Number(get("peer-timeout-s", "600")) * 1000,
    // "120" for every peer, or "repo-add=120,reprepro=300" for some (the rest: --peer-timeout-s).
    peerColdTimeoutMs: (tool: string) => {
      const spec = get("peer-cold-timeout-s", "");
      const all = Number(get("peer-timeout-s", "600")) * 1000;
      if (spec === "") return all;
      if (!spec.includes("=")) return Number(spec) * 1000;
      const mine = spec.split(",").find((e) => e.split("=")[0] === tool);
      return mine ? Number(mine.split("=")[1]) * 1000 : all;
    },
    skipPeers: new Set(get("skip-peers", "").split(",").filter(Boolean)),
    formats: get("formats", FORMATS.join(","))
      .split(",")
      .filter((f): f is Format => (FORMATS as readonly string[]).includes(f)),
    peers: !argv.includes("--no-peers"),
    debounces: get("debounces", "250,0").split(",").map(Number),
  };
}

const REPOS: Record<Format, { repo: string; mirror: string; dir: string; dv: string }> = {
  deb: { repo: "bench-apt", mirror: "m-apt", dir: "apt", dv: "bookworm" },
  rpm: { repo: "bench-yum", mirror: "m-yum", dir: "yum", dv: "el9" },
  pacman: { repo: "bench-pacman", mirror: "m-pacman", dir: "pacman", dv: "arch" },
};
const PACKAGE_SUFFIXES = [".deb", ".rpm", ".pkg.tar.zst"];
const TAG = "prod";
const DIST = path.resolve(import.meta.dirname);

function log(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

class Bench {
  readonly results: Measurement[] = [];
  master!: FakeMaster;
  corpus!: Corpus;
  keyFile = "";
  /** Index of the next package made past the corpus (+1 and trigger cases). */
  private nextExtra: number;

  constructor(readonly opts: Options) {
    this.nextExtra = opts.n;
  }

  async setup(): Promise<void> {
    const started = performance.now();
    // Only the formats asked for are made and served: at N = 100,000 each is 100,000 files and,
    // in the fake master, 100,000 buffers.
    const formats = this.opts.formats;
    this.corpus = await generateCorpus(path.join(this.opts.work, "corpus"), this.opts.n, formats);
    log(
      `corpus of ${this.opts.n} x ${formats.join(", ")} ready in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    this.keyFile = path.join(this.opts.work, "ours-key.asc");
    const key = await generateSigningKey({ name: "Packrat Bench", type: "ed25519" });
    await writeFile(this.keyFile, key.armoredSecretKey, { mode: 0o600 });

    this.master = await startFakeMaster({ minPollTimeout: 1 });
    const m = this.master;
    m.addDistroVersion({
      name: "bookworm",
      distro: "debian",
      version: "bookworm",
      fileType: "deb",
    });
    m.addDistroVersion({ name: "el9", distro: "rhel", version: "9", fileType: "rpm" });
    m.addDistroVersion({ name: "arch", distro: "arch", version: null, fileType: "pacman" });
    m.addDistroVersion({ name: "none", distro: "none", version: null, fileType: "json" });
    const managers: Record<Format, string> = { deb: "apt", rpm: "yum", pacman: "pacman" };
    for (const format of formats) {
      const r = REPOS[format];
      m.addRepo({
        name: r.repo,
        filesystemDir: r.dir,
        managerType: managers[format],
        distroVersions: [r.dv],
        tag: TAG,
      });
      m.addMirror({ name: r.mirror, repos: [r.repo] });
      for (const e of this.corpus.entries[format]) {
        m.addPackageFile({
          package: e.name,
          distroVersion: r.dv,
          version: e.version,
          type: format,
          arch: e.arch,
          filename: e.filename,
          content: await readFile(path.join(this.corpus.dir, format, e.filename)),
          tags: [TAG],
        });
      }
    }
  }

  /** A package past the corpus: written under work/extra and, if asked, added to the master. */
  async extraPackage(
    format: Format,
    addToMaster: boolean,
  ): Promise<{ name: string; file: string }> {
    const { entry, bytes } = buildPackage(format, this.nextExtra++);
    const dir = path.join(this.opts.work, "extra", format);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, entry.filename);
    await writeFile(file, bytes);
    if (addToMaster) {
      this.master.addPackageFile({
        package: entry.name,
        distroVersion: REPOS[format].dv,
        version: entry.version,
        type: format,
        arch: entry.arch,
        filename: entry.filename,
        content: bytes,
        tags: [TAG],
      });
    }
    return { name: entry.name, file };
  }

  ours(args: Omit<OursArgs, "masterUrl" | "keyFile">, keyFile: string | null = this.keyFile) {
    const full: OursArgs = { ...args, masterUrl: this.master.url, keyFile };
    // BENCH_CPU_PROF=<dir>: a V8 CPU profile of every run of ours (open in Chrome DevTools).
    const prof = process.env.BENCH_CPU_PROF;
    const flags = prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [];
    const step = runStep([
      process.execPath,
      ...flags,
      path.join(DIST, "ours.js"),
      JSON.stringify(full),
    ]);
    if (process.env.BENCH_SPANS) {
      void step.then((s) => {
        const spans = lastJson<OursResult>(s.stdout).spans ?? {};
        const top = Object.entries(spans)
          .sort((a, b) => b[1].ms - a[1].ms)
          .map(([k, v]) => `${k} ${v.ms.toFixed(0)}ms/${v.calls}`);
        log(`spans ${args.op} ${args.mirror}: ${top.join(", ")}`);
      });
    }
    return step;
  }

  record(
    kase: string,
    format: string,
    tool: string,
    steps: readonly StepResult[],
    ms: (s: StepResult) => number = (s) => s.ms,
    note?: string,
  ): Measurement {
    const m: Measurement = {
      case: kase,
      format,
      tool,
      runsMs: steps.map(ms),
      medianMs: median(steps.map(ms)),
      medianCpuMs: median(steps.map((s) => s.cpuMs)),
      maxRssKb: Math.max(...steps.map((s) => s.rssKb)),
      ...(note ? { note } : {}),
      ...(steps.some((s) => s.timedOut) ? { timedOut: true } : {}),
    };
    this.results.push(m);
    log(
      `${kase} ${format} ${tool}: median ${m.medianMs.toFixed(1)} ms over ${steps.length}, peak RSS ${(m.maxRssKb / 1024).toFixed(0)} MB`,
    );
    return m;
  }

  /** Repeat a step up to `runs` times, but only once if a single run takes longer than slowMs. */
  async repeat(fn: (i: number) => Promise<StepResult>): Promise<StepResult[]> {
    const out: StepResult[] = [];
    for (let i = 0; i < this.opts.runs; i++) {
      const r = await fn(i);
      out.push(r);
      if (r.ms > this.opts.slowMs || r.timedOut) break;
    }
    return out;
  }

  oursDir(format: Format, name: string): { root: string; stateDb: string } {
    const base = path.join(this.opts.work, "ours", format, name);
    return { root: path.join(base, "root"), stateDb: path.join(base, "state.db") };
  }

  // ---- a. cold ---------------------------------------------------------------------------

  async cold(format: Format, peers: readonly Peer[]): Promise<void> {
    const r = REPOS[format];
    // The template: one full sync that downloads everything; its package files are then
    // hard-linked into each measured root, which starts with a fresh state DB.
    const template = this.oursDir(format, "template");
    await rm(path.dirname(template.root), { recursive: true, force: true });
    await this.ours({ op: "full", mirror: r.mirror, ...template });
    const packages = (await listFiles(template.root)).filter((f) =>
      PACKAGE_SUFFIXES.some((s) => f.endsWith(s)),
    );
    if (packages.length < this.opts.n) throw new Error(`template has ${packages.length} packages`);

    const files = this.corpus.entries[format].map((e) =>
      path.join(this.corpus.dir, format, e.filename),
    );
    // Runs interleave (ours, each peer, ours, each peer, ...) so that other load on the machine
    // falls on all of them alike rather than on whoever ran during a busy minute.
    const steps: StepResult[] = [];
    const peerSteps = new Map<Peer, StepResult[]>(peers.map((p) => [p, []]));
    for (let i = 0; i < this.opts.runs; i++) {
      if (!steps.some((s) => s.ms > this.opts.slowMs)) {
        const run = this.oursDir(format, `cold-${i}`);
        await rm(path.dirname(run.root), { recursive: true, force: true });
        for (const f of packages) {
          const target = path.join(run.root, path.relative(template.root, f));
          await mkdir(path.dirname(target), { recursive: true });
          await link(f, target);
        }
        steps.push(opTimes(await this.ours({ op: "full", mirror: r.mirror, ...run })));
      }
      for (const peer of peers) {
        const done = peerSteps.get(peer)!;
        if (done.some((s) => s.ms > this.opts.slowMs || s.timedOut)) continue;
        const dir = path.join(this.opts.work, "peers", peer.tool, `cold-${i}`);
        await rm(dir, { recursive: true, force: true });
        await peer.prepare(dir, files);
        done.push(
          await runScript(peer.cold(dir), { timeoutMs: this.opts.peerColdTimeoutMs(peer.tool) }),
        );
      }
    }
    const last = this.oursDir(format, `cold-${steps.length - 1}`);
    await this.assertNames(path.join(last.root, r.dir), [this.corpus.entries[format][0]!.filename]);
    this.lastCold.set(format, last);
    this.record("a-cold", format, "packrat-agent", steps);

    for (const peer of peers) {
      const done = peerSteps.get(peer)!;
      const dir = path.join(this.opts.work, "peers", peer.tool, `cold-${done.length - 1}`);
      const m = this.record("a-cold", format, peer.tool, done);
      if (m.timedOut) {
        // Case b still needs this peer's N-package repo: seed it from ours when the tool reads
        // our output (repo-add reads our pacman db); otherwise the peer has no +1 figure.
        if (!peer.seed) continue;
        await rm(dir, { recursive: true, force: true });
        await peer.seed(dir, path.join(last.root, r.dir));
        m.note = `stopped after ${fmtS(this.opts.peerColdTimeoutMs(peer.tool))}; its +1 repo was seeded from our published db`;
      } else {
        await this.assertNames(dir, [this.corpus.entries[format][0]!.filename]);
      }
      this.lastPeer.set(peer.tool, dir);
    }
  }

  private readonly lastCold = new Map<Format, { root: string; stateDb: string }>();
  private readonly lastPeer = new Map<string, string>();

  // ---- b. +1 -----------------------------------------------------------------------------

  async plusOne(format: Format, peers: readonly Peer[]): Promise<void> {
    const r = REPOS[format];
    const run = this.lastCold.get(format);
    if (!run) throw new Error(`case b needs case a for ${format}`);
    const active = peers.filter((p) => {
      const dir = this.lastPeer.get(p.tool);
      return dir !== undefined && p.plusOne(dir, "") !== null;
    });
    const steps: StepResult[] = [];
    const peerSteps = new Map<Peer, StepResult[]>(active.map((p) => [p, []]));
    const stopped = new Set<Peer>();
    const failed = new Set<Peer>();
    // Ours is one process taking change after change, as the daemon does (op "series"), its
    // render caches warmed at start; the first change (JIT still cold) has its own row.
    const series = this.series(format, run);
    await series.ready;
    const apply = async () => {
      const extra = await this.extraPackage(format, true);
      const result = await series.apply(extra.name);
      await this.assertNames(path.join(run.root, r.dir), [path.basename(extra.file)]);
      return { extra, result };
    };
    const first = await apply();
    // Interleaved as in case a: each run adds the same new package to ours and to every peer.
    for (let i = 0; i < this.opts.runs; i++) {
      const { extra, result } = await apply();
      steps.push({ ms: result.ms, cpuMs: result.cpuMs, rssKb: 0, stdout: "" });
      for (const peer of active) {
        if (stopped.has(peer)) continue;
        const dir = this.lastPeer.get(peer.tool)!;
        const placed = await peer.place(dir, extra.file);
        const step = await runScript(peer.plusOne(dir, placed)!, {
          timeoutMs: this.opts.peerTimeoutMs,
        });
        peerSteps.get(peer)!.push(step);
        // A peer stopped at the timeout is recorded as "> timeout" and not run again; one
        // that finished without naming the package is reported and left out, so the run
        // keeps what it measured of everyone else (at N = 100,000 repo-add did that).
        if (step.timedOut) {
          stopped.add(peer);
          continue;
        }
        try {
          await this.assertNames(dir, [path.basename(extra.file)]);
        } catch (err) {
          log(
            `b-plus-one ${format} ${peer.tool}: left out: ${(err as Error).message}; its output ends: ${step.stdout.slice(-2000)}`,
          );
          stopped.add(peer);
          failed.add(peer);
        }
      }
    }
    const done = await series.close();
    for (const s of steps) s.rssKb = done.rssKb;
    this.record("b-plus-one", format, "packrat-agent", steps);
    this.record(
      "b-plus-one",
      format,
      "packrat-agent, first change after start",
      [{ ms: first.result.ms, cpuMs: first.result.cpuMs, rssKb: done.rssKb, stdout: "" }],
      undefined,
      "the first change after the daemon warmed its render caches",
    );
    for (const peer of active)
      if (!failed.has(peer)) this.record("b-plus-one", format, peer.tool, peerSteps.get(peer)!);
  }

  /**
   * A long-running process of ours (ops "series" and "daemon") that talks in stdout lines:
   * nextLine() waits for the next one, write() sends one on its stdin.
   */
  private spawnOurs(args: OursArgs) {
    const lines: string[] = [];
    let wake: (() => void) | null = null;
    let stdin: NodeJS.WritableStream | null = null;
    const child = runStep([process.execPath, path.join(DIST, "ours.js"), JSON.stringify(args)], {
      onLine: (line) => {
        lines.push(line);
        wake?.();
      },
      onStdin: (s) => (stdin = s),
    });
    child.catch(() => undefined);
    return {
      child,
      nextLine: async (timeoutMs: number): Promise<string> => {
        const deadline = Date.now() + timeoutMs;
        while (lines.length === 0) {
          if (Date.now() > deadline) throw new Error(`${args.op} process did not answer in time`);
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, 50);
          });
        }
        return lines.shift()!;
      },
      write: (line: string) => stdin?.write(`${line}\n`),
      end: () => stdin?.end(),
    };
  }

  /** Our process of op "series": apply(name) sends one change and waits for its result. */
  private series(format: Format, run: { root: string; stateDb: string }) {
    const r = REPOS[format];
    const proc = this.spawnOurs({
      op: "series",
      masterUrl: this.master.url,
      keyFile: this.keyFile,
      mirror: r.mirror,
      repo: r.repo,
      ...run,
    });
    const nextLine = () => proc.nextLine(300_000);
    return {
      ready: nextLine().then((l) => {
        if (l !== "ready") throw new Error(`series process said ${l}`);
      }),
      apply: async (name: string): Promise<OursResult> => {
        proc.write(name);
        const result = JSON.parse(await nextLine()) as OursResult;
        if (process.env.BENCH_SPANS && result.spans) {
          const top = Object.entries(result.spans)
            .sort((a, b) => b[1].ms - a[1].ms)
            .map(([k, v]) => `${k} ${v.ms.toFixed(0)}ms/${v.calls}`);
          log(`spans series ${r.mirror}: ${top.join(", ")}`);
        }
        return result;
      },
      close: async (): Promise<StepResult> => {
        proc.end();
        return proc.child;
      },
    };
  }

  // ---- c. no-change and deep -------------------------------------------------------------

  async noChange(format: Format): Promise<void> {
    const r = REPOS[format];
    const run = this.lastCold.get(format);
    if (!run) throw new Error(`case c needs case a for ${format}`);
    const timed = async (op: "full" | "deep") => {
      const step = await this.ours({ op, mirror: r.mirror, ...run });
      const result = lastJson<OursResult & { report: { hashed: number; published: string[] } }>(
        step.stdout,
      );
      if (op === "full" && (result.report.hashed > 0 || result.report.published.length > 0)) {
        throw new Error(`no-change sync hashed ${result.report.hashed} files or republished`);
      }
      return { ...step, ms: result.ms, cpuMs: result.cpuMs };
    };
    this.record("c-no-change", format, "packrat-agent", await this.repeat(() => timed("full")));
    this.record("c-deep-verify", format, "packrat-agent", await this.repeat(() => timed("deep")));
    const floor = await this.repeat(() =>
      runScript(
        `cd ${JSON.stringify(path.join(run.root, r.dir))} && find . -type f \\( -name '*.deb' -o -name '*.rpm' -o -name '*.pkg.tar.zst' \\) -print0 | xargs -0 sha256sum > /dev/null`,
      ),
    );
    this.record("c-deep-verify", format, "sha256sum", floor);
  }

  // ---- d. trigger latency ----------------------------------------------------------------

  async triggers(debounceMs: number): Promise<void> {
    const r = REPOS.deb;
    const run = this.lastCold.get("deb");
    if (!run) throw new Error("case d needs case a for deb");
    const latencies: number[] = [];
    const proc = this.spawnOurs({
      op: "daemon",
      masterUrl: this.master.url,
      keyFile: this.keyFile,
      mirror: r.mirror,
      debounceMs,
      ...run,
    });
    const nextLine = proc.nextLine;
    try {
      if ((await nextLine(120_000)) !== "ready") throw new Error("daemon did not start");
      for (let i = 0; i < this.opts.triggers; i++) {
        // Each trigger is a lone tag: the repo has been quiet for the debounce window (a tag
        // within the window after a pass waits for its end; bursts are the coalescer's tests).
        await new Promise((res) => setTimeout(res, debounceMs + 50));
        while (this.master.openPolls === 0) await new Promise((res) => setTimeout(res, 5));
        const t0 = performance.timeOrigin + performance.now();
        const extra = await this.extraPackage("deb", true);
        const filename = path.basename(extra.file);
        for (;;) {
          const line = await nextLine(30_000);
          const m = /^synced ([\d.]+)$/.exec(line);
          if (!m) continue;
          if (await this.indexNames(path.join(run.root, r.dir), filename)) {
            latencies.push(Number(m[1]) - t0);
            break;
          }
        }
      }
    } finally {
      proc.end();
    }
    const step = await proc.child;
    const m = this.record(
      "d-trigger",
      "deb",
      `packrat-agent (debounce ${debounceMs} ms)`,
      latencies.map((ms) => ({ ms, cpuMs: Number.NaN, rssKb: step.rssKb, stdout: "" })),
    );
    m.p50Ms = percentile(latencies, 50);
    m.p99Ms = percentile(latencies, 99);
    log(
      `d trigger latency (debounce ${debounceMs}): p50 ${m.p50Ms.toFixed(0)} ms, p99 ${m.p99Ms.toFixed(0)} ms`,
    );
  }

  // ---- e. downloads ----------------------------------------------------------------------

  async downloads(): Promise<void> {
    const bytesEach = this.opts.downloadMb * 1024 * 1024;
    const count = 2;
    this.master.addRepo({
      name: "bench-dl",
      filesystemDir: "dl",
      managerType: "json",
      distroVersions: ["none"],
      tag: TAG,
    });
    this.master.addMirror({ name: "m-dl", repos: ["bench-dl"] });
    const urls: string[] = [];
    for (let i = 0; i < count; i++) {
      const filename = `large-${i}.bin`;
      const id = this.master.addPackageFile({
        package: `large-${i}`,
        distroVersion: "none",
        version: "1",
        type: "tar",
        arch: "all",
        filename,
        content: randomBytes(bytesEach),
        tags: [TAG],
      });
      urls.push(`${this.master.url}${this.master.fileUrl(id)}`);
    }
    const total = bytesEach * count;
    const mbps = (s: StepResult) => total / 1024 / 1024 / (s.ms / 1000);
    const oursOnce = async (i: number) => {
      const run = this.oursDir("deb", `download-${i}`);
      await rm(path.dirname(run.root), { recursive: true, force: true });
      const step = await this.ours({ op: "full", mirror: "m-dl", downloadConcurrency: 1, ...run });
      const result = opTimes(step);
      await rm(path.dirname(run.root), { recursive: true, force: true });
      return result;
    };
    const dir = path.join(this.opts.work, "curl");
    const curlOnce = async (mode: "plain" | "sync" | "hash") => {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      const script = urls
        .map((u, i) =>
          mode === "hash"
            ? `curl -sf ${u} | tee ${dir}/f${i} | sha256sum > /dev/null`
            : mode === "sync"
              ? // We fsync every file before it is published; so does this one.
                `curl -sf -o ${dir}/f${i} ${u} && sync ${dir}/f${i}`
              : `curl -sf -o ${dir}/f${i} ${u}`,
        )
        .join("\n");
      return runScript(script);
    };
    // Interleaved rounds (ours, then each curl variant), so that load swings on a shared
    // machine fall on all of them alike.
    const ours: StepResult[] = [];
    const plain: StepResult[] = [];
    const synced: StepResult[] = [];
    const hashed: StepResult[] = [];
    for (let i = 0; i < this.opts.runs; i++) {
      ours.push(await oursOnce(i));
      plain.push(await curlOnce("plain"));
      synced.push(await curlOnce("sync"));
      hashed.push(await curlOnce("hash"));
    }
    await rm(dir, { recursive: true, force: true });
    const note = `${count} x ${this.opts.downloadMb} MiB, one stream; figure is MiB/s`;
    for (const [tool, steps] of [
      ["packrat-agent", ours],
      ["curl", plain],
      ["curl, then sync of the file", synced],
      ["curl | sha256sum", hashed],
    ] as const) {
      const m = this.record("e-download", "file", tool, steps, undefined, note);
      m.throughputMiBs = median(steps.map(mbps));
    }
  }

  // ---- checks ----------------------------------------------------------------------------

  /** Does some index file under dir (Packages, primary.xml, a pacman db) name this file? */
  async indexNames(dir: string, filename: string): Promise<boolean> {
    const candidates = (await listFiles(dir)).filter((f) => {
      if (f.includes("/by-hash/") || f.includes("/pool/")) return false;
      const base = path.basename(f);
      return (
        base === "Packages" ||
        base.endsWith("primary.xml.gz") ||
        base.endsWith(".db.tar.gz") ||
        base.endsWith(".db")
      );
    });
    for (const f of candidates) {
      let bytes: Buffer = await readFile(f);
      if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
      if (bytes.includes(filename)) return true;
    }
    return false;
  }

  async assertNames(dir: string, filenames: readonly string[]): Promise<void> {
    for (const f of filenames) {
      if (!(await this.indexNames(dir, f))) throw new Error(`no index under ${dir} names ${f}`);
    }
  }
}

/** The commit measured (bench/snapshot.sh passes it in; a snapshot has no .git). */
function gitHead(): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: DIST }).toString().trim();
  } catch {
    return "unknown";
  }
}

/** Our step's own figures: the operation's wall and CPU time, not the process's start-up. */
function opTimes(step: StepResult): StepResult {
  const r = lastJson<OursResult>(step.stdout);
  return { ...step, ms: r.ms, cpuMs: r.cpuMs };
}

function fmtS(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

function lastJson<T>(stdout: string): T {
  const line = stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as T;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const loadAtStart = os.loadavg().map((l) => Math.round(l * 10) / 10);
  await mkdir(opts.work, { recursive: true });
  const tools = [
    "apt-ftparchive",
    "dpkg-scanpackages",
    "aptly",
    "reprepro",
    "createrepo_c",
    "repo-add",
    "gpg",
    "curl",
  ];
  const missing = tools.filter((t) => !haveTool(t));
  if (missing.length > 0) {
    throw new Error(
      `missing peer tools: ${missing.join(", ")}; install them with: apt-get install -y --no-install-recommends apt-utils dpkg-dev aptly reprepro createrepo-c pacman-package-manager gnupg curl`,
    );
  }
  const bench = new Bench(opts);
  await bench.setup();
  const gpg = setupGpg(path.join(opts.work, "gnupg"));
  const peers = peersFor(gpg);
  try {
    for (const format of opts.formats) {
      const mine = opts.peers
        ? peers.filter((p) => p.format === format && !opts.skipPeers.has(p.tool))
        : [];
      if (opts.cases.has("a") || opts.cases.has("b") || opts.cases.has("c") || opts.cases.has("d"))
        await bench.cold(format, opts.cases.has("a") || opts.cases.has("b") ? mine : []);
      if (opts.cases.has("b")) await bench.plusOne(format, mine);
      if (opts.cases.has("c")) await bench.noChange(format);
    }
    if (opts.cases.has("d")) {
      for (const ms of opts.debounces) await bench.triggers(ms);
    }
    if (opts.cases.has("e")) await bench.downloads();
  } finally {
    await bench.master.close();
  }
  const results: BenchResults = {
    date: new Date().toISOString(),
    commit: process.env.BENCH_COMMIT ?? gitHead(),
    n: opts.n,
    runs: opts.runs,
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "unknown",
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: os.loadavg().map((l) => Math.round(l * 10) / 10),
    },
    measurements: bench.results,
  };
  const outDir = path.resolve(DIST, "../../bench/results");
  await mkdir(outDir, { recursive: true });
  await writeReport(results, outDir);
  await writeSummary(outDir, path.resolve(outDir, "../RESULTS.md"));
  log(`wrote ${outDir}/latest.{json,md}, ratios.svg and bench/RESULTS.md`);
}

await main();
