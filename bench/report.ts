/**
 * Writes a benchmark run up: latest.json (every run's figures), latest.md (the tables the
 * README and docs/benchmarks.md show) and ratios.svg (how many times faster than each peer, on a
 * log scale; hand-written SVG, no chart library); and bench/RESULTS.md, issue 25's table of
 * targets, re-rendered from the last run at each N (results/n<N>.json).
 */
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";

export interface Measurement {
  case: string;
  format: string;
  tool: string;
  runsMs: number[];
  medianMs: number;
  /** Median CPU time (user + system); NaN where not measured. */
  medianCpuMs: number;
  maxRssKb: number;
  note?: string;
  p50Ms?: number;
  p99Ms?: number;
  throughputMiBs?: number;
  /** A run was stopped at the time limit: the median is a lower bound. */
  timedOut?: boolean;
}

export interface BenchResults {
  date: string;
  commit: string;
  n: number;
  runs: number;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    /** 1/5/15-minute load: other work on the machine slows wall times, ours and the peers' alike. */
    loadAverageAtStart: number[];
    loadAverageAtEnd: number[];
  };
  measurements: Measurement[];
}

export interface Ratio {
  label: string;
  /** > 1: ours is that many times faster (or, for downloads, that fraction of curl's speed). */
  ratio: number;
  /** The peer was stopped at the time limit: the ratio is at least this. */
  lowerBound?: boolean;
}

const OURS = "packrat-agent";
/** Our own extra rows ("packrat-agent, first change after start") are not peers. */
const isOurs = (tool: string) => tool === OURS || tool.startsWith(`${OURS},`);

const CASE_TITLES: Record<string, string> = {
  "a-cold": "a. Cold: index and sign N packages already on disk",
  "b-plus-one": "b. +1: one new package until the signed entry point names it",
  "c-no-change": "c. No-change full sync (stat only, hashes nothing)",
  "c-deep-verify": "c. Deep verify (re-hash every file) against sha256sum of the same files",
  "d-trigger": "d. Trigger latency: tag on the master until the published index names it",
  "e-download": "e. Download throughput, large files from a local HTTP server",
};

function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "n/a";
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

function fmtMb(kb: number): string {
  return `${Math.round(kb / 1024)} MB`;
}

/** A tool name inside a markdown table cell ("curl | sha256sum"). */
function cell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

