/**
 * Metadata keys that name Object.prototype members (issue 18 fuzzing, found by reading the
 * parsers the fuzz run feeds): a header called "Constructor" must be kept as written, never
 * read through the prototype.
 */
import { describe, expect, it } from "vitest";
import { parsePkgInfo } from "../../src/layout/formats/pkginfo.js";
import { parseCoreMetadata } from "../../src/layout/formats/python-dist.js";

describe("keys named like Object.prototype members", () => {
  it("Python core metadata keeps a Constructor header and its continuation", () => {
    const fields = parseCoreMetadata("Name: x\nVersion: 1\nConstructor: a\n b\nToString: c\n");
    expect(fields.constructor).toBe("a\nb");
    expect(fields.tostring).toBe("c");
    expect(JSON.stringify(fields)).not.toContain("native code");
  });

  it(".PKGINFO keeps constructor and toString as plain values", () => {
    const info = parsePkgInfo("pkgname = x\npkgver = 1\nconstructor = a\ntoString = c\n");
    expect(info.constructor).toBe("a");
    expect(info["toString" as string]).toBe("c");
  });
});
