/**
 * A directory as the source of repositories, for teams with no packrat master: their CI drops
 * packages into a directory (reprepro's and aptly's "incoming") and the agent publishes them.
 * It implements the master port (MasterClient), so the engine plans from "what the source says
 * each repo holds" and keeps every guarantee it has for a master: downloads (here: copies) are
 * hashed against the listing, generations are whole and signed, removals wait for the grace.
 *
 * - Each `[repo NAME]` section with `format` and `source` is one repo, published at
 *   root_dir/NAME. Name, version and architecture come from the package itself
 *   (RepoLayout.identify: control file, RPM header, .PKGINFO, wheel name).
 * - A file is taken only once it is complete: its size and mtime unchanged across two looks at
 *   least `settleMs` apart (or older than that when first seen). Producers that can should write
 *   to a dot-name or a `*.tmp` / `*.part` name and rename into place: such names are never read.
 * - Changes are seen by chokidar, grouped until the directory has been quiet for `quietMs`
 *   (a burst of 500 uploads makes a handful of publishes), and by the full sync's listing,
 *   which stays the source of truth (a missed event costs one full_sync_interval at most).
 * - A file that is not a valid package is reported (skipped with its reason, as the master
 *   client reports an unsafe name) and never stops the others. Nothing in a source directory is
 *   ever written, moved or deleted.
 */
import chokidar, { type FSWatcher } from "chokidar";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describeError, PackratError } from "../errors.js";
import type { RepoLayout } from "../layout/types.js";
import type { Logger } from "../log.js";
import type { DistroVersion, MirrorInfo, PackageFile, Repo } from "../types.js";
import { openFileSource } from "./disk.js";
import { assertSafeFilename } from "./filename-guard.js";
import type {
  FileDownload,
  MasterClient,
  PackageFileListing,
  SkippedPackageFile,
} from "./master-types.js";

export interface DirectoryRepo {
  /** The repo's name, and its directory under root_dir. */
  name: string;
  /** A registered layout's manager_type. */
  format: string;
  /** Absolute path of the directory its packages are read from. */
  source: string;
  /** apt: the codename (default "stable"); yum: the release version (default "9"). */
  version?: string;
  /** yum: the distro directory (default "el"). */
  distro?: string;
}

export interface DirectorySourceOptions {
  repos: readonly DirectoryRepo[];
  description: string;
  layoutFor: (managerType: string) => RepoLayout | undefined;
  log: Logger;
  /** A file whose size or mtime changed less than this long ago is still being written. */
  settleMs?: number;
  /** Events are grouped until the directory has been quiet this long. */
  quietMs?: number;
  now?: () => number;
}

/** The tag every listed file carries and every repo holds (a directory has no tags). */
export const SOURCE_TAG = "local";

/** Names producers write to before renaming into place: never read. */
const IN_PROGRESS = /^\.|(\.tmp|\.part|\.partial|\.crdownload|~)$/;

interface Seen {
  size: number;
  mtimeMs: number;
  ino: number;
}

type Entry =
  { kind: "package"; file: PackageFile } | { kind: "invalid"; skipped: SkippedPackageFile };

interface RepoState {
  repo: DirectoryRepo;
  layout: RepoLayout;
  /** By path relative to the source directory. */
  seen: Map<string, Seen>;
  /** Taken files by relative path, with the stat they were taken at. */
  entries: Map<string, { stat: Seen; entry: Entry }>;
  /** Files seen but not yet settled (the next look decides). */
  unsettled: number;
  /** Scans of one repo never overlap. */
  chain: Promise<unknown>;
  watcher: FSWatcher | null;
  /** Resolves once the watcher's initial scan is done: changes from then on are seen. */
  watching: Promise<void> | null;
  /** Wakes a waiting poll. */
  wake: (() => void) | null;
  dirty: boolean;
  /** Package names by relative path, as last reported to a poll. */
  reported: Map<string, string>;
}

