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

describe("assertSafeRelativePath's one-pass check", () => {
  /** The rule spelt out segment by segment: what the one-pass check must agree with. */
  function bySegments(rel: string): string | null {
    const segments = rel.split("/").filter((s) => s !== "");
    const bad =
      rel.includes("\0") ||
      rel.includes("\\") ||
      rel.startsWith("/") ||
      segments.length === 0 ||
      segments.some((s) => s === "." || s === ".." || !/^[0-9a-zA-Z._+~@:-]+$/.test(s));
    return bad ? null : segments.join("/");
  }
  const answer = (rel: string): string | null => {
    try {
      return assertSafeRelativePath(rel, "t");
    } catch {
      return null;
    }
  };

  it("agrees with the segment-by-segment rule on every short path of a hostile alphabet", () => {
    // Every string of up to 5 characters over these: dots, slashes, a backslash, NUL, a
    // space and safe characters (about 100,000 paths).
    const alphabet = ["a", ".", "/", "\\", "\0", " ", "-", "é"];
    let checked = 0;
    const visit = (prefix: string, depth: number) => {
      expect(answer(prefix), JSON.stringify(prefix)).toBe(bySegments(prefix));
      checked++;
      if (depth === 0) return;
      for (const c of alphabet) visit(prefix + c, depth - 1);
    };
    visit("", 5);
    expect(checked).toBeGreaterThan(30_000);
    for (const rel of ["a/./b", "../a", "a/..", "a//b/", ".hidden/x", "x/.../y", "dists/b/by-hash"])
      expect(answer(rel), rel).toBe(bySegments(rel));
  });
});
