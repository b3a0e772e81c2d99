/**
 * The xz and zstd candidates, side by side (issue 17, part 4): compress and decompress speed at
 * the levels the layouts use, on inputs shaped like what they compress (an apt Packages index
 * and an uncompressed pacman database tar, both from bench/generate.ts's package specs), the
 * per-call cost on a small package-sized input (pacman parses one .pkg.tar.zst per package),
 * and, with --install, what installing each native addon costs on a machine that cannot
 * download prebuilt binaries (`npm rebuild <pkg>`, timed, and whether a compiler ran).
 *
 *   npx tsc -p bench/tsconfig.json && node dist/bench/compression.js [--mb 4] [--install]
 *     [--extra /dir/node_modules]   (candidates installed elsewhere, for comparison only)
 *
 * A candidate that is not installed is listed as such. The CLIs (xz, zstd from Debian) are run
 * through spawnSync, so their figures include a process start per call. Writes
 * bench/results/compression.json and prints a Markdown table.
 */
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { controlText } from "../src/demo/packages/deb.js";
import { writeTar } from "../src/layout/formats/tar.js";
import { packageSpec } from "./generate.js";

type Bytes = Uint8Array;

interface Codec {
  name: string;
  algo: "xz" | "zstd";
  /** Absent when the candidate cannot compress (or not at that level). */
  compress?: (data: Bytes, level: number) => Promise<Bytes> | Bytes;
  decompress: (data: Bytes) => Promise<Bytes> | Bytes;
  note?: string;
}

interface Row {
  codec: string;
  algo: string;
  input: string;
  level: number | null;
  inputBytes: number;
  compressedBytes: number | null;
  compressMBs: number | null;
  decompressMBs: number | null;
  /** Microseconds per decompress of the small input. */
  smallDecompressUs: number | null;
  note?: string;
}

interface InstallRow {
  pkg: string;
  seconds: number;
  compiled: boolean;
  how: string;
}

const { values: args } = parseArgs({
  options: {
    mb: { type: "string", default: "4" },
    install: { type: "boolean", default: false },
    extra: { type: "string" },
    out: { type: "string" },
  },
});

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, "../..");
const require = createRequire(path.join(projectRoot, "package.json"));