export class DirectorySource implements MasterClient {
  private readonly repos = new Map<string, RepoState>();
  private readonly settleMs: number;
  private readonly quietMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: DirectorySourceOptions) {
    this.settleMs = opts.settleMs ?? 2000;
    this.quietMs = opts.quietMs ?? 1000;
    this.now = opts.now ?? Date.now;
    for (const repo of opts.repos) {
      const layout = opts.layoutFor(repo.format);
      if (!layout) {
        throw new PackratError(
          "PACKRAT_CONFIG_INVALID",
          `[repo ${repo.name}] format ${repo.format} is not a format this agent publishes`,
        );
      }
      this.repos.set(repoUri(repo.name), {
        repo,
        layout,
        seen: new Map(),
        entries: new Map(),
        unsettled: 0,
        chain: Promise.resolve(),
        watcher: null,
        watching: null,
        wake: null,
        dirty: false,
        reported: new Map(),
      });
    }
  }

  checkVersion(): Promise<void> {
    return Promise.resolve();
  }

  getMirror(): Promise<MirrorInfo> {
    return Promise.resolve({
      name: "local",
      description: this.opts.description,
      repoUris: [...this.repos.keys()],
      lastHeartbeat: null,
    });
  }

  getRepos(uris: readonly string[]): Promise<Repo[]> {
    return Promise.resolve(
      uris.flatMap((uri) => {
        const state = this.repos.get(uri);
        if (!state) return [];
        const { repo } = state;
        return [
          {
            uri,
            name: repo.name,
            description: `${repo.format} packages from ${repo.source}`,
            filesystemDir: repo.name,
            managerType: repo.format,
            distroVersionUris: [distroVersionUri(repo.name)],
            tag: SOURCE_TAG,
            showOnlyLatest: false,
          },
        ];
      }),
    );
  }

  getDistroVersions(): Promise<DistroVersion[]> {
    return Promise.resolve([...this.repos.values()].map(({ repo }) => distroVersionOf(repo)));
  }

  async listPackageFiles(
    uri: string,
    packageNames?: readonly string[] | null,
    signal?: AbortSignal,
  ): Promise<PackageFileListing> {
    const state = this.stateOf(uri);
    await this.scan(state, signal);
    // A full listing publishes everything found: polls report changes from here on.
    if (!packageNames) state.reported = reportedKeys(state);
    const wanted = packageNames ? new Set(packageNames) : null;
    const files: PackageFile[] = [];
    const skipped: SkippedPackageFile[] = [];
    const byUri = new Set<string>();
    for (const { entry } of state.entries.values()) {
      if (entry.kind === "invalid") {
        // Named in every listing, a poll's too: a bad upload is reported when it arrives.
        skipped.push(entry.skipped);
        continue;
      }
      // The same bytes under two names: one package file (its uri is its digest).
      if (byUri.has(entry.file.uri)) continue;
      byUri.add(entry.file.uri);
      if (!wanted || wanted.has(entry.file.packageName)) files.push(entry.file);
    }
    files.sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
    return { files, skipped };
  }

  /**
   * Waits for changes in the repo's directory: resolves with the names of the packages whose
   * files appeared, changed or left, once the directory has been quiet for quietMs; [] when
   * nothing changed within the timeout. Files still being written are looked at again after
   * settleMs without an event.
   */
  async poll(uri: string, timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    const state = this.stateOf(uri);
    this.startWatcher(state);
    const deadline = this.now() + timeoutSeconds * 1000;
    for (;;) {
      // A listing between two polls (an incremental pass asking for other names) may have
      // taken files no poll has reported yet: report them first.
      const pending = this.changedNames(state);
      if (pending.length > 0) return pending;
      if (!state.dirty && state.unsettled === 0) {
        const left = deadline - this.now();
        if (left > 0) await this.sleepUntilWoken(state, left, signal);
        if (!state.dirty) {
          // The timeout: a cheap listing (stat only), which also catches an event inotify lost.
          await this.scan(state, signal);
          return this.changedNames(state);
        }
      }
      if (state.dirty) {
        // Group a burst: until no event came for quietMs, but never longer than MAX_GROUPS
        // windows, so a steady trickle of uploads still publishes.
        for (let windows = 0; state.dirty && windows < MAX_GROUPS; windows++) {
          state.dirty = false;
          await sleep(this.quietMs, signal);
        }
      } else {
        await sleep(this.settleMs, signal); // files still being written: look again
      }
      await this.scan(state, signal);
      const changed = this.changedNames(state);
      if (changed.length > 0) return changed;
      if (this.now() >= deadline) return [];
    }
  }

  /** Resolves once a poll of the repo watches its directory (for tests and the demo). */
  async whenWatching(uri: string): Promise<void> {
    const state = this.stateOf(uri);
    while (!state.watching) await new Promise((r) => setImmediate(r));
    await state.watching;
  }

  heartbeat(): Promise<void> {
    return Promise.resolve();
  }

  async download(fileUrl: string): Promise<FileDownload> {
    // fileUrl is `local://<repo>/<relative path>`, made by this class: a path it listed.
    const m = /^local:\/\/([^/]+)\/(.+)$/.exec(fileUrl);
    const state = this.stateOf(repoUri(m?.[1] ?? ""));
    const rel = m?.[2];
    if (rel === undefined || !state.entries.has(rel)) {
      throw new PackratError(
        "PACKRAT_SOURCE",
        `${state.repo.source}: ${rel ?? fileUrl} is no longer there`,
        { hint: "it was removed or renamed after the listing; the next pass lists it again" },
      );
    }
    const full = path.join(state.repo.source, rel);
    const { size } = await fs.stat(full);
    return { size, body: createReadStream(full) };
  }

  async close(): Promise<void> {
    for (const state of this.repos.values()) {
      state.wake?.();
      await state.watcher?.close();
      state.watcher = null;
    }
  }

  // -------------------------------------------------------------------------------------------

  private stateOf(uri: string): RepoState {
    const state = this.repos.get(uri);
    if (!state) {
      throw new PackratError("PACKRAT_SOURCE", `no repo ${uri} in the configuration`);
    }
    return state;
  }

  private startWatcher(state: RepoState): void {
    if (state.watcher) return;
    const mark = () => {
      state.dirty = true;
      state.wake?.();
    };
    let ready = (): void => undefined;
    state.watching = new Promise((resolve) => (ready = resolve));
    state.watcher = chokidar
      .watch(state.repo.source, {
        ignoreInitial: true,
        ignored: (p) => IN_PROGRESS.test(path.basename(p)),
      })
      .on("all", mark)
      .on("ready", () => ready())
      .on("error", (err) =>
        // The full sync still lists the directory: a lost watcher delays changes, loses none.
        this.opts.log.warn(
          { repo: state.repo.name, err: describeError(err) },
          "watching the source directory failed; changes arrive with the full sync",
        ),
      );
  }

  private sleepUntilWoken(state: RepoState, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        state.wake = null;
        resolve();
      };
      const aborted = () => {
        clearTimeout(timer);
        state.wake = null;
        reject(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
      };
      const timer = setTimeout(done, ms);
      state.wake = done;
      if (signal?.aborted) aborted();
      else signal?.addEventListener("abort", aborted, { once: true });
    });
  }

  /** Names of packages whose files differ from what the last poll reported. */
  private changedNames(state: RepoState): string[] {
    const now = reportedKeys(state);
    const names = new Set<string>();
    for (const [rel, key] of now)
      if (state.reported.get(rel) !== key) names.add(key.split("\0")[0]!);
    for (const [rel, key] of state.reported) if (!now.has(rel)) names.add(key.split("\0")[0]!);
    state.reported = now;
    return [...names].sort();
  }

  private scan(state: RepoState, signal?: AbortSignal): Promise<void> {
    const run = state.chain.then(() => this.scanNow(state, signal));
    state.chain = run.catch(() => undefined);
    return run;
  }

  private async scanNow(state: RepoState, signal?: AbortSignal): Promise<void> {
    const { repo, layout } = state;
    let files: string[];
    try {
      files = await walk(repo.source);
    } catch (err) {
      throw new PackratError(
        "PACKRAT_SOURCE",
        `[repo ${repo.name}] source ${repo.source} cannot be read: ${describeError(err)}`,
        { hint: "create the directory, or fix source in mirror.conf", cause: err },
      );
    }
    const now = this.now();
    const present = new Set<string>();
    let unsettled = 0;
    const packages = layout.sourceFilePattern ?? layout.filenamePattern;
    for (const rel of files) {
      signal?.throwIfAborted();
      const base = path.basename(rel);
      if (IN_PROGRESS.test(base) || !packages.test(base)) continue;
      let st;
      try {
        st = await fs.lstat(path.join(repo.source, rel));
      } catch {
        continue; // gone since the walk
      }
      if (!st.isFile()) continue;
      present.add(rel);
      const stat = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
      const before = state.seen.get(rel);
      state.seen.set(rel, stat);
      // Complete: not written to for settleMs, and unchanged since the last look (if any).
      const settled =
        now - st.mtimeMs >= this.settleMs && (before === undefined || sameStat(before, stat));
      const taken = state.entries.get(rel);
      if (taken && sameStat(taken.stat, stat)) continue;
      if (!settled) {
        unsettled++;
        continue; // still being written: the entry taken earlier (if any) stands for now
      }
      state.entries.set(rel, { stat, entry: await this.take(state, rel, st.size) });
    }
    if (unsettled > 0) {
      this.opts.log.info(
        { repo: repo.name, files: unsettled, settleMs: this.settleMs },
        "files still being written in the source directory; taken once they have not changed for the settle time",
      );
    }
    for (const rel of [...state.entries.keys()]) if (!present.has(rel)) state.entries.delete(rel);
    for (const rel of [...state.seen.keys()]) if (!present.has(rel)) state.seen.delete(rel);
    state.unsettled = unsettled;
  }

  /** Hash and parse one settled file into a package file, or a skipped entry saying why. */
  private async take(state: RepoState, rel: string, size: number): Promise<Entry> {
    const { repo, layout } = state;
    const full = path.join(repo.source, rel);
    const filename = path.basename(rel);
    const invalid = (code: SkippedPackageFile["code"], reason: string): Entry => ({
      kind: "invalid",
      skipped: { uri: `${repoUri(repo.name)}${rel}`, fileUrl: rel, code, reason },
    });
    try {
      assertSafeFilename(filename, `${repo.source}/${rel}`);
    } catch (err) {
      return invalid("PACKRAT_UNSAFE_FILENAME", describeError(err));
    }
    let sha256: string;
    let identity;
    try {
      sha256 = await hashFile(full);
      const source = await openFileSource(full);
      try {
        identity = layout.identify(await layout.parse(source, filename), filename);
      } finally {
        await source.close();
      }
    } catch (err) {
      this.opts.log.warn(
        { repo: repo.name, file: rel, size, err: describeError(err) },
        "not a valid package; skipped",
      );
      return invalid("PACKRAT_PACKAGE_INVALID", describeError(err));
    }
    return {
      kind: "package",
      file: {
        uri: `${repoUri(repo.name)}${sha256}`,
        packageName: identity.name,
        distroVersionUri: distroVersionUri(repo.name),
        version: identity.version,
        type:
          layout.fileTypes[0] === "*" || layout.fileTypes[0] === undefined
            ? repo.format
            : layout.fileTypes[0],
        arch: identity.arch,
        fileUrl: `local://${repo.name}/${rel}`,
        filename,
        sha256,
        tags: [SOURCE_TAG],
        failedAt: null,
        deprecatedAt: null,
      },
    };
  }
}

