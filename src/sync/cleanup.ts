/**
 * The end of a full sync (issue 25): grace-period expiry of superseded metadata, removal of
 * what nothing names, and the agent's temp directory.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { describeError } from "../errors.js";
import type { Logger } from "../log.js";
import type { StateStore } from "../state/state-store.js";
import { TMP_DIR, releaseTempDir, takeTempDirRepairs, walkTree } from "./disk.js";
import type { EngineSettings, RootFile, SyncReport } from "./engine-types.js";
import { expiredInPlace, inPlaceDirsEver } from "./in-place.js";
import type { RepoPlan } from "./plan.js";
import { planRemovals } from "./reconcile.js";

export interface CleanupDeps {
  root: string;
  store: StateStore;
  log: Logger;
  settings: Pick<EngineSettings, "metadataGraceSeconds" | "keepFileList" | "maxRemovalRatio">;
  rootFiles?: readonly RootFile[] | undefined;
  /** Repos published in place (src/sync/in-place.ts): their directories are never walked. */
  inPlaceRepos?: ReadonlySet<string> | undefined;
  now: () => number;
}

/**
 * Empty the agent's temp directory. Only this agent writes there and it holds the state DB lock,
 * so anything left is debris from a crash: never a final path, safe to drop. fs.rm removes a
 * symlink planted there itself, never what it points to.
 */
export async function clearTemp(root: string): Promise<void> {
  releaseTempDir(root);
  await fs.rm(path.join(root, TMP_DIR), { recursive: true, force: true });
}

/**
 * After a pass: the temp directory goes if empty, and any repair of it is logged. Not while
 * a download a pass left to the background still writes there (`downloadsInFlight`): its temp
 * path goes through the directory's descriptor, which must stay open (and not be reused) until
 * it is done.
 */
export async function dropTemp(
  root: string,
  log: Logger,
  downloadsInFlight: number,
): Promise<void> {
  for (const repair of takeTempDirRepairs(root)) log.warn(repair);
  if (downloadsInFlight > 0) return;
  releaseTempDir(root);
  await fs.rmdir(path.join(root, TMP_DIR)).catch(() => undefined);
}

/**
 * After a full sync: forget superseded metadata past the grace period, then remove every file
 * under root_dir that nothing names (no plan, no published generation, not the agent's own,
 * not on the keep list), unless that is more than the safety valve allows; then prune emptied
 * directories. Directories of repos this agent does not publish are never touched.
 */
export async function cleanupTree(
  deps: CleanupDeps,
  plans: readonly RepoPlan[],
  skippedDirs: readonly string[],
  force: boolean,
  report: SyncReport,
): Promise<void> {
  const { store, log, settings, rootFiles } = deps;
  const root = deps.root;
  const cutoff = deps.now() - settings.metadataGraceSeconds * 1000;
  const expired = store.expireSuperseded(cutoff);
  report.expired = expired.length;
  // In-place directories are their producers': never walked; only the agent's own expired
  // metadata there goes (src/sync/in-place.ts).
  const inPlaceDirs = plans
    .filter((p) => deps.inPlaceRepos?.has(p.repo.name) === true)
    .map((p) => p.repo.filesystemDir);
  for (const rel of expiredInPlace(expired, inPlaceDirs, root, store)) {
    log.info({ file: rel }, "removing superseded metadata");
    await fs.rm(path.join(root, rel), { force: true }).catch((err: unknown) => {
      log.warn({ file: rel }, `could not remove: ${describeError(err)}`);
    });
    store.deleteFingerprint(rel);
  }

  const expected = new Set<string>();
  for (const p of plans) for (const d of p.desired) for (const rel of d.paths) expected.add(rel);
  for (const rel of store.listPublishedPaths()) expected.add(rel);
  for (const f of rootFiles ?? []) expected.add(f.path);

  // Directories of repos this agent does not publish (a manager type with no layout) are
  // never touched.
  const skipped = [...skippedDirs, ...inPlaceDirsEver(store, inPlaceDirs)];
  const entries = (await walkTree(root)).filter(
    (e) =>
      e.rel !== TMP_DIR &&
      !e.rel.startsWith(`${TMP_DIR}/`) &&
      !skipped.some((s) => e.rel === s || e.rel.startsWith(`${s}/`)),
  );
  const diskFiles = entries.filter((e) => e.kind !== "dir").map((e) => e.rel);
  const removal = planRemovals({
    diskFiles,
    expected,
    keep: settings.keepFileList,
    maxRemovalRatio: settings.maxRemovalRatio,
    force,
  });
  if (removal.refused) {
    report.refused = removal.refused;
    log.error(removal.refused);
    return;
  }
  for (const rel of removal.remove) {
    log.info({ file: rel }, "removing a file nothing names");
    try {
      await fs.rm(path.join(root, rel), { force: true });
    } catch (err) {
      // One file that cannot go (permissions, a directory in its place) must not stop the
      // rest of the cleanup, nor the heartbeat after it.
      log.warn({ file: rel }, `could not remove: ${describeError(err)}`);
      continue;
    }
    store.deleteFingerprint(rel);
    report.removed++;
  }
  // Prune empty directories, deepest first (walkTree lists children before parents). Only
  // those that held nothing but removed files are tried: an rmdir that fails is not free.
  const removed = new Set(removal.remove);
  const occupied = new Set<string>();
  for (const e of entries) {
    if (e.kind === "dir" || removed.has(e.rel)) continue;
    for (let i = e.rel.lastIndexOf("/"); i > 0; i = e.rel.lastIndexOf("/", i - 1))
      occupied.add(e.rel.slice(0, i));
  }
  for (const e of entries) {
    if (e.kind !== "dir" || occupied.has(e.rel)) continue;
    try {
      await fs.rmdir(path.join(root, e.rel));
    } catch {
      // not empty: fine
    }
  }
}