function fmtRatio(r: number): string {
  return r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`;
}

/** Ratios of each peer to ours, per case and format (the SVG's bars). */
export function ratios(results: BenchResults): Ratio[] {
  const out: Ratio[] = [];
  const ms = results.measurements;
  for (const kase of ["a-cold", "b-plus-one", "c-deep-verify"]) {
    for (const ours of ms.filter((m) => m.case === kase && m.tool === OURS)) {
      for (const peer of ms.filter(
        (m) => m.case === kase && m.format === ours.format && !isOurs(m.tool),
      )) {
        out.push({
          label: `${kase.slice(0, 1)} ${ours.format}: vs ${peer.tool}`,
          ratio: peer.medianMs / ours.medianMs,
          ...(peer.timedOut ? { lowerBound: true } : {}),
        });
      }
    }
  }
  const ours = ms.find((m) => m.case === "e-download" && m.tool === OURS);
  for (const peer of ms.filter((m) => m.case === "e-download" && m.tool !== OURS)) {
    if (ours?.throughputMiBs && peer.throughputMiBs)
      out.push({
        label: `e download: vs ${peer.tool}`,
        ratio: ours.throughputMiBs / peer.throughputMiBs,
      });
  }
  return out;
}

export function renderMarkdown(results: BenchResults): string {
  const ms = results.measurements;
  const lines: string[] = [
    `Commit ${results.commit}. N = ${results.n} packages per format, median of up to ${results.runs} runs; ${results.machine.cpus} CPUs (${results.machine.cpuModel}), ${results.machine.memoryGiB} GiB, Node ${results.machine.node}; ${results.date.slice(0, 16).replace("T", " ")} UTC.`,
    results.machine.loadAverageAtStart.length > 0
      ? `Load average at start/end: ${results.machine.loadAverageAtStart.join(" ")} / ${results.machine.loadAverageAtEnd.join(" ")} (other work shared the machine; runs are interleaved so it falls on every tool alike).`
      : "Runs of this size were not interleaved and CPU time was not recorded (n/a).",
    "Ratio = the peer's median divided by ours (above 1: we are faster). Wall is elapsed time; CPU is user + system time of all threads and child processes (steadier under load). Ours is timed inside its process (the operation alone, as in the running daemon); peers include their process start. Peak RSS: the largest resident set of the run's processes (GNU time).",
    "",
  ];
  for (const kase of ["a-cold", "b-plus-one"]) {
    const rows = ms.filter((m) => m.case === kase);
    if (rows.length === 0) continue;
    lines.push(
      `### ${CASE_TITLES[kase]}`,
      "",
      "| format | tool | median wall | ratio | median CPU | CPU ratio | runs | peak RSS |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const m of rows) {
      const ours = rows.find((o) => o.tool === OURS && o.format === m.format);
      const more = m.timedOut ? "> " : "";
      const peer = !isOurs(m.tool) && ours !== undefined;
      const ratio = peer ? `${more}${fmtRatio(m.medianMs / ours.medianMs)}` : "";
      const cpuRatio =
        peer && Number.isFinite(m.medianCpuMs) ? fmtRatio(m.medianCpuMs / ours.medianCpuMs) : "";
      const tool = isOurs(m.tool) ? `**${m.tool}**` : cell(m.tool);
      const rss = m.timedOut ? "n/a" : fmtMb(m.maxRssKb);
      lines.push(
        `| ${m.format} | ${tool} | ${more}${fmtMs(m.medianMs)} | ${ratio} | ${fmtMs(m.medianCpuMs)} | ${cpuRatio} | ${m.runsMs.length} | ${rss} |`,
      );
    }
    const notes = new Set(rows.filter((r) => r.note).map((m) => `- ${m.tool}: ${m.note}.`));
    lines.push(...notes);
    lines.push("");
  }
  const c = ms.filter((m) => m.case === "c-no-change" || m.case === "c-deep-verify");
  if (c.length > 0) {
    lines.push(
      `### c. No-change full sync and deep verify`,
      "",
      "| format | what | median wall | median CPU | runs | peak RSS |",
      "| --- | --- | ---: | ---: | ---: | ---: |",
    );
    for (const m of c) {
      const what =
        m.case === "c-no-change"
          ? `**${OURS}** full sync, nothing changed`
          : m.tool === OURS
            ? `**${OURS}** deep verify (sync --deep)`
            : `${cell(m.tool)} of the same package files (the floor)`;
      lines.push(
        `| ${m.format} | ${what} | ${fmtMs(m.medianMs)} | ${fmtMs(m.medianCpuMs)} | ${m.runsMs.length} | ${fmtMb(m.maxRssKb)} |`,
      );
    }
    lines.push("");
  }
  const d = ms.filter((m) => m.case === "d-trigger");
  if (d.length > 0) {
    lines.push(
      `### ${CASE_TITLES["d-trigger"]}`,
      "",
      "| repo | daemon | triggers | p50 | p99 | max | peak RSS |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const m of d) {
      lines.push(
        `| ${m.format} | ${cell(m.tool)} | ${m.runsMs.length} | ${fmtMs(m.p50Ms ?? NaN)} | ${fmtMs(m.p99Ms ?? NaN)} | ${fmtMs(Math.max(...m.runsMs))} | ${fmtMb(m.maxRssKb)} |`,
      );
    }
    lines.push("");
  }
  const e = ms.filter((m) => m.case === "e-download");
  if (e.length > 0) {
    const ours = e.find((m) => m.tool === OURS);
    lines.push(
      `### ${CASE_TITLES["e-download"]}`,
      "",
      `${e[0]?.note ?? ""}.`,
      "",
      "| tool | median time | MiB/s | ours as a share of it | peak RSS |",
      "| --- | ---: | ---: | ---: | ---: |",
    );
    for (const m of e) {
      const share =
        m.tool === OURS || !ours?.throughputMiBs || !m.throughputMiBs
          ? ""
          : `${((100 * ours.throughputMiBs) / m.throughputMiBs).toFixed(0)}%`;
      lines.push(
        `| ${m.tool === OURS ? `**${OURS}**` : cell(m.tool)} | ${fmtMs(m.medianMs)} | ${(m.throughputMiBs ?? 0).toFixed(0)} | ${share} | ${fmtMb(m.maxRssKb)} |`,
      );
    }
    lines.push("");
  }
  return `${lines.join("\n")}\n`;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A horizontal bar per ratio on a log scale, centred on 1x. */
