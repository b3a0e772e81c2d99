/**
 * The sync engine: master state → state DB → disk → published metadata.
 * A full sync reads everything, checks the disk (fingerprints; a deep re-hash every Nth time),
 * fetches what is missing or wrong, republishes repos whose inputs changed, and removes what
 * nothing names. An incremental sync does the same for the packages a poll named, in one repo,
 * without the cleanup walk (the periodic full sync stays the backstop).
 */
import fs from "node:fs/promises";
import path from "node:path";
import PQueue from "p-queue";
import { PackratError, describeError, isPackratError } from "../errors.js";
import { layoutAccepts } from "../layout/index.js";
import type { LayoutOptions, PackageMeta, PublishedPackage, RepoLayout } from "../layout/types.js";
import { metaCacheKey } from "../layout/types.js";
import type { Logger } from "../log.js";
import type { Signer } from "../signing/signer.js";
import type { Fingerprint, PackageFileRow, StateStore } from "../state/state-store.js";
import type { DistroVersion, PackageFile, Repo } from "../types.js";
import {
  TMP_DIR,
  assertNoSymlinkDirs,
  fingerprintMatches,
  fsyncDir,
  linkAtomic,
  openFileSource,
  releaseTempDir,
  sha256Bytes,
  sha256File,
  statInfo,
  statInfoSync,
  takeTempDirRepairs,
  walkTree,
  writeFileAtomic,
  type StatInfo,
} from "./disk.js";
import {
  type RetryPolicy,
  type Sleep,
  type TransferLimits,
  DEFAULT_LIMITS,
  STALLED_PREFIX,
  downloadVerified,
} from "./download.js";
import { assertSafeRelativePath } from "./filename-guard.js";
import { expiredInPlace, heldFetches, inPlaceDirsEver } from "./in-place.js";
import { sourcePathOf } from "./listed-source.js";
import type { ReplicaPort, RoundReport } from "../publish/replica.js";
import { PathAuthority } from "./path-authority.js";
import type { MasterClient, PackageFileListing } from "./master-types.js";
import { publishRepo, type PublishOutcome } from "./publish.js";
import { SKIPPED_REPO_DIRS_KEY } from "../state/state-store.js";
import {
  type DesiredFile,
  type PathObservation,
  checkMasterSanity,
  needsHash,
  planFetches,
  planRemovals,
} from "./reconcile.js";

/** What a dropped package file yielded (RepoLayout.dropsPackageFiles), cached by its SHA-256. */
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

/** Files stat'ed and hashed at once while observing the disk. */
const OBSERVE_CONCURRENCY = 16;
/** Synchronous stats between two turns of the event loop. */
const OBSERVE_BATCH = 512;
/** Package files parsed at once on a cold sync (reads overlap; parsing is on the main thread). */
const PARSE_CONCURRENCY = 8;

export interface EngineSettings {
  rootDir: string;
  keepFileList: readonly string[];
  downloadConcurrency: number;
  deepVerifyEvery: number;
  maxRemovalRatio: number;
  metadataGraceSeconds: number;
  /** download_min_rate (bytes/s), download_min_rate_window and download_deadline_base (s). */
  downloadMinRate?: number;
  downloadMinRateWindow?: number;
  downloadDeadlineBase?: number;
}

/** A stalled file is retried after this, doubling with each stall in a row, at most an hour. */
export const STALL_RETRY_BASE_MS = 60_000;
export const STALL_RETRY_MAX_MS = 3_600_000;

/** A download that finished or failed after its pass stopped waiting for it (see syncRepos). */
export interface DetachedDownload {
  repo: string;
  file: string;
  /** null when it completed; the file is on disk and in the state DB, not yet published. */
  error: unknown;
  /** When it failed: how long until a pass may try it again. */
  retryInMs: number;
}

/** Files the engine writes at root_dir itself (the exported public key), owned by the agent. */
export interface RootFile {
  path: string;
  content: Uint8Array;
}

/**
 * What a repo serves of the files the master marks failed or deprecated: the master keeps both
 * listed under their tags (packrat's repo filter does not look at them), so the mirror decides.
 */
export interface ServePolicy {
  publishFailed: boolean;
  publishDeprecated: boolean;
}

/** A failed file was marked bad by a pipeline; a deprecated one is still valid, only discouraged. */
export const DEFAULT_SERVE_POLICY: Readonly<ServePolicy> = Object.freeze({
  publishFailed: false,
  publishDeprecated: true,
});

