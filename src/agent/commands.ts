// Wires each command to its module. Each loads lazily (see main.ts), so `--help` stays instant
// and a command's dependencies load only when it runs. This file imports nothing of main.ts:
// main loads it, never the other way round.

/** A command: its arguments in, its exit code out. */
export type Command = (argv: string[]) => Promise<number>;

/** Commands load lazily so `--help` stays instant and a broken format cannot stop the others. */
export const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  run: async () => (await import("./cli/run.js")).runCommand,
  sync: async () => (await import("./cli/sync.js")).syncCommand,
  status: async () => (await import("./cli/status.js")).statusCommand,
  inspect: async () => (await import("./cli/inspect.js")).inspectCommand,
  verify: async () => (await import("./cli/verify.js")).verifyCommand,
  keygen: async () => (await import("./cli/keygen.js")).keygenCommand,
  demo: async () => (await import("./cli/demo.js")).demoCommand,
};
