/**
 * Micro-benchmark of the package parsers (issue 9, cold case a): every file of a corpus dir
 * goes through its layout's `parse`, over a file ByteSource built the way the engine builds it
 * (src/sync/disk.ts openFileSource, one per file, closed after), one file at a time as the
 * engine's metaFor does. A second pass parses the same files from memory (bufferSource), which
 * separates the parser's CPU from the file handle's reads. Prints ms per package for each.
 *
 *   npx tsc -p bench/tsconfig.json && node dist/bench/parse.js [--limit N] [--rounds R]
 *     [--format deb|rpm|pacman]... [--corpus DIR] [--json FILE] [--only file|memory]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/bench/parse.js --format deb   (hot spots)
 *   node dist/bench/parse.js --engine      (also the engine path's steps, see below)
 *
 * The corpus is bench/generate.ts's output (DIR/{deb,rpm,pacman}/); nothing is written there.
 *
 * --engine adds the engine's cold path around the parser (issue 9 case a), timed per step:
 * today's order (observe: sha256File of every file, 16 at a time; then publish: for each
 * package in turn, openFileSource + parse + close + putPackageMeta in a throwaway state DB)
 * against one read per file (16 at a time: read the file once, hash and parse those bytes,
 * then every putPackageMeta in one transaction), and against a synchronous read of each file
 * (readFileSync) then hash and parse, one at a time. It uses src/sync/disk.ts and src/state,
 * never the engine itself, so it shows what each step costs, not what the engine does end to end.
 */