/** The module, from the project or from --extra; null when neither has it. */
async function load(name: string): Promise<Record<string, unknown> | null> {
  try {
    return (await import(name)) as Record<string, unknown>;
  } catch {
    if (!args.extra) return null;
    try {
      const resolved = require.resolve(name, { paths: [args.extra] });
      return (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
    } catch {
      return null;
    }
  }
}

function cli(cmd: string, argv: string[], input: Bytes): Bytes {
  const r = spawnSync(cmd, argv, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout;
}

function haveCommand(cmd: string): boolean {
  return spawnSync(cmd, ["--version"]).status === 0;
}

async function codecs(): Promise<Codec[]> {
  const out: Codec[] = [];
  const zstdNapi = await load("zstd-napi");
  if (zstdNapi) {
    const m = zstdNapi as {
      compress(d: Bytes, p?: { compressionLevel: number }): Bytes;
      decompress(d: Bytes): Bytes;
    };
    out.push({
      name: "zstd-napi",
      algo: "zstd",
      compress: (d, level) => m.compress(d, { compressionLevel: level }),
      decompress: (d) => m.decompress(d),
    });
  }
  const fzstd = await load("fzstd");
  if (fzstd) {
    const m = fzstd as { decompress(d: Bytes): Bytes };
    out.push({
      name: "fzstd",
      algo: "zstd",
      decompress: (d) => m.decompress(d),
      note: "decompress only",
    });
  }
  const hpcc = await load("@hpcc-js/wasm-zstd");
  if (hpcc) {
    type Z = { compress(d: Bytes, l?: number): Bytes; decompress(d: Bytes): Bytes };
    const z = await (hpcc.Zstd as { load(): Promise<Z> }).load();
    out.push({
      name: "@hpcc-js/wasm-zstd",
      algo: "zstd",
      compress: (d, level) => z.compress(d, level),
      decompress: (d) => z.decompress(d),
      note: "WASM; one shared context",
    });
  }
  if (haveCommand("zstd")) {
    out.push({
      name: "zstd CLI",
      algo: "zstd",
      compress: (d, level) => cli("zstd", [`-${level}`, "-q", "-c"], d),
      decompress: (d) => cli("zstd", ["-d", "-q", "-c"], d),
      note: "spawnSync per call",
    });
  }
  const lzmaNative = await load("lzma-native");
  if (lzmaNative) {
    type Stream = NodeJS.ReadWriteStream;
    const m = (lzmaNative.default ?? lzmaNative) as {
      createCompressor(o: object): Stream;
      createDecompressor(o?: object): Stream;
      CHECK_CRC64: number;
    };
    const run = (s: Stream, d: Bytes) =>
      new Promise<Bytes>((resolve, reject) => {
        const parts: Buffer[] = [];
        s.on("data", (c: Buffer) => parts.push(c));
        s.on("error", reject);
        s.on("end", () => resolve(Buffer.concat(parts)));
        s.end(Buffer.from(d));
      });
    out.push({
      name: "lzma-native",
      algo: "xz",
      compress: (d, level) =>
        run(m.createCompressor({ preset: level, check: m.CHECK_CRC64, threads: 1 }), d),
      decompress: (d) => run(m.createDecompressor(), d),
    });
  }
  const napiLzma = await load("@napi-rs/lzma");
  if (napiLzma) {
    const xz = (napiLzma.xz ?? (napiLzma.default as Record<string, unknown>).xz) as {
      compressSync(d: Bytes): Bytes;
      decompressSync(d: Bytes): Bytes;
    };
    out.push({
      name: "@napi-rs/lzma",
      algo: "xz",
      // No preset: it compresses one way only, whatever the level.
      compress: (d) => xz.compressSync(d),
      decompress: (d) => xz.decompressSync(d),
      note: "no presets",
    });
  }
  if (haveCommand("xz")) {
    out.push({
      name: "xz CLI",
      algo: "xz",
      compress: (d, level) => cli("xz", [`-${level}`, "-T1", "-c"], d),
      decompress: (d) => cli("xz", ["-d", "-c"], d),
      note: "spawnSync per call",
    });
  }
  return out;
}

const enc = new TextEncoder();

/** An apt Packages index of about `bytes` bytes. */
function packagesIndex(bytes: number): Bytes {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const s = packageSpec(i);
    const stanza =
      controlText({
        Package: s.name,
        Version: `${s.upstream}-${s.release}`,
        Architecture: s.noarch ? "all" : "amd64",
        Maintainer: "Bench <bench@example.org>",
        "Installed-Size": String(100 + i),
        Depends: s.depends.join(", ") || "libc6",
        Section: s.section,
        Priority: "optional",
        Filename: `pool/main/${s.name.slice(0, 6)}/${s.name}_${s.upstream}-${s.release}_amd64.deb`,
        Size: String(2000 + i),
        SHA256: (i * 2654435761).toString(16).padStart(64, "0"),
        Description: `${s.summary}\n ${s.description.replace(/\n/g, "\n ")}`,
      }) + "\n";
    parts.push(stanza);
    size += stanza.length;
  }
  return enc.encode(parts.join(""));
}

/** An uncompressed pacman database tar (one desc per package) of about `bytes` bytes. */
function pacmanDb(bytes: number): Bytes {
  const entries = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const s = packageSpec(i);
    const dir = `${s.name}-${s.upstream}-${s.release}`;
    const desc = enc.encode(
      [
        ["FILENAME", `${dir}-x86_64.pkg.tar.zst`],
        ["NAME", s.name],
        ["VERSION", `${s.upstream}-${s.release}`],
        ["DESC", s.summary],
        ["CSIZE", String(2000 + i)],
        ["ISIZE", String(9000 + i)],
        ["SHA256SUM", (i * 2654435761).toString(16).padStart(64, "0")],
        ["LICENSE", s.license],
        ["ARCH", "x86_64"],
        ["DEPENDS", s.depends.join("\n") || "glibc"],
      ]
        .map(([k, v]) => `%${k}%\n${v}\n\n`)
        .join(""),
    );
    entries.push({ name: `${dir}/`, mtime: 0 }, { name: `${dir}/desc`, content: desc, mtime: 0 });
    size += 1024 + Math.ceil(desc.length / 512) * 512;
  }
  return writeTar(entries);
}

async function time<T>(fn: () => Promise<T> | T, minMs = 400): Promise<{ ms: number; value: T }> {
  let value = await fn(); // warm-up
  let runs = 0;
  const start = performance.now();
  do {
    value = await fn();
    runs++;
  } while (performance.now() - start < minMs);
  return { ms: (performance.now() - start) / runs, value };
}

const MB = 1e6;