/** At most this many quiet windows group one burst. */
const MAX_GROUPS = 10;

/** `relative path → package name \0 uri` of the files a repo lists now. */
function reportedKeys(state: RepoState): Map<string, string> {
  const keys = new Map<string, string>();
  for (const [rel, { entry }] of state.entries)
    if (entry.kind === "package") keys.set(rel, `${entry.file.packageName}\0${entry.file.uri}`);
  return keys;
}

function repoUri(name: string): string {
  return `/local/Repo:${name}:`;
}

function distroVersionUri(name: string): string {
  return `/local/DistroVersion:${name}:`;
}

/** The one distro version of a directory repo: where its format puts the packages. */
function distroVersionOf(repo: DirectoryRepo): DistroVersion {
  const base = { uri: distroVersionUri(repo.name), name: repo.name, releaseNames: "" };
  switch (repo.format) {
    case "apt":
      return { ...base, distro: "debian", version: repo.version ?? "stable", fileType: "deb" };
    case "yum":
      return {
        ...base,
        distro: repo.distro ?? "el",
        version: repo.version ?? "9",
        fileType: "rpm",
      };
    default:
      return { ...base, distro: "none", version: null, fileType: repo.format };
  }
}

function sameStat(a: Seen, b: Seen): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }, ms);
    const aborted = () => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
    };
    if (signal?.aborted) aborted();
    else signal?.addEventListener("abort", aborted, { once: true });
  });
}
