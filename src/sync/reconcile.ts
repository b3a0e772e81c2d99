/**
 * The planner: a pure function from (what the master wants, what the state DB remembers, what
 * the disk holds) to a plan of downloads, removals and refusals. No I/O here, so every decision
 * is unit-tested without a disk (changesets' assemble/apply split).
 */
import type { StatInfo } from "./disk.js";
import type { Fingerprint } from "../state/state-store.js";
import type { PackageFile } from "../types.js";
import { isKept } from "../keep-list.js";

export interface DesiredFile {
  repo: string;
  file: PackageFile;
  /** Relative to root_dir; the first is canonical, the others are links to it. */
  paths: string[];
  /** What the bytes on disk must hash to (the master's sha256, or the transformed file's). */
  expectedSha256: string;
}

export interface PathObservation {
  stat: StatInfo | null;
  fingerprint: Fingerprint | undefined;
  /** Present when the engine hashed the file in this pass. */
  hashed?: string;
}

export type FileCheck = "ok" | "missing" | "mismatch" | "unverified";

/** Which paths need hashing before planning: no matching fingerprint, or a deep check. */
export function needsHash(obs: PathObservation, expectedSha256: string, deep: boolean): boolean {
  if (obs.stat === null) return false;
  if (deep) return true;
  const fp = obs.fingerprint;
  const statMatches =
    fp !== undefined &&
    fp.size === obs.stat.size &&
    fp.mtimeNs === obs.stat.mtimeNs &&
    fp.ino === obs.stat.ino;
  return !(statMatches && fp.sha256 === expectedSha256);
}

export function checkPath(obs: PathObservation, expectedSha256: string): FileCheck {
  if (obs.stat === null) return "missing";
  if (obs.hashed !== undefined) return obs.hashed === expectedSha256 ? "ok" : "mismatch";
  return needsHash(obs, expectedSha256, false) ? "unverified" : "ok";
}

export interface FetchAction {
  desired: DesiredFile;
  reason: "missing" | "mismatch";
  /** A path already on disk with the same verified bytes: link instead of downloading. */
  linkFrom: string | null;
}

export interface LinkAction {
  /** Canonical path (verified) and the extra path to create from it. */
  from: string;
  to: string;
}

export interface Plan {
  fetch: FetchAction[];
  /** Extra names (pacman `any` in each arch dir) missing or wrong while the canonical is fine. */
  link: LinkAction[];
  /** Paths verified in this pass: record their fingerprints. */
  verified: { path: string; sha256: string }[];
}

export interface PlanInput {
  desired: readonly DesiredFile[];
  observations: ReadonlyMap<string, PathObservation>;
}

export function planFetches(input: PlanInput): Plan {
  const plan: Plan = { fetch: [], link: [], verified: [] };
  // Verified copies by sha256, so a file shared between repos is linked, not downloaded twice.
  const goodBySha = new Map<string, string>();

  for (const d of input.desired) {
    for (const p of d.paths) {
      const obs = input.observations.get(p);
      if (obs?.hashed !== undefined && obs.hashed === d.expectedSha256) {
        plan.verified.push({ path: p, sha256: d.expectedSha256 });
      }
      if (obs && checkPath(obs, d.expectedSha256) === "ok") goodBySha.set(d.expectedSha256, p);
    }
  }

  for (const d of input.desired) {
    const [canonical, ...extras] = d.paths;
    if (canonical === undefined) continue;
    const obs = input.observations.get(canonical) ?? { stat: null, fingerprint: undefined };
    const state = checkPath(obs, d.expectedSha256);
    if (state === "missing" || state === "mismatch") {
      const linkFrom = goodBySha.get(d.expectedSha256) ?? null;
      plan.fetch.push({
        desired: d,
        reason: state,
        linkFrom: linkFrom === canonical ? null : linkFrom,
      });
      continue;
    }
    for (const extra of extras) {
      const eo = input.observations.get(extra) ?? { stat: null, fingerprint: undefined };
      const es = checkPath(eo, d.expectedSha256);
      if (es === "missing" || es === "mismatch") plan.link.push({ from: canonical, to: extra });
    }
  }

  return plan;
}

export interface RemovalInput {
  /** Every regular file or symlink found under root_dir (outside the temp dir), relative. */
  diskFiles: readonly string[];
  /** Paths something still names: desired package files, current and grace-period metadata, keys. */
  expected: ReadonlySet<string>;
  /** Entries of keep_file_list: exact paths or directory prefixes (ending with "/"). */
  keep: readonly string[];
  maxRemovalRatio: number;
  force: boolean;
}

export interface RemovalPlan {
  remove: string[];
  refused: string | null;
}

export function planRemovals(input: RemovalInput): RemovalPlan {
  const removable = input.diskFiles.filter((p) => !input.expected.has(p) && !isKept(p, input.keep));
  const managed = input.diskFiles.length;
  if (!input.force && managed > 0 && removable.length / managed > input.maxRemovalRatio) {
    return {
      remove: [],
      refused:
        `would remove ${removable.length} of ${managed} files under root_dir (more than ` +
        `max_removal_ratio ${input.maxRemovalRatio}); nothing was removed. Check the master and ` +
        "keep_file_list, then run `packrat-agent sync --force` if this is intended",
    };
  }
  return { remove: removable.sort(), refused: null };
}

export interface MasterSanityInput {
  /** Package file URIs per repo as the state DB knew them before this sync. */
  previous: ReadonlyMap<string, ReadonlySet<string>>;
  /** What the master reports now. */
  current: ReadonlyMap<string, ReadonlySet<string>>;
  maxRemovalRatio: number;
}

/**
 * A master that suddenly reports no repos, no files for a repo that had some, or drops more than
 * max_removal_ratio of the files, is more likely broken than emptied: refuse the whole sync
 * unless forced, before anything on disk changes.
 */
export function checkMasterSanity(input: MasterSanityInput): string | null {
  const force =
    "; nothing was changed. Check the master, then run `packrat-agent sync --force` if this is intended";
  if (input.current.size === 0 && input.previous.size > 0) {
    return `the master reports no repos for this mirror (it had ${input.previous.size})${force}`;
  }
  let before = 0;
  let dropped = 0;
  for (const [repo, uris] of input.previous) {
    const now = input.current.get(repo);
    if (now === undefined) continue; // a repo that left the mirror is an explicit change
    if (now.size === 0 && uris.size > 0) {
      return `the master reports no files for repo ${repo} (it had ${uris.size})${force}`;
    }
    before += uris.size;
    for (const uri of uris) if (!now.has(uri)) dropped++;
  }
  if (before > 0 && dropped / before > input.maxRemovalRatio) {
    return `the master dropped ${dropped} of ${before} package files at once (more than max_removal_ratio ${input.maxRemovalRatio})${force}`;
  }
  return null;
}
