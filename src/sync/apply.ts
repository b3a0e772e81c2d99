/**
 * Applying a pass's plan to the disk (issue 25): observe every path the plan wants (a stat, and
 * a hash where no fingerprint vouches for the bytes), then fetch, link and repair what is
 * missing or wrong. Downloads are shared across passes: one that outlives its pass's wait goes
 * on in the background (see fetchShared), within one set of download slots.
 * Layouts that transform package files (RPM signing) or keep only what a package file yields
 * (docker archives unpacked into blobs) are served here through the RepoLayout port.
 */
import fs from "node:fs/promises";
import path from "node:path";
import PQueue from "p-queue";
import { describeError, isPackratError } from "../errors.js";
import type { DerivedArtifacts, PackageMeta, RepoLayout } from "../layout/types.js";
import { metaCacheKey } from "../layout/types.js";
import type { Fingerprint } from "../state/state-store.js";
import {
  assertNoSymlinkDirs,
  fingerprintMatches,
  fsyncDir,
  linkAtomic,
  openFileSource,
  sha256Bytes,
  sha256File,
  statAndHashTinySync,
  statInfo,
  statInfoSync,
} from "./disk.js";
import {
  type TransferLimits,
  DEFAULT_LIMITS,
  STALLED_PREFIX,
  downloadVerified,
} from "./download.js";
import type { DetachedDownload, EngineDeps, SyncReport } from "./engine-types.js";
import { heldFetches } from "./in-place.js";
import { PENDING_TRANSFORM, type RepoPlan } from "./plan.js";
import { type DesiredFile, type PathObservation, needsHash, planFetches } from "./reconcile.js";

/** Files stat'ed and hashed at once while observing the disk. */
const OBSERVE_CONCURRENCY = 16;
/** Synchronous stats between two turns of the event loop. */
const OBSERVE_BATCH = 512;

/** A stalled file is retried after this, doubling with each stall in a row, at most an hour. */
export const STALL_RETRY_BASE_MS = 60_000;
export const STALL_RETRY_MAX_MS = 3_600_000;

/** What a package file of a layout that drops them yielded, cached by its SHA-256. */
interface DerivedRecord {
  size: number;
  /** Root-relative paths and SHA-256 of the files extracted from it. */
  outputs: { path: string; sha256: string }[];
}

/**
 * The state DB key of DerivedRecords (the package metadata table, beside the package file's
 * SHA-256): by layout and the package file's path, since what a file yields depends on where it
 * is (its repo) and on its name (a docker archive's name is the image's), not only on its bytes.
 */
function derivedKey(layout: RepoLayout, canonical: string): string {
  return `derived:${layout.managerType}:${canonical}`;
}

/** What apply() leaves for the publish step. */
export interface Applied {
  /** URIs of files this pass could not make whole: left out of its generations. */
  failed: Set<string>;
  /** What was seen of each path (its stat, and its hash when it was hashed). */
  observations: Map<string, PathObservation>;
  /** Package files kept only as what they yielded, by canonical path, with their size. */
  derived: Map<string, number>;
}

export class Applier {
  private readonly now: () => number;
  /**
   * Downloads in flight by canonical path, across passes. A pass that stops waiting for one
   * (downloadWaitMs) leaves it here, `detached`; a later pass wanting the same file joins it
   * instead of starting another. The slots bound all of them together to download_concurrency.
   */
  private readonly downloads = new Map<string, { done: Promise<void>; detached: boolean }>();
  private readonly downloadSlots: PQueue;
  /** Aborted by abortDownloads() (the daemon stopping): every download ends at once. */
  private readonly stopDownloads = new AbortController();
  /** Errors already recorded in download_failures (a shared download fails once). */
  private readonly recordedErrors = new WeakSet<object>();
  private detachedListener: ((d: DetachedDownload) => void) | null = null;

  constructor(
    private readonly deps: EngineDeps,
    private readonly root: string,
  ) {
    this.now = deps.now ?? Date.now;
    this.downloadSlots = new PQueue({ concurrency: deps.settings.downloadConcurrency });
  }

