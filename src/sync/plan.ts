/**
 * Planning a pass (issue 25): what the source says each repo holds, and what the state DB held
 * before, in; the actions of the pass out. A pure function of its input: no disk, no network, no
 * state DB, no logging (what the engine should log comes back as notes), so every kind of action
 * is unit-tested with plain objects (test/unit/plan.test.ts).
 *
 * The plan says, per repo: which listed files it keeps rows for, which it serves and at which
 * paths (the layout places them, the path authority refuses unsafe or reserved ones), which were
 * refused and why, and which state DB rows change. What to download, link or remove once the
 * disk has been looked at is reconcile.ts (planFetches, planRemovals), also pure.
 */
import { PackratError, describeError, isPackratError } from "../errors.js";
import { layoutAccepts } from "../layout/index.js";
import type { LayoutOptions, PlacementInput, RepoLayout } from "../layout/types.js";
import type { PackageFileRow } from "../state/state-store.js";
import type { DistroVersion, PackageFile, Repo } from "../types.js";
import { sourcePathOf } from "./listed-source.js";
import type { PackageFileListing } from "./master-types.js";
import { PathAuthority, type PathAuthoritySettings } from "./path-authority.js";
import { checkMasterSanity, type DesiredFile } from "./reconcile.js";

/** Something the engine logs on the plan's behalf. */
export interface PlanNote {
  level: "debug" | "warn" | "error";
  fields: Record<string, unknown>;
  msg: string;
}

/**
 * What a repo serves of the files the master marks failed or deprecated: the master keeps both
 * listed under their tags (packrat's repo filter does not look at them), so the mirror decides.
 */
export interface ServePolicy {
  publishFailed: boolean;
  publishDeprecated: boolean;
}

/** A failed file was marked bad by a pipeline; a deprecated one is still valid, only discouraged. */
export const DEFAULT_SERVE_POLICY: Readonly<ServePolicy> = Object.freeze({
  publishFailed: false,
  publishDeprecated: true,
});

export interface RepoPlan {
  repo: Repo;
  layout: RepoLayout;
  distroVersions: Map<string, DistroVersion>;
  /** Every file of the repo the agent keeps a row for, served or not (failed ones included). */
  listed: PackageFile[];
  /** The files the repo serves (its policy applied), with their paths. */
  desired: DesiredFile[];
  /** The repo's package file rows as the state DB had them before this pass, by URI. */
  previous: ReadonlyMap<string, PackageFileRow>;
  /** Listed files refused a place in the tree (unsafe or reserved path): skipped, reported. */
  refused: { file: PackageFile; code: string; reason: string }[];
}

export interface PassPlan {
  plans: RepoPlan[];
  /** Repos refused as a whole (their directory is unsafe or taken). */
  refusedRepos: { repo: Repo; error: string }[];
  /** Directories of repos this agent does not publish (no layout): never touched. */
  skippedDirs: string[];
  notes: PlanNote[];
}

export interface PlanInput {
  repos: readonly Repo[];
  distroVersions: ReadonlyMap<string, DistroVersion>;
  filesByRepo: ReadonlyMap<string, readonly PackageFile[]>;
  previousByRepo: ReadonlyMap<string, ReadonlyMap<string, PackageFileRow>>;
  layoutFor: (managerType: string) => RepoLayout | undefined;
  layoutOptions: LayoutOptions;
  servePolicy: (repo: string) => ServePolicy;
  paths: PathAuthoritySettings;
  /**
   * The key a layout's transform rewrites package files with (the signer's fingerprint), when
   * the layout's derive rewrites files under these options; null when they are served as listed.
   */
  transformKey: (layout: RepoLayout) => string | null;
  /**
   * Repos whose packages are placed where their source has them (publishing in place,
   * src/sync/in-place.ts): PlacementInput.sourcePath. Absent: none.
   */
  placeAtSource?: (repo: string) => boolean;
}