import { createHash } from "node:crypto";
import { promises as fs, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { layoutFor } from "../src/layout/index.js";
import type { ByteSource, PackageMeta } from "../src/layout/types.js";
import { bufferSource } from "../src/layout/types.js";
import type { RepoLayout } from "../src/layout/types.js";
import { openStateStore } from "../src/state/db.js";
import { openFileSource, sha256File } from "../src/sync/disk.js";

const FORMATS = { deb: "apt", rpm: "yum", pacman: "pacman" } as const;
type Format = keyof typeof FORMATS;

interface FormatResult {
  format: Format;
  packages: number;
  bytes: number;
  /** Median over rounds of ms per package, file ByteSource (open + parse + close). */
  fileMsPerPackage: number;
  /** The same from memory (the parser alone). */
  memoryMsPerPackage: number;
  /**
   * CPU time (user + system, every thread of the process) per package, median over rounds:
   * steadier than wall time on a machine that other work shares.
   */
  fileCpuMsPerPackage: number;
  memoryCpuMsPerPackage: number;
  /** Every round's ms per package, file then memory. */
  rounds: { file: number[]; memory: number[]; fileCpu: number[]; memoryCpu: number[] };
  /** --engine: the engine path's steps (first round warms the page cache and the JIT). */
  engine?: EngineSteps;
}

/** CPU ms (user + system) since `start`, a process.cpuUsage() reading. */
const cpuMsSince = (start: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
};

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** A ByteSource that counts the reads a parser makes (for the "reads per package" line). */
function counting(source: ByteSource, stats: { reads: number; bytes: number }): ByteSource {
  return {
    size: source.size,
    async read(offset, length) {
      const out = await source.read(offset, length);
      stats.reads++;
      stats.bytes += out.length;
      return out;
    },
  };
}

/** Engine-path steps, ms per package (see --engine in the header). */
interface EngineSteps {
  /** Today: observe (sha256File, 16 at a time). */
  observe: number;
  /** Today: serial openFileSource + parse + close. */
  serialParse: number;
  /** Today: putPackageMeta, one autocommit per package. */
  putEach: number;
  /** One read: read + sha256 + parse, 16 at a time. */
  oneReadParse: number;
  /** One read: every putPackageMeta in one transaction. */
  putBatch: number;
  /** One synchronous read (readFileSync) + sha256 + parse, one file at a time. */
  syncReadParse: number;
}

/** Run `work` over `items`, `concurrency` at a time. */
async function pool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

async function runEngineSteps(layout: RepoLayout, files: readonly string[]): Promise<EngineSteps> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "packrat-parse-bench-"));
  const per = (ms: number) => ms / files.length;
  try {
    // Today's order.
    const today = openStateStore(path.join(tmp, "today.db"));
    let started = performance.now();
    const sums = new Map<string, string>();
    await pool(files, 16, async (f) => void sums.set(f, await sha256File(f)));
    const observe = per(performance.now() - started);
    let putMs = 0;
    started = performance.now();
    for (const f of files) {
      const source = await openFileSource(f);
      try {
        const meta = await layout.parse(source, path.basename(f));
        const putStarted = performance.now();
        today.putPackageMeta(sums.get(f)!, layout.managerType, meta, null);
        putMs += performance.now() - putStarted;
      } finally {
        await source.close();
      }
    }
    const serialParse = per(performance.now() - started - putMs);
    today.close();

    // One read per file, parses overlapping each other's reads.
    const batch = openStateStore(path.join(tmp, "one-read.db"));
    const metas: [string, PackageMeta][] = [];
    started = performance.now();
    await pool(files, 16, async (f) => {
      const bytes = await fs.readFile(f);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      metas.push([sha256, await layout.parse(bufferSource(bytes), path.basename(f))]);
    });
    const oneReadParse = per(performance.now() - started);
    started = performance.now();
    batch.transaction(() => {
      for (const [sha256, meta] of metas) {
        batch.putPackageMeta(sha256, layout.managerType, meta, null);
      }
    });
    const putBatch = per(performance.now() - started);
    batch.close();

    // The same with a synchronous read: on a cached small file it is ~10x cheaper than the
    // four thread-pool round trips of an async open/fstat/read/close.
    started = performance.now();
    for (const f of files) {
      const bytes = readFileSync(f);
      createHash("sha256").update(bytes).digest("hex");
      await layout.parse(bufferSource(bytes), path.basename(f));
    }
    const syncReadParse = per(performance.now() - started);
    return { observe, serialParse, putEach: per(putMs), oneReadParse, putBatch, syncReadParse };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function runFormat(
  format: Format,
  dir: string,
  limit: number,
  rounds: number,
  only: "file" | "memory" | undefined,
  engine: boolean,
): Promise<FormatResult> {
  const layout = layoutFor(FORMATS[format]);
  if (!layout) throw new Error(`no layout ${FORMATS[format]}`);
  const names = (await fs.readdir(dir)).filter((n) => !n.startsWith(".")).sort();
  const files = names.slice(0, limit).map((n) => path.join(dir, n));
  if (files.length === 0) throw new Error(`${dir}: no package files`);

  const reads = { reads: 0, bytes: 0 };
  const fileRounds: number[] = [];
  const memoryRounds: number[] = [];
  const fileCpuRounds: number[] = [];
  const memoryCpuRounds: number[] = [];
  const check = new Map<string, string>();
  for (let r = 0; r < (only === "memory" ? 1 : rounds); r++) {
    const started = performance.now();
    const cpuStart = process.cpuUsage();
    for (const file of files) {
      const source = await openFileSource(file);
      try {
        const meta: PackageMeta = await layout.parse(
          r === 0 ? counting(source, reads) : source,
          path.basename(file),
        );
        if (r === 0) check.set(file, JSON.stringify(meta));
      } finally {
        await source.close();
      }
    }
    fileRounds.push((performance.now() - started) / files.length);
    fileCpuRounds.push(cpuMsSince(cpuStart) / files.length);
  }

  // Memory pass: the bytes are read before the clock starts.
  const contents = await Promise.all(files.map((f) => fs.readFile(f)));
  let bytes = 0;
  for (const c of contents) bytes += c.length;
  for (let r = 0; r < (only === "file" ? 0 : rounds); r++) {
    const started = performance.now();
    const cpuStart = process.cpuUsage();
    for (let i = 0; i < files.length; i++) {
      const meta = await layout.parse(bufferSource(contents[i]!), path.basename(files[i]!));
      // Both paths must give the same meta: a parser that reads differently is a bug.
      if (r === 0 && JSON.stringify(meta) !== check.get(files[i]!)) {
        throw new Error(`${files[i]}: file and memory parses differ`);
      }
    }
    memoryRounds.push((performance.now() - started) / files.length);
    memoryCpuRounds.push(cpuMsSince(cpuStart) / files.length);
  }
  console.error(
    `${format}: ${files.length} packages, ${(bytes / files.length / 1024).toFixed(1)} KiB avg; ` +
      `${(reads.reads / files.length).toFixed(1)} reads and ${(reads.bytes / bytes).toFixed(2)}x ` +
      `the file's bytes per parse`,
  );
  let engineSteps: EngineSteps | undefined;
  if (engine) {
    const runs: EngineSteps[] = [];
    for (let r = 0; r < rounds; r++) runs.push(await runEngineSteps(layout, files));
    const keys = Object.keys(runs[0]!) as (keyof EngineSteps)[];
    engineSteps = Object.fromEntries(
      keys.map((k) => [k, median(runs.map((run) => run[k]))]),
    ) as unknown as EngineSteps;
  }
  return {
    ...(engineSteps ? { engine: engineSteps } : {}),
    format,
    packages: files.length,
    bytes,
    fileMsPerPackage: median(fileRounds),
    memoryMsPerPackage: memoryRounds.length > 0 ? median(memoryRounds) : NaN,
    fileCpuMsPerPackage: median(fileCpuRounds),
    memoryCpuMsPerPackage: memoryCpuRounds.length > 0 ? median(memoryCpuRounds) : NaN,
    rounds: {
      file: fileRounds,
      memory: memoryRounds,
      fileCpu: fileCpuRounds,
      memoryCpu: memoryCpuRounds,
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      corpus: { type: "string", default: "/tmp/packrat-bench-10000/corpus" },
      format: { type: "string", multiple: true },
      limit: { type: "string", default: "10000" },
      rounds: { type: "string", default: "3" },
      json: { type: "string" },
      /** Only one pass, for a profile of just that path. */
      only: { type: "string" },
      engine: { type: "boolean", default: false },
    },
  });
  const formats = (values.format ?? Object.keys(FORMATS)) as Format[];
  for (const f of formats) if (!(f in FORMATS)) throw new Error(`unknown format ${f}`);
  const limit = Number(values.limit);
  const rounds = Number(values.rounds);
  const only = values.only as "file" | "memory" | undefined;
  if (only !== undefined && only !== "file" && only !== "memory") {
    throw new Error(`--only takes file or memory, not ${String(only)}`);
  }
  const results: FormatResult[] = [];
  for (const format of formats) {
    results.push(
      await runFormat(format, path.join(values.corpus, format), limit, rounds, only, values.engine),
    );
  }
  console.log(
    "| format | packages | ms/package (file) | CPU ms/package (file) | ms/package (memory) | " +
      "CPU ms/package (memory) | total s (file) |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of results) {
    const f = (ms: number) => ms.toFixed(3);
    console.log(
      `| ${r.format} | ${r.packages} | ${f(r.fileMsPerPackage)} | ${f(r.fileCpuMsPerPackage)} | ` +
        `${f(r.memoryMsPerPackage)} | ${f(r.memoryCpuMsPerPackage)} | ` +
        `${((r.fileMsPerPackage * r.packages) / 1000).toFixed(2)} |`,
    );
  }
  const engineRows = results.filter((r) => r.engine);
  if (engineRows.length > 0) {
    console.log(
      "\n| format | today: observe hash | serial parse | putPackageMeta each | today total | " +
        "one read: read+hash+parse x16 | puts in one transaction | one-read total | " +
        "readFileSync+hash+parse, serial |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    const f = (ms: number) => ms.toFixed(3);
    for (const r of engineRows) {
      const e = r.engine!;
      console.log(
        `| ${r.format} | ${f(e.observe)} | ${f(e.serialParse)} | ${f(e.putEach)} | ` +
          `${f(e.observe + e.serialParse + e.putEach)} | ${f(e.oneReadParse)} | ` +
          `${f(e.putBatch)} | ${f(e.oneReadParse + e.putBatch)} | ${f(e.syncReadParse)} |`,
      );
    }
    console.log("(ms per package; medians of the rounds)");
  }
  if (values.json) await fs.writeFile(values.json, JSON.stringify(results, null, 2) + "\n");
}

await main();
