/**
 * Fetch one package file from the master into a temporary file under root_dir, hashing while
 * streaming, and hand back the temp path only when the SHA-256 matches the master's. Nothing here
 * ever writes a final path: the caller renames the verified temp file into place.
 */
import { type Hash, createHash } from "node:crypto";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { IntegrityError, PackratError, describeError, isPackratError } from "../errors.js";
import type { Logger } from "../log.js";
import { DEFAULT_RETRY, backoffDelay, realSleep, type RetryPolicy, type Sleep } from "./backoff.js";
import { tmpPath } from "./disk.js";
import type { MasterClient } from "./master-types.js";

export interface DownloadRequest {
  fileUrl: string;
  sha256: string;
  /** For messages: the path the file is for, relative to root_dir. */
  label: string;
  /** The file's size when known before the answer (an earlier pass saw it); for the deadline. */
  sizeHint?: number | null;
}

/**
 * How slow a download may be (download_min_rate, download_min_rate_window,
 * download_deadline_base). request_timeout only bounds silence between chunks, so without these
 * a master sending one byte every few seconds holds a file, and the pass waiting on it, for ever.
 */
export interface TransferLimits {
  /** Bytes per second that must arrive over each window once a window has passed. */
  minRate: number;
  windowMs: number;
  /** The deadline of the whole file, all attempts: this + size / minRate. */
  deadlineBaseMs: number;
}

export const DEFAULT_LIMITS: TransferLimits = {
  minRate: 1024,
  windowMs: 30_000,
  deadlineBaseMs: 120_000,
};

/** The prefix of a recorded download failure that was a stall (for the retry backoff). */
export const STALLED_PREFIX = "PACKRAT_DOWNLOAD_STALLED: ";

/**
 * Watches one file's transfer and aborts it when it is too slow: fewer than minRate bytes per
 * second over the last window (curl's --speed-limit/--speed-time), or past the file's deadline,
 * deadlineBase + size / minRate, counted from the first attempt. With no Content-Length and no
 * earlier size, the size is what has arrived so far: the file must then average minRate after
 * the base allowance.
 */
class TransferGuard {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();
  private attemptStarted = performance.now();
  /** (time, bytes so far) once per tick of this attempt, oldest first. */
  private samples: { at: number; bytes: number }[] = [];
  private bytes = 0;
  private size: number | null;

  constructor(
    private readonly limits: TransferLimits,
    private readonly label: string,
    sizeHint: number | null,
    outer: AbortSignal | undefined,
  ) {
    this.size = sizeHint;
    const tick = Math.min(1000, Math.max(50, limits.windowMs / 5));
    this.timer = setInterval(() => this.check(), tick);
    this.timer.unref();
    if (outer) {
      const onAbort = () => this.controller.abort(outer.reason);
      if (outer.aborted) onAbort();
      else outer.addEventListener("abort", onAbort, { once: true });
      this.detach = () => outer.removeEventListener("abort", onAbort);
    }
  }

  private detach: () => void = () => undefined;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The stall that aborted the transfer, if that is what did. */
  get stalled(): PackratError | null {
    const reason: unknown = this.controller.signal.reason;
    return isPackratError(reason, "PACKRAT_DOWNLOAD_STALLED") ? reason : null;
  }

  newAttempt(): void {
    this.attemptStarted = performance.now();
    this.samples = [{ at: this.attemptStarted, bytes: 0 }];
    this.bytes = 0;
  }

  announcedSize(size: number | null): void {
    if (size !== null) this.size = size;
  }

  received(n: number): void {
    this.bytes += n;
  }

  done(): void {
    clearInterval(this.timer);
    this.detach();
  }

  private check(): void {
    if (this.controller.signal.aborted) return;
    const now = performance.now();
    const { minRate, windowMs, deadlineBaseMs } = this.limits;
    this.samples.push({ at: now, bytes: this.bytes });
    const deadline = deadlineBaseMs + (Math.max(this.size ?? 0, this.bytes) / minRate) * 1000;
    if (now - this.started > deadline) {
      this.stall(
        `still going after ${Math.round((now - this.started) / 1000)} s, past its deadline of ` +
          `${Math.round(deadline / 1000)} s (download_deadline_base + size / download_min_rate)`,
      );
      return;
    }
    if (now - this.attemptStarted < windowMs) return;
    // The newest sample at least a window old: what arrived since must reach the rate.
    let from = this.samples[0]!;
    while (this.samples.length > 1 && now - this.samples[1]!.at >= windowMs) {
      this.samples.shift();
      from = this.samples[0]!;
    }
    const seconds = (now - from.at) / 1000;
    const rate = (this.bytes - from.bytes) / seconds;
    if (rate < minRate) {
      this.stall(
        `${this.bytes - from.bytes} bytes in the last ${Math.round(seconds)} s, below ` +
          `download_min_rate of ${minRate} bytes/s`,
      );
    }
  }

