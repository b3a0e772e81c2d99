import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, IntegrityError, PackratError, describeError } from "../../src/errors.js";

describe("error codes", () => {
  const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
  const documented = new Set([...doc.matchAll(/^\| (PACKRAT_[A-Z_]+)\s*\|/gm)].map((m) => m[1]));

  it("docs/errors.md lists every code, and no code that does not exist", () => {
    expect([...documented].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it("carries code, hint and cause", () => {
    const cause = new Error("socket hang up");
    const err = new PackratError("PACKRAT_MASTER_UNREACHABLE", "http://m: unreachable", {
      hint: "check host",
      cause,
    });
    expect(err.code).toBe("PACKRAT_MASTER_UNREACHABLE");
    expect(err.cause).toBe(cause);
    expect(describeError(err)).toBe("http://m: unreachable (check host)");
  });

  it("IntegrityError names the path and both hashes", () => {
    const err = new IntegrityError("pool/foo/foo.deb", "aa", "bb");
    expect(err.code).toBe("PACKRAT_HASH_MISMATCH");
    expect(err.message).toContain("pool/foo/foo.deb");
    expect(err.message).toContain("expected aa");
  });
});
