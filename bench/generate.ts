/**
 * Synthetic package corpora for the benchmarks: N packages of each format (deb, rpm, pacman)
 * with distinct names and versions, control data shaped like a distribution's (dependencies,
 * multi-line descriptions, sections, licences, a few files each) and small payloads. Built in
 * memory by the pure-TS builders of src/demo/packages, so 10,000 of each take seconds, not the
 * minutes dpkg-deb, rpmbuild or makepkg would.
 *
 * Output: `<dir>/{deb,rpm,pacman}/<filename>` plus `<dir>/manifest.json` (one entry per file:
 * package name, version, arch, filename). The same seed and N always give the same bytes.
 *
 *   node dist/bench/generate.js <dir> <N> [deb,rpm,pacman]
 */
import { writeFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { buildDeb, controlText } from "../src/demo/packages/deb.js";
import { buildPacmanPackage } from "../src/demo/packages/pacman.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../src/demo/packages/rpm.js";

export type Format = "deb" | "rpm" | "pacman";
export const FORMATS: readonly Format[] = ["deb", "rpm", "pacman"];

export interface CorpusEntry {
  /** Package name (Package:, Name:, pkgname). */
  name: string;
  /** The version as the master lists it (deb: upstream-revision, rpm: version-release). */
  version: string;
  /** packrat arch: amd64/x86_64/all. */
  arch: string;
  filename: string;
}

export interface Corpus {
  dir: string;
  n: number;
  entries: Record<Format, CorpusEntry[]>;
}

// Prefixes spread names over many pool directories (apt pools by the first 6 characters),
// as a real archive's names do.
const PREFIXES = [
  "lib",
  "python3-",
  "golang-",
  "node-",
  "perl-",
  "ruby-",
  "fonts-",
  "texlive-",
  "gir1.2-",
  "xserver-",
  "php-",
  "r-cran-",
  "haskell-",
  "ocaml-",
  "gnome-",
  "kde-",
];
const WORDS = [
  "alpha",
  "bravo",
  "cairo",
  "delta",
  "ember",
  "flint",
  "gamma",
  "harbor",
  "indigo",
  "jasper",
  "kernel",
  "lumen",
  "matrix",
  "nimbus",
  "onyx",
  "pixel",
  "quartz",
  "raven",
  "sigma",
  "tundra",
];
const SECTIONS = ["libs", "utils", "devel", "python", "web", "net", "admin", "text", "fonts"];
const LICENSES = ["MIT", "GPL-2.0-or-later", "Apache-2.0", "BSD-3-Clause", "LGPL-2.1-only"];

/** A deterministic pseudo-random sequence (mulberry32), so corpora are reproducible. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Spec {
  name: string;
  upstream: string;
  release: number;
  section: string;
  license: string;
  summary: string;
  description: string;
  depends: string[];
  noarch: boolean;
  readme: string;
}

/** The i-th package's data; `i` may go past N (the +1 and trigger cases add packages). */
export function packageSpec(i: number): Spec {
  const r = random(i * 7919 + 17);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(r() * list.length)]!;
  const prefix = PREFIXES[i % PREFIXES.length]!;
  const name = `${prefix}${pick(WORDS)}${i}`;
  const upstream = `${1 + Math.floor(r() * 9)}.${Math.floor(r() * 20)}.${Math.floor(r() * 100)}`;
  const depends = Array.from(
    { length: Math.floor(r() * 5) },
    () => `${pick(PREFIXES)}${pick(WORDS)}${Math.floor(r() * 5000)}`,
  );
  const summary = `${pick(WORDS)} ${pick(WORDS)} support for the ${pick(WORDS)} toolkit`;
  const description = Array.from(
    { length: 2 + Math.floor(r() * 4) },
    () =>
      `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} handling, with ${pick(WORDS)} and ${pick(WORDS)} backends.`,
  );
  return {
    name,
    upstream,
    release: 1 + Math.floor(r() * 3),
    section: pick(SECTIONS),
    license: pick(LICENSES),
    summary,
    description: description.join("\n"),
    depends,
    noarch: r() < 0.2,
    readme: `${name} ${upstream}\n${description.join("\n")}\n`.repeat(1 + Math.floor(r() * 8)),
  };
}

