/**
 * The state DB: StateStore over better-sqlite3.
 *
 * Durability: WAL journal with synchronous=NORMAL. In WAL mode NORMAL still writes every
 * commit to the WAL before returning, so a crash of the agent process (our crash model:
 * kill -9, OOM, a bug) never loses or tears a committed transaction; only an OS crash or power
 * loss may lose the last transactions (never corrupt the file), and the next full sync
 * repairs that state from the master and the disk. FULL would fsync on every commit for no
 * gain against process crashes. WAL also lets `status` and `verify` read while the daemon
 * writes, and busy_timeout makes a second writer wait for the lock instead of failing at once.
 *
 * One agent per DB is enforced by the agent's lock file; if two writers still collide,
 * SQLite's locking keeps the file whole and SQLITE_BUSY surfaces as PACKRAT_STATE_LOCKED.
 */
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
} from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type { DistroVersion, PackageFile, Repo } from "../types.js";
import type {
  DownloadFailureRow,
  SkippedFileRow,
  Fingerprint,
  GenerationRow,
  PackageFileRow,
  PublishedFileRow,
  ReplicaObjectRow,
  ReplicaRepoRow,
  RepoRow,
  StateStore,
  SyncRunRow,
} from "./state-store.js";
import { UNKNOWN_PUBLISH_ORDER } from "./state-store.js";
import { MIGRATIONS, SCHEMA_VERSION, migrate, readSchemaState } from "./migrations.js";
import { stateDbError, translateSqliteError } from "./sqlite-errors.js";
import { StateModel } from "./state-model.js";

type Db = BetterSqlite3.Database;

export interface OpenStateStoreOptions {
  /** For `status` and `verify`: no migrations, no writes; works while the daemon writes. */
  readonly?: boolean;
  /** Clock for values the store stamps itself (ms since epoch). */
  now?: () => number;
  /** How long a writer waits for another connection's write lock. */
  busyTimeoutMs?: number;
}

export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** sync_runs keeps this many recent runs (plus the last successful run of each kind). */
export const SYNC_RUNS_KEPT = 1000;

export function openStateStore(path: string, opts: OpenStateStoreOptions = {}): StateStore {
  const now = opts.now ?? Date.now;
  const db = openDatabase(path, opts.readonly ?? false, opts.busyTimeoutMs, now);
  try {
    return new SqliteStateStore(path, db, now, opts.busyTimeoutMs);
  } catch (err) {
    db.close();
    throw translateSqliteError(err, path, "preparing statements") ?? err;
  }
}

function openDatabase(
  path: string,
  readonly: boolean,
  busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS,
  now: () => number,
): Db {
  if (readonly && !existsSync(path)) {
    throw stateDbError(
      path,
      "does not exist",
      "The agent creates it on its first `packrat-agent run` or `sync`; check [mirror] state_db.",
    );
  }
  if (!readonly) {
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (err) {
      throw (
        translateSqliteError(err, path, `creating its directory ${dirname(path)}`) ??
        stateDbError(path, `cannot create its directory ${dirname(path)}`, "Check the path.", err)
      );
    }
  }

  if (!readonly) createPrivate(path);

  let db: Db;
  try {
    db = new BetterSqlite3(path, { readonly, fileMustExist: readonly, timeout: busyTimeoutMs });
  } catch (err) {
    throw (
      translateSqliteError(err, path, "opening") ??
      stateDbError(path, "cannot open it", "Check the path and its permissions.", err)
    );
  }

  try {
    checkSchema(db, path, readonly);
    db.pragma("foreign_keys = ON");
    if (!readonly) {
      // Migrate first, so a database this agent refuses or fails to migrate keeps its
      // journal mode too (the original agent used the default rollback journal).
      migrateOrExplain(db, path, now);
      // Persistent in the file; a reader opened later sees WAL too.
      const mode = db.pragma("journal_mode = WAL", { simple: true });
      if (String(mode).toLowerCase() !== "wal") {
        throw stateDbError(
          path,
          `SQLite could not switch it to WAL journal mode (it stayed in ${String(mode)})`,
          "Put the state DB on a local file system (WAL needs shared memory, which network file systems often lack).",
        );
      }
      db.pragma("synchronous = NORMAL");
      // SQLite gives a new -wal/-shm the database's mode, but files left by an older agent
      // keep theirs.
      for (const companion of [`${path}-wal`, `${path}-shm`]) tighten(companion);
    }
    return db;
  } catch (err) {
    db.close();
    throw (
      translateSqliteError(err, path, readonly ? "reading its schema" : "migrating its schema") ??
      err
    );
  }
}

/**
 * The state DB holds what the master lists (names of unpublished packages, tags) and is nobody's
 * business but the agent's: 0600. SQLite creates a new database with 0644 (less the umask) and
 * gives its -wal and -shm the database's mode, so the file is made here first, empty (SQLite
 * takes an empty file as a new database); one an older agent made with wider bits is tightened.
 */
export const STATE_DB_MODE = 0o600;

function createPrivate(path: string): void {
  try {
    closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT, STATE_DB_MODE));
  } catch {
    // A directory, a missing parent, no permission: SQLite's open says it in its own words.
    return;
  }
  tighten(path);
}