async function measure(codec: Codec, input: string, data: Bytes, level: number): Promise<Row> {
  const row: Row = {
    codec: codec.name,
    algo: codec.algo,
    input,
    level,
    inputBytes: data.length,
    compressedBytes: null,
    compressMBs: null,
    decompressMBs: null,
    smallDecompressUs: null,
    ...(codec.note ? { note: codec.note } : {}),
  };
  if (codec.compress) {
    const c = await time(() => codec.compress!(data, level));
    row.compressedBytes = c.value.length;
    row.compressMBs = data.length / MB / (c.ms / 1000);
  }
  // Every decoder reads what the reference tool (xz or zstd from Debian) makes at that level:
  // a candidate's own output may not be comparable (@napi-rs/lzma 1.4 writes stored chunks).
  const packed = cli(codec.algo, [`-${level}`, "-q", "-c"], data);
  const d = await time(() => codec.decompress(packed));
  if (Buffer.compare(Buffer.from(d.value), Buffer.from(data)) !== 0) {
    throw new Error(`${codec.name}: the round trip changed the data`);
  }
  row.decompressMBs = data.length / MB / (d.ms / 1000);
  return row;
}

async function smallCall(codec: Codec, small: Bytes): Promise<number> {
  const packed = cli(codec.algo, ["-6", "-q", "-c"], small);
  const d = await time(() => codec.decompress(packed), 300);
  return d.ms * 1000;
}

function rebuild(pkg: string): InstallRow {
  const start = performance.now();
  const r = spawnSync("npm", ["rebuild", pkg, "--foreground-scripts"], {
    cwd: projectRoot,
    encoding: "utf8",
    maxBuffer: 1 << 28,
  });
  const seconds = (performance.now() - start) / 1000;
  const log = `${r.stdout}\n${r.stderr}`;
  const compiled = /CC\(target\)|CXX\(target\)|gyp info ok/.test(log);
  const how = compiled
    ? "compiled from source (no prebuilt binary could be downloaded)"
    : /node-gyp-build/.test(log)
      ? "prebuilt binary shipped inside the npm package"
      : /install/.test(log)
        ? "install script, no compile"
        : "no install script (prebuilt binary in a platform package from npm)";
  return { pkg, seconds, compiled, how };
}

const cands = await codecs();
const bytes = Number(args.mb) * MB;
const inputs: [string, Bytes][] = [
  ["Packages", packagesIndex(bytes)],
  ["pacman db tar", pacmanDb(bytes)],
  ["Packages 1 MB", packagesIndex(1 << 20)],
];
const small = pacmanDb(8 << 10);
// The levels the layouts use: apt's xz is -6 up to 1 MiB and -1 above (compress.ts
// xzPresetFor); yum's and the packages' zstd is libzstd's default, 3.
const levelsFor = (algo: "xz" | "zstd", input: Bytes): number[] =>
  algo === "zstd" ? [3] : input.length <= 1 << 20 ? [6] : [1, 6];

const rows: Row[] = [];
for (const codec of cands) {
  for (const [name, data] of inputs) {
    for (const level of levelsFor(codec.algo, data)) {
      const row = await measure(codec, name, data, level);
      if (name === "pacman db tar" && level === levelsFor(codec.algo, data)[0]) {
        row.smallDecompressUs = await smallCall(codec, small);
      }
      rows.push(row);
      console.error(`${codec.name} ${name} -${level}: done`);
    }
  }
}

const installs: InstallRow[] = [];
if (args.install) {
  for (const pkg of ["zstd-napi", "lzma-native", "@napi-rs/lzma", "fzstd"]) {
    if (await load(pkg)) installs.push(rebuild(pkg));
  }
}

const fmt = (v: number | null, digits = 1) => (v === null ? "–" : v.toFixed(digits));
const lines = [
  `| codec | input | level | in MB | out KB | compress MB/s | decompress MB/s | small decompress µs | note |`,
  `| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |`,
  ...rows.map(
    (r) =>
      `| ${r.codec} | ${r.input} | ${r.level ?? "–"} | ${fmt(r.inputBytes / MB, 2)} | ${fmt(
        r.compressedBytes === null ? null : r.compressedBytes / 1000,
        0,
      )} | ${fmt(r.compressMBs)} | ${fmt(r.decompressMBs)} | ${fmt(r.smallDecompressUs, 0)} | ${
        r.note ?? ""
      } |`,
  ),
];
if (installs.length > 0) {
  lines.push(
    "",
    "| package | npm rebuild s | compiled | how |",
    "| --- | ---: | --- | --- |",
    ...installs.map((i) => `| ${i.pkg} | ${i.seconds.toFixed(1)} | ${i.compiled} | ${i.how} |`),
  );
}
console.log(lines.join("\n"));
const outFile = args.out ?? path.join(projectRoot, "bench/results/compression.json");
await mkdir(path.dirname(outFile), { recursive: true });
await writeFile(
  outFile,
  JSON.stringify(
    { node: process.version, date: new Date().toISOString(), rows, installs },
    null,
    2,
  ) + "\n",
);
