/** Argument parsing and config loading shared by the commands. Only src/agent/ reads process. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { PackratError } from "../../errors.js";
import { createLogger, type Logger } from "../../log.js";
import type { Settings } from "../../settings.js";
import { loadConfig, resolveConfigPath } from "../config.js";

export const GLOBAL_OPTIONS = {
  config: { type: "string", short: "c" },
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

export function parseCommandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  argv: string[],
  options: O,
  allowPositionals = false,
) {
  try {
    return parseArgs({
      args: argv,
      options: { ...GLOBAL_OPTIONS, ...options },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    throw new PackratError("PACKRAT_USAGE", `${command}: ${(err as Error).message}`, {
      hint: "see packrat-agent --help",
      cause: err,
    });
  }
}

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];

const FORMATS = ["auto", "json", "compact"];

export function makeLogger(
  level: string | undefined,
  fallback: string,
  format: string | undefined = undefined,
): Logger {
  const chosen = level ?? fallback;
  if (!LEVELS.includes(chosen)) {
    throw new PackratError(
      "PACKRAT_USAGE",
      `--log-level ${chosen}: expected one of ${LEVELS.join(", ")}`,
    );
  }
  const wanted = format ?? "auto";
  if (!FORMATS.includes(wanted)) {
    throw new PackratError(
      "PACKRAT_USAGE",
      `--log-format ${wanted}: expected one of ${FORMATS.join(", ")}`,
    );
  }
  // JSON lines for journald and log shippers; a short line per event on a terminal.
  const tty = process.stderr.isTTY === true;
  const compact = wanted === "compact" || (wanted === "auto" && tty);
  return createLogger({
    level: chosen,
    format: compact ? "compact" : "json",
    color: compact && tty && process.env.NO_COLOR === undefined,
    clearLine: compact && tty,
  });
}

export async function loadSettings(
  flag: string | undefined,
  onWarning: (w: string) => void,
): Promise<Settings> {
  const file = resolveConfigPath({ flag, env: process.env });
  return loadConfig(file, { onWarning });
}

/** Load config, then a logger at the configured level (flag wins), replaying config warnings. */
export async function settingsAndLogger(values: {
  config?: string | undefined;
  "log-level"?: string | undefined;
  "log-format"?: string | undefined;
}): Promise<{ settings: Settings; log: Logger }> {
  const warnings: string[] = [];
  const settings = await loadSettings(values.config, (w) => warnings.push(w));
  const log = makeLogger(values["log-level"], settings.mirror.logLevel, values["log-format"]);
  for (const w of warnings) log.warn(w);
  return { settings, log };
}
