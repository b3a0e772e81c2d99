/**
 * Writes a benchmark run up: latest.json (every run's figures), latest.md (the tables the
 * README and docs/benchmarks.md show) and ratios.svg (how many times faster than each peer, on a
 * log scale; hand-written SVG, no chart library).
 */
import { readFile, writeFile } from "node:fs/promises";
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
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const [file, dir] = process.argv.slice(2);
  if (!file) {
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
