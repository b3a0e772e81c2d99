/**
 * The long-running part of `packrat-agent run`: a full sync at start and every
 * full_sync_interval seconds, one long-poll per repo feeding the trigger coalescer, and one
 * sync at a time (full and incremental passes share one queue, so they never interleave).
 */
import PQueue from "p-queue";
import { describeError } from "../errors.js";
import type { Logger } from "../log.js";
import type { StateStore } from "../state/state-store.js";
import { backoffDelay, realSleep, type Sleep } from "./backoff.js";
import type { DetachedDownload, SyncEngine, SyncOptions, SyncReport } from "./engine.js";
import type { MasterClient } from "./master-types.js";
import { TriggerCoalescer } from "./triggers.js";

export interface DaemonSettings {
  fullSyncInterval: number;
  pollTimeout: number;
  triggerDebounceMs: number;
  /**
   * How long a repo served by a quick generation (SyncReport.deferred) must stay quiet before
   * its complete generation is published; each new change restarts the wait.
   */
  settleDelayMs?: number;
  /**
   * How long a pass waits for each download before publishing without it (SyncOptions
   * .downloadWaitMs): a slow file then holds back neither the rest of its pass nor the passes
   * queued behind it; it joins a later generation when it is complete.
   */
  downloadWaitMs?: number;
  /**
   * How long superseded files stay (metadata_grace_seconds). A pass that superseded something
   * brings the next full sync (whose cleanup removes them) forward to when their grace ends,
   * when that is sooner than full_sync_interval: a removed package's own files (a PyPI project
   * page, the package itself) then go after the grace, not up to an interval later.
   */
  metadataGraceSeconds?: number;
}

export const DEFAULT_SETTLE_DELAY_MS = 2_000;
export const DEFAULT_DOWNLOAD_WAIT_MS = 1_000;
/** A download that completed in the background is published after this (a few coalesce). */
const DETACHED_PUBLISH_DELAY_MS = 200;

export interface DaemonDeps {
  engine: SyncEngine;
  client: MasterClient;
  store: StateStore;
  log: Logger;
  settings: DaemonSettings;
  sleep?: Sleep;
  /** Called after every pass (status, metrics, the tamper watcher). */
  onSync?: (report: SyncReport | null, err: unknown) => void;
  /**
   * The state DB file was deleted or replaced under the daemon (`why` says which): reopen the
   * file at the path (a new one if none) and hand back the dependencies built on it. Without it
   * the daemon only says so in the log.
   */
  reopenStore?: (why: string) => Promise<DaemonDeps>;
}

const POLL_RETRY = { attempts: Infinity, baseDelayMs: 1000, maxDelayMs: 30_000 };

/** kv key of what the daemon concluded about the master's change triggers (for `status`). */
export const TRIGGERS_KEY = "triggers";

/**
 * Full syncs in a row that must find a change the master announces, in a repo whose polls all
 * answered [] after their whole timeout, before the daemon says the master gives no triggers.
 * Two, not one: packrat's poll can miss a change made in the moment no poll waits.
 */
const SILENT_CHANGES_BEFORE_VERDICT = 2;

export interface TriggersStatus {
  /** null until there is evidence either way. */
  available: boolean | null;
  since: string;
  message: string;
}

/** What the polls of one repo said since the last full sync. */
interface PollEvidence {
  /** Polls that answered [] only after (about) their whole timeout. */
  silentTimeouts: number;
  /** Polls that named packages. */
  answered: number;
}