function fileIdentity(path: string): { dev: number; ino: number } | null {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

/** The -wal and -shm a connection uses, once a read has made SQLite open them. */
function companionIdentities(
  path: string,
  db: Db,
): Map<string, { dev: number; ino: number } | null> {
  if (!db.readonly) db.prepare("SELECT count(*) FROM sqlite_master").get();
  return new Map([`${path}-wal`, `${path}-shm`].map((p) => [p, fileIdentity(p)]));
}

/** Drop group and other bits; a file owned by someone else stays as it is (nothing to do). */
function tighten(path: string): void {
  try {
    const mode = statSync(path).mode & 0o7777;
    if ((mode & 0o077) !== 0) chmodSync(path, mode & 0o700);
  } catch {
    // missing (no -shm yet) or not ours: the open that follows says what matters
  }
}

/** Each migration is one transaction, so a failure leaves the database as it was. */
function migrateOrExplain(db: Db, path: string, now: () => number): void {
  const from = readSchemaState(db);
  try {
    migrate(db, now);
  } catch (err) {
    const translated = translateSqliteError(err, path, "migrating its schema");
    if (translated) throw translated;
    const version = from.kind === "versioned" ? from.version : 0;
    throw stateDbError(
      path,
      `migrating it from schema version ${version} to ${SCHEMA_VERSION} failed (${err instanceof Error ? err.message : String(err)}); the failed step was rolled back`,
      "The file holds something this agent does not expect. Keep a copy of it for a bug report, then move it aside: the agent creates a new state DB and the next full sync rebuilds it.",
      err,
    );
  }
}

/** Refuse, before touching anything, databases this agent must not write to. */
function checkSchema(db: Db, path: string, readonly: boolean): void {
  const state = readSchemaState(db);
  if (state.kind === "foreign") {
    throw stateDbError(
      path,
      `holds tables (${state.tables.slice(0, 5).join(", ")}) but no "control" table, so it is not a packrat-agent state DB; refusing to touch it`,
      "[mirror] state_db points at another program's database; fix the path.",
    );
  }
  if (state.kind === "versioned" && Number.isNaN(state.version)) {
    throw stateDbError(
      path,
      `control.version is ${JSON.stringify(state.raw)}, expected a whole number; refusing to touch it`,
      "The file was edited or written by something else; move it aside and let the next full sync rebuild the state.",
    );
  }
  const version = state.kind === "versioned" ? state.version : 0;
  if (version > SCHEMA_VERSION) {
    throw stateDbError(
      path,
      `schema version ${version} is newer than this agent understands (${SCHEMA_VERSION}); refusing to open it so the newer data is not damaged`,
      "Run the newer packrat-agent that wrote it, or point [mirror] state_db at another file.",
    );
  }
  if (readonly && version < SCHEMA_VERSION) {
    const what =
      state.kind === "empty"
        ? "is empty: no agent has initialised it yet"
        : `is at schema version ${version} and needs migrating to ${SCHEMA_VERSION}, which a read-only open does not do`;
    throw stateDbError(
      path,
      what,
      "Start the agent once (`packrat-agent sync` or `run`); it migrates the state DB in place.",
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Row shapes as stored.

interface RepoDbRow {
  name: string;
  repo_json: string;
  distro_versions_json: string;
  last_master_contact: number | null;
}

interface PackageFileDbRow {
  repo: string;
  uri: string;
  package_name: string;
  distro_version_uri: string;
  version: string;
  type: string;
  arch: string;
  file_url: string;
  filename: string;
  sha256: string;
  tags_json: string;
  failed_at: string | null;
  deprecated_at: string | null;
  distro: string | null;
  distro_version: string | null;
  disk_sha256: string | null;
  transform_key: string | null;
  size: number | null;
}

interface FingerprintDbRow {
  path: string;
  sha256: string;
  size: number;
  mtime_ns: string;
  ino: string;
  verified_at: number;
}

interface GenerationDbRow {
  repo: string;
  generation: number;
  inputs_hash: string;
  published_at: number;
  file_count: number;
  package_count: number;
}

interface PublishedFileDbRow {
  repo: string;
  path: string;
  sha256: string;
  kind: PublishedFileRow["kind"];
  generation: number;
  superseded_at: number | null;
  publish_order: number;
}

interface ReplicaObjectDbRow {
  key: string;
  size: number;
  sha256: string;
  etag: string;
  uploaded_at: number;
  unwanted_since: number | null;
}

interface DownloadFailureDbRow {
  repo: string;
  uri: string;
  filename: string;
  error: string;
  attempts: number;
  last_attempt_at: number;
}

interface SkippedFileDbRow {
  repo: string;
  uri: string;
  file_url: string;
  code: string;
  reason: string;
  seen_at: number;
}

interface SyncRunDbRow {
  id: number;
  kind: SyncRunRow["kind"];
  started_at: number;
  finished_at: number | null;
  result: SyncRunRow["result"];
  message: string | null;
  stats_json: string;
}

function toRepoRow(r: RepoDbRow): RepoRow {
  return {
    repo: JSON.parse(r.repo_json) as Repo,
    distroVersions: JSON.parse(r.distro_versions_json) as DistroVersion[],
    lastMasterContact: r.last_master_contact,
  };
}

function toPackageFileRow(r: PackageFileDbRow): PackageFileRow {
  const file: PackageFile = {
    uri: r.uri,
    packageName: r.package_name,
    distroVersionUri: r.distro_version_uri,
    version: r.version,
    type: r.type,
    arch: r.arch,
    fileUrl: r.file_url,
    filename: r.filename,
    sha256: r.sha256,
    tags: JSON.parse(r.tags_json) as string[],
    failedAt: r.failed_at,
    deprecatedAt: r.deprecated_at,
  };
  return {
    repo: r.repo,
    file,
    distro: r.distro,
    distroVersion: r.distro_version,
    diskSha256: r.disk_sha256,
    transformKey: r.transform_key,
    size: r.size,
  };
}

function toPackageFileParams(row: PackageFileRow): PackageFileDbRow {
  return {
    repo: row.repo,
    uri: row.file.uri,
    package_name: row.file.packageName,
    distro_version_uri: row.file.distroVersionUri,
    version: row.file.version,
    type: row.file.type,
    arch: row.file.arch,
    file_url: row.file.fileUrl,
    filename: row.file.filename,
    sha256: row.file.sha256,
    tags_json: JSON.stringify(row.file.tags),
    failed_at: row.file.failedAt,
    deprecated_at: row.file.deprecatedAt,
    distro: row.distro,
    distro_version: row.distroVersion,
    disk_sha256: row.diskSha256,
    transform_key: row.transformKey,
    size: row.size,
  };
}

function toFingerprint(r: FingerprintDbRow): Fingerprint {
  return {
    path: r.path,
    sha256: r.sha256,
    size: r.size,
    mtimeNs: r.mtime_ns,
    ino: r.ino,
    verifiedAt: r.verified_at,
  };
}

function toGenerationRow(r: GenerationDbRow): GenerationRow {
  return {
    repo: r.repo,
    generation: r.generation,
    inputsHash: r.inputs_hash,
    publishedAt: r.published_at,
    fileCount: r.file_count,
    packageCount: r.package_count,
  };
}

function toPublishedFileRow(r: PublishedFileDbRow): PublishedFileRow {
  return {
    repo: r.repo,
    path: r.path,
    sha256: r.sha256,
    kind: r.kind,
    generation: r.generation,
    supersededAt: r.superseded_at,
    order: r.publish_order,
  };
}

function toDownloadFailureRow(r: DownloadFailureDbRow): DownloadFailureRow {
  return {
    repo: r.repo,
    uri: r.uri,
    filename: r.filename,
    error: r.error,
    attempts: r.attempts,
    lastAttemptAt: r.last_attempt_at,
  };
}

function toSyncRunRow(r: SyncRunDbRow): SyncRunRow {
  return {
    id: r.id,
    kind: r.kind,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    result: r.result,
    message: r.message,
    stats: JSON.parse(r.stats_json) as Record<string, number>,
  };
}

function isThenable(value: unknown): boolean {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

// ---------------------------------------------------------------------------------------------

/**
 * A package file row that is upserted with null disk_sha256 / transform_key / size keeps the
 * stored values while the master's sha256 is unchanged: null means "not known in this row",
 * so a full sync that re-reads the master does not forget what is on disk (signed RPMs,
 * imported rows). A new master sha256 drops them, since they described other bytes.
 */
const UPSERT_PACKAGE_FILE = `
INSERT INTO package_files (repo, uri, package_name, distro_version_uri, version, type, arch,
  file_url, filename, sha256, tags_json, failed_at, deprecated_at, distro, distro_version,
  disk_sha256, transform_key, size)
VALUES (@repo, @uri, @package_name, @distro_version_uri, @version, @type, @arch, @file_url,
  @filename, @sha256, @tags_json, @failed_at, @deprecated_at, @distro, @distro_version,
  @disk_sha256, @transform_key, @size)
ON CONFLICT (repo, uri) DO UPDATE SET
  package_name = excluded.package_name,
  distro_version_uri = excluded.distro_version_uri,
  version = excluded.version,
  type = excluded.type,
  arch = excluded.arch,
  file_url = excluded.file_url,
  filename = excluded.filename,
  sha256 = excluded.sha256,
  tags_json = excluded.tags_json,
  failed_at = excluded.failed_at,
  deprecated_at = excluded.deprecated_at,
  distro = excluded.distro,
  distro_version = excluded.distro_version,
  disk_sha256 = CASE WHEN excluded.disk_sha256 IS NULL AND package_files.sha256 = excluded.sha256
    THEN package_files.disk_sha256 ELSE excluded.disk_sha256 END,
  transform_key = CASE WHEN excluded.disk_sha256 IS NULL AND package_files.sha256 = excluded.sha256
    THEN package_files.transform_key ELSE excluded.transform_key END,
  size = CASE WHEN excluded.size IS NULL AND package_files.sha256 = excluded.sha256
    THEN package_files.size ELSE excluded.size END`;

/** Every statement the store uses, prepared once per connection. */
function prepareStatements(db: Db) {
  return {
    listRepos: db.prepare<[], RepoDbRow>("SELECT * FROM repos ORDER BY name"),
    repoExists: db.prepare<[string], { one: number }>("SELECT 1 AS one FROM repos WHERE name = ?"),
    upsertRepo: db.prepare<[string, string, string, string, number | null]>(
      `INSERT INTO repos (name, uri, repo_json, distro_versions_json, last_master_contact)
       VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET
         uri = excluded.uri,
         repo_json = excluded.repo_json,
         distro_versions_json = excluded.distro_versions_json,
         last_master_contact = coalesce(excluded.last_master_contact, repos.last_master_contact)`,
    ),
    deleteRepo: db.prepare<[string]>("DELETE FROM repos WHERE name = ?"),
    touchMasterContact: db.prepare<[number, string]>(
      "UPDATE repos SET last_master_contact = ? WHERE name = ?",
    ),

    listAllFiles: db.prepare<[], PackageFileDbRow>(
      "SELECT * FROM package_files ORDER BY repo, uri",
    ),
    listRepoFiles: db.prepare<[string], PackageFileDbRow>(
      "SELECT * FROM package_files WHERE repo = ? ORDER BY uri",
    ),
    repoFileUris: db.prepare<[string], { uri: string }>(
      "SELECT uri FROM package_files WHERE repo = ?",
    ),
    packageFileUris: db.prepare<[string, string], { uri: string }>(
      "SELECT uri FROM package_files WHERE repo = ? AND package_name = ?",
    ),
    getFile: db.prepare<[string, string], PackageFileDbRow>(
      "SELECT * FROM package_files WHERE repo = ? AND uri = ?",
    ),
    upsertFile: db.prepare<PackageFileDbRow>(UPSERT_PACKAGE_FILE),
    deleteFile: db.prepare<[string, string]>(
      "DELETE FROM package_files WHERE repo = ? AND uri = ?",
    ),
    setDiskSha256: db.prepare<[string, string | null, number, string, string]>(
      `UPDATE package_files SET disk_sha256 = ?, transform_key = ?, size = ?
       WHERE repo = ? AND uri = ?`,
    ),

    getFingerprint: db.prepare<[string], FingerprintDbRow>(
      "SELECT * FROM fingerprints WHERE path = ?",
    ),
    listFingerprints: db.prepare<[], FingerprintDbRow>("SELECT * FROM fingerprints ORDER BY path"),
    putFingerprint: db.prepare<FingerprintDbRow>(
      `INSERT OR REPLACE INTO fingerprints (path, sha256, size, mtime_ns, ino, verified_at)
       VALUES (@path, @sha256, @size, @mtime_ns, @ino, @verified_at)`,
    ),
    deleteFingerprint: db.prepare<[string]>("DELETE FROM fingerprints WHERE path = ?"),

    packageMetaStatus: db.prepare<[string], { sha256: string; parsed: number }>(
      "SELECT sha256, meta_json IS NOT NULL AS parsed FROM package_meta WHERE layout = ?",
    ),
    getPackageMeta: db.prepare<
      [string, string],
      { meta_json: string | null; error: string | null }
    >("SELECT meta_json, error FROM package_meta WHERE sha256 = ? AND layout = ?"),
    putPackageMeta: db.prepare<[string, string, string | null, string | null, number]>(
      `INSERT OR REPLACE INTO package_meta (sha256, layout, meta_json, error, cached_at)
       VALUES (?, ?, ?, ?, ?)`,
    ),

    getPackageSignature: db.prepare<[string, string, string], { signature: Buffer }>(
      "SELECT signature FROM package_signatures WHERE sha256 = ? AND layout = ? AND signer = ?",
    ),
    listPackageSignatures: db.prepare<[string, string], { sha256: string; signature: Buffer }>(
      "SELECT sha256, signature FROM package_signatures WHERE layout = ? AND signer = ?",
    ),
    putPackageSignature: db.prepare<[string, string, string, Buffer, number]>(
      `INSERT OR REPLACE INTO package_signatures (sha256, layout, signer, signature, made_at)
       VALUES (?, ?, ?, ?, ?)`,
    ),

    latestGeneration: db.prepare<[string], GenerationDbRow>(
      "SELECT * FROM generations WHERE repo = ? ORDER BY generation DESC LIMIT 1",
    ),
    insertGeneration: db.prepare<GenerationDbRow>(
      `INSERT INTO generations (repo, generation, inputs_hash, published_at, file_count, package_count)
       VALUES (@repo, @generation, @inputs_hash, @published_at, @file_count, @package_count)`,
    ),
    // One statement for a whole generation's rows (a JSON array of [path, sha256, kind]):
    // 10,000 separate upserts cost more than the rest of a one-package pass.
    upsertPublishedMany: db.prepare<[string, number, string]>(
      `INSERT INTO published_files (repo, path, sha256, kind, generation, superseded_at, publish_order)
       SELECT ?, j.value ->> 0, j.value ->> 1, j.value ->> 2, ?, NULL, j.value ->> 3
       FROM json_each(?) AS j WHERE true
       ON CONFLICT (repo, path) DO UPDATE SET
         sha256 = excluded.sha256, kind = excluded.kind, generation = excluded.generation,
         superseded_at = NULL, publish_order = excluded.publish_order`,
    ),
    supersedePaths: db.prepare<[number, string, string]>(
      `UPDATE published_files SET superseded_at = ?
       WHERE repo = ? AND superseded_at IS NULL AND path IN (SELECT value FROM json_each(?))`,
    ),
    listCurrentPublished: db.prepare<[string], PublishedFileDbRow>(
      "SELECT * FROM published_files WHERE repo = ? AND superseded_at IS NULL",
    ),
    listAllPublished: db.prepare<[], PublishedFileDbRow>(
      "SELECT * FROM published_files ORDER BY repo, path",
    ),
    listPublishedPaths: db.prepare<[], string>("SELECT path FROM published_files").pluck(),
    listRepoPublished: db.prepare<[string], PublishedFileDbRow>(
      "SELECT * FROM published_files WHERE repo = ? ORDER BY path",
    ),
    expiredPublished: db.prepare<[number], PublishedFileDbRow>(
      `SELECT * FROM published_files WHERE superseded_at IS NOT NULL AND superseded_at < ?
       ORDER BY repo, path`,
    ),
    deleteExpired: db.prepare<[number]>(
      "DELETE FROM published_files WHERE superseded_at IS NOT NULL AND superseded_at < ?",
    ),
    deletePublished: db.prepare<[string]>("DELETE FROM published_files WHERE repo = ?"),

    listReplicaObjects: db.prepare<[string], ReplicaObjectDbRow>(
      "SELECT * FROM replica_objects WHERE target = ? ORDER BY key",
    ),
    putReplicaObject: db.prepare<[string, string, number, string, string, number, number | null]>(
      `INSERT OR REPLACE INTO replica_objects
         (target, key, size, sha256, etag, uploaded_at, unwanted_since)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    deleteReplicaObjects: db.prepare<[string, string]>(
      `DELETE FROM replica_objects WHERE target = ? AND key IN (SELECT value FROM json_each(?))`,
    ),
    markReplicaUnwanted: db.prepare<[number, string, string]>(
      `UPDATE replica_objects SET unwanted_since = ?
       WHERE target = ? AND unwanted_since IS NULL AND key IN (SELECT value FROM json_each(?))`,
    ),
    markReplicaWanted: db.prepare<[string, string]>(
      `UPDATE replica_objects SET unwanted_since = NULL
       WHERE target = ? AND key IN (SELECT value FROM json_each(?))`,
    ),
    listReplicaRepos: db.prepare<
      [string],
      { repo: string; generation: number; published_at: number }
    >("SELECT repo, generation, published_at FROM replica_repos WHERE target = ? ORDER BY repo"),
    setReplicaRepo: db.prepare<[string, string, number, number]>(
      `INSERT OR REPLACE INTO replica_repos (target, repo, generation, published_at)
       VALUES (?, ?, ?, ?)`,
    ),

    recordFailure: db.prepare<[string, string, string, string, number]>(
      `INSERT INTO download_failures (repo, uri, filename, error, attempts, last_attempt_at)
       VALUES (?, ?, ?, ?, 1, ?)
       ON CONFLICT (repo, uri) DO UPDATE SET
         filename = excluded.filename, error = excluded.error,
         attempts = download_failures.attempts + 1, last_attempt_at = excluded.last_attempt_at`,
    ),
    clearFailure: db.prepare<[string, string]>(
      "DELETE FROM download_failures WHERE repo = ? AND uri = ?",
    ),
    clearRepoFailures: db.prepare<[string]>("DELETE FROM download_failures WHERE repo = ?"),
    putSkipped: db.prepare<[string, string, string, string, string, number]>(
      `INSERT OR REPLACE INTO skipped_files (repo, uri, file_url, code, reason, seen_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    clearSkipped: db.prepare<[string, string]>(
      "DELETE FROM skipped_files WHERE repo = ? AND uri = ?",
    ),
    clearRepoSkipped: db.prepare<[string]>("DELETE FROM skipped_files WHERE repo = ?"),
    listSkipped: db.prepare<[], SkippedFileDbRow>("SELECT * FROM skipped_files ORDER BY repo, uri"),
    listFailures: db.prepare<[], DownloadFailureDbRow>(
      "SELECT * FROM download_failures ORDER BY repo, uri",
    ),

    startRun: db.prepare<[string, number]>(
      `INSERT INTO sync_runs (kind, started_at, result, stats_json)
       VALUES (?, ?, 'running', '{}')`,
    ),
    finishRun: db.prepare<[string, string | null, string, number, number]>(
      `UPDATE sync_runs SET result = ?, message = ?, stats_json = ?, finished_at = ?
       WHERE id = ?`,
    ),
    pruneRuns: db.prepare<[number]>(
      `DELETE FROM sync_runs
       WHERE id <= (SELECT max(id) FROM sync_runs) - ?
         AND id NOT IN (SELECT max(id) FROM sync_runs WHERE result = 'ok' GROUP BY kind)`,
    ),
    lastRun: db.prepare<[], SyncRunDbRow>("SELECT * FROM sync_runs ORDER BY id DESC LIMIT 1"),
    lastRunOfKind: db.prepare<[string], SyncRunDbRow>(
      "SELECT * FROM sync_runs WHERE kind = ? ORDER BY id DESC LIMIT 1",
    ),
    lastOkRun: db.prepare<[], SyncRunDbRow>(
      "SELECT * FROM sync_runs WHERE result = 'ok' ORDER BY id DESC LIMIT 1",
    ),
    lastOkRunOfKind: db.prepare<[string], SyncRunDbRow>(
      "SELECT * FROM sync_runs WHERE result = 'ok' AND kind = ? ORDER BY id DESC LIMIT 1",
    ),

    getValue: db.prepare<[string], { value: string }>("SELECT value FROM kv WHERE key = ?"),
    setValue: db.prepare<[string, string]>("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)"),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

class SqliteStateStore implements StateStore {
  readonly path: string;
  private db: Db;
  private readonly now: () => number;
  private s: Statements;

  /** The file this connection opened, to tell when the path names another (replacedOnDisk). */
  private identity: { dev: number; ino: number } | null;
  /** The -wal and -shm files this connection has open, by path. */
  private companions: Map<string, { dev: number; ino: number } | null>;
  private readonly busyTimeoutMs: number | undefined;
  /** Package file rows, fingerprints and parse results held in memory (state-model.ts). */
  private readonly model = new StateModel(() => ({
    repoFiles: (repo) => this.s.listRepoFiles.all(repo).map(toPackageFileRow),
    fingerprints: () => this.s.listFingerprints.all().map(toFingerprint),
    metaStatus: (layout) => {
      const out = new Map<string, boolean>();
      for (const row of this.s.packageMetaStatus.iterate(layout))
        out.set(row.sha256, row.parsed === 1);
      return out;
    },
    currentPublished: (repo) => this.s.listCurrentPublished.all(repo).map(toPublishedFileRow),
  }));

  constructor(path: string, db: Db, now: () => number, busyTimeoutMs?: number) {
    this.path = path;
    this.db = db;
    this.now = now;
    this.busyTimeoutMs = busyTimeoutMs;
    this.identity = fileIdentity(path);
    this.companions = companionIdentities(path, db);
    // Every statement prepared once, here.
    this.s = prepareStatements(db);
  }

  /** Run one store operation; environmental SQLite failures become PackratErrors. Fingerprints
   * recorded since the last operation are written first, so every operation sees them. */
  private guard<T>(doing: string, fn: () => T): T {
    if (this.pendingFingerprints.size > 0 || this.fingerprintFailure !== null)
      this.flushFingerprints();
    try {
      return fn();
    } catch (err) {
      // A write may have reached the model and then rolled back (or SQLite may be in any state
      // after an I/O error): the model is read again rather than trusted.
      this.model.drop();
      throw translateSqliteError(err, this.path, doing) ?? err;
    }
  }

  /**
   * Fingerprints recorded outside a transaction and not yet written, by path (the last one
   * wins). A pass records one per file it hashed or wrote, one statement at a time: each in a
   * transaction of its own cost ~0.17 ms (WAL frames and checkpoints), 1.7 s of a 10,000-RPM
   * cold publish; written together they cost ~0.015 ms each. They are written before the next
   * operation of this store (so reads and deletes see them, in order), at the latest in the
   * next turn of the event loop, and on close. Losing them (a crash in between) is safe: a
   * fingerprint only vouches for a file's bytes, and a file without one is hashed again.
   */
  private pendingFingerprints = new Map<string, FingerprintDbRow>();
  private flushScheduled: NodeJS.Immediate | null = null;
  /** A background write that failed: thrown by the next operation (its rows are dropped). */
  private fingerprintFailure: Error | null = null;

  private flushFingerprints(): void {
    const failure = this.fingerprintFailure;
    if (failure !== null) {
      this.fingerprintFailure = null;
      throw failure;
    }
    if (this.pendingFingerprints.size === 0) return;
    const rows = [...this.pendingFingerprints.values()];
    this.pendingFingerprints.clear();
    try {
      this.db
        .transaction(() => {
          for (const row of rows) this.s.putFingerprint.run(row);
        })
        .immediate();
    } catch (err) {
      // Those rows are lost (only a re-hash later): the model, which has them, is read again.
      this.model.drop();
      throw translateSqliteError(err, this.path, `recording ${rows.length} fingerprint(s)`) ?? err;
    }
  }

  /** A write transaction that takes the write lock up front (IMMEDIATE), so it waits for
   * busy_timeout instead of failing half-way when it upgrades from read to write. */
  private write<T>(doing: string, fn: () => T): T {
    return this.guard(doing, () => this.db.transaction(fn).immediate());
  }

  close(): void {
    this.model.drop();
    if (this.flushScheduled) clearImmediate(this.flushScheduled);
    this.flushScheduled = null;
    if (!this.db.open) return;
    try {
      this.flushFingerprints();
    } catch {
      // Closing must close; the fingerprints not written only cost a re-hash (see above).
    } finally {
      this.fingerprintFailure = null;
      this.pendingFingerprints.clear();
      this.db.close();
    }
  }

  replacedOnDisk(): string | null {
    if (this.identity === null) return null;
    const now = fileIdentity(this.path);
    if (now === null) return `${this.path} was deleted`;
    if (now.dev !== this.identity.dev || now.ino !== this.identity.ino)
      return `${this.path} was replaced by another file`;
    return null;
  }

  modelDrift(): string[] {
    return this.guard("comparing the state model with the state DB", () => this.model.drift());
  }

  reopen(): void {
    this.model.drop();
    // SQLite does not checkpoint or remove the WAL of a database file that was unlinked or
    // renamed over (pager.c databaseIsUnmoved), so the -wal and -shm at the path may still be the
    // old file's: a new connection would replay its frames into the new file and corrupt it.
    // Those are removed when they are the very files this connection had (same inode), never a
    // -wal restored beside a backup. If the open fails, every call fails until a later pass
    // reopens (replacedOnDisk still answers).
    this.close();
    for (const [companion, identity] of this.companions) {
      const now = fileIdentity(companion);
      if (now && identity && now.dev === identity.dev && now.ino === identity.ino)
        rmSync(companion, { force: true });
    }
    const db = openDatabase(this.path, false, this.busyTimeoutMs, this.now);
    try {
      this.s = prepareStatements(db);
    } catch (err) {
      db.close();
      throw translateSqliteError(err, this.path, "preparing statements") ?? err;
    }
    this.db = db;
    this.identity = fileIdentity(this.path);
    this.companions = companionIdentities(this.path, db);
  }

  transaction<T>(fn: () => T): T {
    return this.write("transaction", () => {
      // Whatever throws out of fn rolls the transaction back, and guard() drops the model with
      // it; a store call that fails inside fn rolls back its own savepoint and drops it too.
      const result = fn();
      // better-sqlite3 commits when fn returns; an async fn would run its awaits after COMMIT.
      if (isThenable(result)) {
        throw new Error(
          "StateStore.transaction(fn): fn returned a promise; it must be synchronous",
        );
      }
      return result;
    });
  }

  // repos

  listRepos(): RepoRow[] {
    return this.guard("listing repos", () => this.s.listRepos.all().map(toRepoRow));
  }

  upsertRepo(repo: Repo, distroVersions: DistroVersion[], contactAt: number | null): void {
    this.guard(`saving repo ${repo.name}`, () => {
      this.s.upsertRepo.run(
        repo.name,
        repo.uri,
        JSON.stringify(repo),
        JSON.stringify(distroVersions),
        contactAt,
      );
    });
  }

  /** The repo, its package files (by foreign key) and its download failures. Published
   * files stay until deletePublishedFiles, so the caller can still delete them from disk. */
  deleteRepo(name: string): void {
    this.write(`deleting repo ${name}`, () => {
      this.s.clearRepoFailures.run(name);
      this.s.clearRepoSkipped.run(name);
      this.s.deleteRepo.run(name);
      this.model.dropRepo(name);
    });
  }

  touchMasterContact(repoName: string, at: number): void {
    this.guard(`updating repo ${repoName}`, () => {
      this.s.touchMasterContact.run(at, repoName);
    });
  }

  // package files

  packageFileRows(repo: string): ReadonlyMap<string, PackageFileRow> {
    return this.guard("listing package files", () => this.model.repoFiles(repo));
  }

  listPackageFiles(repo?: string): PackageFileRow[] {
    return this.guard("listing package files", () =>
      (repo === undefined ? this.s.listAllFiles.all() : this.s.listRepoFiles.all(repo)).map(
        toPackageFileRow,
      ),
    );
  }

  private upsertFilesOf(repo: string, rows: PackageFileRow[], replacing: Iterable<string>): void {
    if (this.s.repoExists.get(repo) === undefined) {
      throw new Error(
        `package files of repo ${repo}: the repo is not in the state DB (upsertRepo first)`,
      );
    }
    const incoming = new Set<string>();
    for (const row of rows) {
      if (row.repo !== repo) {
        throw new Error(
          `package files of repo ${repo}: row ${row.file.uri} belongs to ${row.repo}`,
        );
      }
      incoming.add(row.file.uri);
      this.s.upsertFile.run(toPackageFileParams(row));
    }
    for (const uri of replacing) {
      if (!incoming.has(uri)) {
        this.s.deleteFile.run(repo, uri);
        this.model.setFile(repo, uri, undefined);
      }
    }
  }

  /** The model takes each written row as SQLite merged it (see UPSERT_PACKAGE_FILE). */
  private reloadFiles(repo: string, uris: Iterable<string>): void {
    for (const uri of uris) {
      const row = this.s.getFile.get(repo, uri);
      this.model.setFile(repo, uri, row && toPackageFileRow(row));
    }
  }

  replacePackageFiles(repo: string, rows: PackageFileRow[]): void {
    this.write(`replacing package files of ${repo}`, () => {
      const existing = this.s.repoFileUris.all(repo).map((r) => r.uri);
      this.upsertFilesOf(repo, rows, existing);
      // Most of the repo changed: reading it again later costs less than a read per row now.
      this.model.dropRepo(repo);
    });
  }

  replacePackagesOfRepo(
    repo: string,
    packageNames: readonly string[],
    rows: PackageFileRow[],
  ): void {
    this.write(`replacing packages of ${repo}`, () => {
      const existing: string[] = [];
      for (const name of new Set(packageNames)) {
        for (const r of this.s.packageFileUris.all(repo, name)) existing.push(r.uri);
      }
      this.upsertFilesOf(repo, rows, existing);
      this.reloadFiles(
        repo,
        rows.map((r) => r.file.uri),
      );
    });
  }

  /** A no-op when the row is gone (a sync removed it while the file was being written). */
  setDiskSha256(
    repo: string,
    uri: string,
    diskSha256: string,
    transformKey: string | null,
    size: number,
  ): void {
    this.guard(`recording the on-disk hash of ${uri}`, () => {
      this.s.setDiskSha256.run(diskSha256, transformKey, size, repo, uri);
      this.reloadFiles(repo, [uri]);
    });
  }

  // fingerprints

  getFingerprint(path: string): Fingerprint | undefined {
    return this.guard("reading a fingerprint", () => {
      const row = this.s.getFingerprint.get(path);
      return row && toFingerprint(row);
    });
  }

  fingerprintMap(): ReadonlyMap<string, Fingerprint> {
    return this.guard("listing fingerprints", () => this.model.fingerprints());
  }

  listFingerprints(): Fingerprint[] {
    return this.guard("listing fingerprints", () =>
      this.s.listFingerprints.all().map(toFingerprint),
    );
  }

  putFingerprint(fp: Fingerprint): void {
    const row: FingerprintDbRow = {
      path: fp.path,
      sha256: fp.sha256,
      size: fp.size,
      mtime_ns: fp.mtimeNs,
      ino: fp.ino,
      verified_at: fp.verifiedAt,
    };
    // Inside a transaction the row commits (or rolls back) with it, as the caller expects.
    if (this.db.inTransaction || this.db.readonly || !this.db.open) {
      this.guard(`recording the fingerprint of ${fp.path}`, () => {
        this.s.putFingerprint.run(row);
      });
      this.model.putFingerprint(fp);
      return;
    }
    this.pendingFingerprints.delete(fp.path); // keep the order of the last recording
    this.pendingFingerprints.set(fp.path, row);
    // The model is what the store says: every read flushes the queue first, so it agrees.
    this.model.putFingerprint(fp);
    this.flushScheduled ??= setImmediate(() => {
      this.flushScheduled = null;
      if (!this.db.open || this.pendingFingerprints.size === 0) return;
      try {
        this.flushFingerprints();
      } catch (err) {
        this.fingerprintFailure ??= err instanceof Error ? err : new Error(String(err));
      }
    });
  }

  deleteFingerprint(path: string): void {
    this.guard(`forgetting the fingerprint of ${path}`, () => {
      this.s.deleteFingerprint.run(path);
      this.model.deleteFingerprint(path);
    });
  }

  // parsed metadata cache

  packageMetaStatus(layout: string): Map<string, boolean> {
    // A copy: the caller's view stays as it was while the pass caches new parses.
    return this.guard(
      "reading cached package metadata",
      () => new Map(this.model.metaStatus(layout)),
    );
  }

  getPackageMeta(
    sha256: string,
    layout: string,
  ): { meta: Record<string, unknown> | null; error: string | null } | undefined {
    return this.guard("reading cached package metadata", () => {
      const row = this.s.getPackageMeta.get(sha256, layout);
      if (row === undefined) return undefined;
      return {
        meta:
          row.meta_json === null ? null : (JSON.parse(row.meta_json) as Record<string, unknown>),
        error: row.error,
      };
    });
  }

  putPackageMeta(
    sha256: string,
    layout: string,
    meta: Record<string, unknown> | null,
    error: string | null,
  ): void {
    this.guard("caching package metadata", () => {
      this.s.putPackageMeta.run(
        sha256,
        layout,
        meta === null ? null : JSON.stringify(meta),
        error,
        this.now(),
      );
      this.model.putMeta(sha256, layout, meta !== null);
    });
  }

  getPackageSignature(sha256: string, layout: string, signer: string): Uint8Array | undefined {
    return this.guard("reading a package signature", () => {
      const row = this.s.getPackageSignature.get(sha256, layout, signer);
      return row && new Uint8Array(row.signature);
    });
  }

  listPackageSignatures(layout: string, signer: string): Map<string, Uint8Array> {
    return this.guard("reading package signatures", () => {
      // Rows as arrays, and each signature a view of its Buffer, not a copy.
      const out = new Map<string, Uint8Array>();
      for (const [sha256, signature] of this.s.listPackageSignatures
        .raw(true)
        .all(layout, signer) as unknown as [string, Buffer][])
        out.set(
          sha256,
          new Uint8Array(signature.buffer, signature.byteOffset, signature.byteLength),
        );
      return out;
    });
  }

  putPackageSignature(sha256: string, layout: string, signer: string, signature: Uint8Array): void {
    this.guard("caching a package signature", () => {
      this.s.putPackageSignature.run(sha256, layout, signer, Buffer.from(signature), this.now());
    });
  }

  // publishing

  latestGeneration(repo: string): GenerationRow | undefined {
    return this.guard(`reading the latest generation of ${repo}`, () => {
      const row = this.s.latestGeneration.get(repo);
      return row && toGenerationRow(row);
    });
  }

  recordGeneration(
    gen: GenerationRow,
    files: (Omit<PublishedFileRow, "generation" | "supersededAt" | "order"> & { order?: number })[],
    now: number,
  ): void {
    this.write(`recording generation ${gen.generation} of ${gen.repo}`, () => {
      this.s.insertGeneration.run({
        repo: gen.repo,
        generation: gen.generation,
        inputs_hash: gen.inputsHash,
        published_at: gen.publishedAt,
        file_count: gen.fileCount,
        package_count: gen.packageCount,
      });
      // Only what differs from the rows already current is written: a +1 generation of a
      // 10,000-package repo writes a few rows, not 10,000 (issue 25). A row keeps the
      // generation that first named it with these bytes.
      const current = this.model.currentPublished(gen.repo);
      const named = new Set<string>();
      const written: PublishedFileRow[] = [];
      for (const f of files) {
        if (f.repo !== gen.repo) {
          throw new Error(
            `generation ${gen.generation} of ${gen.repo} names ${f.path} of ${f.repo}`,
          );
        }
        named.add(f.path);
        const order = f.order ?? (f.kind === "package" ? 0 : UNKNOWN_PUBLISH_ORDER);
        const was = current.get(f.path);
        if (was && was.sha256 === f.sha256 && was.kind === f.kind && was.order === order) continue;
        written.push({
          repo: gen.repo,
          path: f.path,
          sha256: f.sha256,
          kind: f.kind,
          generation: gen.generation,
          supersededAt: null,
          order,
        });
      }
      const superseded = [...current.keys()].filter((p) => !named.has(p));
      if (written.length > 0)
        this.s.upsertPublishedMany.run(
          gen.repo,
          gen.generation,
          JSON.stringify(written.map((r) => [r.path, r.sha256, r.kind, r.order])),
        );
      // Rows it no longer names are superseded now; rows superseded earlier keep their earlier
      // time, so they expire first.
      if (superseded.length > 0)
        this.s.supersedePaths.run(now, gen.repo, JSON.stringify(superseded));
      this.model.applyGeneration(gen.repo, written, superseded);
    });
  }

  listCurrentMetadata(repo: string): PublishedFileRow[] {
    return this.guard("listing published metadata", () =>
      [...this.model.currentPublished(repo).values()]
        .filter((r) => r.kind === "metadata")
        .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
    );
  }

  currentPublishedFiles(repo: string): ReadonlyMap<string, PublishedFileRow> {
    return this.guard("listing published files", () => this.model.currentPublished(repo));
  }

  listPublishedPaths(): string[] {
    return this.guard("listing published files", () => this.s.listPublishedPaths.all());
  }

  listPublishedFiles(repo?: string): PublishedFileRow[] {
    return this.guard("listing published files", () =>
      (repo === undefined ? this.s.listAllPublished.all() : this.s.listRepoPublished.all(repo)).map(
        toPublishedFileRow,
      ),
    );
  }

  expireSuperseded(cutoff: number): PublishedFileRow[] {
    return this.write("expiring superseded files", () => {
      const rows = this.s.expiredPublished.all(cutoff).map(toPublishedFileRow);
      this.s.deleteExpired.run(cutoff);
      return rows;
    });
  }

  deletePublishedFiles(repo: string): void {
    this.guard(`forgetting published files of ${repo}`, () => {
      this.s.deletePublished.run(repo);
      this.model.dropPublished(repo);
    });
  }

  // replicas

  listReplicaObjects(target: string): ReplicaObjectRow[] {
    return this.guard("listing replica objects", () =>
      this.s.listReplicaObjects.all(target).map((r) => ({
        key: r.key,
        size: r.size,
        sha256: r.sha256,
        etag: r.etag,
        uploadedAt: r.uploaded_at,
        unwantedSince: r.unwanted_since,
      })),
    );
  }

  putReplicaObject(target: string, row: ReplicaObjectRow): void {
    this.guard(`recording replica object ${row.key}`, () => {
      this.s.putReplicaObject.run(
        target,
        row.key,
        row.size,
        row.sha256,
        row.etag,
        row.uploadedAt,
        row.unwantedSince,
      );
    });
  }

  deleteReplicaObjects(target: string, keys: readonly string[]): void {
    if (keys.length === 0) return;
    this.guard("forgetting replica objects", () => {
      this.s.deleteReplicaObjects.run(target, JSON.stringify(keys));
    });
  }

  setReplicaUnwanted(target: string, keys: readonly string[], at: number | null): void {
    if (keys.length === 0) return;
    this.guard("marking replica objects", () => {
      if (at === null) this.s.markReplicaWanted.run(target, JSON.stringify(keys));
      else this.s.markReplicaUnwanted.run(at, target, JSON.stringify(keys));
    });
  }

  listReplicaRepos(target: string): ReplicaRepoRow[] {
    return this.guard("listing replica repos", () =>
      this.s.listReplicaRepos.all(target).map((r) => ({
        repo: r.repo,
        generation: r.generation,
        publishedAt: r.published_at,
      })),
    );
  }

  setReplicaRepo(target: string, row: ReplicaRepoRow): void {
    this.guard(`recording the replica generation of ${row.repo}`, () => {
      this.s.setReplicaRepo.run(target, row.repo, row.generation, row.publishedAt);
    });
  }

  // failures and runs

  recordDownloadFailure(row: Omit<DownloadFailureRow, "attempts">): void {
    this.guard(`recording a download failure of ${row.uri}`, () => {
      this.s.recordFailure.run(row.repo, row.uri, row.filename, row.error, row.lastAttemptAt);
    });
  }

  clearDownloadFailure(repo: string, uri: string): void {
    this.guard(`clearing the download failure of ${uri}`, () => {
      this.s.clearFailure.run(repo, uri);
    });
  }

  listDownloadFailures(): DownloadFailureRow[] {
    return this.guard("listing download failures", () =>
      this.s.listFailures.all().map(toDownloadFailureRow),
    );
  }

  recordSkippedFiles(
    repo: string,
    rows: readonly Omit<SkippedFileRow, "repo">[],
    scope: { all: true } | { parsed: readonly string[] },
  ): void {
    this.write(`recording skipped files of ${repo}`, () => {
      if ("all" in scope) this.s.clearRepoSkipped.run(repo);
      else for (const uri of scope.parsed) this.s.clearSkipped.run(repo, uri);
      for (const r of rows) {
        this.s.putSkipped.run(repo, r.uri, r.fileUrl, r.code, r.reason, r.seenAt);
      }
    });
  }

  listSkippedFiles(): SkippedFileRow[] {
    return this.guard("listing skipped files", () =>
      this.s.listSkipped.all().map((r) => ({
        repo: r.repo,
        uri: r.uri,
        fileUrl: r.file_url,
        code: r.code,
        reason: r.reason,
        seenAt: r.seen_at,
      })),
    );
  }

  startSyncRun(kind: SyncRunRow["kind"], at: number): number {
    return this.guard(`starting a ${kind} sync run`, () =>
      Number(this.s.startRun.run(kind, at).lastInsertRowid),
    );
  }

  finishSyncRun(
    id: number,
    result: SyncRunRow["result"],
    message: string | null,
    stats: Record<string, number>,
    at: number,
  ): void {
    this.write(`finishing sync run ${id}`, () => {
      this.s.finishRun.run(result, message, JSON.stringify(stats), at, id);
      this.s.pruneRuns.run(SYNC_RUNS_KEPT);
    });
  }

  lastSyncRun(kind?: SyncRunRow["kind"]): SyncRunRow | undefined {
    return this.guard("reading the last sync run", () => {
      const row = kind === undefined ? this.s.lastRun.get() : this.s.lastRunOfKind.get(kind);
      return row && toSyncRunRow(row);
    });
  }

  lastSuccessfulSyncRun(kind?: SyncRunRow["kind"]): SyncRunRow | undefined {
    return this.guard("reading the last successful sync run", () => {
      const row = kind === undefined ? this.s.lastOkRun.get() : this.s.lastOkRunOfKind.get(kind);
      return row && toSyncRunRow(row);
    });
  }

  // small values

  getValue(key: string): string | undefined {
    return this.guard(`reading ${key}`, () => this.s.getValue.get(key)?.value);
  }

  setValue(key: string, value: string): void {
    this.guard(`writing ${key}`, () => {
      this.s.setValue.run(key, value);
    });
  }
}

/** For tests and `status`: the schema version this agent writes, and how many migrations. */
export const STATE_SCHEMA = { version: SCHEMA_VERSION, migrations: MIGRATIONS.length } as const;