export function buildPackage(format: Format, i: number): { entry: CorpusEntry; bytes: Uint8Array } {
  const s = packageSpec(i);
  switch (format) {
    case "deb": {
      const arch = s.noarch ? "all" : "amd64";
      const version = `${s.upstream}-${s.release}`;
      const bytes = buildDeb({
        control: controlText({
          Package: s.name,
          Version: version,
          Architecture: arch,
          Maintainer: "Packrat Bench <bench@packrat.invalid>",
          "Installed-Size": String(4 + (i % 400)),
          ...(s.depends.length > 0
            ? { Depends: s.depends.map((d) => `${d} (>= 1.0)`).join(", ") }
            : {}),
          Section: s.section,
          Priority: "optional",
          Homepage: `https://example.invalid/${s.name}`,
          Description: `${s.summary}\n${s.description
            .split("\n")
            .map((l) => ` ${l}`)
            .join("\n")}`,
        }),
        files: {
          [`usr/share/doc/${s.name}/README`]: s.readme,
          [`usr/share/doc/${s.name}/copyright`]: `License: ${s.license}\n`,
        },
      });
      return {
        entry: { name: s.name, version, arch, filename: `${s.name}_${version}_${arch}.deb` },
        bytes,
      };
    }
    case "rpm": {
      const arch = s.noarch ? "noarch" : "x86_64";
      const input = {
        name: s.name,
        version: s.upstream,
        release: `${s.release}.el9`,
        arch,
        summary: s.summary,
        description: s.description,
        buildTime: 1700000000 + i,
        requires: s.depends.map((d) => ({ name: d })),
        provides: [{ name: s.name, flags: 8, version: `${s.upstream}-${s.release}.el9` }],
        files: {
          [`/usr/share/doc/${s.name}/README`]: s.readme,
          [`/usr/share/licenses/${s.name}/LICENSE`]: `${s.license}\n`,
        },
        changelog: [
          {
            time: 1700000000,
            author: "Packrat Bench <bench@packrat.invalid> - 1",
            text: "- rebuilt",
          },
        ],
        compress: "gzip" as const,
      };
      return {
        entry: {
          name: s.name,
          version: `${s.upstream}-${s.release}.el9`,
          arch: s.noarch ? "all" : "x86_64",
          filename: syntheticRpmFilename(input),
        },
        bytes: buildSyntheticRpm(input),
      };
    }
    case "pacman": {
      const arch = s.noarch ? "any" : "x86_64";
      const version = `${s.upstream}-${s.release}`;
      const built = buildPacmanPackage({
        name: s.name,
        version,
        arch,
        desc: s.summary,
        builddate: 1700000000 + i,
        extra: { license: s.license, depend: s.depends },
        files: {
          [`usr/share/doc/${s.name}/README`]: s.readme,
          [`usr/share/licenses/${s.name}/LICENSE`]: `${s.license}\n`,
        },
      });
      return {
        entry: {
          name: s.name,
          version,
          arch: s.noarch ? "all" : "x86_64",
          filename: built.filename,
        },
        bytes: built.bytes,
      };
    }
  }
}

/** What one generating thread is asked for: packages [from, to) of each format. */
interface Stripe {
  kind: "packrat-corpus-stripe";
  dir: string;
  formats: Format[];
  from: number;
  to: number;
}

/** Build and write one stripe (on a worker thread); returns its entries by format. */
function writeStripe(stripe: Stripe): Partial<Record<Format, CorpusEntry[]>> {
  const out: Partial<Record<Format, CorpusEntry[]>> = {};
  for (const format of stripe.formats) {
    const list: CorpusEntry[] = [];
    for (let i = stripe.from; i < stripe.to; i++) {
      const { entry, bytes } = buildPackage(format, i);
      writeFileSync(path.join(stripe.dir, format, entry.filename), bytes);
      list.push(entry);
    }
    out[format] = list;
  }
  return out;
}

function runStripe(stripe: Stripe): Promise<Partial<Record<Format, CorpusEntry[]>>> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: stripe });
    let result: Partial<Record<Format, CorpusEntry[]>> | null = null;
    worker.once("message", (m: Partial<Record<Format, CorpusEntry[]>>) => (result = m));
    worker.once("error", reject);
    worker.once("exit", (code) => {
      if (result !== null) resolve(result);
      else reject(new Error(`corpus worker exited with code ${code} and no result`));
    });
  });
}

/**
 * Generate (or reuse) a corpus of N packages of each of `formats`. A format the manifest already
 * holds N of is reused; the others are built on one worker thread per core, each writing a
 * stripe of package numbers (100,000 of a format are about 45 s of CPU on one thread).
 */
export async function generateCorpus(
  dir: string,
  n: number,
  formats: readonly Format[] = FORMATS,
): Promise<Corpus> {
  const manifestPath = path.join(dir, "manifest.json");
  const entries: Record<Format, CorpusEntry[]> = { deb: [], rpm: [], pacman: [] };
  try {
    const existing = JSON.parse(await readFile(manifestPath, "utf8")) as Corpus;
    if (existing.n === n) {
      for (const f of FORMATS)
        if (existing.entries[f]?.length === n) entries[f] = existing.entries[f];
    }
  } catch {
    // no corpus yet
  }
  const missing = formats.filter((f) => entries[f].length !== n);
  if (missing.length > 0) {
    for (const format of missing) await mkdir(path.join(dir, format), { recursive: true });
    const threads = Math.max(1, Math.min(os.availableParallelism(), Math.ceil(n / 1000)));
    const per = Math.ceil(n / threads);
    const stripes = await Promise.all(
      Array.from({ length: threads }, (_, t) =>
        runStripe({
          kind: "packrat-corpus-stripe",
          dir,
          formats: missing,
          from: t * per,
          to: Math.min(n, (t + 1) * per),
        }),
      ),
    );
    for (const format of missing) entries[format] = stripes.flatMap((s) => s[format] ?? []);
  }
  const corpus: Corpus = { dir, n, entries };
  if (missing.length > 0) await writeFile(manifestPath, JSON.stringify(corpus));
  return corpus;
}

if (!isMainThread && (workerData as Stripe | null)?.kind === "packrat-corpus-stripe") {
  parentPort?.postMessage(writeStripe(workerData as Stripe));
} else if (
  isMainThread &&
  process.argv[1] &&
  path.resolve(process.argv[1]) === path.resolve(import.meta.filename)
) {
  const [dir, count, formatList] = process.argv.slice(2);
  if (!dir || !count) {
    console.error("usage: node dist/bench/generate.js <dir> <N> [deb,rpm,pacman]");
    process.exitCode = 2;
  } else {
    const started = performance.now();
    const formats = (formatList ?? FORMATS.join(",")).split(",") as Format[];
    const corpus = await generateCorpus(dir, Number(count), formats);
    console.log(
      `${corpus.n} packages of ${formats.join(", ")} in ${dir} (${((performance.now() - started) / 1000).toFixed(1)} s)`,
    );
  }
}