/** Plan every repo of a pass. */
export function planPass(input: PlanInput): PassPlan {
  const notes: PlanNote[] = [];
  const plans: RepoPlan[] = [];
  const refusedRepos: PassPlan["refusedRepos"] = [];
  const skippedDirs: string[] = [];
  const paths = new PathAuthority(input.paths);
  // Directories of repos this agent does not publish are claimed first: whatever order the
  // master lists repos in, a published repo never lands in a directory cleanup must not touch.
  for (const repo of input.repos) {
    if (input.layoutFor(repo.managerType)) continue;
    try {
      skippedDirs.push(paths.claimRepoDir(repo, false));
    } catch {
      // an unsafe dir names nothing inside root_dir that we could protect
    }
    notes.push({
      level: "warn",
      fields: { repo: repo.name, managerType: repo.managerType },
      msg: "manager type not published by this agent; repo skipped, its directory left untouched",
    });
  }
  for (const repo of input.repos) {
    const layout = input.layoutFor(repo.managerType);
    if (!layout) continue;
    let dir: string;
    try {
      dir = paths.claimRepoDir(repo, true);
    } catch (err) {
      notes.push({
        level: "error",
        fields: { repo: repo.name, code: isPackratError(err) ? err.code : undefined },
        msg: `repo skipped: ${describeError(err)}`,
      });
      refusedRepos.push({ repo, error: describeError(err) });
      continue;
    }
    plans.push(planRepo(input, repo, layout, dir, paths, notes));
  }
  return { plans, refusedRepos, skippedDirs, notes };
}

function planRepo(
  input: PlanInput,
  repo: Repo,
  layout: RepoLayout,
  dir: string,
  paths: PathAuthority,
  notes: PlanNote[],
): RepoPlan {
  const distroVersions = new Map<string, DistroVersion>();
  for (const uri of repo.distroVersionUris) {
    const dv = input.distroVersions.get(uri);
    if (dv) distroVersions.set(uri, dv);
  }
  const files = (input.filesByRepo.get(repo.name) ?? []).filter((f) => {
    if (!layoutAccepts(layout, f.type)) {
      notes.push({
        level: "warn",
        fields: { repo: repo.name, file: f.filename, type: f.type },
        msg: `a ${f.type} file does not belong in a ${layout.managerType} repo; skipped`,
      });
      return false;
    }
    if (!distroVersions.has(f.distroVersionUri)) {
      notes.push({
        level: "warn",
        fields: { repo: repo.name, file: f.filename, distroVersion: f.distroVersionUri },
        msg: "file's distro version is not one of the repo's; skipped",
      });
      return false;
    }
    return true;
  });
  const policy = input.servePolicy(repo.name);
  const served = files.filter(
    (f) =>
      (f.failedAt === null || policy.publishFailed) &&
      (f.deprecatedAt === null || policy.publishDeprecated),
  );
  const repoArches = [...new Set(served.map((f) => f.arch))].sort();
  const previous = input.previousByRepo.get(repo.name) ?? new Map<string, PackageFileRow>();
  const transformKey = input.transformKey(layout);
  const options = input.layoutOptions;
  const desired: DesiredFile[] = [];
  const refused: RepoPlan["refused"] = [];
  const atSource = input.placeAtSource?.(repo.name) === true;
  for (const file of served) {
    const distroVersion = distroVersions.get(file.distroVersionUri);
    if (!distroVersion) continue;
    try {
      // Built without a conditional spread: V8 makes such literals on a slow path (about
      // 5 µs each, 50 ms per 10,000 files per pass).
      const placement: PlacementInput = { repo, file, distroVersion, repoArches, options };
      if (atSource) placement.sourcePath = sourcePlacement(repo, file);
      const placed = layout.placePackage(placement);
      desired.push({
        repo: repo.name,
        file,
        paths: paths.packagePaths(repo, dir, layout, options, file.filename, placed),
        expectedSha256: expectedDiskSha(transformKey, file, previous.get(file.uri)),
      });
    } catch (err) {
      if (!isPackratError(err)) throw err;
      notes.push({
        level: "error",
        fields: { repo: repo.name, file: file.uri, code: err.code },
        msg: `not published: ${describeError(err)}`,
      });
      refused.push({ file, code: err.code, reason: describeError(err) });
    }
  }
  return {
    repo,
    layout,
    distroVersions,
    listed: files,
    desired: withoutCollisions(repo, desired, notes),
    previous,
    refused,
  };
}

/** An in-place repo's package goes where its source has it (PlacementInput.sourcePath). */
function sourcePlacement(repo: Repo, file: PackageFile): string {
  const sourcePath = sourcePathOf(file);
  if (sourcePath === undefined) {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `repo ${repo.name} is published in place, and ${file.filename} is not a file of its source`,
    );
  }
  return sourcePath;
}

