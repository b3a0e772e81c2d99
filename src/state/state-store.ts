/**
 * What the sync engine, the publisher, `status` and `verify` need from the state DB.
 * Implemented over better-sqlite3 in db.ts (WAL, versioned migrations, original-agent import).
 * All paths are relative to root_dir, with forward slashes.
 */
import type { DistroVersion, PackageFile, Repo } from "../types.js";

/**
 * Value key (getValue/setValue): directories of repos the master lists but this agent does not
 * publish (a manager type with no layout), as a JSON array. The engine writes it at each full
 * sync; verify reads it and does not call their files unexpected.
 */
export const SKIPPED_REPO_DIRS_KEY = "skipped_repo_dirs";

export interface RepoRow {
  repo: Repo;
  distroVersions: DistroVersion[];
  /** When the master last answered for this repo (ms since epoch), null if never. */
  lastMasterContact: number | null;
}

/** A package file of a repo as last read from the master (or imported from the original agent). */
export interface PackageFileRow {
  repo: string;
  file: PackageFile;
  /** The distro and version of its DistroVersion, denormalised for the original-agent import. */
  distro: string | null;
  distroVersion: string | null;
  /** SHA-256 of the bytes on disk: file.sha256, or the hash after a layout transform (signed RPM). */
  diskSha256: string | null;
  /** Fingerprint of the signer used for the transform, when there was one. */
  transformKey: string | null;
  size: number | null;
}

/** stat() data recorded right after a verified write or hash, for the no-hash fast path. */
export interface Fingerprint {
  path: string;
  sha256: string;
  size: number;
  /** mtime in ns as a decimal string (bigint stat) so equality is exact. */
  mtimeNs: string;
  ino: string;
  verifiedAt: number;
}

export interface PublishedFileRow {
  repo: string;
  path: string;
  sha256: string;
  kind: "metadata" | "package";
  generation: number;
  /** When a later generation stopped naming it (ms since epoch); null while current. */
  supersededAt: number | null;
  /**
   * When it is switched in: 0 for a package or a content-addressed metadata file (nothing names
   * it before an entry point does), 1 + n for an entry point of stage n. Replicas upload in
   * this order.
   */
  order: number;
}

/** The order of a metadata row recorded without one: after every known stage. */
export const UNKNOWN_PUBLISH_ORDER = 1000;

/** An object the agent put into a replica (a bucket and prefix), by key under its prefix. */
export interface ReplicaObjectRow {
  key: string;
  size: number;
  sha256: string;
  /** What the server answered (for S3: the MD5 of a single PUT, a multipart ETag otherwise). */
  etag: string;
  uploadedAt: number;
  /** When a complete round first found nothing naming it; null while wanted. */
  unwantedSince: number | null;
}

/** The generation of a repo whose entry points a replica serves. */
export interface ReplicaRepoRow {
  repo: string;
  generation: number;
  publishedAt: number;
}

export interface GenerationRow {
  repo: string;
  generation: number;
  inputsHash: string;
  publishedAt: number;
  fileCount: number;
  packageCount: number;
}

export interface DownloadFailureRow {
  repo: string;
  uri: string;
  filename: string;
  error: string;
  attempts: number;
  lastAttemptAt: number;
}

/** A package file the master lists for a repo that the agent left out (unsafe name, malformed). */
export interface SkippedFileRow {
  repo: string;
  uri: string;
  fileUrl: string;
  /** PACKRAT_UNSAFE_FILENAME or PACKRAT_MASTER_PROTOCOL. */
  code: string;
  reason: string;
  seenAt: number;
}

export interface SyncRunRow {
  id: number;
  kind: "full" | "incremental";
  startedAt: number;
  finishedAt: number | null;
  result: "running" | "ok" | "failed" | "refused";
  message: string | null;
  stats: Record<string, number>;
}

export interface StateStore {
  readonly path: string;
  close(): void;
  /**
   * Why `path` no longer names the database this store has open (deleted, or replaced by
   * another file), or null. A daemon asks before each pass: writes to an unlinked file are lost.
   */
  replacedOnDisk(): string | null;
  /** Close the database and open the file now at `path` (a new, empty one if none is there). */
  reopen(): void;
  /** Run fn in one write transaction (better-sqlite3 transactions are synchronous). */
  transaction<T>(fn: () => T): T;

  // repos
  listRepos(): RepoRow[];
  upsertRepo(repo: Repo, distroVersions: DistroVersion[], contactAt: number | null): void;
  deleteRepo(name: string): void;
  touchMasterContact(repoName: string, at: number): void;

  // package files
  /**
   * A repo's rows by URI, from memory after the first read (state-model.ts): the same objects
   * until they change, so callers must not modify them.
   */
  packageFileRows(repo: string): ReadonlyMap<string, PackageFileRow>;
  listPackageFiles(repo?: string): PackageFileRow[];
  /** Replace the whole file set of a repo (full sync). */
  replacePackageFiles(repo: string, rows: PackageFileRow[]): void;
  /** Replace only the files of the named packages (incremental sync). */
  replacePackagesOfRepo(
    repo: string,
    packageNames: readonly string[],
    rows: PackageFileRow[],
  ): void;
  setDiskSha256(
    repo: string,
    uri: string,
    diskSha256: string,
    transformKey: string | null,
    size: number,
  ): void;