export interface EngineDeps {
  settings: EngineSettings;
  /** The serve policy of each repo, by name; DEFAULT_SERVE_POLICY when left out. */
  servePolicy?: (repo: string) => ServePolicy;
  client: MasterClient;
  store: StateStore;
  log: Logger;
  signer: Signer | null;
  layoutFor: (managerType: string) => RepoLayout | undefined;
  /**
   * Repos published in place (src/sync/in-place.ts): their directory is their source, packages
   * are named where they lie, and nothing there the agent did not write is touched.
   */
  inPlaceRepos?: ReadonlySet<string>;
  /**
   * Repos published in place in a bucket (an s3:// source inside the [s3] prefix): their
   * packages are placed at their source path too, so the copy in root_dir mirrors the bucket;
   * root_dir itself is the agent's working tree as for any repo (src/publish/replica.ts keeps
   * the source objects untouched).
   */
  bucketInPlaceRepos?: ReadonlySet<string>;
  /** The layouts drop the render caches of repos not in `keep` (LayoutRegistry.forgetRepos). */
  forgetRepos?: (keep: ReadonlySet<string>) => void;
  layoutOptions: LayoutOptions;
  /** Public key files to keep published at root_dir (empty without a signer). */
  rootFiles?: readonly RootFile[];
  /**
   * Where the tree is copied after each pass (an S3 bucket: src/publish/replica.ts). A replica
   * that fails never fails the pass: the local tree is published, and the report says so.
   */
  replicas?: readonly ReplicaPort[];
  now?: () => number;
  retry?: RetryPolicy;
  sleep?: Sleep;
  /**
   * Progress: downloads (bytes as they arrive, per finished file), and the package files a
   * publish reads for the first time (a cold publish: every package of a new repo).
   */
  progress?: {
    onPlan?(files: number, bytes: number | null): void;
    onBytes?(n: number): void;
    onFile?(): void;
    onIndexPlan?(repo: string, files: number): void;
    onIndexed?(): void;
    onIndexDone?(): void;
  };
}

export interface SyncOptions {
  deep?: boolean;
  force?: boolean;
  signal?: AbortSignal;
  /**
   * Incremental passes: publish quick generations (RenderInput.quick); repos that left
   * something out are named in SyncReport.deferred for a complete publish soon after.
   * Default true for incremental passes; full syncs always publish complete generations.
   */
  quick?: boolean;
  /** Render even repos whose inputs are unchanged, and publish nothing: see warm(). */
  warm?: boolean;
  /** Try the replicas even within the backoff after their last failure (one-shot `sync`). */
  replicasNow?: boolean;
  /**
   * How long the pass waits for each download before it publishes without the file and leaves
   * the download going in the background (SyncReport.pending; SyncEngine.onDetachedDownload
   * says when it ends). Unset: the pass waits for every download (one-shot `sync`).
   */
  downloadWaitMs?: number;
}

export interface SyncReport {
  kind: "full" | "incremental";
  repos: number;
  packageFiles: number;
  downloaded: number;
  linked: number;
  hashed: number;
  repaired: number;
  failed: { repo: string; file: string; error: string }[];
  /** Files still downloading in the background, left out of this pass's generations. */
  pending: { repo: string; file: string }[];
  /** Package files the master listed that the client could not use (unsafe name, malformed). */
  skipped: { repo: string; uri: string; error: string }[];
  /**
   * Repos where a full sync found a change the master announces to polls (packrat notifies on
   * `tag`, `fail` and `deprocate`): a file new in the repo, or newly failed or deprecated. The
   * daemon compares this with what the polls said, to tell a master that gives no triggers.
   */
  announcedChanges: string[];
  published: string[];
  /** Repos whose served generation is a quick one: call settle() for them when quiet. */
  deferred: string[];
  /** What each replica (bucket) round did after the pass. */
  buckets: RoundReport[];
  removed: number;
  expired: number;
  refused: string | null;
  durationMs: number;
}

interface RepoPlan {
  repo: Repo;
  layout: RepoLayout;
  distroVersions: Map<string, DistroVersion>;
  /** Every file of the repo the agent keeps a row for, served or not (failed ones included). */
  listed: PackageFile[];
  /** The files the repo serves (its policy applied), with their paths. */
  desired: DesiredFile[];
  /** The repo's package file rows as the state DB had them before this pass, by URI. */
  previous: Map<string, PackageFileRow>;
  /** Listed files refused a place in the tree (unsafe or reserved path): skipped, reported. */
  refused: { file: PackageFile; code: string; reason: string }[];
}

/** The plans of a pass, and the repos refused as a whole (their directory). */
interface RepoPlans {
  plans: RepoPlan[];
  refusedRepos: { repo: Repo; error: string }[];
}

function emptyReport(kind: SyncReport["kind"]): SyncReport {
  return {
    kind,
    repos: 0,
    packageFiles: 0,
    downloaded: 0,
    linked: 0,
    hashed: 0,
    repaired: 0,
    failed: [],
    pending: [],
    skipped: [],
    announcedChanges: [],
    published: [],
    deferred: [],
    buckets: [],
    removed: 0,
    expired: 0,
    refused: null,
    durationMs: 0,
  };
}

/**
 * The fields samePackageFile compares: a field added to PackageFile fails to compile here
 * until it is compared too.
 */
const COMPARED_FIELDS = {
  uri: true,
  packageName: true,
  distroVersionUri: true,
  version: true,
  type: true,
  arch: true,
  fileUrl: true,
  filename: true,
  sha256: true,
  tags: true,
  failedAt: true,
  deprecatedAt: true,
} satisfies Record<keyof PackageFile, true>;
void COMPARED_FIELDS;

