/** vercmp() against pacman's own `vercmp` tool on many generated version pairs. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import fc from "fast-check";
import { expect, test } from "vitest";
import { vercmp } from "../../src/layout/formats/pkginfo.js";

const run = promisify(execFile);

test("vercmp agrees with pacman's vercmp", async () => {
  const part = fc.stringMatching(/^[0-9a-z]{1,3}$/);
  const sep = fc.constantFrom(".", ".", "-", "_", "+", "~", "..");
  const version = fc
    .tuple(
      fc.option(fc.stringMatching(/^[0-9]{1,2}$/), { nil: undefined }),
      fc.array(fc.tuple(part, sep), { minLength: 1, maxLength: 4 }),
      part,
    )
    .map(
      ([epoch, parts, last]) =>
        `${epoch === undefined ? "" : `${epoch}:`}${parts.map(([p, s]) => p + s).join("")}${last}`,
    );
  const pairs = fc.sample(fc.tuple(version, version), { numRuns: 400, seed: 42 });
  pairs.push(["1.0", "1.0.0"], ["1:0", "2"], ["1.0-1", "1.0-1.1"], ["r100", "r99"]);
  const script = pairs.map(([a, b]) => `vercmp '${a}' '${b}'`).join("\n");
  const { stdout } = await run("sh", ["-c", script], { maxBuffer: 1 << 20 });
  const theirs = stdout.trim().split("\n").map(Number);
  expect(theirs).toHaveLength(pairs.length);
  pairs.forEach(([a, b], i) => {
    expect(Math.sign(vercmp(a, b)) + 0, `${a} vs ${b}`).toBe(Math.sign(theirs[i]!) + 0);
  });
}, 60_000);
