/**
 * The sync engine: master state → state DB → disk → published metadata, in the steps a reader
 * expects (issue 25):
 *   plan.ts          what the source says each repo holds + the state DB → the pass's actions (pure);
 *   apply.ts         observe the disk, download, link, repair (reconcile.ts decides, pure);
 *   render-input.ts  what each layout is given; publish.ts renders, checks and switches it in;
 *   cleanup.ts       grace-period expiry and removal of what nothing names.
 * A full sync reads everything, checks the disk (fingerprints; a deep re-hash every Nth time),
 * fetches what is missing or wrong, republishes repos whose inputs changed, and removes what
 * nothing names. An incremental sync does the same for the packages a poll named, in one repo,
 * without the cleanup walk (the periodic full sync stays the backstop). The state DB's rows and
 * fingerprints are read from its in-memory model (state/state-model.ts), not re-read per pass.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { PackratError, describeError, isPackratError } from "../errors.js";
import type { PackageFileRow } from "../state/state-store.js";
import { SKIPPED_REPO_DIRS_KEY } from "../state/state-store.js";
import type { DistroVersion, PackageFile, Repo } from "../types.js";
import { Applier, type Applied } from "./apply.js";
import { cleanupTree, clearTemp, dropTemp } from "./cleanup.js";
import { sha256Bytes, sha256File, statInfo, writeFileAtomic } from "./disk.js";
import {
  emptyReport,
  type DetachedDownload,
  type EngineDeps,
  type SyncOptions,
  type SyncReport,
} from "./engine-types.js";
import type { PackageFileListing } from "./master-types.js";
import {
  DEFAULT_SERVE_POLICY,
  listedFiles,
  planPass,
  rowChange,
  rowsFor,
  sanityRefusal,
  skippedRows,
  type PassPlan,
  type PlanNote,
  type RepoPlan,
} from "./plan.js";
import { publishRepo, type PublishOutcome } from "./publish.js";
import { RenderInputs } from "./render-input.js";
import type { SignatureVerifier } from "../signing/verify.js";

export type {
  DetachedDownload,
  EngineDeps,
  EngineSettings,
  RootFile,
  SyncOptions,
  SyncReport,
} from "./engine-types.js";
export { STALL_RETRY_BASE_MS, STALL_RETRY_MAX_MS } from "./apply.js";
export { DEFAULT_SERVE_POLICY, type ServePolicy } from "./plan.js";

export class SyncEngine {
  private readonly now: () => number;
  private readonly root: string;
  /**
   * Directories of repos the master lists but this agent skips (a manager type with no
   * layout): never touched.
   */
  private skippedDirs: string[] = [];
  /** Publish warnings logged so far (repo + text): each is logged once per engine (process). */
  private readonly warned = new Set<string>();
  /** The self-check's signature verifiers, by key (publish.ts PublisherDeps.verifiers). */
  private readonly verifiers = new Map<string, Promise<SignatureVerifier>>();
  /** Observes the disk and downloads; its downloads outlive a pass (see apply.ts). */
  private readonly applier: Applier;
  private readonly inputs: RenderInputs;

  constructor(private readonly deps: EngineDeps) {
    this.now = deps.now ?? Date.now;
    this.root = path.resolve(deps.settings.rootDir);
    this.applier = new Applier(deps, this.root);
    this.inputs = new RenderInputs(deps, this.root);
  }

  /** Called when a download its pass stopped waiting for ends (the daemon publishes it then). */
  onDetachedDownload(listener: ((d: DetachedDownload) => void) | null): void {
    this.applier.onDetachedDownload(listener);
  }

  /** Abort every download in flight, for good (the agent is stopping). */
  abortDownloads(reason: Error): void {
    this.applier.abortDownloads(reason);
  }

  get downloadsInFlight(): number {
    return this.applier.downloadsInFlight;
  }

  /** Resolves when no download is in flight (each removes its temp file as it ends). */
  async downloadsIdle(): Promise<void> {
    await this.applier.downloadsIdle();
  }

  /** Read the whole mirror from the master and make the disk match it. */
  async fullSync(opts: SyncOptions = {}): Promise<SyncReport> {
    const started = this.now();
    const report = emptyReport("full");
    const { store, client, log } = this.deps;
    const runId = store.startSyncRun("full", started);
    try {
      await fs.mkdir(this.root, { recursive: true });
      // Downloads of earlier passes may still be going on in there (see syncRepos).
      if (this.applier.downloadsInFlight === 0) await clearTemp(this.root);
      await client.checkVersion(opts.signal);
      const mirror = await client.getMirror(opts.signal);
      const repos = await client.getRepos(mirror.repoUris, opts.signal);
      const distroVersions = new Map(
        (await client.getDistroVersions(opts.signal)).map((d) => [d.uri, d]),
      );
      // Every file is read again each full sync: a PackageFile changes in place on the master
      // (failed, deprecated, tags), one multi-object GET per 100 files. The state DB's rows are
      // read once per pass and shared by the listing, the planner and the safety valve.
      const previousByRepo = new Map(
        store.listRepos().map((r) => [r.repo.name, new Map(store.packageFileRows(r.repo.name))]),
      );
      const listings = new Map<string, PackageFileListing>();
      for (const repo of repos) {
        listings.set(repo.name, await client.listPackageFiles(repo.uri, null, opts.signal));
      }
      const filesByRepo = new Map(
        repos.map((repo) => [
          repo.name,
          this.filesOf(repo, listings.get(repo.name)!, previousByRepo.get(repo.name), report),
        ]),
      );
      const contactAt = this.now();

      const { plans, refusedRepos } = this.plan(repos, distroVersions, filesByRepo, previousByRepo);
      this.reportRefused(refusedRepos, plans, report);
      this.checkSanity(plans, previousByRepo, opts.force ?? false);
      // Repos that left the mirror: their render caches go (a daemon runs for months).
      this.deps.forgetRepos?.(new Set(repos.map((r) => r.name)));

      const fullCount = Number(store.getValue("full_sync_count") ?? "0") + 1;
      const deep =
        opts.deep === true ||
        (this.deps.settings.deepVerifyEvery > 0 &&
          fullCount % this.deps.settings.deepVerifyEvery === 0);
      if (deep) log.info({ fullSyncCount: fullCount }, "deep check: re-hashing every file");

      store.transaction(() => {
        // verify leaves these alone too (repos of a manager type with no layout: the agent
        // never touches their dirs).
        store.setValue(SKIPPED_REPO_DIRS_KEY, JSON.stringify(this.skippedDirs));
        for (const plan of plans) {
          store.upsertRepo(plan.repo, [...plan.distroVersions.values()], contactAt);
          if (this.saveChangedRows(plan) === "announced")
            report.announcedChanges.push(plan.repo.name);
          store.recordSkippedFiles(
            plan.repo.name,
            skippedRows(listings.get(plan.repo.name), plan.refused, this.now()),
            { all: true },
          );
        }
        // A refused repo keeps its rows, and so what it served, until the master fixes it.
        const current = new Set([
          ...plans.map((p) => p.repo.name),
          ...refusedRepos.map((r) => r.repo.name),
        ]);
        for (const row of store.listRepos()) {
          if (!current.has(row.repo.name)) {
            log.info({ repo: row.repo.name }, "repo left the mirror; its files go at cleanup");
            store.deleteRepo(row.repo.name);
            store.deletePublishedFiles(row.repo.name);
          }
        }
      });

      await this.syncRepos(
        plans,
        { deep, signal: opts.signal, downloadWaitMs: opts.downloadWaitMs },
        report,
      );
      await this.writeRootFiles(report);
      await cleanupTree(
        { ...this.deps, root: this.root, now: this.now },
        plans,
        this.skippedDirs,
        opts.force ?? false,
        report,
      );
      await dropTemp(this.root, log, this.applier.downloadsInFlight);
      await this.bucketRounds(report, { reconcile: true, force: opts.replicasNow === true });

      store.setValue("full_sync_count", String(fullCount));
      this.checkModel();
      await client.heartbeat(opts.signal);
      report.repos = plans.length;
      report.durationMs = this.now() - started;
      const result = report.refused ? "refused" : report.failed.length > 0 ? "failed" : "ok";
      store.finishSyncRun(
        runId,
        result,
        report.refused ??
          (report.failed.length > 0 ? `${report.failed.length} file(s) failed` : null),
        this.stats(report),
        this.now(),
      );
      log.info(this.stats(report), "full sync finished");
      return report;
    } catch (err) {
      const refused = isPackratError(err, "PACKRAT_SAFETY_VALVE");
      store.finishSyncRun(
        runId,
        refused ? "refused" : "failed",
        describeError(err),
        this.stats(report),
        this.now(),
      );
      throw err;
    }
  }

  /** Re-read the named packages of one repo and republish it. */
  async incrementalSync(
    repoName: string,
    packageNames: readonly string[],
    opts: SyncOptions = {},
  ): Promise<SyncReport> {
    const started = this.now();
    const report = emptyReport("incremental");
    const { store, client } = this.deps;
    const known = store.listRepos().find((r) => r.repo.name === repoName);
    if (!known) {
      throw new PackratError(
        "PACKRAT_MASTER_INCONSISTENT",
        `poll named repo ${repoName}, which the state DB does not know yet; a full sync will pick it up`,
      );
    }
    const runId = store.startSyncRun("incremental", started);
    try {
      const previousByRepo = new Map([[repoName, new Map(store.packageFileRows(repoName))]]);
      const previous = previousByRepo.get(repoName);
      // A poll answer is a hint: the names need not belong to this repo (the master's filter
      // decides), may repeat, and say nothing of files they do not name.
      const listing: PackageFileListing =
        packageNames.length === 0
          ? { files: [], skipped: [] }
          : await client.listPackageFiles(known.repo.uri, packageNames, opts.signal);
      const changed = this.filesOf(known.repo, listing, previous, report);
      const named = new Set(packageNames);
      const others = [...(previous?.values() ?? [])]
        .filter((r) => !named.has(r.file.packageName))
        .map((r) => r.file);
      const distroVersions = new Map(known.distroVersions.map((d) => [d.uri, d]));
      const { plans, refusedRepos } = this.plan(
        [known.repo],
        distroVersions,
        new Map([
          [repoName, [...new Map([...others, ...changed].map((f) => [f.uri, f])).values()]],
        ]),
        previousByRepo,
      );
      this.reportRefused(refusedRepos, plans, report);
      store.transaction(() => {
        for (const plan of plans) {
          store.touchMasterContact(repoName, this.now());
          // Only the named packages' rows change: rewriting all of a large repo's rows for one
          // tag would cost more than the rest of the pass.
          store.replacePackagesOfRepo(repoName, packageNames, rowsFor(plan, named));
          store.recordSkippedFiles(repoName, skippedRows(listing, plan.refused, this.now()), {
            parsed: listing.files.map((f) => f.uri),
          });
        }
      });
      await this.syncRepos(
        plans,
        {
          deep: false,
          signal: opts.signal,
          onlyPackages: new Set(packageNames),
          quick: opts.quick ?? true,
          warm: opts.warm ?? false,
          downloadWaitMs: opts.downloadWaitMs,
        },
        report,
      );
      await dropTemp(this.root, this.deps.log, this.applier.downloadsInFlight);
      // A warm pass publishes nothing, so there is nothing new for the bucket.
      if (opts.warm !== true)
        await this.bucketRounds(report, { reconcile: false, force: opts.replicasNow === true });
      this.checkModel();
      report.repos = plans.length;
      report.durationMs = this.now() - started;
      store.finishSyncRun(
        runId,
        report.failed.length > 0 ? "failed" : "ok",
        null,
        this.stats(report),
        this.now(),
      );
      return report;
    } catch (err) {
      store.finishSyncRun(runId, "failed", describeError(err), this.stats(report), this.now());
      throw err;
    }
  }

  /**
   * Publish a complete generation of a repo whose served one is quick (SyncReport.deferred),
   * from the state DB alone: no master request, no package looked at again.
   */
  async settle(repoName: string, opts: Omit<SyncOptions, "quick"> = {}): Promise<SyncReport> {
    return this.incrementalSync(repoName, [], { ...opts, quick: false });
  }

  /**
   * Fill the layouts' render caches (rendered entries, compressed chunks) for a repo, from the
   * state DB alone and publishing nothing, so that the first change after a start renders one
   * package instead of all of them. The daemon runs it after its first full sync.
   */
  async warm(repoName: string, opts: Omit<SyncOptions, "quick" | "warm"> = {}): Promise<void> {
    await this.incrementalSync(repoName, [], { ...opts, quick: true, warm: true });
  }

  // ---- planning (plan.ts) ---------------------------------------------------------------

  /** The files a listing says the repo holds (plan.ts listedFiles), its skips reported. */
  private filesOf(
    repo: Repo,
    listing: PackageFileListing,
    previous: ReadonlyMap<string, PackageFileRow> | undefined,
    report: SyncReport,
  ): PackageFile[] {
    const { files, skipped, notes } = listedFiles(repo, listing, previous);
    report.skipped.push(...skipped);
    this.logNotes(notes);
    return files;
  }

  private plan(
    repos: readonly Repo[],
    distroVersions: ReadonlyMap<string, DistroVersion>,
    filesByRepo: ReadonlyMap<string, readonly PackageFile[]>,
    previousByRepo: ReadonlyMap<string, ReadonlyMap<string, PackageFileRow>>,
  ): PassPlan {
    const { deps } = this;
    const pass = planPass({
      repos,
      distroVersions,
      filesByRepo,
      previousByRepo,
      layoutFor: deps.layoutFor,
      layoutOptions: deps.layoutOptions,
      servePolicy: (repo) => deps.servePolicy?.(repo) ?? DEFAULT_SERVE_POLICY,
      paths: {
        rootFiles: (deps.rootFiles ?? []).map((f) => f.path),
        keep: deps.settings.keepFileList,
      },
      placeAtSource: (repo) =>
        deps.inPlaceRepos?.has(repo) === true || deps.bucketInPlaceRepos?.has(repo) === true,
      transformKey: (layout) =>
        deps.signer && layout.derive?.wants(deps.layoutOptions, deps.signer)?.rewrite
          ? deps.signer.fingerprint
          : null,
    });
    this.skippedDirs = pass.skippedDirs;
    this.logNotes(pass.notes);
    return pass;
  }

  private logNotes(notes: readonly PlanNote[]): void {
    for (const n of notes) this.deps.log[n.level](n.fields, n.msg);
  }

  /** Refused repos and files go into the report, so `sync` names them and exits 1. */
  private reportRefused(
    refusedRepos: PassPlan["refusedRepos"],
    plans: readonly RepoPlan[],
    report: SyncReport,
  ): void {
    for (const r of refusedRepos)
      report.failed.push({
        repo: r.repo.name,
        file: `${r.repo.filesystemDir} (repo directory)`,
        error: r.error,
      });
    for (const p of plans)
      for (const r of p.refused)
        report.skipped.push({ repo: p.repo.name, uri: r.file.uri, error: r.reason });
  }

  /**
   * Write only the packages whose file rows changed since the last pass (plan.ts rowChange).
   * Says whether anything changed, and whether it is a change the master announces to polls.
   */
  private saveChangedRows(plan: RepoPlan): "none" | "changed" | "announced" {
    const change = rowChange(plan);
    if (change.kind === "none") return "none";
    if (change.kind === "all") this.deps.store.replacePackageFiles(plan.repo.name, change.rows);
    else this.deps.store.replacePackagesOfRepo(plan.repo.name, change.packages, change.rows);
    return change.announced ? "announced" : "changed";
  }

  private checkSanity(
    plans: readonly RepoPlan[],
    previousByRepo: ReadonlyMap<string, ReadonlyMap<string, PackageFileRow>>,
    force: boolean,
  ): void {
    const refused = sanityRefusal(plans, previousByRepo, this.deps.settings.maxRemovalRatio);
    if (refused) {
      if (force) {
        this.deps.log.warn(`--force: ${refused}`);
        return;
      }
      this.deps.log.error(refused);
      throw new PackratError("PACKRAT_SAFETY_VALVE", refused);
    }
  }

  // ---- disk and publishing -------------------------------------------------------------

  /** Apply the plans to the disk, then publish each repo; one repo's failure is its own. */
  private async syncRepos(
    plans: readonly RepoPlan[],
    opts: {
      deep: boolean;
      signal: AbortSignal | undefined;
      onlyPackages?: ReadonlySet<string>;
      quick?: boolean;
      warm?: boolean;
      downloadWaitMs?: number | undefined;
    },
    report: SyncReport,
  ): Promise<void> {
    const applied = await this.applier.apply(plans, opts, report);
    const { failed } = applied;
    // One repo that cannot be published (a self-check failure, two files at one pool path)
    // must not stop the others; its previous generation stays served.
    for (const p of plans) {
      try {
        const outcome = await this.publish(p, applied, {
          quick: opts.quick === true,
          warm: opts.warm === true,
        });
        if (p.layout.dropsPackageFiles)
          await this.applier.dropDerivedSources(p, failed, outcome.extracted);
        if (outcome.published) report.published.push(p.repo.name);
        if (outcome.deferred) report.deferred.push(p.repo.name);
      } catch (err) {
        // Anything one repo's publish throws (a self-check, a refused path, an I/O error on its
        // directory) is that repo's failure; the previous generation stays served and the
        // other repos publish, clean up and heartbeat. Only an abort stops the pass.
        if (opts.signal?.aborted) throw err;
        report.failed.push({
          repo: p.repo.name,
          file: `${p.repo.filesystemDir} (metadata)`,
          error: describeError(err),
        });
      }
    }
  }

  private async publish(
    plan: RepoPlan,
    applied: Applied,
    flags: { quick: boolean; warm: boolean },
  ): Promise<PublishOutcome> {
    const { store, log } = this.deps;
    const request = await this.inputs.request(plan, applied, flags);
    try {
      return await publishRepo(request, {
        root: this.root,
        store,
        log,
        now: this.now,
        warned: this.warned,
        verifiers: this.verifiers,
      });
    } catch (err) {
      log.error(
        { repo: plan.repo.name },
        `publish failed; the previous generation stays served: ${describeError(err)}`,
      );
      throw err;
    }
  }

  /** The public key exports; one that cannot be written is reported, and the pass goes on. */
  private async writeRootFiles(report: SyncReport): Promise<void> {
    for (const f of this.deps.rootFiles ?? []) {
      const full = path.join(this.root, f.path);
      try {
        const st = await statInfo(full);
        if (
          st &&
          st.size === f.content.length &&
          (await sha256File(full)) === sha256Bytes(f.content)
        )
          continue;
        await writeFileAtomic(this.root, full, f.content);
      } catch (err) {
        report.failed.push({ repo: "(root_dir)", file: f.path, error: describeError(err) });
        this.deps.log.error({ file: f.path }, `public key not exported: ${describeError(err)}`);
      }
    }
  }

  /**
   * A bucket round on its own, with no master request (the daemon retries a bucket that fell
   * behind once its backoff has passed). Lists the bucket: a retry may follow a crash of the
   * gateway, after which the records cannot be trusted.
   */
  async replicate(): Promise<SyncReport> {
    const started = this.now();
    const report = emptyReport("incremental");
    await this.bucketRounds(report, { reconcile: true, force: false });
    report.durationMs = this.now() - started;
    return report;
  }

  /** Copy what the pass published to each replica; their failures are reported, not thrown. */
  private async bucketRounds(
    report: SyncReport,
    opts: { reconcile: boolean; force: boolean },
  ): Promise<void> {
    const rootFiles = (this.deps.rootFiles ?? []).map((f) => ({
      path: f.path,
      sha256: sha256Bytes(f.content),
    }));
    for (const replica of this.deps.replicas ?? [])
      report.buckets.push(await replica.round({ ...opts, rootFiles }));
  }

  /** EngineDeps.checkModel: the in-memory model must equal SQLite after every pass. */
  private checkModel(): void {
    if (this.deps.checkModel !== true) return;
    const drift = this.deps.store.modelDrift();
    if (drift.length > 0)
      throw new Error(
        `the state DB's in-memory model differs from SQLite after a pass (${drift.length} difference(s)): ${drift.slice(0, 5).join("; ")}`,
      );
  }

  private stats(r: SyncReport): Record<string, number> {
    return {
      repos: r.repos,
      packageFiles: r.packageFiles,
      downloaded: r.downloaded,
      linked: r.linked,
      hashed: r.hashed,
      repaired: r.repaired,
      failed: r.failed.length,
      published: r.published.length,
      removed: r.removed,
      expired: r.expired,
      durationMs: r.durationMs,
    };
  }
}
