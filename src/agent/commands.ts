// Wires each command to its module. Each loads lazily (see main.ts).
import { registerCommand } from "./main.js";

export {};
void registerCommand;
