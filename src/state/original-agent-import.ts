/**
 * Import of a state DB written by the original Python packrat-agent (control version "1"/"2",
 * tables `repos` and `files`, see its libRepo.py `_checkDB`), so an existing mirror keeps its
 * files instead of downloading them again.
 *
 * The original tables are renamed to legacy_repos_v2 / legacy_files_v2, never dropped: nothing
 * the old agent knew is lost, and an operator can still read them with the sqlite3 shell.
 * Later versions of the original added repos.filesystem_dir and files.signed256; both variants
 * are handled by looking at the columns that exist.
 */
import type BetterSqlite3 from "better-sqlite3";
import type { DistroVersion, Repo } from "../types.js";
import { partsFromFilename } from "./package-filename.js";

type Db = BetterSqlite3.Database;

export const LEGACY_REPOS_TABLE = "legacy_repos_v2";
export const LEGACY_FILES_TABLE = "legacy_files_v2";
/** kv key under which the import leaves its counts, for `status` and the logs. */
export const IMPORT_REPORT_KEY = "import.original-agent";

export interface LegacyTables {
  repos: string | null;
  files: string | null;
}

export interface ImportReport {
  importedAt: number;
  repos: number;
  files: number;
  /** File rows whose repo is not in the repos table (the original never enforced its key). */
  skippedOrphanFiles: number;
  /** Files whose on-disk hash came from signed256 (an RPM the original re-signed). */
  signedFiles: number;
}

function tableExists(db: Db, name: string): boolean {
  return (
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
    undefined
  );
}

function columnsOf(db: Db, table: string): Set<string> {
  const rows = db.prepare(`PRAGMA table_info("${table}")`).all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}

/**
 * Move the original's tables out of the way of the new schema. Runs inside the migration's
 * transaction; returns null when the database has none (a new database).
 */
export function renameOriginalAgentTables(db: Db): LegacyTables | null {
  const found: LegacyTables = { repos: null, files: null };
  // files first: it references repos, and SQLite rewrites that reference on the second rename.
  if (tableExists(db, "files")) {
    found.files = freeName(db, LEGACY_FILES_TABLE);
    db.exec(`ALTER TABLE "files" RENAME TO "${found.files}"`);
  }
  if (tableExists(db, "repos")) {
    found.repos = freeName(db, LEGACY_REPOS_TABLE);
    db.exec(`ALTER TABLE "repos" RENAME TO "${found.repos}"`);
  }
  return found.repos || found.files ? found : null;
}

/** The name itself, or name_2, name_3...: an earlier copy (restored by hand) is never replaced. */
function freeName(db: Db, name: string): string {
  let candidate = name;
  for (let i = 2; tableExists(db, candidate); i++) candidate = `${name}_${i}`;
  return candidate;
}

function text(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return value.toString();
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  return JSON.stringify(value);
}

function optionalText(value: unknown): string | null {
  const s = text(value).trim();
  return s === "" ? null : s;
}

/** distro_map is JSON {distro: [versions]}; malformed maps import as no distro versions. */
function distroVersionsFromMap(distroMap: unknown, manager: string): DistroVersion[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text(distroMap));
  } catch {
    return [];
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return [];
  const fileType = manager === "apt" ? "deb" : manager === "yum" ? "rpm" : "";
  const out: DistroVersion[] = [];
  for (const [distro, versions] of Object.entries(parsed as Record<string, unknown>)) {
    if (!Array.isArray(versions)) continue;
    for (const v of versions as unknown[]) {
      const version = v === null || v === undefined ? null : text(v);
      // The master's DistroVersion URI and name are not in the old DB; the next full sync
      // replaces these with the master's objects.
      out.push({ uri: "", name: version ?? distro, distro, version, fileType, releaseNames: "" });
    }
  }
  return out;
}

export function importOriginalAgentTables(db: Db, legacy: LegacyTables, now: number): void {
  const report: ImportReport = {
    importedAt: now,
    repos: 0,
    files: 0,
    skippedOrphanFiles: 0,
    signedFiles: 0,
  };
  const repoNames = new Set<string>();

  if (legacy.repos) {
    const hasFsDir = columnsOf(db, legacy.repos).has("filesystem_dir");
    const insertRepo = db.prepare(
      `INSERT INTO repos (name, uri, repo_json, distro_versions_json, last_master_contact)
       VALUES (?, ?, ?, ?, NULL)`,
    );
    const rows = db.prepare(`SELECT * FROM "${legacy.repos}"`).all() as Record<string, unknown>[];
    for (const row of rows) {
      const name = text(row.name);
      if (name === "") continue;
      const manager = text(row.manager);
      const repo: Repo = {
        uri: text(row.uri),
        name,
        description: text(row.description),
        // The original kept every repo at root_dir/<repo name> until filesystem_dir existed.
        filesystemDir: (hasFsDir ? optionalText(row.filesystem_dir) : null) ?? name,
        managerType: manager,
        distroVersionUris: [],
        tag: "",
        showOnlyLatest: false,
      };
      const distroVersions = distroVersionsFromMap(row.distro_map, manager);
      insertRepo.run(name, repo.uri, JSON.stringify(repo), JSON.stringify(distroVersions));
      repoNames.add(name);
      report.repos++;
    }
  }

  if (legacy.files) {
    const hasSigned = columnsOf(db, legacy.files).has("signed256");
    const insertFile = db.prepare(
      `INSERT INTO package_files (repo, uri, package_name, distro_version_uri, version, type,
         arch, file_url, filename, sha256, tags_json, distro, distro_version, disk_sha256,
         transform_key, size)
       VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, '[]', ?, ?, ?, NULL, NULL)`,
    );
    const rows = db.prepare(`SELECT * FROM "${legacy.files}"`).all() as Record<string, unknown>[];
    for (const row of rows) {
      const repo = text(row.repo);
      if (!repoNames.has(repo)) {
        report.skippedOrphanFiles++;
        continue;
      }
      const filename = text(row.filename);
      const sha256 = text(row.sha256).toLowerCase();
      const signed = hasSigned ? optionalText(row.signed256)?.toLowerCase() : undefined;
      if (signed) report.signedFiles++;
      const { packageName, version } = partsFromFilename(filename);
      insertFile.run(
        repo,
        text(row.uri),
        packageName,
        version,
        text(row.file_type),
        text(row.arch),
        text(row.file_url),
        filename,
        sha256,
        optionalText(row.distro),
        optionalText(row.distro_version),
        // The bytes on disk: the re-signed RPM's hash when the original signed it.
        signed ?? sha256,
      );
      report.files++;
    }
  }

  db.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)").run(
    IMPORT_REPORT_KEY,
    JSON.stringify(report),
  );
}
