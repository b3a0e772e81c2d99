import { destination, pino, type Logger, type LoggerOptions, type DestinationStream } from "pino";

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

export interface LogOptions {
  level?: string;
  /** Human-readable output (pino-pretty) instead of JSON lines. */
  pretty?: boolean;
  destination?: DestinationStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  const base: LoggerOptions = {
    name: "packrat-agent",
    level: options.level ?? "info",
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty) {
    return pino({
      ...base,
      transport: {
        target: "pino-pretty",
        options: {
          colorize: true,
          translateTime: "SYS:standard",
          ignore: "pid,hostname,name",
          destination: 2,
        },
      },
    });
  }
  // stderr, synchronously: stdout is for command output (status --json), and the last lines
  // before a crash must not sit in a buffer.
  return pino(base, destination({ fd: 2, sync: true }));
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
