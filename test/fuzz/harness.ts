/**
 * The fuzzing harness for the package parsers (issue 18, "Parsers under fuzzing"), shared by
 * the bounded run in CI (test/fuzz/parsers.fuzz.test.ts) and the long one (bench/fuzz.ts).
 *
 * A parser's contract under hostile bytes: return a record (JSON-serialisable: it is cached in
 * the state DB) or throw PackratError PACKRAT_PACKAGE_INVALID; never anything else, never hang,
 * never allocate in proportion to a length field it read. `judge` checks one input against that
 * contract; `fuzzProperty` is the fast-check property that feeds it inputs:
 *
 * - byte-level mutations (bit flips, interesting bytes, 32-bit and ASCII-decimal/octal huge
 *   lengths, truncation, insertion, deletion, duplication, splicing from another seed) of real
 *   package files made by the test builders;
 * - aimed at "hot spots": the offsets of the length and count fields in each seed (ar member
 *   sizes, tar sizes, RPM il/dl and index counts, zip directory sizes), found by small scanners
 *   here, because a random flip rarely lands on the one field that matters;
 * - at every layer of a package, not only the outer file: a mutation of the control tar inside
 *   a .deb's control.tar.zst is recompressed and put back, so the tar reader sees malformed
 *   tars and not just a decompressor's "corrupt input".
 *
 * fast-check drives the choice (seed, layer, list of operations), so a failure shrinks to a
 * short list of operations and replays from the printed seed and path.
 */
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import { isPackratError } from "../../src/errors.js";
import type { ByteSource } from "../../src/layout/types.js";

/** The harness's own finding (a read no real file source could serve): always a failure. */
export class HarnessViolation extends Error {
  override readonly name = "HarnessViolation";
}

export type ParseFn = (source: ByteSource, filename: string) => Promise<unknown>;

/** One layer of a seed file: bytes that can be mutated, and how to put them back. */
export interface Layer {
  name: string;
  bytes: Uint8Array;
  /** Offsets of length/count fields in `bytes` (where huge values do the most harm). */
  hotspots: readonly number[];
  /** The whole package file with this layer replaced by `mutated`. */
  wrap(mutated: Uint8Array): Uint8Array;
}

export interface Seed {
  name: string;
  filename: string;
  /** layers[0] is the file itself (wrap = identity). */
  layers: readonly Layer[];
}

export interface Target {
  name: string;
  parse: ParseFn;
  seeds: readonly Seed[];
  /** Structure-aware inputs beyond mutation (e.g. generated control text), if any. */
  generated?: fc.Arbitrary<FuzzCase>;
}

export interface FuzzCase {
  bytes: Uint8Array;
  filename: string;
  /** What made it, for the failure report. */
  label: string;
}

export interface Bounds {
  /** Longest one input may take (ms), sync or async. */
  maxMs: number;
  /** Most growth of array-buffer memory or of peak RSS one input may cause (bytes). */
  maxGrowth: number;
}

export const DEFAULT_BOUNDS: Bounds = { maxMs: 2_000, maxGrowth: 64 << 20 };

export interface Tally {
  tried: number;
  records: number;
  refused: number;
  slowestMs: number;
  /** Largest growth of arrayBuffers or peak RSS seen for one input (bytes). */
  largestGrowth: number;
}

export function newTally(): Tally {
  return { tried: 0, records: 0, refused: 0, slowestMs: 0, largestGrowth: 0 };
}

export type Verdict =
  | { ok: true; outcome: "record" | "refused"; ms: number; growth: number; message?: string }
  | { ok: false; reason: string; ms: number; growth: number };

/**
 * A ByteSource over `bytes` that holds the parser to what a real file source can do
 * (src/sync/disk.ts openFileSource): a negative or fractional offset or length would make
 * fs.read throw a RangeError in production, so here it is a HarnessViolation. Reads past the
 * end are clamped as the file source clamps them (it allocates only what the file has).
 */
export function strictSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read(offset, length) {
      if (!Number.isSafeInteger(offset) || offset < 0) {
        return Promise.reject(new HarnessViolation(`read at offset ${offset}`));
      }
      if (!Number.isSafeInteger(length) || length < 0) {
        return Promise.reject(new HarnessViolation(`read of length ${length}`));
      }
      return Promise.resolve(bytes.subarray(offset, Math.min(bytes.length, offset + length)));
    },
  };
}