/** Field by field (a JSON.stringify of both per row cost more than the rest of the check). */
function samePackageFile(a: PackageFile, b: PackageFile): boolean {
  return (
    a.uri === b.uri &&
    a.packageName === b.packageName &&
    a.distroVersionUri === b.distroVersionUri &&
    a.version === b.version &&
    a.type === b.type &&
    a.arch === b.arch &&
    a.fileUrl === b.fileUrl &&
    a.filename === b.filename &&
    a.sha256 === b.sha256 &&
    a.failedAt === b.failedAt &&
    a.deprecatedAt === b.deprecatedAt &&
    a.tags.length === b.tags.length &&
    a.tags.every((t, i) => t === b.tags[i])
  );
}

/** Package file rows grouped by repo, then by URI. */
function rowsByRepo(rows: readonly PackageFileRow[]): Map<string, Map<string, PackageFileRow>> {
  const out = new Map<string, Map<string, PackageFileRow>>();
  for (const row of rows) {
    let m = out.get(row.repo);
    if (!m) out.set(row.repo, (m = new Map<string, PackageFileRow>()));
    m.set(row.file.uri, row);
  }
  return out;
}

export class SyncEngine {
  private readonly now: () => number;
  private readonly root: string;
  /**
   * Directories of repos the master lists but this agent skips (a manager type with no
   * layout): never touched.
   */
  private skippedDirs: string[] = [];
  /**
   * Package signatures by signer fingerprint and sha256, as the last publish used them; each
   * publish keeps only the ones it used (memory: one repo's worth, ~100 bytes a package).
   */
  private readonly signatures = new Map<string, Map<string, Uint8Array>>();
  /** Publish warnings logged so far (repo + text): each is logged once per engine (process). */
  private readonly warned = new Set<string>();
  /** Decides every path under root_dir: repo dirs, package paths, reserved names. */
  private readonly paths: PathAuthority;
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