  private stall(why: string): void {
    this.controller.abort(
      new PackratError("PACKRAT_DOWNLOAD_STALLED", `${this.label}: abandoned, ${why}`, {
        hint: "published without it; a later pass retries it with backoff",
      }),
    );
  }
}

// The retry knobs of DownloadDeps, for callers that pass them through (the engine).
export type { RetryPolicy, Sleep };

export interface DownloadDeps {
  client: MasterClient;
  root: string;
  log: Logger;
  retry?: RetryPolicy;
  sleep?: Sleep;
  signal?: AbortSignal;
  /** Progress callback: bytes received so far for this file. */
  onBytes?: (n: number) => void;
  limits?: TransferLimits;
}

/**
 * Socket reads arrive in chunks of about 64 KiB. They are gathered into batches of this size; a
 * batch is written on the thread pool while the main thread receives and hashes the next one.
 */
const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * Each write(2) stays within one aligned piece of this size. The kernel sizes page-cache folios
 * after the write (ext4 with large folios, Linux 6.x), and large folios come from high-order free
 * blocks: on a VM with free page reporting those are host-discarded memory, and filling them cost
 * 3-5x the system time of 32 KiB writes here (dd of 512 MiB after a 4 s pause: bs=1M 1.15 s sys,
 * bs=16K 0.2 s). The pieces of a batch are written concurrently, in one pwritev each.
 */
const PIECE_BYTES = 32 * 1024;

/**
 * A large file is flushed in the background each time this much more has been written, so the
 * fsync that ends the download has a few MiB left to do instead of the whole file (measured: a
 * 256 MiB file's final fsync went from ~90 ms to ~20 ms).
 */
const EARLY_FLUSH_BYTES = 32 * 1024 * 1024;

/**
 * Writes the body to a file behind the hashing, at explicit positions. One batch is in flight at a
 * time, so memory stays near two batches and a slow disk stalls the receive loop (and with it the
 * socket) instead of buffering. The file must not be closed before drain() has returned.
 */
class WriteBehind {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private position = 0;
  /** Never rejects: an error is kept in `failure`, since a rejection nobody awaits yet would crash. */
  private inFlight: Promise<void> | null = null;
  /** A background fdatasync; like inFlight it never rejects. */
  private flushing: Promise<void> | null = null;
  private flushedTo = 0;
  private failure: { error: unknown } | null = null;

  constructor(private readonly fh: FileHandle) {}

  /** Queue a chunk; when a batch is full, a promise that settles once its write has started. */
  push(chunk: Buffer): Promise<void> | null {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < WRITE_BATCH_BYTES) return null;
    return this.settleWrite().then(() => this.startWrite());
  }

  /** Writes what is left, then waits for every write and flush; throws the first error. */
  async finish(): Promise<void> {
    await this.settleWrite();
    if (this.pendingBytes > 0) this.startWrite();
    await this.drain();
  }

  /** Waits until nothing is in flight (safe to close the file); throws the first error. */
  async drain(): Promise<void> {
    await this.settleWrite();
    if (this.flushing) await this.flushing;
    this.flushing = null;
    if (this.failure) throw this.failure.error;
  }

  private async settleWrite(): Promise<void> {
    if (this.inFlight) await this.inFlight;
    this.inFlight = null;
    if (this.failure) throw this.failure.error;
  }

  private startWrite(): void {
    const buffers = this.pending;
    const at = this.position;
    this.position += this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const end = this.position;
    this.inFlight = writeInPieces(this.fh, buffers, at).then(
      () => this.flushEarly(end),
      (error: unknown) => {
        this.failure ??= { error };
      },
    );
  }

  /**
   * Start writeback of what is written so far while the download goes on. Its error is kept, not
   * just left to the final fsync: Linux reports a writeback error to one fsync of the file only.
   */
  private flushEarly(written: number): void {
    if (this.flushing || written - this.flushedTo < EARLY_FLUSH_BYTES) return;
    this.flushedTo = written;
    this.flushing = this.fh.datasync().then(
      () => {
        this.flushing = null;
      },
      (error: unknown) => {
        this.failure ??= { error };
      },
    );
  }
}