export function renderSvg(results: BenchResults): string {
  const rs = ratios(results).filter((r) => Number.isFinite(r.ratio) && r.ratio > 0);
  const labelW = 260;
  const plotW = 520;
  const rowH = 22;
  const top = 48;
  const height = top + rs.length * rowH + 40;
  const logs = rs.map((r) => Math.log10(r.ratio));
  const lo = Math.floor(Math.min(-0.5, ...logs));
  const hi = Math.ceil(Math.max(0.5, ...logs));
  const x = (v: number) => labelW + ((v - lo) / (hi - lo)) * plotW;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 80}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">packrat-agent vs peers, N = ${results.n} (times faster; log scale)</text>`,
  ];
  for (let p = lo; p <= hi; p++) {
    const v = 10 ** p;
    parts.push(
      `<line x1="${x(p)}" y1="${top - 8}" x2="${x(p)}" y2="${height - 30}" stroke="${p === 0 ? "#333" : "#ddd"}"/>`,
      `<text x="${x(p)}" y="${height - 14}" text-anchor="middle" fill="#555">${v >= 1 ? v : v.toFixed(Math.abs(p))}x</text>`,
    );
  }
  rs.forEach((r, i) => {
    const y = top + i * rowH;
    const v = Math.log10(r.ratio);
    const x0 = Math.min(x(0), x(v));
    const w = Math.max(1, Math.abs(x(v) - x(0)));
    parts.push(
      `<text x="${labelW - 8}" y="${y + 14}" text-anchor="end">${esc(r.label)}</text>`,
      `<rect x="${x0}" y="${y + 3}" width="${w}" height="${rowH - 6}" fill="${r.ratio >= 1 ? "#2e7d32" : "#c62828"}"/>`,
      `<text x="${Math.max(x(0), x(v)) + 4}" y="${y + 14}" fill="#333">${r.lowerBound ? "&gt; " : ""}${fmtRatio(r.ratio)}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

// ---- RESULTS.md: every figure of issue 25's table, against its target ---------------------

/** The issue's names for the formats the bench measures. */
const MANAGER: Record<string, string> = { deb: "apt", rpm: "yum", pacman: "pacman" };
const FORMAT_ORDER = ["deb", "rpm", "pacman"];

interface SummaryRow {
  what: string;
  ours: string;
  /** Against the best peer or the floor: "aptly 1.70 s, 3.00x". */
  against: string;
  target: string;
  /** true met, false missed, null not measured or no target. */
  met: boolean | null;
}

function metCell(met: boolean | null): string {
  return met === null ? "n/a" : met ? "met" : "**missed**";
}

/** The fastest peer of a case and format (a timed-out one only if nothing else ran). */
function bestPeer(ms: readonly Measurement[], kase: string, format: string): Measurement | null {
  const peers = ms.filter((m) => m.case === kase && m.format === format && !isOurs(m.tool));
  const finished = peers.filter((m) => !m.timedOut);
  const pool = finished.length > 0 ? finished : peers;
  return pool.reduce<Measurement | null>((b, m) => (b && b.medianMs <= m.medianMs ? b : m), null);
}

function peerText(peer: Measurement | null, ours: Measurement): string {
  if (!peer) return "no peer measured";
  const more = peer.timedOut ? "> " : "";
  return `${cell(peer.tool)} ${more}${fmtMs(peer.medianMs)} (${more}${fmtRatio(peer.medianMs / ours.medianMs)})`;
}

/** The rows of issue 25's table for one run; targets at N >= 100,000 are the issue's scale ones. */
export function summaryRows(results: BenchResults): SummaryRow[] {
  const ms = results.measurements;
  const big = results.n >= 100_000;
  // The issue sets times and memory for N = 10,000 and for the 100,000 scale case; ratios at any N.
  const absolute = big || results.n === 10_000;
  const rows: SummaryRow[] = [];
  /** A time or memory target: checked only at an N the issue sets it for. */
  const limit = (text: string, met: boolean): Pick<SummaryRow, "target" | "met"> =>
    absolute ? { target: text, met } : { target: `(${text} at 10k)`, met: null };
  const ours = (kase: string, format: string) =>
    ms.find((m) => m.case === kase && m.format === format && m.tool === OURS);
  const formats = FORMAT_ORDER.filter((f) => ms.some((m) => m.format === f));

  const plusLimit = big ? 300 : 100;
  for (const f of formats) {
    const m = ours("b-plus-one", f);
    if (!m) continue;
    rows.push({
      what: `+1 package, ${MANAGER[f]}`,
      ours: fmtMs(m.medianMs),
      against: peerText(bestPeer(ms, "b-plus-one", f), m),
      ...limit(`< ${fmtMs(plusLimit)}`, m.medianMs < plusLimit),
    });
  }
  for (const d of ms.filter((m) => m.case === "d-trigger")) {
    const p50 = d.p50Ms ?? NaN;
    const p99 = d.p99Ms ?? NaN;
    rows.push({
      what: `trigger → published, p50 / p99 ${cell(d.tool.replace(`${OURS} `, ""))}`,
      ours: `${fmtMs(p50)} / ${fmtMs(p99)}`,
      against: "",
      ...limit("< 150 ms / < 400 ms", p50 < 150 && p99 < 400),
    });
  }
  const noChangeLimit = big ? 2000 : 200;
  for (const f of formats) {
    const m = ours("c-no-change", f);
    if (!m) continue;
    rows.push({
      what: `no-change full sync, ${MANAGER[f]}`,
      ours: fmtMs(m.medianMs),
      against: "",
      ...limit(`< ${fmtMs(noChangeLimit)}`, m.medianMs < noChangeLimit),
    });
  }
  for (const f of formats) {
    const m = ours("a-cold", f);
    if (!m) continue;
    const peer = bestPeer(ms, "a-cold", f);
    const ratio = peer ? peer.medianMs / m.medianMs : NaN;
    const row: SummaryRow = {
      what: `cold publish, ${MANAGER[f]}`,
      ours: fmtMs(m.medianMs),
      against: peerText(peer, m),
      target: "",
      met: null,
    };
    if (f === "deb") {
      row.target = "≥ 1.5x the best peer";
      row.met = peer ? ratio >= 1.5 : null;
    } else if (f === "rpm") {
      const c = ms.find((x) => x.case === "a-cold" && x.format === f && x.tool === "createrepo_c");
      row.against = peerText(c ?? null, m);
      row.target = "≥ 1.0x createrepo_c";
      row.met = c ? c.medianMs / m.medianMs >= 1 : null;
    } else if (f === "pacman" && !big) {
      Object.assign(row, limit("< 10 s", m.medianMs < 10_000));
    }
    rows.push(row);
  }
  const dl = ms.find((m) => m.case === "e-download" && m.tool === OURS);
  if (dl?.throughputMiBs) {
    const floor = ms.find((m) => m.case === "e-download" && m.tool.startsWith("curl, then sync"));
    const share = floor?.throughputMiBs ? dl.throughputMiBs / floor.throughputMiBs : NaN;
    const plain = ms.find((m) => m.case === "e-download" && m.tool === "curl");
    rows.push({
      what: "downloads",
      ours: `${dl.throughputMiBs.toFixed(0)} MiB/s`,
      against: floor?.throughputMiBs
        ? `curl + write + fsync ${floor.throughputMiBs.toFixed(0)} MiB/s (${(100 * share).toFixed(0)}%)${plain?.throughputMiBs ? `; curl alone ${plain.throughputMiBs.toFixed(0)} MiB/s (${((100 * dl.throughputMiBs) / plain.throughputMiBs).toFixed(0)}%)` : ""}`
        : "no floor measured",
      target: "≥ 90% of curl + write + fsync",
      met: Number.isFinite(share) ? share >= 0.9 : null,
    });
  }
  for (const f of formats) {
    const m = ours("c-deep-verify", f);
    const floor = ms.find((x) => x.case === "c-deep-verify" && x.format === f && !isOurs(x.tool));
    if (!m) continue;
    const ratio = floor ? m.medianMs / floor.medianMs : NaN;
    rows.push({
      what: `verify --deep, ${MANAGER[f]}`,
      ours: fmtMs(m.medianMs),
      against: floor
        ? `${cell(floor.tool)} ${fmtMs(floor.medianMs)} (ours takes ${fmtRatio(ratio)})`
        : "",
      target: "≤ 1.5x sha256sum",
      met: floor ? ratio <= 1.5 : null,
    });
  }
  const rssLimitKb = (big ? 400 : 150) * 1024;
  const oursRss = ms.filter((m) => isOurs(m.tool) && m.maxRssKb > 0);
  if (oursRss.length > 0) {
    const kb = oursRss.map((m) => m.maxRssKb);
    const peersRss = ms.filter(
      (m) =>
        !isOurs(m.tool) &&
        !m.timedOut &&
        m.maxRssKb > 0 &&
        m.case !== "e-download" &&
        m.case !== "c-deep-verify",
    );
    const lowest = peersRss.reduce<Measurement | null>(
      (b, m) => (b && b.maxRssKb <= m.maxRssKb ? b : m),
      null,
    );
    rows.push({
      what: "peak RSS (every run of ours)",
      ours: `${fmtMb(Math.min(...kb))}–${fmtMb(Math.max(...kb))}`,
      against: lowest ? `lowest peer: ${cell(lowest.tool)} ${fmtMb(lowest.maxRssKb)}` : "",
      ...limit(`< ${fmtMb(rssLimitKb)}`, Math.max(...kb) < rssLimitKb),
    });
  }
  return rows;
}

/** One run's section of RESULTS.md. */
export function renderSummary(results: BenchResults): string {
  const m = results.machine;
  const load =
    m.loadAverageAtStart.length > 0
      ? `; load average ${m.loadAverageAtStart.join(" ")} at start, ${m.loadAverageAtEnd.join(" ")} at end`
      : "";
  const cases = [...new Set(results.measurements.map((x) => x.case.slice(0, 1)))].sort().join(", ");
  const lines = [
    `## N = ${results.n.toLocaleString("en")}`,
    "",
    `Commit ${results.commit}, ${results.date.slice(0, 16).replace("T", " ")} UTC; ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}${load}. Cases run: ${cases}; median of up to ${results.runs} runs (results/n${results.n}.md has every figure).`,
    "",
    "| case | packrat-agent | against the best peer or the floor (their time / ours) | target | |",
    "| --- | ---: | --- | --- | --- |",
  ];
  for (const r of summaryRows(results)) {
    lines.push(`| ${r.what} | ${r.ours} | ${r.against} | ${r.target} | ${metCell(r.met)} |`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * bench/RESULTS.md from the last run at each N in `resultsDir` (n<N>.json): a later run at an N
 * replaces its section, so the file shows whether a change made things better or worse.
 */
export async function writeSummary(resultsDir: string, file: string): Promise<void> {
  const runs: BenchResults[] = [];
  for (const name of (await readdir(resultsDir)).filter((n) => /^n\d+\.json$/.test(n))) {
    const r = JSON.parse(await readFile(path.join(resultsDir, name), "utf8")) as BenchResults;
    r.machine.loadAverageAtStart ??= [];
    r.machine.loadAverageAtEnd ??= [];
    runs.push(r);
  }
  runs.sort((a, b) => a.n - b.n);
  const head = [
    "# Benchmark results against issue 25's targets",
    "",
    "Written by `npm run bench` (bench/report.ts) after every run, from the last run at each N",
    "(`bench/results/n<N>.json`); `node dist/bench/report.js --summary` re-renders it. Ratios are",
    "the peer's (or the floor's) median time divided by ours: above 1, ours is faster. The floors",
    "are `sha256sum` of the same package files (deep verify) and `curl -o` then `sync` of the same",
    "file (downloads). A run that measured only some cases shows only those rows.",
    "",
  ];
  await writeFile(file, `${[...head, ...runs.map(renderSummary)].join("\n")}`);
}

/** latest.{json,md} and ratios.svg, plus the same under n<N>.* so runs at several N coexist. */
export async function writeReport(results: BenchResults, dir: string): Promise<void> {
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const md = renderMarkdown(results);
  const svg = renderSvg(results);
  for (const [base, chart] of [
    ["latest", "ratios"],
    [`n${results.n}`, `n${results.n}-ratios`],
  ]) {
    await writeFile(path.join(dir, `${base}.json`), json);
    await writeFile(path.join(dir, `${base}.md`), md);
    await writeFile(path.join(dir, `${chart}.svg`), svg);
  }
}

// Re-render the markdown and chart of a saved run: node dist/bench/report.js <results.json> [dir]
// Re-render bench/RESULTS.md from bench/results/n*.json: node dist/bench/report.js --summary
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const [file, dir] = process.argv.slice(2);
  if (file === "--summary") {
    const bench = path.resolve(import.meta.dirname, "../../bench");
    await writeSummary(path.join(bench, "results"), path.join(bench, "RESULTS.md"));
  } else if (!file) {
    console.error("usage: node dist/bench/report.js <results.json> [output dir]");
    process.exitCode = 2;
  } else {
    const results = JSON.parse(await readFile(file, "utf8")) as BenchResults;
    results.machine.loadAverageAtStart ??= [];
    results.machine.loadAverageAtEnd ??= [];
    for (const m of results.measurements) m.medianCpuMs ??= Number.NaN;
    await writeReport(results, dir ?? path.dirname(file));
  }
}
