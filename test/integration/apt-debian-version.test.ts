/** Differential: our Debian version order against the real `dpkg --compare-versions`. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import fc from "fast-check";
import { expect, it } from "vitest";
import { compareDebianVersions } from "../../src/layout/formats/debian-version.js";

const run = promisify(execFile);

it("agrees with dpkg --compare-versions on 400 generated pairs", async () => {
  const part = fc.constantFrom(
    "0",
    "1",
    "2",
    "9",
    "10",
    "01",
    "a",
    "b",
    "z",
    "~",
    "~~",
    "+",
    ".",
    "rc",
    "A",
  );
  const piece = fc.array(part, { minLength: 1, maxLength: 5 }).map((p) => p.join(""));
  const upstream = piece.map((p) => `1${p}`);
  const version = fc
    .tuple(fc.constantFrom("", "1:", "2:", "0:"), upstream, fc.option(piece, { nil: undefined }))
    .map(([epoch, up, rev]) => `${epoch}${up}${rev === undefined ? "" : `-${rev}`}`);
  const pairs = fc.sample(fc.tuple(version, version), { numRuns: 400, seed: 42 });
  // Close pairs (same prefix) are the interesting ones: add a few derived from each other.
  for (const [a] of pairs.slice(0, 50))
    pairs.push(
      [a, `${a}~`],
      [a, `${a}a`],
      [a, `${a}.0`],
      [a, a.replace(/^([0-9]+:)?/, "0:")],
      [a, a],
    );
  // One shell for all pairs: lt → -1, eq → 0, gt → 1.
  const script = pairs
    .map(
      ([a, b]) =>
        `if dpkg --compare-versions '${a}' lt '${b}'; then echo -1; elif dpkg --compare-versions '${a}' eq '${b}'; then echo 0; else echo 1; fi`,
    )
    .join("\n");
  const { stdout } = await run("sh", ["-c", script], { maxBuffer: 1 << 20 });
  const expected = stdout.trim().split("\n").map(Number);
  expect(expected).toHaveLength(pairs.length);
  // The sample must exercise every outcome, or it proves little.
  expect(new Set(expected)).toEqual(new Set([-1, 0, 1]));
  const mismatches = pairs
    .map(([a, b], i) => ({ a, b, dpkg: expected[i], ours: Math.sign(compareDebianVersions(a, b)) }))
    .filter((r) => r.dpkg !== r.ours);
  expect(mismatches).toEqual([]);
});