/** Errors that only a bug makes, wherever they hide in a cause chain. */
function bugIn(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 16; depth++) {
    if (e instanceof HarnessViolation) return `harness violation: ${e.message}`;
    const code = (e as { code?: unknown }).code;
    if (
      e instanceof TypeError ||
      e instanceof ReferenceError ||
      e instanceof SyntaxError ||
      e instanceof EvalError ||
      e instanceof URIError
    ) {
      // The one deliberate TypeError: a fatal TextDecoder refusing bad UTF-8.
      if (code !== "ERR_ENCODING_INVALID_ENCODED_DATA") {
        return `${e.name}${typeof code === "string" ? ` ${code}` : ""}: ${e.message}`;
      }
    }
    // zlib's maxOutputLength stops with ERR_BUFFER_TOO_LARGE (a limit doing its job); any
    // other RangeError is an index or an allocation gone wrong.
    if (e instanceof RangeError && code !== "ERR_BUFFER_TOO_LARGE") {
      return `RangeError${typeof code === "string" ? ` ${code}` : ""}: ${e.message}`;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

/**
 * Peak RSS while a parse runs, sampled every millisecond by a worker thread: it keeps running
 * while the main thread is inside a synchronous decoder, so a buffer that is filled and freed
 * within one parse (a decoder that inflates 128 MiB, then fails a check) is seen. The process's
 * own high-water mark (getrusage maxRSS) cannot be reset, so after one such input it would hide
 * every later one of the same size.
 */
class RssSampler {
  private readonly peak = new Float64Array(new SharedArrayBuffer(8));
  private readonly worker: Worker;

  constructor() {
    this.worker = new Worker(
      `const { workerData } = require("node:worker_threads");
       const peak = new Float64Array(workerData);
       const tick = new Int32Array(new SharedArrayBuffer(4));
       for (;;) {
         const rss = process.memoryUsage.rss();
         if (rss > peak[0]) peak[0] = rss;
         Atomics.wait(tick, 0, 0, 1);
       }`,
      { eval: true, workerData: this.peak.buffer },
    );
    // The worker's own isolate (tens of MiB of RSS) must not count as the first input's growth.
    // It keeps the event loop alive until then (else a caller's top-level await of the first
    // judge() would find nothing pending and exit); after, it never holds the process open.
    this.ready = new Promise((resolve) => {
      this.worker.once("online", () =>
        setTimeout(() => {
          this.worker.unref();
          resolve();
        }, 50),
      );
    });
  }

  readonly ready: Promise<void>;

  /** Start a new measurement from the RSS now. */
  reset(): number {
    const now = process.memoryUsage.rss();
    this.peak[0] = now;
    return now;
  }

  /** The highest RSS sampled since reset (and the RSS now, in case no sample ran). */
  peakSince(): number {
    return Math.max(this.peak[0]!, process.memoryUsage.rss());
  }
}

let sampler: RssSampler | undefined;

async function measureStart(): Promise<{ arrayBuffers: number; rss: number }> {
  sampler ??= new RssSampler();
  await sampler.ready;
  return { arrayBuffers: process.memoryUsage().arrayBuffers, rss: sampler.reset() };
}

/**
 * Growth during one parse: of array-buffer memory (a typed array allocated but not yet touched
 * costs no RSS, but counts here) and of peak RSS (native buffers, which arrayBuffers misses).
 */
function measureGrowth(start: { arrayBuffers: number; rss: number }): number {
  return Math.max(
    process.memoryUsage().arrayBuffers - start.arrayBuffers,
    sampler!.peakSince() - start.rss,
    0,
  );
}

const TIMED_OUT = Symbol("timed out");

/** Run `parse` on one input and hold the outcome to the contract. */
export async function judge(
  parse: ParseFn,
  input: FuzzCase,
  bounds: Bounds = DEFAULT_BOUNDS,
): Promise<Verdict> {
  const before = await measureStart();
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  let outcome: { value: unknown } | { error: unknown } | typeof TIMED_OUT;
  try {
    const parsed = parse(strictSource(input.bytes), input.filename).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    // An async hang (a promise never settled) ends here; a synchronous loop cannot be
    // interrupted in-process, so its time is measured when it returns (bench/fuzz.ts runs
    // each target under a watchdog for the loop that never returns).
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), bounds.maxMs);
    });
    outcome = await Promise.race([parsed, timeout]);
  } catch (error) {
    // parse() threw synchronously instead of rejecting.
    outcome = { error };
  } finally {
    clearTimeout(timer);
  }
  const ms = performance.now() - started;
  const growth = measureGrowth(before);
  const fail = (reason: string): Verdict => ({ ok: false, reason, ms, growth });
  if (outcome === TIMED_OUT) return fail(`did not finish within ${bounds.maxMs} ms`);
  if (ms > bounds.maxMs) return fail(`took ${ms.toFixed(0)} ms (bound ${bounds.maxMs} ms)`);
  if (growth > bounds.maxGrowth) {
    return fail(`memory grew by ${(growth / 2 ** 20).toFixed(1)} MiB for one input`);
  }
  if ("error" in outcome) {
    const err = outcome.error;
    if (!isPackratError(err)) {
      const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      return fail(`threw something other than PackratError: ${what}`);
    }
    if (err.code !== "PACKRAT_PACKAGE_INVALID") {
      return fail(`threw PackratError ${err.code}, expected PACKRAT_PACKAGE_INVALID`);
    }
    const bug = bugIn(err.cause);
    if (bug !== null) return fail(`PackratError wraps a bug: ${bug}`);
    return { ok: true, outcome: "refused", ms, growth, message: err.message };
  }
  const value = outcome.value;
  if (typeof value !== "object" || value === null) {
    return fail(`returned ${typeof value}, expected a record`);
  }
  try {
    JSON.stringify(value);
  } catch (err) {
    return fail(`returned a record that is not JSON-serialisable: ${(err as Error).message}`);
  }
  return { ok: true, outcome: "record", ms, growth };
}

