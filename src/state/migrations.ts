/**
 * Versioned schema migrations for the state DB.
 *
 * The version lives where the original Python packrat-agent kept it: table
 * `control("key", "value")`, key "version". The original wrote "1" and then "2"; this agent's
 * schema starts at 3, so a database the original left behind is recognised by its version
 * and imported in place by migration 3 (see original-agent-import.ts).
 *
 * Each migration runs in one IMMEDIATE transaction that re-reads the version first, so two
 * processes that open a new database at the same moment cannot both apply it.
 */
import type BetterSqlite3 from "better-sqlite3";
import { importOriginalAgentTables, renameOriginalAgentTables } from "./original-agent-import.js";

type Db = BetterSqlite3.Database;

export interface Migration {
  version: number;
  description: string;
  up(db: Db, now: number): void;
}

/** The schema of version 3: the tables the StateStore reads and writes. */
const SCHEMA_V3 = `
-- Repos as last read from the master: the whole Repo and its DistroVersions as JSON, because
-- nothing queries inside them and the master's shape may grow.
CREATE TABLE repos (
  name TEXT PRIMARY KEY,
  uri TEXT NOT NULL,
  repo_json TEXT NOT NULL,
  distro_versions_json TEXT NOT NULL,
  last_master_contact INTEGER
) STRICT;

-- Package files of each repo. Keyed like the original's files table (repo, uri).
CREATE TABLE package_files (
  repo TEXT NOT NULL REFERENCES repos(name) ON DELETE CASCADE,
  uri TEXT NOT NULL,
  package_name TEXT NOT NULL,
  distro_version_uri TEXT NOT NULL,
  version TEXT NOT NULL,
  type TEXT NOT NULL,
  arch TEXT NOT NULL,
  file_url TEXT NOT NULL,
  filename TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  tags_json TEXT NOT NULL,
  distro TEXT,
  distro_version TEXT,
  disk_sha256 TEXT,
  transform_key TEXT,
  size INTEGER,
  PRIMARY KEY (repo, uri)
) STRICT;
-- Incremental syncs replace the files of named packages.
CREATE INDEX package_files_by_package ON package_files (repo, package_name);

-- stat() data of files whose bytes were verified, for the no-hash fast path.
CREATE TABLE fingerprints (
  path TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns TEXT NOT NULL,
  ino TEXT NOT NULL,
  verified_at INTEGER NOT NULL
) STRICT;

-- Parsed package metadata by content: each package is parsed once, ever. A parse failure is
-- cached too (error set, meta null) so a broken file is not re-parsed on every sync.
CREATE TABLE package_meta (
  sha256 TEXT NOT NULL,
  layout TEXT NOT NULL,
  meta_json TEXT,
  error TEXT,
  cached_at INTEGER NOT NULL,
  PRIMARY KEY (sha256, layout)
) STRICT;

-- Published generations. Kept when a repo leaves, so generation numbers are never reused.
CREATE TABLE generations (
  repo TEXT NOT NULL,
  generation INTEGER NOT NULL,
  inputs_hash TEXT NOT NULL,
  published_at INTEGER NOT NULL,
  file_count INTEGER NOT NULL,
  package_count INTEGER NOT NULL,
  PRIMARY KEY (repo, generation)
) STRICT;

CREATE TABLE published_files (
  repo TEXT NOT NULL,
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('metadata', 'package')),
  generation INTEGER NOT NULL,
  superseded_at INTEGER,
  PRIMARY KEY (repo, path)
) STRICT;
-- recordGeneration supersedes a repo's rows of older generations.
CREATE INDEX published_files_by_generation ON published_files (repo, generation);
-- expireSuperseded scans only superseded rows.
CREATE INDEX published_files_superseded ON published_files (superseded_at)
  WHERE superseded_at IS NOT NULL;

CREATE TABLE download_failures (
  repo TEXT NOT NULL,
  uri TEXT NOT NULL,
  filename TEXT NOT NULL,
  error TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_attempt_at INTEGER NOT NULL,
  PRIMARY KEY (repo, uri)
) STRICT;

CREATE TABLE sync_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('full', 'incremental')),
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  result TEXT NOT NULL CHECK (result IN ('running', 'ok', 'failed', 'refused')),
  message TEXT,
  stats_json TEXT NOT NULL
) STRICT;
CREATE INDEX sync_runs_by_kind ON sync_runs (kind, id);
CREATE INDEX sync_runs_by_result ON sync_runs (result, kind, id);

-- Small values: counters and flags (full sync count, published key fingerprint...).
CREATE TABLE kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 3,
    description: "packrat-agent (TypeScript) schema; imports the original agent's repos and files",
    up(db, now) {
      // Versions 1-2 are the original agent's: keep its tables under new names, then import.
      const legacy = renameOriginalAgentTables(db);
      db.exec(SCHEMA_V3);
      if (legacy) importOriginalAgentTables(db, legacy, now);
    },
  },
  {
    version: 4,
    description:
      "failed and deprecated package files (the master keeps them listed); files the master lists that the agent skips",
    up(db) {
      db.exec(`
ALTER TABLE package_files ADD COLUMN failed_at TEXT;
ALTER TABLE package_files ADD COLUMN deprecated_at TEXT;

