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
 *
 * The corpus is bench/generate.ts's output (DIR/{deb,rpm,pacman}/); nothing is written there.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { layoutFor } from "../src/layout/index.js";
import type { ByteSource, PackageMeta } from "../src/layout/types.js";
import { bufferSource } from "../src/layout/types.js";
import { openFileSource } from "../src/sync/disk.js";

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
  /** Every round's ms per package, file then memory. */
  rounds: { file: number[]; memory: number[] };
}

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

async function runFormat(
  format: Format,
  dir: string,
  limit: number,
  rounds: number,
  only: "file" | "memory" | undefined,
): Promise<FormatResult> {
  const layout = layoutFor(FORMATS[format]);
  if (!layout) throw new Error(`no layout ${FORMATS[format]}`);
  const names = (await fs.readdir(dir)).filter((n) => !n.startsWith(".")).sort();
  const files = names.slice(0, limit).map((n) => path.join(dir, n));
  if (files.length === 0) throw new Error(`${dir}: no package files`);

  const reads = { reads: 0, bytes: 0 };
  const fileRounds: number[] = [];
  const memoryRounds: number[] = [];
  const check = new Map<string, string>();
  for (let r = 0; r < (only === "memory" ? 1 : rounds); r++) {
    const started = performance.now();
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
  }

  // Memory pass: the bytes are read before the clock starts.
  const contents = await Promise.all(files.map((f) => fs.readFile(f)));
  let bytes = 0;
  for (const c of contents) bytes += c.length;
  for (let r = 0; r < (only === "file" ? 0 : rounds); r++) {
    const started = performance.now();
    for (let i = 0; i < files.length; i++) {
      const meta = await layout.parse(bufferSource(contents[i]!), path.basename(files[i]!));
      // Both paths must give the same meta: a parser that reads differently is a bug.
      if (r === 0 && JSON.stringify(meta) !== check.get(files[i]!)) {
        throw new Error(`${files[i]}: file and memory parses differ`);
      }
    }
    memoryRounds.push((performance.now() - started) / files.length);
  }
  console.error(
    `${format}: ${files.length} packages, ${(bytes / files.length / 1024).toFixed(1)} KiB avg; ` +
      `${(reads.reads / files.length).toFixed(1)} reads and ${(reads.bytes / bytes).toFixed(2)}x ` +
      `the file's bytes per parse`,
  );
  return {
    format,
    packages: files.length,
    bytes,
    fileMsPerPackage: median(fileRounds),
    memoryMsPerPackage: memoryRounds.length > 0 ? median(memoryRounds) : NaN,
    rounds: { file: fileRounds, memory: memoryRounds },
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
    results.push(await runFormat(format, path.join(values.corpus, format), limit, rounds, only));
  }
  console.log("| format | packages | ms/package (file) | ms/package (memory) | total s (file) |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of results) {
    console.log(
      `| ${r.format} | ${r.packages} | ${r.fileMsPerPackage.toFixed(3)} | ` +
        `${r.memoryMsPerPackage.toFixed(3)} | ${((r.fileMsPerPackage * r.packages) / 1000).toFixed(2)} |`,
    );
  }
  if (values.json) await fs.writeFile(values.json, JSON.stringify(results, null, 2) + "\n");
}

await main();
