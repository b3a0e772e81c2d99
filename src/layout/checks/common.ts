/** Small helpers shared by the client-view checkers (not by the renderers). */
import { digestHex } from "../../digest.js";
import { gunzipSync } from "node:zlib";
import { xz } from "@napi-rs/lzma";
import { Decompress as ZstdDecompress } from "fzstd";
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

/** Decompress by magic bytes (gzip, xz, zstd), else return the data as it is. */
export function decompressAny(data: Uint8Array): Uint8Array {
  if (data[0] === 0x1f && data[1] === 0x8b)
    return gunzipSync(data, { maxOutputLength: MAX_INDEX_BYTES });
  if (data[0] === 0xfd && data[1] === 0x37 && data[2] === 0x7a && data[3] === 0x58)
    return xz.decompressSync(data);
  if (data[0] === 0x28 && data[1] === 0xb5 && data[2] === 0x2f && data[3] === 0xfd) {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const d = new ZstdDecompress((chunk) => {
      total += chunk.length;
      if (total > MAX_INDEX_BYTES) throw new Error("decompressed size over the limit");
      chunks.push(chunk);
    });
    d.push(data, true);
    return Buffer.concat(chunks);
  }
  return data;
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
  f.packages++;
  if (rel === null) {
    f.add(referrer, `names ${JSON.stringify(raw)}, which points outside the repo`);
    return;
  }
  let info: PackageInfo | null;
  try {
    info = await reader.packageInfo(rel);
  } catch (err) {
    f.add(rel, `cannot be read (${err instanceof Error ? err.message : String(err)})`);
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