export class MirrorDaemon {
  private readonly queue = new PQueue({ concurrency: 1 });
  private readonly coalescer: TriggerCoalescer;
  private readonly stopController = new AbortController();
  private pollers = new Map<string, AbortController>();
  private fullSyncTimer: NodeJS.Timeout | null = null;
  /** When fullSyncTimer fires (ms since the epoch). */
  private fullSyncDueAt = Infinity;
  /** When the earliest superseded file's grace ends: a full sync then removes it. */
  private expiryDueAt = Infinity;
  private fullSyncRunning = false;
  private fullSyncQueued = false;
  private masterReachable: boolean | null = null;
  /** Set as soon as stop() begins: nothing new is scheduled after that. */
  private stopping = false;
  private consecutiveFullFailures = 0;
  private lastFullSyncError: string | null = null;
  /** Repos whose served generation is quick, with the timer that will complete it. */
  private readonly settleTimers = new Map<string, NodeJS.Timeout>();
  /** The render caches are filled once, after the first full sync that succeeds. */
  private warmed = false;
  private readonly pollEvidence = new Map<string, PollEvidence>();
  /** Full syncs in a row that found announced changes the polls kept silent about. */
  private silentChangeSyncs = 0;
  private triggersAvailable: boolean | null = null;
  /** Repos with a pass queued for a download that ended in the background, and when it fires. */
  private readonly detachedTimers = new Map<string, { timer: NodeJS.Timeout; at: number }>();
  /** A bucket round held back by its backoff, due at `at`. */
  private bucketRetry: { timer: NodeJS.Timeout; at: number } | null = null;

  constructor(private deps: DaemonDeps) {
    deps.engine.onDetachedDownload((d) => this.onDetached(d));
    this.coalescer = new TriggerCoalescer(
      deps.settings.triggerDebounceMs,
      (repo, packages) => this.enqueueIncremental(repo, packages),
      (repo, err) => {
        deps.log.error(
          { repo },
          `incremental sync failed: ${describeError(err)}; a full sync will repair it`,
        );
        this.scheduleFullSync(5_000);
      },
    );
  }

  get signal(): AbortSignal {
    return this.stopController.signal;
  }

  /** Start: first full sync now; pollers start once the repos are known. */
  start(): void {
    this.requestFullSync("start");
  }

  /** SIGUSR1, or after an error: run a full sync as soon as the queue allows. */
  requestFullSync(reason: string, opts: SyncOptions = {}): void {
    if (this.stopping || this.fullSyncQueued) return;
    if (this.fullSyncTimer) clearTimeout(this.fullSyncTimer);
    this.fullSyncTimer = null;
    this.fullSyncDueAt = Infinity;
    this.fullSyncQueued = true;
    this.deps.log.info({ reason }, "full sync queued");
    void this.queue.add(async () => {
      this.fullSyncQueued = false;
      if (this.stopController.signal.aborted) return;
      let delay = this.deps.settings.fullSyncInterval * 1000;
      // This full sync's cleanup removes what has expired by now.
      if (this.expiryDueAt <= Date.now()) this.expiryDueAt = Infinity;
      this.fullSyncRunning = true;
      try {
        // A full sync on a fresh state DB is what rebuilds it: go on with this one.
        await this.storeStillThere(false);
        const report = await this.deps.engine.fullSync({
          ...opts,
          signal: this.stopController.signal,
          downloadWaitMs: this.downloadWaitMs,
        });
        if (this.consecutiveFullFailures > 0) {
          this.deps.log.info(
            { failuresBefore: this.consecutiveFullFailures },
            "full sync succeeded again",
          );
        }
        this.consecutiveFullFailures = 0;
        this.markMaster(true);
        // A full sync publishes complete generations: nothing is left to settle.
        for (const timer of this.settleTimers.values()) clearTimeout(timer);
        this.settleTimers.clear();
        this.judgeTriggers(report);
        this.passDone(report);
        this.restartPollers();
        if (!this.warmed) {
          this.warmed = true;
          this.warmCaches();
        }
      } catch (err) {
        if (this.stopController.signal.aborted) return;
        this.consecutiveFullFailures++;
        // One error line when full syncs start failing (or fail differently); the retries
        // after it log at debug, so a long outage does not flood the journal.
        const message = describeError(err);
        if (this.consecutiveFullFailures === 1 || message !== this.lastFullSyncError) {
          this.deps.log.error(
            `full sync failed: ${message}; the tree stays as it was, retrying with backoff`,
          );
        } else {
          this.deps.log.debug(
            { failures: this.consecutiveFullFailures },
            `full sync failed again: ${message}`,
          );
        }
        this.lastFullSyncError = message;
        this.deps.onSync?.(null, err);
        // Retry sooner than the interval while the master is failing, with backoff.
        delay = Math.min(
          delay,
          5_000 +
            backoffDelay(
              { attempts: 0, baseDelayMs: 5_000, maxDelayMs: 300_000 },
              this.consecutiveFullFailures,
            ),
        );
        this.restartPollers();
      }
      this.fullSyncRunning = false;
      this.scheduleFullSync(Math.min(delay, Math.max(0, this.expiryDueAt - Date.now())));
    });
  }

