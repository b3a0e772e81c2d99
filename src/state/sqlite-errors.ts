/**
 * Turns SQLite and file-system failures around the state DB into PackratErrors that name the
 * path, what went wrong and the fix. Errors that mean a bug in the caller (a constraint
 * violation, a misuse) are left alone: they stay plain errors.
 */
import BetterSqlite3 from "better-sqlite3";
import { PackratError } from "../errors.js";

const CONFIG_KEY = "[mirror] state_db";

export function stateDbError(
  dbPath: string,
  what: string,
  hint: string,
  cause?: unknown,
): PackratError {
  return new PackratError("PACKRAT_STATE_DB", `state DB ${dbPath}: ${what}`, { hint, cause });
}

function sqliteCode(err: unknown): string | undefined {
  return err instanceof BetterSqlite3.SqliteError ? err.code : undefined;
}

function nodeCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && !code.startsWith("SQLITE_") ? code : undefined;
}

/** The error is SQLite telling us another connection holds the write lock. */
export function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== undefined && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

/**
 * Translate an environmental failure (lock, permissions, not a database, disk full, I/O,
 * corruption) into a PackratError; return undefined for anything else.
 */
export function translateSqliteError(
  err: unknown,
  dbPath: string,
  doing: string,
): PackratError | undefined {
  if (err instanceof PackratError) return err;
  if (isBusy(err)) {
    return new PackratError(
      "PACKRAT_STATE_LOCKED",
      `state DB ${dbPath}: ${doing}: another process holds its write lock and did not release it in time`,
      {
        hint: "Another packrat-agent is probably running with the same state_db; stop it, or give this one its own state_db.",
        cause: err,
      },
    );
  }
  const code = sqliteCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === "SQLITE_NOTADB") {
    return stateDbError(
      dbPath,
      `${doing}: the file is not an SQLite database (${message})`,
      `${CONFIG_KEY} points at some other file. Fix the path, or move the file aside: the agent then creates a new state DB and the next full sync rebuilds it.`,
      err,
    );
  }
  if (code?.startsWith("SQLITE_CORRUPT")) {
    return stateDbError(
      dbPath,
      `${doing}: the database is corrupt (${message})`,
      "Move the file (and its -wal and -shm files) aside; the agent then creates a new state DB and the next full sync rebuilds it.",
      err,
    );
  }
  if (
    code?.startsWith("SQLITE_CANTOPEN") ||
    code?.startsWith("SQLITE_READONLY") ||
    code === "SQLITE_PERM" ||
    code === "SQLITE_AUTH"
  ) {
    return stateDbError(
      dbPath,
      `${doing}: cannot open or write it (${code}: ${message})`,
      `Check that the path is a file (not a directory) and that the agent's user can read and write it, its -wal and -shm files and its directory, or change ${CONFIG_KEY}.`,
      err,
    );
  }
  if (code === "SQLITE_FULL") {
    return stateDbError(
      dbPath,
      `${doing}: the disk is full`,
      "Free space on that file system.",
      err,
    );
  }
  if (code?.startsWith("SQLITE_IOERR")) {
    return stateDbError(
      dbPath,
      `${doing}: I/O error (${code}: ${message})`,
      "Check the disk and the file system that holds the state DB.",
      err,
    );
  }
  const fsCode = nodeCode(err);
  if (fsCode === "EACCES" || fsCode === "EPERM" || fsCode === "EROFS") {
    return stateDbError(
      dbPath,
      `${doing}: permission denied (${message})`,
      `Give the agent's user write access to the state DB's directory, or change ${CONFIG_KEY}.`,
      err,
    );
  }
  if (fsCode === "ENOTDIR" || fsCode === "EEXIST" || fsCode === "ENOENT") {
    return stateDbError(
      dbPath,
      `${doing}: ${message}`,
      `Check that every parent of the path is a directory, or change ${CONFIG_KEY}.`,
      err,
    );
  }
  return undefined;
}