  constructor(private readonly deps: EngineDeps) {
    this.now = deps.now ?? Date.now;
    this.root = path.resolve(deps.settings.rootDir);
    this.paths = new PathAuthority({
      rootFiles: (deps.rootFiles ?? []).map((f) => f.path),
      keep: deps.settings.keepFileList,
    });
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

  /** Read the whole mirror from the master and make the disk match it. */
  async fullSync(opts: SyncOptions = {}): Promise<SyncReport> {
    const started = this.now();
    const report = emptyReport("full");
    const { store, client, log } = this.deps;
    const runId = store.startSyncRun("full", started);
    try {
      await fs.mkdir(this.root, { recursive: true });
      // Downloads of earlier passes may still be going on in there (see syncRepos).
      if (this.downloads.size === 0) await this.clearTemp();
      await client.checkVersion(opts.signal);
      const mirror = await client.getMirror(opts.signal);
      const repos = await client.getRepos(mirror.repoUris, opts.signal);
      const distroVersions = new Map(
        (await client.getDistroVersions(opts.signal)).map((d) => [d.uri, d]),
      );
      // Every file is read again each full sync: a PackageFile changes in place on the master
      // (failed, deprecated, tags), one multi-object GET per 100 files. The state DB's rows are
      // read once per pass and shared by the listing, the planner and the safety valve.
      const previousByRepo = rowsByRepo(store.listPackageFiles());
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

      const { plans, refusedRepos } = this.planRepos(
        repos,
        distroVersions,
        filesByRepo,
        previousByRepo,
      );
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
            this.skippedRows(listings.get(plan.repo.name), plan.refused),
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
      await this.cleanup(plans, opts.force ?? false, report);
      await this.dropTemp();
      await this.bucketRounds(report, { reconcile: true, force: opts.replicasNow === true });

      store.setValue("full_sync_count", String(fullCount));
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
      const previousByRepo = rowsByRepo(store.listPackageFiles(repoName));
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
      const { plans, refusedRepos } = this.planRepos(
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
          store.replacePackagesOfRepo(repoName, packageNames, this.rowsFor(plan, named));
          store.recordSkippedFiles(repoName, this.skippedRows(listing, plan.refused), {
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
      await this.dropTemp();
      // A warm pass publishes nothing, so there is nothing new for the bucket.
      if (opts.warm !== true)
        await this.bucketRounds(report, { reconcile: false, force: opts.replicasNow === true });
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

  // ---- planning -------------------------------------------------------------------------

  /**
   * The files a listing says the repo holds. A file listed without the repo's tag changed
   * between the LIST and the GET (an untag): it is not the repo's now. A file the client skipped
   * (unsafe name, malformed object) that an earlier pass synced stays as that pass left it:
   * nothing already served is removed because the master sent something the agent cannot read.
   */
  private filesOf(
    repo: Repo,
    listing: PackageFileListing,
    previous: ReadonlyMap<string, PackageFileRow> | undefined,
    report: SyncReport,
  ): PackageFile[] {
    const files: PackageFile[] = [];
    for (const f of listing.files) {
      if (f.tags.includes(repo.tag)) files.push(f);
      else
        this.deps.log.debug(
          { repo: repo.name, file: f.uri, tags: f.tags, tag: repo.tag },
          "listed for the repo but not tagged with its tag (changed while it was read); left out",
        );
    }
    for (const skipped of listing.skipped) {
      report.skipped.push({ repo: repo.name, uri: skipped.uri, error: skipped.reason });
      const kept = previous?.get(skipped.uri);
      if (kept) {
        this.deps.log.warn(
          { repo: repo.name, uri: skipped.uri },
          "kept as the last sync left it until the master sends it in a form the agent can read",
        );
        files.push(kept.file);
      }
    }
    return files;
  }

  /** Rows for the skipped-files table: what the master client skipped, and what planning refused. */
  private skippedRows(listing: PackageFileListing | undefined, refused: RepoPlan["refused"] = []) {
    const seenAt = this.now();
    const fromListing = (listing?.skipped ?? []).map(({ uri, fileUrl, code, reason }) => ({
      uri,
      fileUrl,
      code,
      reason,
    }));
    const fromPlanning = refused.map(({ file, code, reason }) => ({
      uri: file.uri,
      fileUrl: file.fileUrl,
      code,
      reason,
    }));
    return [...fromListing, ...fromPlanning].map((row) => ({ ...row, seenAt }));
  }

  /** Refused repos and files go into the report, so `sync` names them and exits 1. */
  private reportRefused(
    refusedRepos: RepoPlans["refusedRepos"],
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

  private servePolicy(repo: string): ServePolicy {
    return this.deps.servePolicy?.(repo) ?? DEFAULT_SERVE_POLICY;
  }

  private planRepos(
    repos: readonly Repo[],
    allDistroVersions: ReadonlyMap<string, DistroVersion>,
    filesByRepo: ReadonlyMap<string, PackageFile[]>,
    previousByRepo: ReadonlyMap<string, Map<string, PackageFileRow>>,
  ): RepoPlans {
    const { log } = this.deps;
    const plans: RepoPlan[] = [];
    const refusedRepos: RepoPlans["refusedRepos"] = [];
    this.skippedDirs = [];
    this.paths.reset();
    // Directories of repos this agent does not publish are claimed first: whatever order the
    // master lists repos in, a published repo never lands in a directory cleanup must not touch.
    for (const repo of repos) {
      if (this.deps.layoutFor(repo.managerType)) continue;
      try {
        this.skippedDirs.push(this.paths.claimRepoDir(repo, false));
      } catch {
        // an unsafe dir names nothing inside root_dir that we could protect
      }
      log.warn(
        { repo: repo.name, managerType: repo.managerType },
        "manager type not published by this agent; repo skipped, its directory left untouched",
      );
    }
    for (const repo of repos) {
      const layout = this.deps.layoutFor(repo.managerType);
      if (!layout) continue;
      let dir: string;
      try {
        dir = this.paths.claimRepoDir(repo, true);
      } catch (err) {
        log.error(
          { repo: repo.name, code: isPackratError(err) ? err.code : undefined },
          `repo skipped: ${describeError(err)}`,
        );
        refusedRepos.push({ repo, error: describeError(err) });
        continue;
      }
      const distroVersions = new Map<string, DistroVersion>();
      for (const uri of repo.distroVersionUris) {
        const dv = allDistroVersions.get(uri);
        if (dv) distroVersions.set(uri, dv);
      }
      const files = (filesByRepo.get(repo.name) ?? []).filter((f) => {
        if (!layoutAccepts(layout, f.type)) {
          log.warn(
            { repo: repo.name, file: f.filename, type: f.type },
            `a ${f.type} file does not belong in a ${layout.managerType} repo; skipped`,
          );
          return false;
        }
        if (!distroVersions.has(f.distroVersionUri)) {
          log.warn(
            { repo: repo.name, file: f.filename, distroVersion: f.distroVersionUri },
            "file's distro version is not one of the repo's; skipped",
          );
          return false;
        }
        return true;
      });
      const policy = this.servePolicy(repo.name);
      const served = files.filter(
        (f) =>
          (f.failedAt === null || policy.publishFailed) &&
          (f.deprecatedAt === null || policy.publishDeprecated),
      );
      const repoArches = [...new Set(served.map((f) => f.arch))].sort();
      const previous = previousByRepo.get(repo.name) ?? new Map<string, PackageFileRow>();
      const desired: DesiredFile[] = [];
      const refused: RepoPlan["refused"] = [];
      for (const file of served) {
        const distroVersion = distroVersions.get(file.distroVersionUri);
        if (!distroVersion) continue;
        try {
          const options = this.deps.layoutOptions;
          const placed = layout.placePackage({
            repo,
            file,
            distroVersion,
            repoArches,
            options,
            ...this.inPlacePlacement(repo, file),
          });
          desired.push({
            repo: repo.name,
            file,
            paths: this.paths.packagePaths(repo, dir, layout, options, file.filename, placed),
            expectedSha256: this.expectedDiskSha(layout, file, previous.get(file.uri)),
          });
        } catch (err) {
          if (!isPackratError(err)) throw err;
          log.error(
            { repo: repo.name, file: file.uri, code: err.code },
            `not published: ${describeError(err)}`,
          );
          refused.push({ file, code: err.code, reason: describeError(err) });
        }
      }
      plans.push({
        repo,
        layout,
        distroVersions,
        listed: files,
        desired: this.withoutCollisions(repo, desired),
        previous,
        refused,
      });
    }
    return { plans, refusedRepos };
  }

  private inPlace(repo: string): boolean {
    return this.deps.inPlaceRepos?.has(repo) === true;
  }

  /** An in-place repo's package is placed where its source has it (PlacementInput.sourcePath). */
  private inPlacePlacement(repo: Repo, file: PackageFile): { sourcePath?: string } {
    if (!this.inPlace(repo.name) && this.deps.bucketInPlaceRepos?.has(repo.name) !== true)
      return {};
    const sourcePath = sourcePathOf(file);
    if (sourcePath === undefined) {
      throw new PackratError(
        "PACKRAT_UNSAFE_FILENAME",
        `repo ${repo.name} is published in place, and ${file.filename} is not a file of its source`,
      );
    }
    return { sourcePath };
  }

  /**
   * Two package files the master names alike but with different bytes would share one path:
   * the downloads race, and the layout refuses to render the repo at all. Leave out every file
   * of such a clash (which one is right is the master's call) so the rest of the repo publishes.
   */
  private withoutCollisions(repo: Repo, desired: DesiredFile[]): DesiredFile[] {
    const shas = new Map<string, Set<string>>();
    for (const d of desired) {
      for (const p of d.paths) {
        let set = shas.get(p);
        if (!set) shas.set(p, (set = new Set()));
        set.add(d.file.sha256);
      }
    }
    return desired.filter((d) => {
      const clash = d.paths.find((p) => (shas.get(p)?.size ?? 0) > 1);
      if (clash === undefined) return true;
      this.deps.log.error(
        { repo: repo.name, file: clash, uri: d.file.uri },
        `not published: ${d.file.filename} (sha256 ${d.file.sha256}) and another package file with different bytes both belong at ${clash}; fix the duplicate name on the master`,
      );
      return false;
    });
  }

  private transformActive(layout: RepoLayout): boolean {
    return (
      layout.transform !== undefined &&
      this.deps.layoutOptions.signRpmPackages &&
      this.deps.signer !== null
    );
  }

  /** The bytes on disk are the master's unless a transform (RPM signing) rewrote them. */
  private expectedDiskSha(
    layout: RepoLayout,
    file: PackageFile,
    previous: PackageFileRow | undefined,
  ): string {
    if (!this.transformActive(layout)) return file.sha256;
    const key = this.deps.signer?.fingerprint ?? null;
    if (
      previous &&
      previous.file.sha256 === file.sha256 &&
      previous.transformKey === key &&
      previous.diskSha256
    ) {
      return previous.diskSha256;
    }
    // Unknown until transformed: a value no file hashes to, so the file is fetched and signed.
    return `pending-transform:${file.sha256}`;
  }

  /** State DB rows for the repo's listed files (served or not), carrying what is known of disk. */
  private rowsFor(plan: RepoPlan, only?: ReadonlySet<string>): PackageFileRow[] {
    const previous = plan.previous;
    const listed = only ? plan.listed.filter((f) => only.has(f.packageName)) : plan.listed;
    return listed.map((file) => {
      const dv = plan.distroVersions.get(file.distroVersionUri);
      const prev = previous.get(file.uri);
      const same = prev !== undefined && prev.file.sha256 === file.sha256;
      return {
        repo: plan.repo.name,
        file,
        distro: dv?.distro ?? null,
        distroVersion: dv?.version ?? null,
        diskSha256: same ? prev.diskSha256 : null,
        transformKey: same ? prev.transformKey : null,
        size: same ? prev.size : null,
      };
    });
  }

  /**
   * Write only the packages whose file rows changed since the last pass: a no-change full sync
   * of a large mirror then writes nothing (rewriting 10,000 rows costs more than the rest).
   * Says whether anything changed, and whether it is a change the master announces to polls.
   */
  private saveChangedRows(plan: RepoPlan): "none" | "changed" | "announced" {
    const rows = this.rowsFor(plan);
    const changed = new Set<string>();
    const seen = new Set<string>();
    let announced = false;
    for (const row of rows) {
      seen.add(row.file.uri);
      const prev = plan.previous.get(row.file.uri);
      if (!prev || !samePackageFile(prev.file, row.file)) changed.add(row.file.packageName);
      if (
        !prev ||
        (row.file.failedAt !== null && prev.file.failedAt === null) ||
        (row.file.deprecatedAt !== null && prev.file.deprecatedAt === null)
      )
        announced = true;
    }
    for (const prev of plan.previous.values()) {
      if (!seen.has(prev.file.uri)) changed.add(prev.file.packageName);
    }
    if (changed.size === 0) return "none";
    if (changed.size > rows.length / 2) {
      this.deps.store.replacePackageFiles(plan.repo.name, rows);
    } else {
      this.deps.store.replacePackagesOfRepo(
        plan.repo.name,
        [...changed],
        rows.filter((r) => changed.has(r.file.packageName)),
      );
    }
    return announced ? "announced" : "changed";
  }

  private checkSanity(
    plans: readonly RepoPlan[],
    previousByRepo: ReadonlyMap<string, Map<string, PackageFileRow>>,
    force: boolean,
  ): void {
    const previous = new Map(
      [...previousByRepo].map(([repo, rows]) => [repo, new Set(rows.keys())]),
    );
    const current = new Map(
      // What the master lists, before the serve policy: failed files leaving the indexes is the
      // policy at work, not a master that dropped them.
      plans.map((p) => [p.repo.name, new Set(p.listed.map((f) => f.uri))]),
    );
    const refused = checkMasterSanity({
      previous,
      current,
      maxRemovalRatio: this.deps.settings.maxRemovalRatio,
    });
    if (refused) {
      if (force) {
        this.deps.log.warn(`--force: ${refused}`);
        return;
      }
      this.deps.log.error(refused);
      throw new PackratError("PACKRAT_SAFETY_VALVE", refused);
    }
  }

  // ---- disk -----------------------------------------------------------------------------

  private async syncRepos(
    plans: readonly RepoPlan[],
    opts: {
      deep: boolean;
      signal: AbortSignal | undefined;
      /** Incremental passes look at these packages' files only; the rest are trusted as the
       * last pass left them (fingerprints), and the periodic full sync checks them. */
      onlyPackages?: ReadonlySet<string>;
      quick?: boolean;
      warm?: boolean;
      downloadWaitMs?: number | undefined;
    },
    report: SyncReport,
  ): Promise<void> {
    const { store, log } = this.deps;
    const allDesired = plans.flatMap((p) => p.desired);
    report.packageFiles += allDesired.length;
    // One query for every fingerprint instead of one per path.
    const fingerprints = new Map(store.listFingerprints().map((f) => [f.path, f]));
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
      const obs: PathObservation = { stat: statInfoSync(full), fingerprint };
      if (needsHash(obs, d.expectedSha256, opts.deep)) {
        await observeQueue.add(async () => {
          obs.hashed = await sha256File(full);
        });
        report.hashed++;
        if (obs.hashed !== d.expectedSha256) {
          if (d.expectedSha256.startsWith("pending-transform:"))
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
    for (const action of heldFetches(plan, (repo) => this.inPlace(repo))) {
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

    // One repo that cannot be published (a self-check failure, two files at one pool path)
    // must not stop the others; its previous generation stays served.
    for (const p of plans) {
      try {
        const outcome = await this.publish(p, failed, observations, derived, {
          quick: opts.quick === true,
          warm: opts.warm === true,
        });
        if (p.layout.dropsPackageFiles) await this.dropDerivedSources(p, failed, outcome.extracted);
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
  private async dropDerivedSources(
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
    try {
      if (layout?.transform && this.transformActive(layout)) {
        const source = await openFileSource(tmp);
        let rewritten: Uint8Array | null;
        try {
          rewritten = await layout.transform(
            source,
            d.file.filename,
            this.deps.signer,
            this.deps.layoutOptions,
          );
        } finally {
          await source.close();
        }
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
          transformKey = this.deps.signer?.fingerprint ?? null;
        }
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

  // ---- publishing -----------------------------------------------------------------------

  private async publish(
    plan: RepoPlan,
    failed: ReadonlySet<string>,
    observations: ReadonlyMap<string, PathObservation>,
    derived: ReadonlyMap<string, number>,
    { quick, warm }: { quick: boolean; warm: boolean },
  ): Promise<PublishOutcome> {
    const { store, log, layoutOptions, signer } = this.deps;
    const dir = assertSafeRelativePath(plan.repo.filesystemDir, `repo ${plan.repo.name}`);
    const packages: PublishedPackage[] = [];
    const metaKey = metaCacheKey(plan.layout);
    // Cached metadata is read only when the layout asks for it: a pass whose inputs are
    // unchanged does not render, and a render with warm caches asks for few (JSON.parse of
    // 10,000 metas costs more than the rest of a one-package pass).
    const metaStatus = store.packageMetaStatus(metaKey);
    const signatureMemos = {
      last: this.signatures.get(plan.repo.name) ?? new Map<string, Uint8Array>(),
      used: new Map<string, Uint8Array>(),
    };
    const present: { d: DesiredFile; canonical: string; st: StatInfo }[] = [];
    for (const d of [...plan.desired].sort((a, b) => a.file.uri.localeCompare(b.file.uri))) {
      if (failed.has(d.file.uri)) continue;
      const canonical = d.paths[0];
      if (canonical === undefined) continue;
      const size = derived.get(canonical);
      if (size !== undefined) {
        present.push({ d, canonical, st: { size, mtimeNs: "0", ino: "0" } });
        continue;
      }
      // A file fetched in this pass (no observation, or one that did not match) has not been
      // stat'ed since: stat it. A file hashed and found right keeps the stat it had.
      const seen = observations.get(canonical);
      const fetched =
        seen === undefined ||
        seen.stat === null ||
        (seen.hashed !== undefined && seen.hashed !== d.expectedSha256);
      const st = fetched ? statInfoSync(path.join(this.root, canonical)) : seen.stat;
      if (st !== null) present.push({ d, canonical, st });
    }
    const parsed = await this.parseNew(
      plan.layout,
      present.filter(({ d }) => !metaStatus.has(d.expectedSha256)),
    );
    for (const { d, canonical, st } of present) {
      const status = metaStatus.get(d.expectedSha256);
      if (status === false) continue; // failed to parse: logged when it did
      if (status === undefined && !parsed.get(d.expectedSha256)) continue;
      const signature = plan.layout.wantsPackageSignatures
        ? await this.packageSignature(d, canonical, signatureMemos)
        : undefined;
      const sha256 = d.expectedSha256;
      let meta = parsed.get(sha256) ?? null;
      packages.push({
        ...(signature ? { signature } : {}),
        file: d.file,
        distroVersion: plan.distroVersions.get(d.file.distroVersionUri) as DistroVersion,
        paths: d.paths.map((p) => p.slice(dir.length + 1)),
        size: st.size,
        sha256,
        get meta() {
          return (meta ??= store.getPackageMeta(sha256, metaKey)?.meta ?? {});
        },
      });
    }
    if (plan.layout.wantsPackageSignatures)
      this.signatures.set(plan.repo.name, signatureMemos.used);
    try {
      const outcome = await publishRepo(
        {
          layout: plan.layout,
          repoDir: dir,
          // A raised metaVersion re-renders (re-parsed metadata leaves the package list as it
          // was); an unversioned layout keeps the salt, and so its published generation.
          salt: JSON.stringify([
            plan.layout.optionsUsed.map((k) => [k, layoutOptions[k]]),
            signer?.fingerprint ?? null,
            ...(metaKey === plan.layout.managerType ? [] : [metaKey]),
          ]),
          warmOnly: warm,
          inPlace: this.inPlace(plan.repo.name),
          input: {
            repo: plan.repo,
            distroVersions: plan.distroVersions,
            packages,
            signer,
            options: layoutOptions,
            now: new Date(this.now()),
            quick,
          },
        },
        { root: this.root, store, log, now: this.now, warned: this.warned },
      );
      return outcome;
    } catch (err) {
      log.error(
        { repo: plan.repo.name },
        `publish failed; the previous generation stays served: ${describeError(err)}`,
      );
      throw err;
    }
  }

  /** A detached signature of a package file, made once per (sha256, key) and cached. */
  private async packageSignature(
    d: DesiredFile,
    rel: string,
    memos: { last: ReadonlyMap<string, Uint8Array>; used: Map<string, Uint8Array> },
  ): Promise<Uint8Array | undefined> {
    const signer = this.deps.signer;
    if (!signer) return undefined;
    const key = `signature:${signer.fingerprint}`;
    // The same object every pass (a layout's render cache may compare by identity first), and no
    // state DB read and JSON.parse per package per pass.
    const memoKey = `${signer.fingerprint}:${d.expectedSha256}`;
    const memo = memos.last.get(memoKey);
    if (memo !== undefined) {
      memos.used.set(memoKey, memo);
      return memo;
    }
    const cached = this.deps.store.getPackageMeta(d.expectedSha256, key);
    if (typeof cached?.meta?.signature === "string") {
      const bytes = Buffer.from(cached.meta.signature, "base64");
      memos.used.set(memoKey, bytes);
      return bytes;
    }
    const bytes = await fs.readFile(path.join(this.root, rel));
    const signature = await signer.signDetachedBinary(bytes);
    memos.used.set(memoKey, signature);
    this.deps.store.putPackageMeta(
      d.expectedSha256,
      key,
      { signature: Buffer.from(signature).toString("base64") },
      null,
    );
    return signature;
  }

  /**
   * Parse the package files whose sha256 has no cached metadata yet, PARSE_CONCURRENCY at a
   * time (a cold sync of 10,000 packages parsed them one after another), and cache the results
   * in one transaction. A file that does not parse is cached as an error, logged once, and
   * left out of the index.
   */
  private async parseNew(
    layout: RepoLayout,
    files: readonly { d: DesiredFile; canonical: string }[],
  ): Promise<Map<string, Record<string, unknown> | null>> {
    const { store, log } = this.deps;
    const out = new Map<string, Record<string, unknown> | null>();
    const errors = new Map<string, string>();
    const queue = new PQueue({ concurrency: PARSE_CONCURRENCY });
    const bySha = new Map(files.map((f) => [f.d.expectedSha256, f]));
    const progress = this.deps.progress;
    const repoName = files[0]?.d.repo;
    if (repoName !== undefined) progress?.onIndexPlan?.(repoName, bySha.size);
    await Promise.all(
      [...bySha.values()].map(({ d, canonical }) =>
        queue.add(async () => {
          const source = await openFileSource(path.join(this.root, canonical));
          try {
            out.set(d.expectedSha256, await layout.parse(source, d.file.filename));
          } catch (err) {
            if (!isPackratError(err)) throw err;
            out.set(d.expectedSha256, null);
            errors.set(d.expectedSha256, describeError(err));
            log.error(
              { repo: d.repo, file: canonical, code: err.code },
              `left out of the index: ${describeError(err)}`,
            );
          } finally {
            await source.close();
            progress?.onIndexed?.();
          }
        }),
      ),
    ).finally(() => {
      if (repoName !== undefined) progress?.onIndexDone?.();
    });
    store.transaction(() => {
      for (const [sha256, meta] of out)
        store.putPackageMeta(sha256, metaCacheKey(layout), meta, errors.get(sha256) ?? null);
    });
    return out;
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

  // ---- cleanup --------------------------------------------------------------------------

  private async clearTemp(): Promise<void> {
    // Only this agent writes here and it holds the state DB lock, so anything left is debris
    // from a crash: never a final path, safe to drop. fs.rm removes a symlink planted here
    // itself, never what it points to.
    releaseTempDir(this.root);
    await fs.rm(path.join(this.root, TMP_DIR), { recursive: true, force: true });
  }

  /**
   * After a pass: the temp directory goes if empty, and any repair of it is logged. Not while
   * a download a pass left to the background still writes there: its temp path goes through
   * the directory's descriptor, which must stay open (and not be reused) until it is done.
   */
  private async dropTemp(): Promise<void> {
    for (const repair of takeTempDirRepairs(this.root)) this.deps.log.warn(repair);
    if (this.downloads.size > 0) return;
    releaseTempDir(this.root);
    await fs.rmdir(path.join(this.root, TMP_DIR)).catch(() => undefined);
  }

  private async cleanup(
    plans: readonly RepoPlan[],
    force: boolean,
    report: SyncReport,
  ): Promise<void> {
    const { store, log, settings } = this.deps;
    const cutoff = this.now() - settings.metadataGraceSeconds * 1000;
    const expired = store.expireSuperseded(cutoff);
    report.expired = expired.length;
    // In-place directories are their producers': never walked; only the agent's own expired
    // metadata there goes (src/sync/in-place.ts).
    const inPlaceDirs = plans
      .filter((p) => this.inPlace(p.repo.name))
      .map((p) => p.repo.filesystemDir);
    for (const rel of expiredInPlace(expired, inPlaceDirs, this.root, store)) {
      log.info({ file: rel }, "removing superseded metadata");
      await fs.rm(path.join(this.root, rel), { force: true }).catch((err: unknown) => {
        log.warn({ file: rel }, `could not remove: ${describeError(err)}`);
      });
      store.deleteFingerprint(rel);
    }

    const expected = new Set<string>();
    for (const p of plans) for (const d of p.desired) for (const rel of d.paths) expected.add(rel);
    for (const rel of store.listPublishedPaths()) expected.add(rel);
    for (const f of this.deps.rootFiles ?? []) expected.add(f.path);

    // Directories of repos this agent does not publish (a manager type with no layout) are
    // never touched.
    const skipped = [...this.skippedDirs, ...inPlaceDirsEver(store, inPlaceDirs)];
    const entries = (await walkTree(this.root)).filter(
      (e) =>
        e.rel !== TMP_DIR &&
        !e.rel.startsWith(`${TMP_DIR}/`) &&
        !skipped.some((s) => e.rel === s || e.rel.startsWith(`${s}/`)),
    );
    const diskFiles = entries.filter((e) => e.kind !== "dir").map((e) => e.rel);
    const removal = planRemovals({
      diskFiles,
      expected,
      keep: settings.keepFileList,
      maxRemovalRatio: settings.maxRemovalRatio,
      force,
    });
    if (removal.refused) {
      report.refused = removal.refused;
      log.error(removal.refused);
      return;
    }
    for (const rel of removal.remove) {
      log.info({ file: rel }, "removing a file nothing names");
      try {
        await fs.rm(path.join(this.root, rel), { force: true });
      } catch (err) {
        // One file that cannot go (permissions, a directory in its place) must not stop the
        // rest of the cleanup, nor the heartbeat after it.
        log.warn({ file: rel }, `could not remove: ${describeError(err)}`);
        continue;
      }
      store.deleteFingerprint(rel);
      report.removed++;
    }
    // Prune empty directories, deepest first (walkTree lists children before parents). Only
    // those that held nothing but removed files are tried: an rmdir that fails is not free.
    const removed = new Set(removal.remove);
    const occupied = new Set<string>();
    for (const e of entries) {
      if (e.kind === "dir" || removed.has(e.rel)) continue;
      for (let i = e.rel.lastIndexOf("/"); i > 0; i = e.rel.lastIndexOf("/", i - 1))
        occupied.add(e.rel.slice(0, i));
    }
    for (const e of entries) {
      if (e.kind !== "dir" || occupied.has(e.rel)) continue;
      try {
        await fs.rmdir(path.join(this.root, e.rel));
      } catch {
        // not empty: fine
      }
    }
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
