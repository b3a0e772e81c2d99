import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  assertSafeFilename,
  assertSafeRelativePath,
  resolveInside,
} from "../../src/sync/filename-guard.js";

describe("assertSafeFilename", () => {
  it("accepts the master's names", () => {
    for (const name of ["foo_1.0-1_all.deb", "bar-2.3-1.el9.x86_64.rpm", "a.b-c_d"]) {
      expect(assertSafeFilename(name, "t")).toBe(name);
    }
  });

  it.each([
    "../../etc/passwd",
    "a/b.deb",
    "..",
    ".",
    "",
    "x\0y",
    "with space.deb",
    ".hidden",
    "a\\b",
  ])("refuses %j with a message naming it", (name) => {
    expect(() => assertSafeFilename(name, "PackageFile:7")).toThrow(/PackageFile:7: filename/);
  });

  it("never accepts a slash, a NUL or a dot-dot name (property)", () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        let ok = true;
        try {
          assertSafeFilename(s, "p");
        } catch {
          ok = false;
        }
        if (ok) {
          expect(s).not.toMatch(/[/\\\0]/);
          expect(s).not.toBe("..");
          expect(s.startsWith(".")).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("relative paths", () => {
  it("normalises and accepts nested safe paths", () => {
    expect(assertSafeRelativePath("prod/apt/", "t")).toBe("prod/apt");
    expect(resolveInside("/srv/repo", "a/b/c.deb", "t")).toBe("/srv/repo/a/b/c.deb");
  });

  it.each(["../x", "a/../../b", "/abs", "a/./b", "", "a\0b"])("refuses %j", (rel) => {
    expect(() => resolveInside("/srv/repo", rel, "repo x")).toThrow(/repo x: path/);
  });

  it("never resolves outside the root (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("a", "..", ".", "b.deb", "/", "", "x y")), (parts) => {
        const rel = parts.join("/");
        try {
          const full = resolveInside("/srv/repo", rel, "p");
          expect(full.startsWith("/srv/repo/")).toBe(true);
        } catch {
          // refused: fine
        }
      }),
    );
  });
});
