/**
 * `packrat-agent run`: the daemon in the foreground, for systemd.
 * SIGHUP validates the new config before using it (the old one stays on error); SIGUSR1 queues a
 * full sync; the first SIGTERM/SIGINT stops gracefully within a deadline, a second exits at once
 * (close-with-grace).
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { describeError } from "../../errors.js";
import { MirrorDaemon, type DaemonDeps } from "../../sync/daemon.js";
import type { SyncReport } from "../../sync/engine.js";
import {
  buildEngineParts,
  closeEngineParts,
  createContext,
  type AgentContext,
} from "../context.js";
import { parseCommandArgs, loadSettings, settingsAndLogger } from "./common.js";
import { acquireStateLock, type StateLock } from "../lock.js";
import { startTreeWatcher, type TreeWatcher } from "../watcher.js";
import { startMetricsServer, type MetricsServer } from "../metrics.js";

const STOP_DEADLINE_MS = 20_000;

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("run", argv, {});
  const { settings, log } = await settingsAndLogger(values);
  const ctx: AgentContext = await createContext(settings, log);
  let watcher: TreeWatcher | null = null;
  let metrics: MetricsServer | null = null;

  const onSync = (report: SyncReport | null, err: unknown) => {
    metrics?.recordSync(report, err);
    if (report) watcher?.syncDone();
  };
  const daemonDeps = (): DaemonDeps => ({
    engine: ctx.engine,
    client: ctx.client,
    store: ctx.store,
    log,
    settings: ctx.settings.mirror,
    onSync,
    reopenStore,
  });
  // The state DB was deleted or replaced under the daemon: what a restart does, in place. The
  // lock goes with the file when its directory went too; if another agent has meanwhile taken
  // the lock at that path, this one stops (two agents must never write one tree).
  const reopenStore = async (why: string): Promise<DaemonDeps> => {
    if (!ctx.lock.stillHeld()) {
      log.warn({ lock: ctx.lock.path }, `the lock file went too (${why}); taking it again`);
      let fresh: StateLock;
      try {
        await mkdir(dirname(ctx.settings.mirror.stateDb), { recursive: true });
        fresh = acquireStateLock(ctx.settings.mirror.stateDb);
      } catch (err) {
        log.error(`cannot lock the new state DB, stopping: ${describeError(err)}`);
        requestStop("state DB taken by another agent", 1);
        throw err;
      }
      ctx.lock.release();
      ctx.lock = fresh;
    }
    ctx.store.reopen();
    // New engine parts: the old engine's memos describe the state DB that is gone.
    const parts = await buildEngineParts(ctx.settings, log, ctx.store);
    await closeEngineParts(ctx);
    Object.assign(ctx, parts);
    return daemonDeps();
  };
  const daemon = new MirrorDaemon(daemonDeps());

  if (settings.mirror.metricsListen) {
    metrics = await startMetricsServer(
      settings.mirror.metricsListen,
      ctx.store,
      log,
      () => ctx.replicas[0]?.status() ?? null,
    );
  }
  if (settings.mirror.watchTree) {
    // chokidar does not notice a root created after it starts watching: make it first.
    await mkdir(settings.mirror.rootDir, { recursive: true });
    watcher = startTreeWatcher({
      root: settings.mirror.rootDir,
      store: ctx.store,
      log,
      onTamper: (paths) =>
        daemon.requestFullSync(`files changed by hand: ${paths.slice(0, 3).join(", ")}`),
    });
  }

  let stopping = false;
  let requestStop: (reason: string, code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => {
    const stop = (signal: string, code = 0) => {
      if (stopping) {
        log.warn({ signal }, "second signal: exiting now");
        resolve(1);
        return;
      }
      stopping = true;
      log.info(
        { signal },
        "stopping: aborting downloads, letting the current pass publish what is complete",
      );
      void (async () => {
        const clean = await daemon.stop(STOP_DEADLINE_MS);
        if (!clean)
          log.warn(
            "the current pass did not finish in time and was aborted; the next start repairs it",
          );
        await watcher?.close();
        await metrics?.close();
        await ctx.close();
        log.info("stopped");
        // Anything still holding the event loop (a socket in close) must not keep a stopped
        // daemon alive: systemd would wait out TimeoutStopSec.
        setTimeout(() => process.exit(code), 2000).unref();
        resolve(code);
      })();
    };
    requestStop = stop;
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });

  process.on("SIGUSR1", () => daemon.requestFullSync("SIGUSR1"));
  process.on("SIGHUP", () => {
    void (async () => {
      try {
        const next = await loadSettings(values.config, (w) => log.warn(w));
        if (
          next.mirror.stateDb !== ctx.settings.mirror.stateDb ||
          next.mirror.rootDir !== ctx.settings.mirror.rootDir
        ) {
          log.warn(
            "state_db and root_dir changes take effect at the next restart; the rest is reloaded",
          );
        }
        const merged = {
          ...next,
          mirror: {
            ...next.mirror,
            stateDb: ctx.settings.mirror.stateDb,
            rootDir: ctx.settings.mirror.rootDir,
          },
        };
        const parts = await buildEngineParts(merged, log, ctx.store);
        await closeEngineParts(ctx);
        Object.assign(ctx, parts, { settings: merged });
        daemon.reload(daemonDeps());
        log.info({ config: next.source }, "config reloaded");
      } catch (err) {
        log.error(
          `config reload failed, still running on the previous config: ${describeError(err)}`,
        );
      }
    })();
  });

  log.info(
    {
      root: settings.mirror.rootDir,
      master: settings.packrat?.host ?? null,
      mirror: settings.packrat?.name ?? null,
      sources: settings.packrat ? undefined : Object.keys(settings.repos),
    },
    "packrat-agent running",
  );
  daemon.start();
  return done;
}
