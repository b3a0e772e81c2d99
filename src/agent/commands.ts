// Wires each command to its module. Each loads lazily (see main.ts), so `--help` stays instant
// and a command's dependencies load only when it runs.
import { registerCommand } from "./main.js";

registerCommand("run", async () => (await import("./cli/run.js")).runCommand);
registerCommand("sync", async () => (await import("./cli/sync.js")).syncCommand);
registerCommand("status", async () => (await import("./cli/status.js")).statusCommand);
registerCommand("inspect", async () => (await import("./cli/inspect.js")).inspectCommand);
registerCommand("verify", async () => (await import("./cli/verify.js")).verifyCommand);
registerCommand("keygen", async () => (await import("./cli/keygen.js")).keygenCommand);
registerCommand("demo", async () => (await import("./cli/demo.js")).demoCommand);