  /** Called when a download its pass stopped waiting for ends (the daemon publishes it then). */
  onDetachedDownload(listener: ((d: DetachedDownload) => void) | null): void {
    this.detachedListener = listener;
  }

  /** Abort every download in flight, for good (the agent is stopping). */
  abortDownloads(reason: Error): void {
    this.stopDownloads.abort(reason);
  }

  get downloadsInFlight(): number {
    return this.downloads.size;
  }

  /** Resolves when no download is in flight (each removes its temp file as it ends). */
  async downloadsIdle(): Promise<void> {
    while (this.downloads.size > 0)
      await Promise.allSettled([...this.downloads.values()].map((e) => e.done));
  }

  private get limits(): TransferLimits {
    const s = this.deps.settings;
    return {
      minRate: s.downloadMinRate ?? DEFAULT_LIMITS.minRate,
      windowMs: (s.downloadMinRateWindow ?? DEFAULT_LIMITS.windowMs / 1000) * 1000,
      deadlineBaseMs: (s.downloadDeadlineBase ?? DEFAULT_LIMITS.deadlineBaseMs / 1000) * 1000,
    };
  }

  /**
   * Look at every desired path (stat; hash what no fingerprint vouches for, or everything on a
   * deep pass), then fetch, link and repair what is missing or wrong, download_concurrency at a
   * time. Which files this pass could not make whole (failed, or still downloading) comes back
   * in `failed`; the rest are on disk with their SHA-256.
   */
  async apply(
    plans: readonly RepoPlan[],
    opts: {
      deep: boolean;
      signal: AbortSignal | undefined;
      /** Incremental passes look at these packages' files only; the rest are trusted as the
       * last pass left them (fingerprints), and the periodic full sync checks them. */
      onlyPackages?: ReadonlySet<string> | undefined;
      downloadWaitMs?: number | undefined;
    },
    report: SyncReport,
  ): Promise<Applied> {
    const { store, log } = this.deps;
    const allDesired = plans.flatMap((p) => p.desired);
    report.packageFiles += allDesired.length;
    // One query for every fingerprint instead of one per path.
    const fingerprints = store.fingerprintMap();
    // Package files kept only as what they yielded (docker archives as blobs) count as present
    // while those files are whole; they are neither observed nor fetched.
    const derived = await this.derivedPresent(plans, fingerprints, opts.deep);
    const desired = allDesired.filter((d) => !derived.has(d.paths[0] ?? ""));

    // Observe: stat every path, hash the ones whose fingerprint does not vouch for them
    // (OBSERVE_CONCURRENCY at a time: that is disk and thread-pool latency, not CPU).
    const observations = new Map<string, PathObservation>();
    const observeQueue = new PQueue({ concurrency: OBSERVE_CONCURRENCY });
    const observeErrors: unknown[] = [];
    // The stat is synchronous (see statInfoSync), in batches between which the event loop
    // runs; only files that need hashing go to the queue.
    let sinceYield = 0;
    const observe = async (d: DesiredFile, rel: string): Promise<void> => {
      const full = path.join(this.root, rel);
      const fingerprint = fingerprints.get(rel);
      // No fingerprint that could vouch for the bytes (or a deep pass): the file is hashed
      // whatever its stat, so stat and hash it from one open (a small file synchronously).
      const hashAnyway =
        opts.deep || fingerprint === undefined || fingerprint.sha256 !== d.expectedSha256;
      const seen = hashAnyway ? statAndHashTinySync(full) : null;
      const obs: PathObservation = { stat: seen ? seen.stat : statInfoSync(full), fingerprint };
      if (needsHash(obs, d.expectedSha256, opts.deep)) {
        if (seen?.sha256 != null) obs.hashed = seen.sha256;
        else
          await observeQueue.add(async () => {
            obs.hashed = await sha256File(full);
          });
        report.hashed++;
        if (obs.hashed !== d.expectedSha256) {
          if (d.expectedSha256.startsWith(PENDING_TRANSFORM))
            log.info({ file: rel }, "package needs signing");
          else
            log.warn(
              { file: rel, expected: d.expectedSha256, actual: obs.hashed },
              "file on disk does not match its SHA-256; fetching it again",
            );
        }
      }
      observations.set(rel, obs);
    };
    const pending: Promise<void>[] = [];
    // A path that cannot be observed (EACCES, a directory in its place) fails its file only.
    const unobservable = new Set<string>();
    for (const d of desired) {
      const trusted = opts.onlyPackages !== undefined && !opts.onlyPackages.has(d.file.packageName);
      for (const rel of d.paths) {
        const fingerprint = fingerprints.get(rel);
        if (trusted && fingerprint !== undefined && fingerprint.sha256 === d.expectedSha256) {
          const { size, mtimeNs, ino } = fingerprint;
          observations.set(rel, { stat: { size, mtimeNs, ino }, fingerprint });
          continue;
        }
        if (++sinceYield >= OBSERVE_BATCH) {
          sinceYield = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        pending.push(
          observe(d, rel).catch((err: unknown) => {
            if (!(err as NodeJS.ErrnoException | undefined)?.code) {
              observeErrors.push(err);
              return;
            }
            unobservable.add(d.file.uri);
            report.failed.push({ repo: d.repo, file: rel, error: describeError(err) });
            log.error({ repo: d.repo, file: rel }, `not published: ${describeError(err)}`);
          }),
        );
      }
    }
    await Promise.all(pending);
    if (observeErrors.length > 0) throw observeErrors[0];

    const plan = planFetches({
      desired: desired.filter((d) => !unobservable.has(d.file.uri)),
      observations,
    });
    for (const v of plan.verified) {
      const st = observations.get(v.path)?.stat;
      if (st)
        store.putFingerprint({ path: v.path, sha256: v.sha256, ...st, verifiedAt: this.now() });
    }

    const failed = new Set<string>(unobservable);
    // In place, the package files are the producer's: never removed or fetched again.
    for (const action of heldFetches(plan, (repo) => this.deps.inPlaceRepos?.has(repo) === true)) {
      const d = action.desired;
      failed.add(d.file.uri);
      const error = `the file in the source no longer has the bytes it was listed with (sha256 ${d.expectedSha256}): changed or damaged since; left as it is, and out of the index until the source lists it again`;
      report.failed.push({ repo: d.repo, file: d.paths[0] ?? d.file.filename, error });
      log.error({ repo: d.repo, file: d.paths[0] }, `not published: ${error}`);
    }
    const queue = new PQueue({ concurrency: this.deps.settings.downloadConcurrency });
    const stalls = new Map(
      store
        .listDownloadFailures()
        .filter((f) => f.error.startsWith(STALLED_PREFIX))
        .map((f) => [`${f.repo}\0${f.uri}`, f]),
    );
    this.deps.progress?.onPlan?.(plan.fetch.length, null);
    for (const action of plan.fetch) {
      void queue.add(async () => {
        const d = action.desired;
        const canonical = d.paths[0];
        if (canonical === undefined) return;
        // A file that stalled is not tried again before its backoff is over: each try would
        // hold a download slot for a whole window, every pass.
        const stall = action.linkFrom ? undefined : stalls.get(`${d.repo}\0${d.file.uri}`);
        const retryIn = stall ? this.stallRetryIn(stall) : 0;
        if (stall && retryIn > 0) {
          failed.add(d.file.uri);
          const error = `not tried again for ${Math.ceil(retryIn / 1000)} s (backoff after ${stall.attempts} failed attempt(s)): ${stall.error.slice(STALLED_PREFIX.length)}`;
          report.failed.push({ repo: d.repo, file: canonical, error });
          log.info({ repo: d.repo, file: canonical }, `not published: ${error}`);
          this.deps.progress?.onFile?.();
          return;
        }
        try {
          if (action.reason === "mismatch") {
            // Never leave wrong bytes where an index may point: remove first, fetch after.
            await assertNoSymlinkDirs(this.root, path.join(this.root, canonical));
            await fs.rm(path.join(this.root, canonical), { force: true });
            report.repaired++;
          }
          if (action.linkFrom) {
            await linkAtomic(
              this.root,
              path.join(this.root, action.linkFrom),
              path.join(this.root, canonical),
            );
            await this.recordFingerprint(canonical, d.expectedSha256);
            report.linked++;
          } else {
            const done = await this.fetchShared(d, plans, opts.signal, opts.downloadWaitMs);
            if (done === "pending") {
              // Still coming: this pass publishes without it; a later one adds it.
              failed.add(d.file.uri);
              report.pending.push({ repo: d.repo, file: canonical });
              return;
            }
            report.downloaded++;
            return;
          }
          for (const extra of d.paths.slice(1)) {
            await linkAtomic(
              this.root,
              path.join(this.root, canonical),
              path.join(this.root, extra),
            );
          }
          store.clearDownloadFailure(d.repo, d.file.uri);
        } catch (err) {
          // Aborted (the agent is stopping): not a failure of this file; the abort is raised
          // once the queue is idle, so no rejection escapes the queue unhandled. Downloads
          // aborted by abortDownloads() end the same way, and the pass publishes the rest.
          if (opts.signal?.aborted) return;
          failed.add(d.file.uri);
          if (this.stopDownloads.signal.aborted) return;
          report.failed.push({ repo: d.repo, file: canonical, error: describeError(err) });
          if (!this.recordedErrors.has(err as object)) this.recordFailure(d, err);
          log.error(
            { repo: d.repo, file: canonical, code: isPackratError(err) ? err.code : undefined },
            `not published: ${describeError(err)}`,
          );
        } finally {
          this.deps.progress?.onFile?.();
        }
      });
    }
    for (const l of plan.link) {
      await linkAtomic(this.root, path.join(this.root, l.from), path.join(this.root, l.to));
      report.linked++;
    }
    await queue.onIdle();
    opts.signal?.throwIfAborted();
    return { failed, observations, derived };
  }

  /**
   * Package files of layouts that drop them (RepoLayout.dropsPackageFiles) that are not on disk
   * but whose yield is: every file the state DB says they yielded is there with its SHA-256
   * (fingerprint, or a re-hash on a deep pass), and their parse is cached. By canonical path,
   * with the package file's size. Any other such file is fetched again as usual.
   */
  private async derivedPresent(
    plans: readonly RepoPlan[],
    fingerprints: ReadonlyMap<string, Fingerprint>,
    deep: boolean,
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const { store } = this.deps;
    for (const p of plans) {
      if (!p.layout.dropsPackageFiles) continue;
      const parsed = store.packageMetaStatus(metaCacheKey(p.layout));
      for (const d of p.desired) {
        const canonical = d.paths[0];
        if (canonical === undefined || parsed.get(d.expectedSha256) !== true) continue;
        if (statInfoSync(path.join(this.root, canonical)) !== null) continue;
        const record = store.getPackageMeta(d.expectedSha256, derivedKey(p.layout, canonical))
          ?.meta as DerivedRecord | null | undefined;
        if (!record || !Array.isArray(record.outputs)) continue;
        let whole = true;
        for (const o of record.outputs) {
          const full = path.join(this.root, o.path);
          const fp = fingerprints.get(o.path);
          const st = statInfoSync(full);
          if (st === null) whole = false;
          else if (deep || fp?.sha256 !== o.sha256 || !fingerprintMatches(fp, st)) {
            // Touched, or a deep pass: the bytes decide, not the stat.
            whole = (await sha256File(full)) === o.sha256;
            if (whole)
              store.putFingerprint({
                path: o.path,
                sha256: o.sha256,
                ...st,
                verifiedAt: this.now(),
              });
          }
          if (!whole) break;
        }
        if (whole) out.set(canonical, record.size);
        else
          this.deps.log.info(
            { repo: d.repo, file: canonical },
            "a file unpacked from this package file is missing or changed; fetching the package file again",
          );
      }
    }
    return out;
  }

  /**
   * After a publish of a layout that drops its package files: record what each package file
   * on disk yielded (by its SHA-256), then delete it. A file that yielded nothing (it did not
   * parse) is kept, so it is not fetched again every pass. Without a render (`extracted`
   * absent: the served generation already holds the file's yield, fetched again after a
   * blob went missing) the record made when it was first unpacked says what it yielded.
   */
  async dropDerivedSources(
    plan: RepoPlan,
    failed: ReadonlySet<string>,
    extracted: ReadonlyMap<string, { path: string; sha256: string }[]> | undefined,
  ): Promise<void> {
    const { store, log } = this.deps;
    for (const d of plan.desired) {
      const canonical = d.paths[0];
      if (canonical === undefined || failed.has(d.file.uri)) continue;
      const full = path.join(this.root, canonical);
      const st = statInfoSync(full);
      if (st === null) continue;
      const known = store.getPackageMeta(d.expectedSha256, derivedKey(plan.layout, canonical))
        ?.meta as DerivedRecord | null;
      const outputs = extracted ? extracted.get(canonical) : known?.outputs;
      if (!outputs || outputs.length === 0) continue;
      // Only once every file it yielded is in place (a generation that failed leaves it).
      if (!extracted && outputs.some((o) => statInfoSync(path.join(this.root, o.path)) === null))
        continue;
      const record: DerivedRecord = { size: st.size, outputs };
      store.putPackageMeta(
        d.expectedSha256,
        derivedKey(plan.layout, canonical),
        record as unknown as PackageMeta,
        null,
      );
      try {
        for (const rel of d.paths) {
          await fs.rm(path.join(this.root, rel), { force: true });
          store.deleteFingerprint(rel);
        }
      } catch (err) {
        log.warn({ file: canonical }, `could not remove after unpacking: ${describeError(err)}`);
      }
    }
  }

  private async recordFingerprint(rel: string, sha256: string): Promise<void> {
    const st = await statInfo(path.join(this.root, rel));
    if (st) this.deps.store.putFingerprint({ path: rel, sha256, ...st, verifiedAt: this.now() });
  }

  /** The time until a file that stalled may be tried again (0: now). */
  private stallRetryIn(row: { attempts: number; lastAttemptAt: number }): number {
    const delay = Math.min(
      STALL_RETRY_MAX_MS,
      STALL_RETRY_BASE_MS * 2 ** Math.min(30, Math.max(0, row.attempts - 1)),
    );
    return Math.max(0, row.lastAttemptAt + delay - this.now());
  }

  private recordFailure(d: DesiredFile, err: unknown): void {
    const stalled = isPackratError(err, "PACKRAT_DOWNLOAD_STALLED");
    this.deps.store.recordDownloadFailure({
      repo: d.repo,
      uri: d.file.uri,
      filename: d.file.filename,
      // The code marks a stall for the backoff above (download_failures has no code column).
      error: `${stalled ? STALLED_PREFIX : ""}${describeError(err)}`,
      lastAttemptAt: this.now(),
    });
    if (typeof err === "object" && err !== null) this.recordedErrors.add(err);
  }

  /**
   * Fetch a file, or join the download of it already in flight, and wait at most `waitMs` for
   * it. Why: a master that trickles one file must not hold a pass (and with it every change
   * queued behind it, in every repo) for the file's whole deadline. A download that outlives the
   * wait goes on in the background, within the shared download slots; the pass publishes
   * without it, and when it ends the detached listener (the daemon) queues a pass that publishes
   * it, or, if it failed, one after its backoff. Success and failure are recorded in the state
   * DB here, once, whichever pass waits or none.
   */
  private async fetchShared(
    d: DesiredFile,
    plans: readonly RepoPlan[],
    signal: AbortSignal | undefined,
    waitMs: number | undefined,
  ): Promise<"done" | "pending"> {
    const canonical = d.paths[0] ?? "";
    let entry = this.downloads.get(canonical);
    if (!entry) {
      const downloadSignal = signal
        ? AbortSignal.any([signal, this.stopDownloads.signal])
        : this.stopDownloads.signal;
      const created: { done: Promise<void>; detached: boolean } = {
        detached: false,
        done: this.downloadSlots.add(async () => {
          downloadSignal.throwIfAborted();
          await this.fetchOne(d, plans, downloadSignal);
          for (const extra of d.paths.slice(1)) {
            await linkAtomic(
              this.root,
              path.join(this.root, canonical),
              path.join(this.root, extra),
            );
          }
          this.deps.store.clearDownloadFailure(d.repo, d.file.uri);
        }),
      };
      entry = created;
      this.downloads.set(canonical, created);
      created.done.then(
        () => {
          this.downloads.delete(canonical);
          if (created.detached)
            this.detachedListener?.({ repo: d.repo, file: canonical, error: null, retryInMs: 0 });
        },
        (err: unknown) => {
          this.downloads.delete(canonical);
          if (downloadSignal.aborted && !isPackratError(err, "PACKRAT_DOWNLOAD_STALLED")) return;
          this.recordFailure(d, err);
          if (!created.detached) return;
          this.deps.log.error(
            { repo: d.repo, file: canonical, code: isPackratError(err) ? err.code : undefined },
            `not published: ${describeError(err)}`,
          );
          const row = this.deps.store
            .listDownloadFailures()
            .find((f) => f.repo === d.repo && f.uri === d.file.uri);
          const retryInMs =
            row && isPackratError(err, "PACKRAT_DOWNLOAD_STALLED") ? this.stallRetryIn(row) : 0;
          this.detachedListener?.({ repo: d.repo, file: canonical, error: err, retryInMs });
        },
      );
    }
    if (waitMs === undefined) {
      await entry.done;
      return "done";
    }
    // Already left to the background by an earlier pass: waiting again would cost every pass of
    // the repo the whole wait (and the changes queued behind it), for a file known to be slow.
    if (entry.detached) return "pending";
    const finished = entry.done.then(() => "done" as const);
    finished.catch(() => undefined); // raised to the waiter below, or handled above
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<"pending">((resolve) => {
      timer = setTimeout(() => resolve("pending"), waitMs);
    });
    try {
      const outcome = await Promise.race([finished, waited]);
      if (outcome === "pending") {
        entry.detached = true;
        this.deps.log.info(
          { repo: d.repo, file: canonical, waitedMs: waitMs },
          "download continues in the background; publishing without it for now",
        );
      }
      return outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Download, verify, optionally transform, and rename into place. */
  private async fetchOne(
    d: DesiredFile,
    plans: readonly RepoPlan[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const canonical = d.paths[0] ?? "";
    const { tmp, size } = await downloadVerified(
      { fileUrl: d.file.fileUrl, sha256: d.file.sha256, label: canonical },
      {
        client: this.deps.client,
        root: this.root,
        log: this.deps.log,
        limits: this.limits,
        ...(this.deps.retry ? { retry: this.deps.retry } : {}),
        ...(this.deps.sleep ? { sleep: this.deps.sleep } : {}),
        ...(signal ? { signal } : {}),
        onBytes: (n: number) => this.deps.progress?.onBytes?.(n),
      },
    );
    let diskSha = d.file.sha256;
    let diskSize = size;
    let transformKey: string | null = null;
    const layout = plans.find((p) => p.repo.name === d.repo)?.layout;
    const { signer, layoutOptions } = this.deps;
    try {
      // A layout that serves other bytes than the master's (RepoLayout.derive) rewrites the
      // download while it is still a temp file: the final path only ever holds served bytes.
      if (layout?.derive && signer && layout.derive.wants(layoutOptions, signer)?.rewrite) {
        const source = await openFileSource(tmp);
        let derived: DerivedArtifacts;
        try {
          derived = await layout.derive.run(source, d.file.filename, signer, layoutOptions);
        } finally {
          await source.close();
        }
        const rewritten = derived.bytes;
        if (rewritten) {
          const handle = await fs.open(tmp, "w");
          try {
            await handle.writeFile(rewritten);
            await handle.sync();
          } finally {
            await handle.close();
          }
          diskSha = sha256Bytes(rewritten);
          diskSize = rewritten.length;
          transformKey = signer.fingerprint;
        }
        if (derived.signature)
          this.deps.store.putPackageSignature(
            diskSha,
            layout.managerType,
            signer.fingerprint,
            derived.signature,
          );
      }
      const full = path.join(this.root, canonical);
      await assertNoSymlinkDirs(this.root, full);
      await fs.mkdir(path.dirname(full), { recursive: true });
      await fs.rename(tmp, full);
      await fsyncDir(path.dirname(full));
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    d.expectedSha256 = diskSha;
    this.deps.store.setDiskSha256(d.repo, d.file.uri, diskSha, transformKey, diskSize);
    await this.recordFingerprint(canonical, diskSha);
  }
}