  // fingerprints
  getFingerprint(path: string): Fingerprint | undefined;
  /** Every fingerprint by path, from memory after the first read (do not modify). */
  fingerprintMap(): ReadonlyMap<string, Fingerprint>;
  listFingerprints(): Fingerprint[];
  putFingerprint(fp: Fingerprint): void;
  deleteFingerprint(path: string): void;

  // parsed metadata cache (by sha256 and layout)
  /**
   * Which sha256s have cached metadata for a layout: true if it parsed, false if it failed.
   * One query instead of a read and JSON.parse per package, for passes that may not render.
   */
  packageMetaStatus(layout: string): Map<string, boolean>;
  getPackageMeta(
    sha256: string,
    layout: string,
  ): { meta: Record<string, unknown> | null; error: string | null } | undefined;
  putPackageMeta(
    sha256: string,
    layout: string,
    meta: Record<string, unknown> | null,
    error: string | null,
  ): void;

  // package signatures a layout derives (RepoLayout.derive), by the bytes signed
  getPackageSignature(sha256: string, layout: string, signer: string): Uint8Array | undefined;
  /**
   * Every cached signature of one layout and key, by sha256, in one query: what a process's
   * first publish of a repo reads instead of one query per package.
   */
  listPackageSignatures(layout: string, signer: string): Map<string, Uint8Array>;
  putPackageSignature(sha256: string, layout: string, signer: string, signature: Uint8Array): void;

  // publishing
  latestGeneration(repo: string): GenerationRow | undefined;
  /**
   * Record a new generation: rows for every file it names (metadata and package paths);
   * files of earlier generations that it does not name get supersededAt = now.
   */
  recordGeneration(
    gen: GenerationRow,
    files: (Omit<PublishedFileRow, "generation" | "supersededAt" | "order"> & {
      /** Default: 0 for a package, UNKNOWN_PUBLISH_ORDER for metadata. */
      order?: number;
    })[],
    now: number,
  ): void;
  listPublishedFiles(repo?: string): PublishedFileRow[];
  /** The metadata rows of a repo's latest generation (not superseded). */
  listCurrentMetadata(repo: string): PublishedFileRow[];
  /** Every row of a repo not superseded, by path (held in memory: no query). */
  currentPublishedFiles(repo: string): ReadonlyMap<string, PublishedFileRow>;
  /** Every path the published-file rows name, current or superseded (cleanup's keep set). */
  listPublishedPaths(): string[];
  /** Forget superseded files older than the cutoff; returns their paths (the caller deletes them). */
  expireSuperseded(cutoff: number): PublishedFileRow[];
  /** Forget every published file row of a repo that left the mirror. */
  deletePublishedFiles(repo: string): void;

  // replicas (src/publish): `target` names one bucket and prefix
  listReplicaObjects(target: string): ReplicaObjectRow[];
  putReplicaObject(target: string, row: ReplicaObjectRow): void;
  deleteReplicaObjects(target: string, keys: readonly string[]): void;
  /** Mark keys unwanted since `at` (those already marked keep their time), or wanted (null). */
  setReplicaUnwanted(target: string, keys: readonly string[], at: number | null): void;
  listReplicaRepos(target: string): ReplicaRepoRow[];
  setReplicaRepo(target: string, row: ReplicaRepoRow): void;

  // failures and runs
  recordDownloadFailure(row: Omit<DownloadFailureRow, "attempts">): void;
  clearDownloadFailure(repo: string, uri: string): void;
  listDownloadFailures(): DownloadFailureRow[];
  /**
   * Record the files a listing of the repo skipped. `all`: the listing was the whole repo, so
   * every earlier row goes; `parsed`: a partial listing, whose files that did parse lose theirs.
   */
  recordSkippedFiles(
    repo: string,
    rows: readonly Omit<SkippedFileRow, "repo">[],
    scope: { all: true } | { parsed: readonly string[] },
  ): void;
  listSkippedFiles(): SkippedFileRow[];
  startSyncRun(kind: SyncRunRow["kind"], at: number): number;
  finishSyncRun(
    id: number,
    result: SyncRunRow["result"],
    message: string | null,
    stats: Record<string, number>,
    at: number,
  ): void;
  lastSyncRun(kind?: SyncRunRow["kind"]): SyncRunRow | undefined;
  lastSuccessfulSyncRun(kind?: SyncRunRow["kind"]): SyncRunRow | undefined;

  // small counters and flags (full sync count for deep_verify_every, published key fingerprint...)
  getValue(key: string): string | undefined;
  setValue(key: string, value: string): void;

  /** How the in-memory model differs from the state DB now: empty when it does not (tests). */
  modelDrift(): string[];
}