/**
 * Two package files the master names alike but with different bytes would share one path:
 * the downloads race, and the layout refuses to render the repo at all. Leave out every file
 * of such a clash (which one is right is the master's call) so the rest of the repo publishes.
 */
function withoutCollisions(repo: Repo, desired: DesiredFile[], notes: PlanNote[]): DesiredFile[] {
  const shas = new Map<string, Set<string>>();
  for (const d of desired) {
    for (const p of d.paths) {
      let set = shas.get(p);
      if (!set) shas.set(p, (set = new Set()));
      set.add(d.file.sha256);
    }
  }
  return desired.filter((d) => {
    const clash = d.paths.find((p) => (shas.get(p)?.size ?? 0) > 1);
    if (clash === undefined) return true;
    notes.push({
      level: "error",
      fields: { repo: repo.name, file: clash, uri: d.file.uri },
      msg: `not published: ${d.file.filename} (sha256 ${d.file.sha256}) and another package file with different bytes both belong at ${clash}; fix the duplicate name on the master`,
    });
    return false;
  });
}

/** The prefix of an expected SHA-256 that no file hashes to: transform (sign) the file. */
export const PENDING_TRANSFORM = "pending-transform:";

/** The bytes on disk are the master's unless a transform (RPM signing) rewrote them. */
function expectedDiskSha(
  transformKey: string | null,
  file: PackageFile,
  previous: PackageFileRow | undefined,
): string {
  if (transformKey === null) return file.sha256;
  if (
    previous &&
    previous.file.sha256 === file.sha256 &&
    previous.transformKey === transformKey &&
    previous.diskSha256
  ) {
    return previous.diskSha256;
  }
  // Unknown until transformed: a value no file hashes to, so the file is fetched and signed.
  return `${PENDING_TRANSFORM}${file.sha256}`;
}

/**
 * The files a listing says the repo holds. A file listed without the repo's tag changed
 * between the LIST and the GET (an untag): it is not the repo's now. A file the client skipped
 * (unsafe name, malformed object) that an earlier pass synced stays as that pass left it:
 * nothing already served is removed because the master sent something the agent cannot read.
 */
export function listedFiles(
  repo: Repo,
  listing: PackageFileListing,
  previous: ReadonlyMap<string, PackageFileRow> | undefined,
): {
  files: PackageFile[];
  skipped: { repo: string; uri: string; error: string }[];
  notes: PlanNote[];
} {
  const files: PackageFile[] = [];
  const skipped: { repo: string; uri: string; error: string }[] = [];
  const notes: PlanNote[] = [];
  for (const f of listing.files) {
    if (f.tags.includes(repo.tag)) files.push(f);
    else
      notes.push({
        level: "debug",
        fields: { repo: repo.name, file: f.uri, tags: f.tags, tag: repo.tag },
        msg: "listed for the repo but not tagged with its tag (changed while it was read); left out",
      });
  }
  for (const s of listing.skipped) {
    skipped.push({ repo: repo.name, uri: s.uri, error: s.reason });
    const kept = previous?.get(s.uri);
    if (kept) {
      notes.push({
        level: "warn",
        fields: { repo: repo.name, uri: s.uri },
        msg: "kept as the last sync left it until the master sends it in a form the agent can read",
      });
      files.push(kept.file);
    }
  }
  return { files, skipped, notes };
}

/** Rows for the skipped-files table: what the master client skipped, and what planning refused. */
export function skippedRows(
  listing: PackageFileListing | undefined,
  refused: RepoPlan["refused"],
  seenAt: number,
) {
  const fromListing = (listing?.skipped ?? []).map(({ uri, fileUrl, code, reason }) => ({
    uri,
    fileUrl,
    code,
    reason,
  }));
  const fromPlanning = refused.map(({ file, code, reason }) => ({
    uri: file.uri,
    fileUrl: file.fileUrl,
    code,
    reason,
  }));
  return [...fromListing, ...fromPlanning].map((row) => ({ ...row, seenAt }));
}

