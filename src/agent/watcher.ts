/**
 * While `run` is going, watch root_dir so a package or metadata file deleted or modified by hand
 * is repaired within seconds instead of at the next full sync. An event counts as tampering only
 * when the file's stat no longer matches the fingerprint the agent recorded after its own write,
 * so the agent's own renames and removals never trigger it.
 */
import chokidar, { type FSWatcher } from "chokidar";
import path from "node:path";
import { describeError } from "../errors.js";
import type { Logger } from "../log.js";
import type { StateStore } from "../state/state-store.js";
import { TMP_DIR, statInfo } from "../sync/disk.js";

export interface TreeWatcher {
  /** Resolves once the initial scan is done: changes from then on are seen. */
  readonly ready: Promise<void>;
  /** Called after each sync: events seen during it are re-checked against new fingerprints. */
  syncDone(): void;
  close(): Promise<void>;
}

export interface WatcherOptions {
  root: string;
  store: StateStore;
  log: Logger;
  onTamper: (paths: string[]) => void;
  debounceMs?: number;
}

export function startTreeWatcher(opts: WatcherOptions): TreeWatcher {
  const root = path.resolve(opts.root);
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let closed = false;

  const check = async () => {
    timer = null;
    const paths = [...pending];
    pending.clear();
    const tampered: string[] = [];
    for (const rel of paths) {
      const fp = opts.store.getFingerprint(rel);
      if (!fp) continue; // not a file the agent vouches for (or one it just removed)
      const st = await statInfo(path.join(root, rel));
      if (st === null || st.size !== fp.size || st.mtimeNs !== fp.mtimeNs || st.ino !== fp.ino)
        tampered.push(rel);
    }
    if (tampered.length > 0 && !closed) {
      opts.log.warn(
        { files: tampered.slice(0, 10), count: tampered.length },
        "files under root_dir changed by hand; repairing",
      );
      opts.onTamper(tampered);
    }
  };
  const schedule = () => {
    if (timer === null && !closed) timer = setTimeout(() => void check(), opts.debounceMs ?? 500);
  };

  const watcher: FSWatcher = chokidar.watch(root, {
    ignoreInitial: true,
    followSymlinks: false,
    ignored: (p: string) =>
      p === path.join(root, TMP_DIR) || p.startsWith(path.join(root, TMP_DIR) + path.sep),
  });
  const onEvent = (full: string) => {
    const rel = path.relative(root, full).split(path.sep).join("/");
    if (rel.startsWith("..") || rel === "") return;
    pending.add(rel);
    schedule();
  };
  watcher.on("change", onEvent).on("unlink", onEvent);
  const ready = new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  watcher.on("error", (err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EMFILE") {
      opts.log.warn(
        "root_dir has too many directories to watch (inotify limit); relying on the periodic full sync to find changes made by hand",
      );
      void watcher.close();
    } else {
      opts.log.warn(`file watcher error: ${describeError(err)}`);
    }
  });

  return {
    ready,
    syncDone: () => schedule(),
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      await watcher.close();
    },
  };
}