/** Write `buffers` at `position`, split at PIECE_BYTES boundaries of the file, concurrently. */
async function writeInPieces(fh: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  const writes: Promise<void>[] = [];
  let piece: Buffer[] = [];
  let pieceAt = position;
  let at = position;
  for (const buffer of buffers) {
    let offset = 0;
    while (offset < buffer.length) {
      const take = Math.min(PIECE_BYTES - (at % PIECE_BYTES), buffer.length - offset);
      piece.push(buffer.subarray(offset, offset + take));
      offset += take;
      at += take;
      if (at % PIECE_BYTES === 0) {
        writes.push(writeAllAt(fh, piece, pieceAt));
        piece = [];
        pieceAt = at;
      }
    }
  }
  if (piece.length > 0) writes.push(writeAllAt(fh, piece, pieceAt));
  // Every write must have ended before the caller may close the file: no early exit on an error.
  const failed = (await Promise.allSettled(writes)).find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** pwritev until every byte is down: a regular file may still take fewer bytes than asked. */
async function writeAllAt(fh: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let rest = buffers;
  let at = position;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, at);
    if (bytesWritten <= 0) throw new Error(`pwritev wrote nothing at offset ${at}`);
    at += bytesWritten;
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= rest[0]!.length) {
      skip -= rest[0]!.length;
      rest = rest.slice(1);
    }
    if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
  }
}

/**
 * Receive the body into `fh`, hashing each chunk as it arrives. Returns the byte count. The body
 * is consumed directly (no pipeline/Transform): each stream stage costs a hop per 64 KiB chunk.
 * It is read in flowing mode ('data' events, paused while a full batch waits for the previous
 * write), not with an async iterator: the iterator's read() concatenates every chunk buffered
 * meanwhile into a new buffer, a copy of much of the file when the disk is the slower side.
 */
async function receiveInto(
  body: Readable,
  fh: FileHandle,
  hash: Hash,
  onBytes: ((n: number) => void) | undefined,
  signal: AbortSignal | undefined,
): Promise<number> {
  const writer = new WriteBehind(fh);
  // The client also aborts the request, but a body that ignores the signal must stop too.
  const onAbort = () => body.destroy(signal?.reason as Error);
  signal?.addEventListener("abort", onAbort, { once: true });
  let size = 0;
  try {
    signal?.throwIfAborted();
    // Listening before the first chunk flows: an error or an early end is never missed.
    const ended = finished(body);
    // The write a paused body waits for (held in an object: it is set from the listener).
    const paused: { write: Promise<void> | null } = { write: null };
    body.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      size += chunk.length;
      onBytes?.(chunk.length);
      const wait = writer.push(chunk);
      if (wait === null) return;
      body.pause();
      paused.write = wait.then(
        () => {
          paused.write = null;
          body.resume();
        },
        (err: unknown) => {
          // The write failed: stop the body; `ended` rejects with the error.
          body.destroy(err as Error);
        },
      );
    });
    await ended;
    if (paused.write !== null) await paused.write;
    signal?.throwIfAborted();
    await writer.finish();
    return size;
  } catch (err) {
    body.destroy();
    await writer.drain().catch(() => undefined);
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** One attempt: stream to a temp file, hash, compare, fsync. Returns the temp path. */
async function attemptDownload(
  req: DownloadRequest,
  deps: DownloadDeps,
  guard: TransferGuard,
): Promise<{ tmp: string; size: number }> {
  const tmp = tmpPath(deps.root, path.basename(req.label));
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  const hash = createHash("sha256");
  let fh: FileHandle | null = null;
  try {
    // The file is opened first: no await may come between getting the body and reading it, or
    // an error the body emits in between would have no listener.
    fh = await fs.open(tmp, "wx", 0o644);
    guard.newAttempt();
    const { body, size: expectedSize } = await deps.client.download(req.fileUrl, guard.signal);
    guard.announcedSize(expectedSize);
    const onBytes = (n: number) => {
      guard.received(n);
      deps.onBytes?.(n);
    };
    const size = await receiveInto(body, fh, hash, onBytes, guard.signal);
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
    // One fsync at the end, on the handle that wrote: the caller renames the file into place.
    await fh.sync();
    const handle = fh;
    fh = null;
    await handle.close();
    return { tmp, size };
  } catch (err) {
    await fh?.close().catch(() => undefined);
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
  const guard = new TransferGuard(
    deps.limits ?? DEFAULT_LIMITS,
    req.label,
    req.sizeHint ?? null,
    deps.signal,
  );
  let lastError: unknown;
  try {
    for (let attempt = 0; attempt < retry.attempts; attempt++) {
      if (attempt > 0) await sleep(backoffDelay(retry, attempt - 1), guard.signal);
      try {
        return await attemptDownload(req, deps, guard);
      } catch (err) {
        if (deps.signal?.aborted) throw err;
        // Too slow is not retried now: the deadline is the file's, and another attempt at once
        // would meet the same master. A later pass retries it, with backoff.
        if (guard.stalled) throw guard.stalled;
        lastError = err;
        deps.log.warn(
          { file: req.label, attempt: attempt + 1, of: retry.attempts },
          `download failed: ${describeError(err)}`,
        );
      }
    }
  } catch (err) {
    throw guard.stalled ?? err;
  } finally {
    guard.done();
  }
  if (lastError instanceof PackratError) throw lastError;
  throw new PackratError("PACKRAT_DOWNLOAD_FAILED", `${req.label}: ${describeError(lastError)}`, {
    cause: lastError,
  });
}
