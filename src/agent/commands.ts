// Wires each command to its module. Each loads lazily (see main.ts).
import { registerCommand } from "./main.js";

registerCommand("keygen", async () => (await import("./cli/keygen.js")).keygenCommand);

export {};
void registerCommand;