-- Package files the master lists for a repo that the agent could not use (an unsafe name, a
-- malformed object): for status and metrics; a file already synced stays as it was.
CREATE TABLE skipped_files (
  repo TEXT NOT NULL,
  uri TEXT NOT NULL,
  file_url TEXT NOT NULL,
  code TEXT NOT NULL,
  reason TEXT NOT NULL,
  seen_at INTEGER NOT NULL,
  PRIMARY KEY (repo, uri)
) STRICT;
`);
    },
  },
  {
    version: 5,
    description:
      "the publish order of each published file; what each bucket (or other replica) holds",
    up(db) {
      db.exec(`
-- 0: a package or a content-addressed metadata file (nothing names it until an entry point
-- does); 1 + n: an entry point of stage n, switched in after everything of lower order.
-- Rows of generations published before this column existed get 1000 (last), and their
-- generations are marked so that the next pass publishes them again with their real order.
ALTER TABLE published_files ADD COLUMN publish_order INTEGER NOT NULL DEFAULT 0;
UPDATE published_files SET publish_order = 1000 WHERE kind = 'metadata';
UPDATE generations SET inputs_hash = 'before-schema-5'
  WHERE (repo, generation) IN (SELECT repo, max(generation) FROM generations GROUP BY repo);

-- Each object the agent put into a replica (an S3 bucket and prefix), by key under the prefix:
-- a pass uploads only what differs from this, and deletes only keys listed here.
CREATE TABLE replica_objects (
  target TEXT NOT NULL,
  key TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  etag TEXT NOT NULL,
  uploaded_at INTEGER NOT NULL,
  -- When a complete round first found nothing naming it; deleted metadata_grace_seconds later.
  unwanted_since INTEGER,
  PRIMARY KEY (target, key)
) STRICT;

-- The generation of each repo whose entry points a replica serves.
CREATE TABLE replica_repos (
  target TEXT NOT NULL,
  repo TEXT NOT NULL,
  generation INTEGER NOT NULL,
  published_at INTEGER NOT NULL,
  PRIMARY KEY (target, repo)
) STRICT;
`);
    },
  },
  {
    version: 6,
    description: "package signatures a layout derives, in a table of their own",
    up(db) {
      db.exec(`
-- A detached signature of a package file's bytes (RepoLayout.derive: pacman's .sig), by the
-- SHA-256 of the bytes signed, the layout and the signing key's fingerprint. Made once, ever.
-- (Earlier agents kept these in package_meta under 'signature:<fingerprint>'; those rows are
-- dropped, and such packages are signed once more.)
CREATE TABLE package_signatures (
  sha256 TEXT NOT NULL,
  layout TEXT NOT NULL,
  signer TEXT NOT NULL,
  signature BLOB NOT NULL,
  made_at INTEGER NOT NULL,
  PRIMARY KEY (sha256, layout, signer)
) STRICT;
DELETE FROM package_meta WHERE layout LIKE 'signature:%';
`);
    },
  },
];

/** The version this agent writes and understands. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

export function hasTable(db: Db, name: string): boolean {
  return (
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
    undefined
  );
}

export type SchemaState =
  /** An empty database: no tables at all. */
  | { kind: "empty" }
  /** Tables, but no `control` table: not a packrat-agent state DB. */
  | { kind: "foreign"; tables: string[] }
  /** `control` exists; version is the parsed number, raw the stored text (null if no row). */
  | { kind: "versioned"; version: number; raw: string | null };

/** Read what the database holds, without writing anything. */
export function readSchemaState(db: Db): SchemaState {
  const tables = (
    db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .all() as { name: string }[]
  ).map((r) => r.name);
  if (tables.length === 0) return { kind: "empty" };
  if (!tables.includes("control")) return { kind: "foreign", tables };
  const row = db.prepare("SELECT value FROM control WHERE key = 'version'").get() as
    { value: string | number | bigint | Buffer | null } | undefined;
  if (row === undefined || row.value === null) return { kind: "versioned", version: 0, raw: null };
  const raw = typeof row.value === "string" ? row.value : row.value.toString();
  // The original stored text; a value that is not a whole number is reported, not guessed.
  const version = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  return { kind: "versioned", version, raw };
}

function writeVersion(db: Db, version: number): void {
  // The original's control table has no key constraint, so update-or-insert by hand.
  const updated = db
    .prepare("UPDATE control SET value = ? WHERE key = 'version'")
    .run(String(version));
  if (updated.changes === 0) {
    db.prepare("INSERT INTO control (key, value) VALUES ('version', ?)").run(String(version));
  }
}

function currentVersion(db: Db): number {
  const state = readSchemaState(db);
  return state.kind === "versioned" ? state.version : 0;
}

/**
 * Apply every migration above the database's version, each in its own IMMEDIATE
 * transaction. The caller has already refused foreign and newer databases.
 * Returns the versions applied.
 */
export function migrate(db: Db, now: () => number): number[] {
  const applied: number[] = [];
  for (const migration of MIGRATIONS) {
    const ran = db
      .transaction(() => {
        // Re-read inside the write lock: another process may have migrated meanwhile.
        if (currentVersion(db) >= migration.version) return false;
        if (!hasTable(db, "control")) {
          // The original's own DDL, so either agent can read the version.
          db.exec('CREATE TABLE "control" ( "key" text, "value" text )');
        }
        migration.up(db, now());
        writeVersion(db, migration.version);
        return true;
      })
      .immediate();
    if (ran) applied.push(migration.version);
  }
  return applied;
}
