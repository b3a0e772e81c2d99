/** Small helpers shared by the client-view checkers (not by the renderers). */
import { digestHex } from "../../digest.js";
import { decompressAny as decompressAnyCapped } from "../formats/compress.js";
import type { CheckProblem, CheckResult, PackageInfo, TreeReader } from "./types.js";

/** Metadata indexes are small; anything larger than this decompressed is refused. */
export const MAX_INDEX_BYTES = 1 << 30;

export function hashHex(algo: string, data: Uint8Array): string {
  return digestHex(algo, data);
}

export function sha256Hex(data: Uint8Array): string {
  return digestHex("sha256", data);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function decodeUtf8(data: Uint8Array): string | null {
  try {
    return utf8.decode(data);
  } catch {
    return null;
  }
}

/**
 * Decompress by magic bytes (gzip, xz, zstd) with formats/compress.ts, at most MAX_INDEX_BYTES;
 * anything else is returned as it is.
 */
export function decompressAny(data: Uint8Array): Promise<Uint8Array> {
  return decompressAnyCapped(data, MAX_INDEX_BYTES);
}

/** Resolve `rel` against a directory (both relative to the repo); null if it escapes. */
export function joinRel(dir: string, rel: string): string | null {
  if (rel.startsWith("/") || rel.includes("\0") || rel.includes("\\")) return null;
  const out = dir === "" ? [] : dir.split("/");
  for (const seg of rel.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(seg);
  }
  return out.length === 0 ? null : out.join("/");
}

export function dirOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i === -1 ? "" : rel.slice(0, i);
}

/** Accumulates problems and counters for one repo. */
export class Findings {
  readonly problems: CheckProblem[] = [];
  entryPoints = 0;
  packages = 0;
  add(path: string, problem: string): void {
    this.problems.push({ path, problem });
  }
  result(): CheckResult {
    return { problems: this.problems, entryPoints: this.entryPoints, packages: this.packages };
  }
}

/** Does the package at `rel` exist with this size and SHA-256, as a client downloading it would see? */
export async function checkPackageRef(
  f: Findings,
  reader: TreeReader,
  rel: string | null,
  expected: { size?: number | null; sha256?: string | null },
  referrer: string,
  raw: string,
): Promise<void> {
  if (rel !== null && reader.packageInfoSync) {
    comparePackageRef(f, rel, reader.packageInfoSync(rel), expected, referrer, raw);
    return;
  }
  let info: PackageInfo | null = null;
  if (rel !== null) {
    try {
      info = await reader.packageInfo(rel);
    } catch (err) {
      f.packages++;
      f.add(rel, `cannot be read (${err instanceof Error ? err.message : String(err)})`);
      return;
    }
  }
  comparePackageRef(f, rel, info, expected, referrer, raw);
}

/**
 * checkPackageRef once the package's size and hash are known: no promise per reference, for a
 * checker that walks 10,000 of them through a reader that answers at once (packageInfoSync).
 */
export function comparePackageRef(
  f: Findings,
  rel: string | null,
  info: PackageInfo | null,
  expected: { size?: number | null; sha256?: string | null },
  referrer: string,
  raw: string,
): void {
  f.packages++;
  if (rel === null) {
    f.add(referrer, `names ${JSON.stringify(raw)}, which points outside the repo`);
    return;
  }
  if (info === null) {
    f.add(rel, `missing (named by ${referrer})`);
    return;
  }
  if (expected.size != null && info.size !== expected.size)
    f.add(rel, `is ${info.size} bytes, ${referrer} says ${expected.size}`);
  if (expected.sha256 != null && info.sha256 !== expected.sha256.toLowerCase())
    f.add(rel, `SHA-256 is ${info.sha256}, ${referrer} says ${expected.sha256}`);
}

/** Read a metadata file, recording a problem when it is missing. */
export async function readRequired(
  f: Findings,
  reader: TreeReader,
  rel: string,
  why: string,
): Promise<Uint8Array | null> {
  const data = await reader.read(rel);
  if (data === null) f.add(rel, `missing (${why})`);
  return data;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
