/**
 * Repos published in place (`[repo NAME] publish = in-place`): the source directory is the
 * served tree. Its packages stay where the producer put them and are named there
 * (PlacementInput.sourcePath); the metadata is written beside them. The one rule: nothing in
 * the source that the agent did not write is ever written, moved or deleted. The engine keeps
 * it through the three hooks here:
 *
 * - a package file that no longer has the bytes it was listed with is never fetched again
 *   (that would remove the producer's file and write the agent's copy): it is left out of the
 *   pass and left as it is (heldFetches);
 * - cleanup never walks an in-place directory: only metadata the agent wrote there, superseded
 *   and past the grace, whose bytes are still the agent's, is removed (expiredInPlace);
 * - a metadata file is never written over a file the agent did not write (producerFilesAt,
 *   called by the publisher): the generation is refused and the file left where it is.
 */
import { PackratError } from "../errors.js";
import type { StateStore, PublishedFileRow } from "../state/state-store.js";
import { fingerprintMatches, statInfoSync } from "./disk.js";
import type { FetchAction, Plan } from "./reconcile.js";

/** The state DB key of every directory ever published in place (JSON array). */
export const IN_PLACE_DIRS_KEY = "in_place_dirs";

/**
 * Every directory published in place now or before: cleanup never walks them, so a repo whose
 * section is removed (or turned to root_dir publishing) does not lose its producer's files.
 */
export function inPlaceDirsEver(
  store: Pick<StateStore, "getValue" | "setValue">,
  now: readonly string[],
): string[] {
  let before: string[] = [];
  try {
    const parsed: unknown = JSON.parse(store.getValue(IN_PLACE_DIRS_KEY) ?? "[]");
    if (Array.isArray(parsed)) before = parsed.filter((d): d is string => typeof d === "string");
  } catch {
    // an unreadable value: the current ones are written again below
  }
  const all = [...new Set([...before, ...now])].sort();
  if (all.length !== before.length) store.setValue(IN_PLACE_DIRS_KEY, JSON.stringify(all));
  return all;
}

/** Is `rel` (root-relative) inside one of `dirs`? */
export function insideAny(rel: string, dirs: Iterable<string>): boolean {
  for (const d of dirs) if (rel === d || rel.startsWith(`${d}/`)) return true;
  return false;
}

/**
 * Take the fetches of in-place repos out of the plan (and links into an in-place path): those
 * files are the producer's, and a mismatch means they changed or were damaged after the
 * listing. Returns what was held, for the engine to report as not published.
 */
export function heldFetches(plan: Plan, inPlace: (repo: string) => boolean): FetchAction[] {
  const held = plan.fetch.filter((a) => inPlace(a.desired.repo));
  if (held.length === 0) return [];
  plan.fetch = plan.fetch.filter((a) => !inPlace(a.desired.repo));
  return held;
}

/**
 * Of the published-file rows cleanup just expired, the ones it may delete in in-place
 * directories: metadata (never a package), not named again by a current generation, and whose
 * file still is what the agent wrote (its fingerprint: size, mtime and inode as written).
 */
export function expiredInPlace(
  expired: readonly PublishedFileRow[],
  dirs: readonly string[],
  root: string,
  store: Pick<StateStore, "listPublishedPaths" | "getFingerprint">,
): string[] {
  const rows = expired.filter((r) => r.kind === "metadata" && insideAny(r.path, dirs));
  if (rows.length === 0) return [];
  const named = new Set(store.listPublishedPaths());
  const out = new Set<string>();
  for (const r of rows) {
    if (named.has(r.path)) continue;
    if (isAgentsFile(root, r.path, store)) out.add(r.path);
  }
  return [...out];
}

/** Does the file at `rel` hold what the agent last wrote there (its fingerprint)? */
function isAgentsFile(
  root: string,
  rel: string,
  store: Pick<StateStore, "getFingerprint">,
): boolean {
  return fingerprintMatches(store.getFingerprint(rel), statInfoSync(`${root}/${rel}`));
}

/**
 * The publisher's check before an in-place generation is switched in: a path it is about to
 * write (root-relative) that holds a file the agent did not write (no fingerprint of the
 * agent's, or one the file no longer matches: the producer dropped or replaced it) would be
 * overwritten. Throws PACKRAT_UNSAFE_FILENAME naming them; nothing is written.
 */
export function refuseProducerFiles(
  repo: string,
  paths: readonly string[],
  root: string,
  store: Pick<StateStore, "getFingerprint">,
): void {
  const theirs = paths.filter(
    (rel) => statInfoSync(`${root}/${rel}`) !== null && !isAgentsFile(root, rel, store),
  );
  if (theirs.length === 0) return;
  throw new PackratError(
    "PACKRAT_UNSAFE_FILENAME",
    `repo ${repo} is published in place and ${theirs.length} file(s) the agent did not write lie where its metadata goes (${theirs.slice(0, 3).join(", ")}${theirs.length > 3 ? ", ..." : ""}): they are left as they are and this generation is not published`,
    {
      hint: "move those files elsewhere in the source (the metadata paths are the agent's: dists/, repodata/, simple/, <repo>.db*, *.sig, _repo_main/)",
    },
  );
}
