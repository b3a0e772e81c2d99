import { describe, expect, it } from "vitest";
import { HELP } from "../../src/agent/cli/help.js";

describe("--help", () => {
  it("lists every command", () => {
    for (const command of ["run", "sync", "verify", "status", "inspect", "keygen", "demo"]) {
      expect(HELP).toMatch(new RegExp(`^  ${command}\\b`, "m"));
    }
  });
});
