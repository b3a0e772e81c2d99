/**
 * The bounded fuzz run for CI (issue 18): every package parser gets FUZZ_RUNS inputs (default
 * below) from test/fuzz/harness.ts and must return a record or throw PackratError
 * PACKRAT_PACKAGE_INVALID, within the time and memory bounds. The seed is fixed so that CI is
 * reproducible; FUZZ_SEED=<n> replays another, FUZZ_SEED=random explores. bench/fuzz.ts is
 * the long run. The harness's own self-test comes first: it must catch each kind of failure.
 */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { PackratError } from "../../src/errors.js";
import type { ByteSource } from "../../src/layout/types.js";
import type { Bounds, ParseFn, Target, Tally } from "./harness.js";
import { fuzzProperty, judge, newTally } from "./harness.js";
import { allTargets, debTarget } from "./targets.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED =
  process.env.FUZZ_SEED === "random"
    ? Date.now() % 2 ** 31
    : Number(process.env.FUZZ_SEED ?? 0x5eed18);
/** Generous for a loaded 2-core CI machine: a real hang or quadratic blow-up is far beyond. */
const BOUNDS: Bounds = { maxMs: 5_000, maxGrowth: 64 << 20 };

const tallies = new Map<string, Tally>();

afterAll(() => {
  const lines = [...tallies].map(
    ([name, t]) =>
      `${name.padEnd(8)} ${String(t.tried).padStart(6)} inputs: ${t.records} records, ${t.refused} refused; slowest ${t.slowestMs.toFixed(0)} ms, most growth ${(t.largestGrowth / 2 ** 20).toFixed(1)} MiB`,
  );
  console.log(`fuzz seed ${SEED}\n${lines.join("\n")}`);
});

describe("the harness catches what it must (self-test)", () => {
  const deb = debTarget();
  /** `deb`'s seeds and mutations, fed to a deliberately broken parser. */
  const broken = (parse: ParseFn): Target => ({
    ...deb,
    name: "broken",
    parse,
    generated: undefined,
  });
  const refuse = () => Promise.reject(new PackratError("PACKRAT_PACKAGE_INVALID", "no"));
  const fails = async (target: Target, bounds: Bounds = BOUNDS) => {
    const details = await fc.check(fuzzProperty(target, newTally(), bounds), {
      numRuns: 200,
      seed: 1,
      endOnFailure: true,
    });
    return details.failed ? String(details.errorInstance) : null;
  };

  it("passes a parser that refuses everything with PackratError", async () => {
    expect(await fails(broken(refuse))).toBeNull();
  });

  it("catches a TypeError from a parser that trusts a truncated file", async () => {
    const parse: ParseFn = async (source: ByteSource) => {
      const bytes = await source.read(0, 200);
      // A "parser" that indexes past what it read: undefined.toString() on short files.
      return { last: (bytes[199] as unknown as number).toString() };
    };
    expect(await fails(broken(parse))).toMatch(/TypeError/);
  });

  it("catches a bug wrapped in a PackratError's cause", async () => {
    const parse: ParseFn = async (source) => {
      const bytes = await source.read(0, source.size);
      try {
        new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bytes.length - 2);
      } catch (err) {
        throw new PackratError("PACKRAT_PACKAGE_INVALID", "wrapped", { cause: err });
      }
      return refuse();
    };
    expect(await fails(broken(parse))).toMatch(/wraps a bug: RangeError/);
  });

  it("catches a read at a negative offset (a real file source would throw)", async () => {
    const parse: ParseFn = async (source) => {
      await source.read(source.size - 10_000, 10);
      return refuse();
    };
    expect(await fails(broken(parse))).toMatch(/HarnessViolation: read at offset -/);
  });

  it("catches a parser that allocates what a length field claims", async () => {
    const parse: ParseFn = async (source) => {
      const bytes = await source.read(0, 64);
      // The ar magic's "!<" read as a length in KiB... times 4: always above 64 MiB.
      const claimed = (bytes[0] ?? 0) * 4 * 2 ** 20;
      const buffer = new Uint8Array(claimed);
      buffer.fill(1);
      return refuse();
    };
    expect(await fails(broken(parse))).toMatch(/memory grew by/);
  });

  it("catches a parser that never settles, and one that is slow", async () => {
    const never: ParseFn = () => new Promise(() => {});
    expect(await fails(broken(never), { ...BOUNDS, maxMs: 50 })).toMatch(/did not finish/);
    const slow: ParseFn = () => {
      const until = performance.now() + 80;
      while (performance.now() < until);
      return refuse();
    };
    expect(await fails(broken(slow), { ...BOUNDS, maxMs: 50 })).toMatch(/took \d+ ms/);
  });

  it("catches an error that is not PackratError, and a wrong code", async () => {
    expect(await fails(broken(() => Promise.reject(new Error("plain"))))).toMatch(
      /other than PackratError: Error: plain/,
    );
    const wrongCode: ParseFn = () =>
      Promise.reject(new PackratError("PACKRAT_DOWNLOAD_FAILED", "x"));
    expect(await fails(broken(wrongCode))).toMatch(/expected PACKRAT_PACKAGE_INVALID/);
  });

  it("judges the unmutated seeds of every target as records", async () => {
    for (const target of allTargets()) {
      for (const seed of target.seeds) {
        const verdict = await judge(target.parse, {
          bytes: seed.layers[0]!.bytes,
          filename: seed.filename,
          label: seed.name,
        });
        expect(verdict, `${target.name} ${seed.name}`).toMatchObject({
          ok: true,
          outcome: "record",
        });
      }
    }
  });
});

describe(`parsers under fuzzing (${RUNS} inputs each, seed ${SEED})`, () => {
  for (const target of allTargets()) {
    it(`${target.name}: a record or PACKRAT_PACKAGE_INVALID, never a crash, hang or huge allocation`, async () => {
      const tally = newTally();
      tallies.set(target.name, tally);
      await fc.assert(fuzzProperty(target, tally, BOUNDS), { numRuns: RUNS, seed: SEED });
      expect(tally.tried).toBeGreaterThanOrEqual(RUNS);
      // Mutations must reach deep enough that some inputs still parse, and shallow enough
      // that most are refused: both outcomes are exercised.
      expect(tally.records).toBeGreaterThan(0);
      expect(tally.refused).toBeGreaterThan(0);
    }, 120_000);
  }
});