// ---- mutations ------------------------------------------------------------------------------

/** 32-bit values that break length arithmetic: 0, 1, sign bit, all ones, near-max. */
const INTERESTING_U32 = [
  0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffff0, 0xffffffff,
];
const INTERESTING_BYTES = [0x00, 0x01, 0x0a, 0x20, 0x2f, 0x30, 0x37, 0x39, 0x7f, 0x80, 0xff];
/** Length fields written as text: ar sizes are decimal, tar sizes octal. */
const HUGE_TEXT = [
  "4294967296", // 4 GiB, decimal (fills an ar size field)
  "9999999999",
  "0000000000",
  "-1",
  "77777777777", // 8 GiB - 1, octal (a tar size field)
  "40000000000", // 4 GiB, octal
  " 1e9",
  "0x10",
];

export type Op =
  | { op: "flip"; at: number; hot: boolean; bit: number }
  | { op: "byte"; at: number; hot: boolean; value: number }
  | { op: "u32"; at: number; hot: boolean; value: number; littleEndian: boolean }
  | { op: "text"; at: number; hot: boolean; text: string }
  | { op: "truncate"; at: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; length: number }
  | { op: "duplicate"; from: number; length: number; to: number }
  | { op: "splice"; seed: number; from: number; length: number; to: number };

const position = fc.nat({ max: 0x7fffffff });

export const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("flip" as const),
    at: position,
    hot: fc.boolean(),
    bit: fc.nat({ max: 7 }),
  }),
  fc.record({
    op: fc.constant("byte" as const),
    at: position,
    hot: fc.boolean(),
    value: fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.nat({ max: 255 })),
  }),
  fc.record({
    op: fc.constant("u32" as const),
    at: position,
    hot: fc.boolean(),
    value: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat({ max: 0xffffffff })),
    littleEndian: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("text" as const),
    at: position,
    hot: fc.boolean(),
    text: fc.constantFrom(...HUGE_TEXT),
  }),
  fc.record({ op: fc.constant("truncate" as const), at: position }),
  fc.record({
    op: fc.constant("insert" as const),
    at: position,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  }),
  fc.record({
    op: fc.constant("delete" as const),
    at: position,
    length: fc.integer({ min: 1, max: 1024 }),
  }),
  fc.record({
    op: fc.constant("duplicate" as const),
    from: position,
    length: fc.integer({ min: 1, max: 1024 }),
    to: position,
  }),
  fc.record({
    op: fc.constant("splice" as const),
    seed: fc.nat(),
    from: position,
    length: fc.integer({ min: 1, max: 2048 }),
    to: position,
  }),
);

