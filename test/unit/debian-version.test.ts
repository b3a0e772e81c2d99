import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  compareDebianVersions,
  parseDebianVersion,
} from "../../src/layout/formats/debian-version.js";

/** Pairs with the sign dpkg --compare-versions gives (deb-version(7) and dpkg's own tests). */
/** The sign as -1, 0 or 1 (never -0, which toBe tells apart from 0). */
const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

const CASES: [string, string, -1 | 0 | 1][] = [
  ["1.0", "1.0", 0],
  ["1.0", "1.0-0", 0],
  ["1.0", "1.00", 0],
  ["0:1.0", "1.0", 0],
  ["1:1.0", "2.0", 1],
  ["1.0~rc1", "1.0", -1],
  ["1.0~~", "1.0~", -1],
  ["1.0~", "1.0", -1],
  ["1.0", "1.0a", -1],
  ["1.0a", "1.0+", -1],
  ["1.0.1", "1.0a", 1],
  ["1.0-1", "1.0-1ubuntu1", -1],
  ["1.0-1~bpo1", "1.0-1", -1],
  ["2.0-1", "10.0-1", -1],
  ["1.2.3-4", "1.2.3-10", -1],
  ["1.0-a", "1.0-b", -1],
  ["1-2-3", "1-2-4", -1],
  ["1:0.1", "0:9.9", 1],
  ["10:1", "9:1", 1],
  ["a", "b", -1],
  ["1.0+dfsg", "1.0", 1],
];

describe("compareDebianVersions", () => {
  for (const [a, b, expected] of CASES) {
    it(`${a} ${expected < 0 ? "<" : expected > 0 ? ">" : "="} ${b}`, () => {
      expect(sign(compareDebianVersions(a, b))).toBe(expected);
      expect(sign(compareDebianVersions(b, a))).toBe(sign(-expected));
    });
  }
  it("splits epoch, upstream and revision at the first colon and last dash", () => {
    expect(parseDebianVersion("2:1.0-rc-3")).toEqual({
      epoch: 2,
      upstream: "1.0-rc",
      revision: "3",
    });
    expect(parseDebianVersion("1.0")).toEqual({ epoch: 0, upstream: "1.0", revision: "" });
  });
  it("is a total order (antisymmetric, transitive)", () => {
    const version = fc.stringMatching(/^([0-9]:)?[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,4})?$/);
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        expect(sign(compareDebianVersions(a, b))).toBe(sign(-compareDebianVersions(b, a)));
        if (compareDebianVersions(a, b) <= 0 && compareDebianVersions(b, c) <= 0) {
          expect(compareDebianVersions(a, c)).toBeLessThanOrEqual(0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
