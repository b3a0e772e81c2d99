/**
 * What the engine's steps share: its settings and dependencies (EngineDeps), the options of a
 * pass, and the report a pass fills in. Its own module so that the steps (apply.ts,
 * render-input.ts, cleanup.ts) and the engine that runs them import it without importing
 * each other.
 */
import type { LayoutOptions, RepoLayout } from "../layout/types.js";
import type { Logger } from "../log.js";
import type { ReplicaPort, RoundReport } from "../publish/replica.js";
import type { Signer } from "../signing/signer.js";
import type { StateStore } from "../state/state-store.js";
import type { RetryPolicy, Sleep } from "./download.js";
import type { MasterClient } from "./master-types.js";
import type { ServePolicy } from "./plan.js";

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
  /**
   * After every pass, compare the state DB's in-memory model with SQLite and fail the pass if
   * they differ (a bug). The tests' CLI runs set it (PACKRAT_CHECK_MODEL=1).
   */
  checkModel?: boolean;
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

export function emptyReport(kind: SyncReport["kind"]): SyncReport {
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
