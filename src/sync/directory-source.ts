/**
 * A directory as the source of repos (listed-source.ts has the rest): files are found
 * recursively, dot names and names being written (`*.tmp`, `*.part`...) are skipped, and a file
 * is complete once its size, mtime and inode have not changed for `settleMs` (and match the
 * previous look). Producers that can should write under a temporary name and rename into place.
 * Changes are seen through chokidar (inotify). The directory is only ever read.
 */
import chokidar from "chokidar";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describeError } from "../errors.js";
import type { RepoLayout } from "../layout/types.js";
import type { Logger } from "../log.js";
import { openFileSource } from "./disk.js";
import {
  IN_PROGRESS,
  ListedSource,
  type SourceBackend,
  type SourceObject,
  type SourceRepo,
} from "./listed-source.js";

export { SOURCE_TAG } from "./listed-source.js";

export interface DirectoryRepo extends SourceRepo {
  /** Absolute path of the directory its packages are read from. */
  source: string;
}

export interface DirectoryBackendOptions {
  /** A file whose size or mtime changed less than this long ago is still being written. */
  settleMs?: number;
  log: Logger;
  repoName: string;
}

export function directoryBackend(dir: string, opts: DirectoryBackendOptions): SourceBackend {
  const settleMs = opts.settleMs ?? 2000;
  return {
    where: `${dir}/`,
    async list() {
      const out: SourceObject[] = [];
      for (const rel of await walk(dir)) {
        if (IN_PROGRESS.test(path.posix.basename(rel))) continue;
        let st;
        try {
          st = await fs.lstat(path.join(dir, rel));
        } catch {
          continue; // gone since the walk
        }
        if (!st.isFile()) continue;
        out.push({
          rel,
          size: st.size,
          stamp: `${st.size}:${st.mtimeMs}:${st.ino}`,
          mtimeMs: st.mtimeMs,
        });
      }
      return out;
    },
    // Complete: not written to for settleMs, and unchanged since the last look (if any).
    settled(obj, before, now) {
      return (
        now - (obj.mtimeMs ?? 0) >= settleMs && (before === undefined || before.stamp === obj.stamp)
      );
    },
    async open(rel) {
      const full = path.join(dir, rel);
      const sha256 = await hashFile(full);
      return { sha256, source: await openFileSource(full) };
    },
    async read(rel) {
      const full = path.join(dir, rel);
      const { size } = await fs.stat(full);
      return { size, body: createReadStream(full) };
    },
    watch(onChange) {
      let ready = (): void => undefined;
      const readyP = new Promise<void>((resolve) => (ready = resolve));
      const watcher = chokidar
        .watch(dir, { ignoreInitial: true, ignored: (p) => IN_PROGRESS.test(path.basename(p)) })
        .on("all", onChange)
        .on("ready", () => ready())
        .on("error", (err) =>
          // The full sync still lists the directory: a lost watcher delays changes, loses none.
          opts.log.warn(
            { repo: opts.repoName, err: describeError(err) },
            "watching the source directory failed; changes arrive with the full sync",
          ),
        );
      return { ready: readyP, close: () => watcher.close() };
    },
  };
}

export interface DirectorySourceOptions {
  repos: readonly DirectoryRepo[];
  description: string;
  layoutFor: (managerType: string) => RepoLayout | undefined;
  log: Logger;
  settleMs?: number;
  quietMs?: number;
  now?: () => number;
}

/** Repos that are all directories (the common case, and the tests'). */
export class DirectorySource extends ListedSource {
  constructor(opts: DirectorySourceOptions) {
    super({
      ...opts,
      repos: opts.repos.map((repo) => ({
        repo,
        backend: directoryBackend(repo.source, {
          log: opts.log,
          repoName: repo.name,
          ...(opts.settleMs === undefined ? {} : { settleMs: opts.settleMs }),
        }),
      })),
    });
  }
}

/** Regular files under dir, relative, skipping dot directories; sorted for a stable order. */
async function walk(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fs.readdir(path.join(dir, prefix), { withFileTypes: true })) {
    if (d.name.startsWith(".")) continue;
    const rel = prefix === "" ? d.name : `${prefix}/${d.name}`;
    if (d.isDirectory()) out.push(...(await walk(dir, rel)));
    else if (d.isFile()) out.push(rel);
  }
  return out.sort();
}

async function hashFile(full: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(full, { highWaterMark: 1 << 20 }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}