  /** Swap in new dependencies after SIGHUP (a new config). Pollers restart with the new client. */
  reload(deps: DaemonDeps): void {
    this.swapDeps(deps);
    this.stopPollers();
    this.requestFullSync("config reloaded");
  }

  /**
   * Stop pollers and timers and abort every download at once (a stalled one would otherwise
   * hold the stop for its whole deadline); the running pass then publishes what is complete.
   * Wait for it up to the deadline, then abort it.
   */
  async stop(deadlineMs: number): Promise<boolean> {
    this.stopping = true;
    this.coalescer.stop();
    this.stopPollers();
    this.deps.engine.abortDownloads(new Error("agent stopping"));
    if (this.fullSyncTimer) clearTimeout(this.fullSyncTimer);
    for (const timer of this.settleTimers.values()) clearTimeout(timer);
    this.settleTimers.clear();
    if (this.bucketRetry) clearTimeout(this.bucketRetry.timer);
    this.bucketRetry = null;
    for (const { timer } of this.detachedTimers.values()) clearTimeout(timer);
    this.detachedTimers.clear();
    this.queue.clear();
    const idle = this.queue.onIdle().then(() => true);
    const timeout = new Promise<boolean>((resolve) =>
      setTimeout(() => resolve(false), deadlineMs).unref(),
    );
    const finished = await Promise.race([idle, timeout]);
    this.stopController.abort(new Error("agent stopping"));
    if (!finished)
      await Promise.race([this.queue.onIdle(), new Promise((r) => setTimeout(r, 2000).unref())]);
    // Aborted downloads remove their temp files as they end.
    await Promise.race([
      this.deps.engine.downloadsIdle(),
      new Promise((r) => setTimeout(r, 2000).unref()),
    ]);
    return finished;
  }

  private swapDeps(next: DaemonDeps): void {
    if (next.engine !== this.deps.engine) {
      // The old engine's client is closed by the caller; its downloads end now, unrecorded.
      this.deps.engine.abortDownloads(new Error("engine replaced"));
      this.deps.engine.onDetachedDownload(null);
      next.engine.onDetachedDownload((d) => this.onDetached(d));
    }
    this.deps = next;
  }

  private get downloadWaitMs(): number {
    return this.deps.settings.downloadWaitMs ?? DEFAULT_DOWNLOAD_WAIT_MS;
  }

  /**
   * A download a pass stopped waiting for has ended: publish it soon with a pass of its repo
   * (settle: from the state DB, no master request); a stall is tried again by such a pass once
   * its backoff is over. Other failures wait for the next full sync, as in any pass.
   */
  private onDetached(d: DetachedDownload): void {
    if (this.stopping) return;
    if (d.error === null) this.passSoon(d.repo, DETACHED_PUBLISH_DELAY_MS);
    else if (d.retryInMs > 0) this.passSoon(d.repo, d.retryInMs + DETACHED_PUBLISH_DELAY_MS);
  }

