/**
 * One agent per state DB. A lock file next to the DB holds the owner's PID; it is created with
 * O_EXCL, so two agents starting together cannot both win. A lock left by a process that no
 * longer exists (SIGKILL, power loss) is taken over, so "start again" always recovers.
 */
import fs from "node:fs";
import { PackratError } from "../errors.js";

export interface StateLock {
  readonly path: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function acquireStateLock(stateDb: string): StateLock {
  const lockPath = `${stateDb}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(lockPath, "wx", 0o644);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return {
        path: lockPath,
        release: () => {
          try {
            if (fs.readFileSync(lockPath, "utf8").trim() === String(process.pid))
              fs.rmSync(lockPath);
          } catch {
            // already gone
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new PackratError(
          "PACKRAT_STATE_DB",
          `cannot create ${lockPath}: its directory does not exist`,
          {
            hint: "create the state_db directory (the .deb makes /var/lib/packratAgent)",
            cause: err,
          },
        );
      }
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new PackratError(
          "PACKRAT_STATE_DB",
          `cannot create ${lockPath}: ${(err as Error).message}`,
          {
            hint: "check the permissions of the state_db directory",
            cause: err,
          },
        );
      }
    }
    let owner = NaN;
    try {
      owner = Number.parseInt(fs.readFileSync(lockPath, "utf8").trim(), 10);
    } catch {
      continue; // removed between our open and read: try again
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
      throw new PackratError(
        "PACKRAT_STATE_LOCKED",
        `the state DB ${stateDb} is in use by another packrat-agent (pid ${owner}, lock ${lockPath})`,
        {
          hint: `stop that agent first (e.g. systemctl stop packrat-agent), or wait for its sync to finish`,
        },
      );
    }
    // Stale: the owner is gone. Remove and retry the exclusive create.
    fs.rmSync(lockPath, { force: true });
  }
  throw new PackratError("PACKRAT_STATE_LOCKED", `could not take the lock ${lockPath}`, {
    hint: "another agent keeps taking it; stop the other agent",
  });
}
