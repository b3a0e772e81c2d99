import { destination, pino, type DestinationStream, type Logger, type LoggerOptions } from "pino";

export type { Logger } from "pino";

/** Keys whose values never reach a log line (the master's psk and session token). */
export const REDACT_PATHS = [
  "psk",
  "token",
  "password",
  "*.psk",
  "*.token",
  "*.password",
  "headers.auth-token",
  'headers["Auth-Token"]',
  "config.packrat.psk",
];

/** `json`: JSON lines (journald, log shippers); `compact`: one short line per event (terminals). */
export type LogFormat = "json" | "compact";

export interface LogOptions {
  level?: string;
  format?: LogFormat;
  /** Colour the level of compact lines. */
  color?: boolean;
  /**
   * Compact lines start by clearing the terminal line, so one printed while `sync`'s progress
   * bar is drawn replaces the bar (redrawn at its next update) instead of running into it.
   */
  clearLine?: boolean;
  /** Where lines go (default: stderr, synchronously). */
  destination?: DestinationStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  const base: LoggerOptions = {
    name: "packrat-agent",
    level: options.level ?? "info",
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
  };
  // stderr, synchronously: stdout is for command output (status --json), and the last lines
  // before a crash must not sit in a buffer.
  const out = options.destination ?? destination({ fd: 2, sync: true });
  if (options.format === "compact") {
    return pino(
      base,
      compactStream(out, { color: options.color === true, clearLine: options.clearLine === true }),
    );
  }
  return pino(base, out);
}

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const LEVEL_COLORS: Record<number, string> = { 40: "\x1b[33m", 50: "\x1b[31m", 60: "\x1b[31m" };
/** pino's own fields, never shown as key fields. */
const HIDDEN = new Set(["level", "time", "pid", "hostname", "name", "msg", "v"]);
/** Fields shown first when a line has more than MAX_FIELDS. */
const PREFERRED = ["repo", "file", "path", "generation", "files", "packages", "version", "error"];
const MAX_FIELDS = 3;

function fieldValue(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return /[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "object" && "message" in v && typeof v.message === "string") {
    return JSON.stringify(v.message);
  }
  return null;
}

/**
 * One pino JSON line as a person reads it: `12:03:04 WARN  message  repo=apt file=x.deb`.
 * Time is local, to the second; at most three key fields (repo, file, generation... first),
 * objects other than errors left out. Returns null for a line that is not pino's JSON.
 */
export function formatCompact(line: string, opts: { color?: boolean } = {}): string | null {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (rec === null || typeof rec !== "object") return null;
  const level = typeof rec.level === "number" ? rec.level : 30;
  const time = new Date(typeof rec.time === "number" ? rec.time : Date.now());
  const hms = [time.getHours(), time.getMinutes(), time.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
  let name = (LEVEL_NAMES[level] ?? String(level)).padEnd(5);
  const color = opts.color ? LEVEL_COLORS[level] : undefined;
  if (color) name = `${color}${name}\x1b[0m`;
  const keys = Object.keys(rec).filter((k) => !HIDDEN.has(k));
  keys.sort((a, b) => rank(a) - rank(b));
  const fields: string[] = [];
  for (const k of keys) {
    if (fields.length === MAX_FIELDS) break;
    const v = fieldValue(rec[k]);
    if (v !== null) fields.push(`${k}=${v}`);
  }
  const msg = typeof rec.msg === "string" ? rec.msg : "";
  return `${hms} ${name} ${msg}${fields.length > 0 ? `  ${fields.join(" ")}` : ""}`;
}

function rank(key: string): number {
  const i = PREFERRED.indexOf(key === "err" ? "error" : key);
  return i === -1 ? PREFERRED.length : i;
}

/** A pino destination that writes compact lines to `out`. */
export function compactStream(
  out: DestinationStream,
  opts: { color?: boolean; clearLine?: boolean } = {},
) {
  const prefix = opts.clearLine ? "\r\x1b[K" : "";
  return {
    write(chunk: string): void {
      for (const line of chunk.split("\n")) {
        if (line === "") continue;
        out.write(`${prefix}${formatCompact(line, opts) ?? line}\n`);
      }
    },
  };
}

/** A logger that drops everything; for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/** Strip credentials from a URL before it is logged (pnpm's redactUrl). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "redacted";
    if (u.username) u.username = "redacted";
    return u.toString();
  } catch {
    return url;
  }
}
