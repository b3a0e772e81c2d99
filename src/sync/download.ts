/**
 * Fetch one package file from the master into a temporary file under root_dir, hashing while
 * streaming, and hand back the temp path only when the SHA-256 matches the master's. Nothing here
 * ever writes a final path: the caller renames the verified temp file into place.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { IntegrityError, PackratError, describeError } from "../errors.js";
import type { Logger } from "../log.js";
import { tmpPath } from "./disk.js";
import type { MasterClient } from "./master-types.js";

export interface RetryPolicy {
  attempts: number;
  /** First delay; doubles each attempt, with full jitter, capped at maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 500, maxDelayMs: 15_000 };

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const realSleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/** Exponential backoff with full jitter (AWS architecture blog): spreads retries of many agents. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

export interface DownloadRequest {
  fileUrl: string;
  sha256: string;
  /** For messages: the path the file is for, relative to root_dir. */
  label: string;
}

export interface DownloadDeps {
  client: MasterClient;
  root: string;
  log: Logger;
  retry?: RetryPolicy;
  sleep?: Sleep;
  signal?: AbortSignal;
  /** Progress callback: bytes received so far for this file. */
  onBytes?: (n: number) => void;
}

/** One attempt: stream to a temp file, hash, compare, fsync. Returns the temp path. */
async function attemptDownload(
  req: DownloadRequest,
  deps: DownloadDeps,
): Promise<{ tmp: string; size: number }> {
  const tmp = tmpPath(deps.root, path.basename(req.label));
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  const hash = createHash("sha256");
  let size = 0;
  try {
    const { body, size: expectedSize } = await deps.client.download(req.fileUrl, deps.signal);
    const hasher = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        deps.onBytes?.(chunk.length);
        cb(null, chunk);
      },
    });
    const out = createWriteStream(tmp, { mode: 0o644 });
    await pipeline(body, hasher, out, deps.signal ? { signal: deps.signal } : {});
    if (expectedSize !== null && expectedSize !== size) {
      throw new PackratError(
        "PACKRAT_DOWNLOAD_FAILED",
        `${req.label}: got ${size} bytes from ${req.fileUrl}, the master announced ${expectedSize} (truncated)`,
      );
    }
    const actual = hash.digest("hex");
    if (actual !== req.sha256.toLowerCase()) {
      throw new IntegrityError(req.label, req.sha256, actual, {
        hint: `downloaded from ${req.fileUrl}; not published`,
      });
    }
    const handle = await fs.open(tmp, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    return { tmp, size };
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Download with retries. Throws the last error (PACKRAT_HASH_MISMATCH, PACKRAT_DOWNLOAD_FAILED or
 * a PACKRAT_MASTER_* error) when every attempt failed; the caller records it and never publishes
 * the file.
 */
export async function downloadVerified(
  req: DownloadRequest,
  deps: DownloadDeps,
): Promise<{ tmp: string; size: number }> {
  const retry = deps.retry ?? DEFAULT_RETRY;
  const sleep = deps.sleep ?? realSleep;
  let lastError: unknown;
  for (let attempt = 0; attempt < retry.attempts; attempt++) {
    if (attempt > 0) await sleep(backoffDelay(retry, attempt - 1), deps.signal);
    try {
      return await attemptDownload(req, deps);
    } catch (err) {
      if (deps.signal?.aborted) throw err;
      lastError = err;
      deps.log.warn(
        { file: req.label, attempt: attempt + 1, of: retry.attempts },
        `download failed: ${describeError(err)}`,
      );
    }
  }
  if (lastError instanceof PackratError) throw lastError;
  throw new PackratError("PACKRAT_DOWNLOAD_FAILED", `${req.label}: ${describeError(lastError)}`, {
    cause: lastError,
  });
}