/** Apply `ops` to a copy of `bytes`; `others` are the bytes a splice may take from. */
export function applyOps(
  bytes: Uint8Array,
  hotspots: readonly number[],
  ops: readonly Op[],
  others: readonly Uint8Array[],
): Uint8Array {
  let out = Uint8Array.from(bytes);
  // Positions are drawn large and taken modulo the current length, so that shrinking moves
  // them toward the start of the file and one draw fits any seed.
  const pos = (at: number, hot: boolean, room = 1): number => {
    const span = Math.max(1, out.length - room + 1);
    if (hot && hotspots.length > 0) {
      const spot = hotspots[at % hotspots.length]!;
      return Math.min(spot, Math.max(0, out.length - room));
    }
    return at % span;
  };
  for (const o of ops) {
    switch (o.op) {
      case "flip":
        if (out.length > 0) out[pos(o.at, o.hot)]! ^= 1 << o.bit;
        break;
      case "byte":
        if (out.length > 0) out[pos(o.at, o.hot)] = o.value;
        break;
      case "u32":
        if (out.length >= 4) {
          new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(
            pos(o.at, o.hot, 4),
            o.value,
            o.littleEndian,
          );
        }
        break;
      case "text":
        if (out.length >= o.text.length) {
          out.set(Buffer.from(o.text, "latin1"), pos(o.at, o.hot, o.text.length));
        }
        break;
      case "truncate":
        out = out.slice(0, o.at % (out.length + 1));
        break;
      case "insert": {
        const at = o.at % (out.length + 1);
        out = Buffer.concat([out.subarray(0, at), o.bytes, out.subarray(at)]);
        break;
      }
      case "delete": {
        const at = o.at % (out.length + 1);
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + o.length)]);
        break;
      }
      case "duplicate": {
        const from = o.from % (out.length + 1);
        const piece = out.slice(from, from + o.length);
        const to = o.to % (out.length + 1);
        out = Buffer.concat([out.subarray(0, to), piece, out.subarray(to)]);
        break;
      }
      case "splice": {
        const other = others.length > 0 ? others[o.seed % others.length]! : out;
        const from = o.from % (other.length + 1);
        const piece = other.slice(from, from + o.length);
        const to = o.to % (out.length + 1);
        out = Buffer.concat([out.subarray(0, to), piece, out.subarray(to + piece.length)]);
        break;
      }
    }
  }
  return out;
}

export interface MutationChoice {
  seed: number;
  layer: number;
  ops: Op[];
}

export const mutationArbitrary: fc.Arbitrary<MutationChoice> = fc.record({
  seed: fc.nat(),
  layer: fc.nat(),
  ops: fc.array(opArbitrary, { minLength: 1, maxLength: 6 }),
});

/** The input a mutation choice makes from a target's seeds. */
export function mutatedCase(target: Target, choice: MutationChoice): FuzzCase {
  const seed = target.seeds[choice.seed % target.seeds.length]!;
  const layer = seed.layers[choice.layer % seed.layers.length]!;
  const others = target.seeds.map((s) => s.layers[0]!.bytes);
  const mutated = applyOps(layer.bytes, layer.hotspots, choice.ops, others);
  let bytes: Uint8Array;
  try {
    bytes = layer.wrap(mutated);
  } catch {
    // A wrapper that cannot take the mutated layer (e.g. a builder refusing it): use the
    // mutation on the outer file instead, so the run still counts a real input.
    bytes = applyOps(seed.layers[0]!.bytes, seed.layers[0]!.hotspots, choice.ops, others);
  }
  return { bytes, filename: seed.filename, label: `${seed.name}/${layer.name}` };
}

/** Every input a target is fuzzed with: mutations, and its own generated cases if it has any. */
export function caseArbitrary(target: Target): fc.Arbitrary<FuzzCase> {
  const mutations = mutationArbitrary.map((choice) => mutatedCase(target, choice));
  if (!target.generated) return mutations;
  return fc.oneof({ arbitrary: mutations, weight: 3 }, { arbitrary: target.generated, weight: 1 });
}

/**
 * The property: every input meets the contract. Counts what it sees in `tally`; a failure
 * throws with the reason and the input's label (fast-check then shrinks it).
 */
export function fuzzProperty(
  target: Target,
  tally: Tally,
  bounds: Bounds = DEFAULT_BOUNDS,
  /** Called before each input with its 0-based number (bench/fuzz.ts's hang watchdog). */
  onInput?: (index: number) => void,
): fc.IAsyncPropertyWithHooks<[FuzzCase]> {
  return fc.asyncProperty(caseArbitrary(target), async (input) => {
    onInput?.(tally.tried);
    tally.tried++;
    const verdict = await judge(target.parse, input, bounds);
    tally.slowestMs = Math.max(tally.slowestMs, verdict.ms);
    tally.largestGrowth = Math.max(tally.largestGrowth, verdict.growth);
    if (!verdict.ok) {
      throw new Error(
        `${target.name}: ${verdict.reason} (input ${input.label}, ${input.bytes.length} bytes)`,
      );
    }
    if (verdict.outcome === "record") tally.records++;
    else tally.refused++;
  });
}
