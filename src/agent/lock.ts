/**
 * One agent per state DB, enforced by a kernel lock: flock(2) on `<state_db>.lock`.
 *
 * The kernel drops the lock when the last descriptor of the open file goes away, which happens on
 * every kind of death (SIGKILL, OOM, a panic, a reboot), so "start again" always recovers. The
 * PID written into the file is for humans only: it is never used to decide anything, because
 * after a crash and a reboot it may name a live, unrelated process (PIDs are reused; in a
 * container the agent may well have been PID 1).
 *
 * How the lock is taken without a native addon: Node has no flock binding, so the file is opened
 * here and the descriptor is handed to util-linux `flock -x -n 3` as its fd 3. flock(2) locks the
 * open file description, which the child shares with this process; when the child exits the lock
 * stays held by this process's descriptor until it is closed or the process dies. The
 * alternatives weighed: a binding (fs-ext and the like) compiles a native addon on every CI run
 * and install for one syscall; SQLite's own locking (an exclusive transaction on a small lock
 * database through better-sqlite3) needs no binary but turns the lock file into a database (no
 * readable PID) and uses POSIX record locks, which shell tools cannot share. flock(1) is in
 * util-linux (Essential on Debian, present on every RPM and Arch system, in busybox too), costs
 * one short-lived process at start, and the same lock is visible to operators' scripts:
 * `flock -n /var/lib/packratAgent/state.db.lock true` fails while an agent runs.
 *
 * The lock file is never removed: removing a locked file lets a third agent create a new file at
 * the path and lock that while a second one still waits on the old inode. After locking, the
 * inode behind the path is compared with the locked one, so a file removed or replaced by hand
 * between open and lock is noticed and the lock taken again.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { PackratError } from "../errors.js";

export interface StateLock {
  readonly path: string;
  /** Whether the lock path still names the file this lock holds (not deleted or replaced). */
  stillHeld(): boolean;
  release(): void;
}

/** Exit status flock(1) gives when the lock is held elsewhere and -n was asked for. */
const FLOCK_CONFLICT = 1;

/** The flock(1) executable; tests point it elsewhere to check the missing-tool message. */
export const lockTool = { flock: "flock" };

function stateDbError(lockPath: string, why: string, hint: string, cause?: unknown): PackratError {
  return new PackratError("PACKRAT_STATE_DB", `cannot lock ${lockPath}: ${why}`, {
    hint,
    ...(cause === undefined ? {} : { cause }),
  });
}

function openLockFile(lockPath: string): number {
  try {
    // O_NOFOLLOW: a link planted at the lock path must not make the agent write through it.
    return fs.openSync(
      lockPath,
      fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
      0o644,
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw stateDbError(
        lockPath,
        "its directory does not exist",
        "create the state_db directory (the .deb makes /var/lib/packratAgent)",
        err,
      );
    }
    if (code === "ELOOP") {
      throw stateDbError(
        lockPath,
        "it is a symbolic link",
        "remove the link; the agent makes the lock file itself",
        err,
      );
    }
    throw stateDbError(
      lockPath,
      (err as Error).message,
      "check the permissions of the state_db directory",
      err,
    );
  }
}

/** flock(2) the descriptor, without waiting; false when another open file holds the lock. */
function tryFlock(fd: number, lockPath: string): boolean {
  const res = spawnSync(lockTool.flock, ["-x", "-n", "3"], {
    stdio: ["ignore", "ignore", "pipe", fd],
    timeout: 10_000,
  });
  if (res.error) {
    const missing = (res.error as NodeJS.ErrnoException).code === "ENOENT";
    throw stateDbError(
      lockPath,
      missing ? `${lockTool.flock}(1) was not found` : res.error.message,
      missing
        ? "install util-linux (it provides flock), which the agent uses to hold its lock"
        : "check that flock(1) from util-linux works on this system",
      res.error,
    );
  }
  if (res.status === 0) return true;
  if (res.status === FLOCK_CONFLICT) return false;
  throw stateDbError(
    lockPath,
    `flock(1) failed (${res.status === null ? `signal ${res.signal}` : `exit ${res.status}`}: ${res.stderr.toString().trim()})`,
    "the state_db directory must be on a file system that supports flock (a local one)",
  );
}

function holderPid(fd: number): string {
  try {
    const buf = Buffer.alloc(32);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString("utf8").trim();
    return /^\d+$/.test(text) ? text : "unknown";
  } catch {
    return "unknown";
  }
}

/** Whether the path still names the file this descriptor has open. */
function samePath(fd: number, lockPath: string): boolean {
  try {
    const held = fs.fstatSync(fd);
    const now = fs.lstatSync(lockPath);
    return held.dev === now.dev && held.ino === now.ino;
  } catch {
    return false;
  }
}

export function acquireStateLock(stateDb: string): StateLock {
  const lockPath = `${stateDb}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    const fd = openLockFile(lockPath);
    let locked = false;
    try {
      locked = tryFlock(fd, lockPath);
      if (!locked) {
        throw new PackratError(
          "PACKRAT_STATE_LOCKED",
          `the state DB ${stateDb} is in use by another packrat-agent (pid ${holderPid(fd)}, lock ${lockPath})`,
          {
            hint: "stop that agent first (e.g. systemctl stop packrat-agent), or wait for its sync to finish",
          },
        );
      }
      if (!samePath(fd, lockPath)) {
        // Removed or replaced between our open and our lock: lock whatever is there now.
        fs.closeSync(fd);
        continue;
      }
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${process.pid}\n`, 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    let released = false;
    return {
      path: lockPath,
      stillHeld: () => !released && samePath(fd, lockPath),
      release: () => {
        if (released) return;
        released = true;
        try {
          // The PID goes, the file stays (see above); closing the descriptor drops the lock.
          fs.ftruncateSync(fd, 0);
        } catch {
          // nothing a human could act on
        }
        fs.closeSync(fd);
      },
    };
  }
  throw new PackratError("PACKRAT_STATE_LOCKED", `could not take the lock ${lockPath}`, {
    hint: "something keeps replacing the lock file; stop whatever does",
  });
}