  private passSoon(repo: string, delayMs: number): void {
    const at = Date.now() + delayMs;
    const before = this.detachedTimers.get(repo);
    if (before && before.at <= at) return;
    if (before) clearTimeout(before.timer);
    const timer = setTimeout(() => {
      this.detachedTimers.delete(repo);
      void this.queue
        .add(async () => {
          if (this.stopping || !(await this.storeStillThere())) return;
          const report = await this.deps.engine.settle(repo, {
            signal: this.stopController.signal,
            downloadWaitMs: this.downloadWaitMs,
          });
          this.scheduleSettle(report);
          this.passDone(report);
        })
        .catch((err: unknown) => {
          if (this.stopController.signal.aborted) return;
          this.deps.log.error(
            { repo },
            `publishing downloads that ended in the background failed: ${describeError(err)}; the next full sync will`,
          );
        });
    }, delayMs);
    this.detachedTimers.set(repo, { timer, at });
  }

  /**
   * After a pass: status and metrics, and a retry of any bucket the pass could not bring up to
   * date, once its backoff has passed (a quiet master may not start another pass for minutes).
   */
  private passDone(report: SyncReport): void {
    this.deps.onSync?.(report, null);
    const grace = this.deps.settings.metadataGraceSeconds;
    if (report.published.length > 0 && grace !== undefined) {
      this.expiryDueAt = Math.min(this.expiryDueAt, Date.now() + grace * 1000 + 1000);
      // During a full sync the schedule is set when it ends (it takes expiryDueAt into account).
      if (this.expiryDueAt < this.fullSyncDueAt && !this.fullSyncQueued && !this.fullSyncRunning)
        this.scheduleFullSync(this.expiryDueAt - Date.now());
    }
    const behind = report.buckets.filter(
      (b) => b.skipped || b.error !== null || b.failed.length > 0,
    );
    if (behind.length === 0 || this.stopping) return;
    const at = Math.min(...behind.map((b) => b.nextAttemptAt ?? Date.now()));
    if (this.bucketRetry && this.bucketRetry.at <= at) return;
    if (this.bucketRetry) clearTimeout(this.bucketRetry.timer);
    const timer = setTimeout(
      () => {
        this.bucketRetry = null;
        void this.queue
          .add(async () => {
            if (this.stopController.signal.aborted) return;
            this.passDone(await this.deps.engine.replicate());
          })
          .catch((err: unknown) =>
            this.deps.log.error(`bucket retry failed: ${describeError(err)}`),
          );
      },
      Math.max(0, at - Date.now()),
    );
    timer.unref();
    this.bucketRetry = { timer, at };
  }

  /** For tests and `status`: wait until no pass is queued or running (settling included). */
  async idle(): Promise<void> {
    await this.coalescer.idle();
    await this.queue.onIdle();
    // Downloads that went on in the background, and the passes that publish them.
    while (this.deps.engine.downloadsInFlight > 0 || this.detachedTimers.size > 0) {
      await this.deps.engine.downloadsIdle();
      await new Promise((r) => setTimeout(r, 50));
      await this.queue.onIdle();
    }
  }

  /**
   * Before each pass: is the state DB file still the one the daemon has open? One deleted or
   * replaced under it (an operator's rm, a restore from backup) would take every write into an
   * unlinked file, lost at the next start. The daemon says so and rebuilds as a restart does: the
   * file at the path is opened (a fresh one if none), and a full sync fills it from the master and
   * the disk. Returns false when the caller's pass must give way to that full sync (queued
   * here unless the caller is a full sync itself).
   */
  private async storeStillThere(queueFullSync = true): Promise<boolean> {
    const why = this.deps.store.replacedOnDisk();
    if (why === null) return true;
    if (!this.deps.reopenStore) {
      this.deps.log.error(`${why} while the agent runs; restart it to rebuild the state DB`);
      return true;
    }
    this.deps.log.warn(
      `${why} while the agent runs; opening the state DB at that path and rebuilding it with a full sync, as a restart would`,
    );
    this.swapDeps(await this.deps.reopenStore(why));
    this.stopPollers();
    for (const timer of this.settleTimers.values()) clearTimeout(timer);
    this.settleTimers.clear();
    this.warmed = false;
    if (queueFullSync) this.requestFullSync("state DB replaced");
    return false;
  }

