import { describeError, PackratError } from "../errors.js";
import { HELP } from "./cli/help.js";
import { agentVersion } from "./version.js";

/**
 * Exit codes: 0 ok, 1 the command ran and failed, 2 usage, 70 internal error (EX_SOFTWARE),
 * 78 configuration error (EX_CONFIG: systemd's RestartPreventExitStatus stops a restart loop).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, internal: 70, config: 78 } as const;

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    process.stdout.write(HELP);
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  if (first === "-V" || first === "--version" || first === "version") {
    process.stdout.write(`packrat-agent ${agentVersion()}\n`);
    return EXIT.ok;
  }
  // The AWS SDK (the [s3] bucket) warns on every start that its releases from 2027 need
  // Node 22. This agent pins its SDK version and ships the runtime it runs on, so the warning
  // asks the operator for nothing they can do; the dependency is tracked in the project.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const { COMMANDS } = await import("./commands.js");
  const load = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!load) {
    process.stderr.write(`packrat-agent: unknown command "${first}"; see packrat-agent --help\n`);
    return EXIT.usage;
  }
  try {
    const command = await load();
    return await command(rest);
  } catch (err) {
    return reportFatal(err);
  }
}

export function reportFatal(err: unknown): number {
  if (err instanceof PackratError) {
    process.stderr.write(`packrat-agent: ${describeError(err)}\n`);
    if (err.code === "PACKRAT_USAGE") return EXIT.usage;
    if (err.code === "PACKRAT_CONFIG_INVALID" || err.code === "PACKRAT_CONFIG_NOT_FOUND")
      return EXIT.config;
    return EXIT.failed;
  }
  const stack = err instanceof Error && err.stack ? err.stack : String(err);
  process.stderr.write(
    `packrat-agent: internal error (please report it with this output):\n${stack}\n`,
  );
  return EXIT.internal;
}

/** Entry point used by bin/packrat-agent. */
export async function runCli(): Promise<void> {
  process.exitCode = await main(process.argv.slice(2));
}