/** State DB rows for the repo's listed files (served or not), carrying what is known of disk. */
export function rowsFor(plan: RepoPlan, only?: ReadonlySet<string>): PackageFileRow[] {
  const previous = plan.previous;
  const listed = only ? plan.listed.filter((f) => only.has(f.packageName)) : plan.listed;
  return listed.map((file) => {
    const dv = plan.distroVersions.get(file.distroVersionUri);
    const prev = previous.get(file.uri);
    const same = prev !== undefined && prev.file.sha256 === file.sha256;
    return {
      repo: plan.repo.name,
      file,
      distro: dv?.distro ?? null,
      distroVersion: dv?.version ?? null,
      diskSha256: same ? prev.diskSha256 : null,
      transformKey: same ? prev.transformKey : null,
      size: same ? prev.size : null,
    };
  });
}

/**
 * How a full sync writes a repo's rows: only the packages whose rows changed (a no-change full
 * sync of a large mirror then writes nothing), or all of them when most changed. `announced`:
 * the change is one the master announces to polls (a file new in the repo, newly failed or
 * deprecated; packrat notifies on `tag`, `fail` and `deprocate`), which the daemon compares with
 * what its polls said, to tell a master that gives no triggers.
 */
export type RowChange =
  | { kind: "none" }
  | { kind: "all"; rows: PackageFileRow[]; announced: boolean }
  | { kind: "packages"; packages: string[]; rows: PackageFileRow[]; announced: boolean };

export function rowChange(plan: RepoPlan): RowChange {
  const rows = rowsFor(plan);
  const changed = new Set<string>();
  const seen = new Set<string>();
  let announced = false;
  for (const row of rows) {
    seen.add(row.file.uri);
    const prev = plan.previous.get(row.file.uri);
    if (!prev || !samePackageFile(prev.file, row.file)) changed.add(row.file.packageName);
    if (
      !prev ||
      (row.file.failedAt !== null && prev.file.failedAt === null) ||
      (row.file.deprecatedAt !== null && prev.file.deprecatedAt === null)
    )
      announced = true;
  }
  for (const prev of plan.previous.values()) {
    if (!seen.has(prev.file.uri)) changed.add(prev.file.packageName);
  }
  if (changed.size === 0) return { kind: "none" };
  if (changed.size > rows.length / 2) return { kind: "all", rows, announced };
  return {
    kind: "packages",
    packages: [...changed],
    rows: rows.filter((r) => changed.has(r.file.packageName)),
    announced,
  };
}

/**
 * The safety valve: a listing that drops more than max_removal_ratio of what a repo had is
 * refused (a master answering half a listing must not empty the mirror). Counts what the master
 * lists, before the serve policy: failed files leaving the indexes is the policy at work.
 */
export function sanityRefusal(
  plans: readonly RepoPlan[],
  previousByRepo: ReadonlyMap<string, ReadonlyMap<string, PackageFileRow>>,
  maxRemovalRatio: number,
): string | null {
  return checkMasterSanity({
    previous: new Map([...previousByRepo].map(([repo, rows]) => [repo, new Set(rows.keys())])),
    current: new Map(plans.map((p) => [p.repo.name, new Set(p.listed.map((f) => f.uri))])),
    maxRemovalRatio,
  });
}

/**
 * The fields samePackageFile compares: a field added to PackageFile fails to compile here
 * until it is compared too.
 */
const COMPARED_FIELDS = {
  uri: true,
  packageName: true,
  distroVersionUri: true,
  version: true,
  type: true,
  arch: true,
  fileUrl: true,
  filename: true,
  sha256: true,
  tags: true,
  failedAt: true,
  deprecatedAt: true,
} satisfies Record<keyof PackageFile, true>;
void COMPARED_FIELDS;

/** Field by field (a JSON.stringify of both per row cost more than the rest of the check). */
function samePackageFile(a: PackageFile, b: PackageFile): boolean {
  return (
    a.uri === b.uri &&
    a.packageName === b.packageName &&
    a.distroVersionUri === b.distroVersionUri &&
    a.version === b.version &&
    a.type === b.type &&
    a.arch === b.arch &&
    a.fileUrl === b.fileUrl &&
    a.filename === b.filename &&
    a.sha256 === b.sha256 &&
    a.failedAt === b.failedAt &&
    a.deprecatedAt === b.deprecatedAt &&
    a.tags.length === b.tags.length &&
    a.tags.every((t, i) => t === b.tags[i])
  );
}