  private scheduleFullSync(delayMs: number): void {
    if (this.stopping) return;
    if (this.fullSyncTimer) clearTimeout(this.fullSyncTimer);
    this.fullSyncDueAt = Date.now() + delayMs;
    this.fullSyncTimer = setTimeout(() => {
      this.fullSyncTimer = null;
      this.fullSyncDueAt = Infinity;
      this.requestFullSync("interval");
    }, delayMs);
  }

  private enqueueIncremental(repo: string, packages: string[]): Promise<void> {
    return this.queue.add(async () => {
      if (this.stopping) return;
      if (!(await this.storeStillThere())) return;
      this.deps.log.info({ repo, packages: packages.length }, "applying changes from the master");
      const report = await this.deps.engine.incrementalSync(repo, packages, {
        signal: this.stopController.signal,
        quick: true,
        downloadWaitMs: this.downloadWaitMs,
      });
      this.scheduleSettle(report);
      this.passDone(report);
    });
  }

  /**
   * Queue a cache-filling render of every repo (SyncEngine.warm), so that the first change
   * after a start costs what later ones do. Failures only cost speed: logged at debug.
   */
  private warmCaches(): void {
    for (const { repo } of this.deps.store.listRepos()) {
      void this.queue
        .add(async () => {
          if (this.stopping || !(await this.storeStillThere())) return;
          await this.deps.engine.warm(repo.name, {
            signal: this.stopController.signal,
            downloadWaitMs: this.downloadWaitMs,
          });
        })
        .catch((err: unknown) => {
          this.deps.log.debug(
            { repo: repo.name },
            `warming the render caches: ${describeError(err)}`,
          );
        });
    }
  }

  /** (Re)arm the settle timer of every repo the pass left with a quick generation. */
  private scheduleSettle(report: SyncReport): void {
    for (const repo of report.deferred) {
      const before = this.settleTimers.get(repo);
      if (before) clearTimeout(before);
      const delay = this.deps.settings.settleDelayMs ?? DEFAULT_SETTLE_DELAY_MS;
      const timer = setTimeout(() => {
        this.settleTimers.delete(repo);
        void this.queue
          .add(async () => {
            if (this.stopping || !(await this.storeStillThere())) return;
            const settled = await this.deps.engine.settle(repo, {
              signal: this.stopController.signal,
              downloadWaitMs: this.downloadWaitMs,
            });
            this.scheduleSettle(settled);
            this.passDone(settled);
          })
          .catch((err: unknown) => {
            if (this.stopController.signal.aborted) return;
            this.deps.log.error(
              { repo },
              `completing the quick generation failed: ${describeError(err)}; the next full sync will`,
            );
          });
      }, delay);
      this.settleTimers.set(repo, timer);
    }
  }

  private stopPollers(): void {
    for (const c of this.pollers.values()) c.abort(new Error("poller stopped"));
    this.pollers.clear();
  }

  private restartPollers(): void {
    if (this.stopping) return;
    const repos = this.deps.store.listRepos();
    const wanted = new Map(repos.map((r) => [r.repo.name, r.repo.uri]));
    for (const [name, controller] of this.pollers) {
      if (!wanted.has(name)) {
        controller.abort(new Error("repo left the mirror"));
        this.pollers.delete(name);
      }
    }
    for (const [name, uri] of wanted) {
      if (this.pollers.has(name)) continue;
      const controller = new AbortController();
      this.pollers.set(name, controller);
      void this.pollLoop(name, uri, controller.signal);
    }
  }

  private async pollLoop(repo: string, uri: string, signal: AbortSignal): Promise<void> {
    const sleep = this.deps.sleep ?? realSleep;
    let failures = 0;
    while (!signal.aborted && !this.stopController.signal.aborted) {
      try {
        const asked = performance.now();
        const names = await this.deps.client.poll(uri, this.deps.settings.pollTimeout, signal);
        failures = 0;
        this.markMaster(true);
        const evidence = this.evidenceOf(repo);
        if (names.length > 0) {
          evidence.answered++;
          this.markTriggers(true);
          // A hint, not a list: names may repeat, come newest first, or not belong to this repo
          // (the incremental pass asks the master's repo filter for them).
          const unique = [...new Set(names)];
          this.deps.log.debug({ repo, packages: unique }, "poll answered");
          this.coalescer.notify(repo, unique);
        } else if (performance.now() - asked >= this.deps.settings.pollTimeout * 900) {
          evidence.silentTimeouts++;
        }
      } catch (err) {
        if (signal.aborted || this.stopController.signal.aborted) return;
        failures++;
        this.markMaster(false, err);
        try {
          await sleep(1000 + backoffDelay(POLL_RETRY, failures), signal);
        } catch {
          return;
        }
      }
    }
  }

  private evidenceOf(repo: string): PollEvidence {
    let e = this.pollEvidence.get(repo);
    if (!e) this.pollEvidence.set(repo, (e = { silentTimeouts: 0, answered: 0 }));
    return e;
  }

  /**
   * After a full sync: did the polls announce what it found? A packrat master on SQLite sleeps
   * every poll to its timeout and answers [] (Repo.poll: no LISTEN without PostgreSQL), so its
   * changes arrive only with the full sync; say so once, in the log and in `status`.
   */
  private judgeTriggers(report: SyncReport): void {
    const silent = report.announcedChanges.filter((repo) => {
      const e = this.pollEvidence.get(repo);
      return e !== undefined && e.answered === 0 && e.silentTimeouts > 0;
    });
    const spoke = [...this.pollEvidence.values()].some((e) => e.answered > 0);
    this.pollEvidence.clear();
    if (spoke) {
      this.silentChangeSyncs = 0;
      return;
    }
    if (silent.length === 0) return;
    this.silentChangeSyncs++;
    if (this.silentChangeSyncs >= SILENT_CHANGES_BEFORE_VERDICT) this.markTriggers(false, silent);
  }

  private markTriggers(available: boolean, repos: string[] = []): void {
    if (this.triggersAvailable === available) return;
    const before = this.triggersAvailable;
    this.triggersAvailable = available;
    const interval = this.deps.settings.fullSyncInterval;
    let message: string;
    if (available) {
      this.silentChangeSyncs = 0;
      message = "the master answers polls with the packages that changed";
      if (before === false) {
        message = "the master gives change triggers again: changes are applied as they happen";
        this.deps.log.info(message);
      }
    } else {
      message =
        `this master gives no change triggers (its polls answer [] after the whole ${this.deps.settings.pollTimeout} s ` +
        `while full syncs keep finding changes in ${repos.join(", ")}); changes arrive with the full sync every ${interval} s. ` +
        "A packrat master delivers poll triggers only when it runs on PostgreSQL";
      this.deps.log.warn(message);
    }
    const status: TriggersStatus = { available, since: new Date().toISOString(), message };
    try {
      this.deps.store.setValue(TRIGGERS_KEY, JSON.stringify(status));
    } catch (err) {
      this.deps.log.debug(`recording the trigger status: ${describeError(err)}`);
    }
  }

  /** One log line per change of the master's health, each way (verdaccio's proxy does this). */
  private markMaster(reachable: boolean, err?: unknown): void {
    if (this.masterReachable === reachable) return;
    const before = this.masterReachable;
    this.masterReachable = reachable;
    if (reachable && before === false) this.deps.log.info("master reachable again");
    if (!reachable)
      this.deps.log.warn(
        `master unreachable: ${describeError(err)}; retrying with backoff, serving the tree as it is`,
      );
  }
}
