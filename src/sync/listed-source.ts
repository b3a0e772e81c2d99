/**
 * Repositories without a packrat master, for teams whose CI drops packages into a directory
 * (reprepro's and aptly's "incoming") or a bucket: one backend per repo says what objects there
 * are (directory-source.ts, bucket-source.ts); this class turns them into the master port
 * (MasterClient), so the engine plans from "what the source says each repo holds" and keeps
 * every guarantee it has for a master: copies are hashed against the listing, generations are
 * whole and signed, removals wait for the grace.
 *
 * - Each `[repo NAME]` with `format` and `source` is one repo, published at root_dir/NAME. Name,
 *   version and architecture come from the package itself (RepoLayout.identify: control file,
 *   RPM header, .PKGINFO, wheel name), as dpkg-scanpackages and createrepo_c read them.
 * - An object is taken once the backend says it is complete (a directory: unchanged for the
 *   settle time; a bucket: always, an object appears whole). Names being written (dot names,
 *   `*.tmp`, `*.part`...) are never read.
 * - Changes wake a poll (inotify for a directory, bucket notifications for a bucket); they are
 *   grouped until the source has been quiet for `quietMs` (a burst of 500 uploads makes a
 *   handful of publishes). A poll that times out lists the source anyway (cheap: stat or
 *   ListObjectsV2), and the full sync lists it too, so a lost event delays a change, never
 *   loses it.
 * - An object that is not a valid package is reported (skipped with its reason, as the master
 *   client reports an unsafe name) and never stops the others. Nothing in a source is ever
 *   written, moved or deleted.
 */
import type { Readable } from "node:stream";
import PQueue from "p-queue";
import path from "node:path";
import { describeError, PackratError } from "../errors.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../layout/index.js";
import type { ByteSource, LayoutOptions, RepoLayout } from "../layout/types.js";
import type { Logger } from "../log.js";
import type { DistroVersion, MirrorInfo, PackageFile, Repo } from "../types.js";
import { assertSafeFilename } from "./filename-guard.js";
import type {
  FileDownload,
  MasterClient,
  PackageFileListing,
  SkippedPackageFile,
} from "./master-types.js";

export interface SourceRepo {
  /** The repo's name, and its directory under root_dir. */
  name: string;
  /** A registered layout's manager_type. */
  format: string;
  /** apt: the codename (default "stable"); yum: the release version (default "9"). */
  version?: string | undefined;
  /** yum: the distro directory (default "el"). */
  distro?: string | undefined;
  /**
   * Published in place (`publish = in-place`): the source directory is the served tree, at
   * `publishDir` under root_dir. Packages are named where they lie (PlacementInput.sourcePath),
   * the metadata is written beside them, and the agent's own files there are never listed back.
   */
  inPlace?: boolean | undefined;
  /** The repo's directory under root_dir (default: its name). */
  publishDir?: string | undefined;
}

/** One object a backend lists. */
export interface SourceObject {
  /** Path relative to the source (forward slashes). */
  rel: string;
  size: number;
  /** Changes whenever the bytes may have (size, mtime and inode; an ETag). */
  stamp: string;
  /** Last modification (a directory's files; a bucket's objects appear whole and have none). */
  mtimeMs?: number;
}

/** The bytes of one object, for hashing and parsing. */
export interface OpenedObject {
  sha256: string;
  source: ByteSource & { close(): Promise<void> };
}

export interface SourceBackend {
  /** How messages name the source: `/srv/incoming/apt`, `s3://bucket/pool/`. */
  readonly where: string;
  /** Every object under the source (names being written left out). */
  list(signal?: AbortSignal): Promise<SourceObject[]>;
  /**
   * Is the object complete? `before` is what the previous look saw (undefined the first time).
   * Absent: always (a bucket's objects appear whole).
   */
  settled?(obj: SourceObject, before: SourceObject | undefined, now: number): boolean;
  /** Hash the object and give its bytes to the parser. */
  open(rel: string): Promise<OpenedObject>;
  /** Stream the object's bytes (the engine's download, hashed against the listing). */
  read(rel: string): Promise<{ size: number | null; body: Readable }>;
  /** Call `onChange` when something may have changed; null: the backend cannot tell. */
  watch?(onChange: () => void): { ready: Promise<void>; close(): Promise<void> };
}

export interface ListedSourceOptions {
  repos: readonly { repo: SourceRepo; backend: SourceBackend }[];
  description: string;
  layoutFor: (managerType: string) => RepoLayout | undefined;
  log: Logger;
  /** Events are grouped until the source has been quiet this long. */
  quietMs?: number;
  /** How long a poll waits before looking at unsettled objects again. */
  settleMs?: number;
  now?: () => number;
  /** What layouts' reservesPath look at (in-place repos); default: every option's default. */
  layoutOptions?: LayoutOptions;
  /** Called by close() after the watchers are closed (the bucket events listener). */
  onClose?: () => Promise<void> | undefined;
}

/** The tag every listed file carries and every repo holds (a source has no tags). */
export const SOURCE_TAG = "local";

/** Objects hashed and parsed at once during a scan. */
const TAKE_CONCURRENCY = 8;

/** At most this many quiet windows group one burst. */
const MAX_GROUPS = 10;

/**
 * The first window of a change to an idle source whose objects appear whole (a bucket; its
 * backend has no `settled`): a lone upload is in the index well within a second, while a burst
 * runs on past this window into the full ones and is grouped as before (issue 23: a new upload
 * in the index within 1 s, 500 uploads in a handful of publishes).
 */
const FIRST_WINDOW_MS = 200;

/** A source is idle (its next change gets FIRST_WINDOW_MS) once no change was reported for this long. */
const IDLE_AFTER_MS = 5000;

type Entry =
  { kind: "package"; file: PackageFile } | { kind: "invalid"; skipped: SkippedPackageFile };

interface RepoState {
  repo: SourceRepo;
  backend: SourceBackend;
  layout: RepoLayout;
  /** What the last look saw, by relative path. */
  seen: Map<string, SourceObject>;
  /** Taken objects by relative path, with the stamp they were taken at. */
  entries: Map<string, { stamp: string; entry: Entry }>;
  /** Objects seen but not yet complete (the next look decides). */
  unsettled: number;
  /** Scans of one repo never overlap. */
  chain: Promise<unknown>;
  watcher: { ready: Promise<void>; close(): Promise<void> } | null;
  /** Wakes a waiting poll. */
  wake: (() => void) | null;
  dirty: boolean;
  /** `package name \0 uri` by relative path, as last reported to a poll. */
  reported: Map<string, string>;
  /** When a poll last reported a change (0: never). */
  lastChangeAt: number;
  /** In place: producer files at metadata paths, already reported. */
  refusedInPlace: Set<string>;
}

export class ListedSource implements MasterClient {
  private readonly repos = new Map<string, RepoState>();
  private readonly quietMs: number;
  private readonly settleMs: number;
  protected readonly now: () => number;

  constructor(private readonly opts: ListedSourceOptions) {
    this.quietMs = opts.quietMs ?? 1000;
    this.settleMs = opts.settleMs ?? 2000;
    this.now = opts.now ?? Date.now;
    for (const { repo, backend } of opts.repos) {
      const layout = opts.layoutFor(repo.format);
      if (!layout) {
        throw new PackratError(
          "PACKRAT_CONFIG_INVALID",
          `[repo ${repo.name}] format ${repo.format} is not a format this agent publishes`,
        );
      }
      this.repos.set(repoUri(repo.name), {
        repo,
        backend,
        layout,
        seen: new Map(),
        entries: new Map(),
        unsettled: 0,
        chain: Promise.resolve(),
        watcher: null,
        wake: null,
        dirty: false,
        reported: new Map(),
        lastChangeAt: 0,
        refusedInPlace: new Set(),
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
        const { repo, backend } = state;
        return [
          {
            uri,
            name: repo.name,
            description: `${repo.format} packages from ${backend.where}`,
            filesystemDir: repo.publishDir ?? repo.name,
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
    return Promise.resolve(
      [...this.repos.values()].map(({ repo, layout }) => {
        const where = layout.sourceDistroVersion?.({
          version: repo.version,
          distro: repo.distro,
          inPlace: repo.inPlace === true,
        }) ?? { distro: "none", version: null };
        return {
          uri: distroVersionUri(repo.name),
          name: repo.name,
          releaseNames: "",
          fileType:
            layout.fileTypes[0] === "*" ? repo.format : (layout.fileTypes[0] ?? repo.format),
          ...where,
        };
      }),
    );
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
   * Waits for changes in the repo's source: resolves with the names of the packages whose
   * files appeared, changed or left, once the source has been quiet for quietMs. On timeout it
   * lists the source anyway and answers what that found ([] when nothing changed).
   */
  async poll(uri: string, timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    const state = this.stateOf(uri);
    this.startWatcher(state);
    const deadline = this.now() + timeoutSeconds * 1000;
    for (;;) {
      // A listing between two polls (an incremental pass asking for other names) may have
      // taken objects no poll has reported yet: report them first.
      const pending = this.changedNames(state);
      if (pending.length > 0) return pending;
      if (!state.dirty && state.unsettled === 0) {
        const left = deadline - this.now();
        if (left > 0) await this.sleepUntilWoken(state, left, signal);
        if (!state.dirty) {
          // The timeout: a cheap listing, which also catches an event that was lost.
          await this.scan(state, signal);
          return this.changedNames(state);
        }
      }
      if (state.dirty) {
        // Group a burst: until no event came for quietMs, but never longer than MAX_GROUPS
        // windows, so a steady trickle of uploads still publishes.
        const short =
          state.backend.settled === undefined && this.now() - state.lastChangeAt > IDLE_AFTER_MS;
        for (let windows = 0; state.dirty && windows < MAX_GROUPS; windows++) {
          state.dirty = false;
          await sleep(
            windows === 0 && short ? Math.min(FIRST_WINDOW_MS, this.quietMs) : this.quietMs,
            signal,
          );
        }
      } else {
        await sleep(this.settleMs, signal); // objects still being written: look again
      }
      await this.scan(state, signal);
      const changed = this.changedNames(state);
      if (changed.length > 0) return changed;
      if (this.now() >= deadline) return [];
    }
  }

  /** Resolves once a poll of the repo watches its source (for tests). */
  async whenWatching(uri: string): Promise<void> {
    const state = this.stateOf(uri);
    while (!state.watcher) await new Promise((r) => setImmediate(r));
    await state.watcher.ready;
  }

  heartbeat(): Promise<void> {
    return Promise.resolve();
  }

  async download(fileUrl: string): Promise<FileDownload> {
    // fileUrl is `local://<repo>/<relative path>`, made by this class: an object it listed.
    const m = /^local:\/\/([^/]+)\/(.+)$/.exec(fileUrl);
    const state = this.stateOf(repoUri(m?.[1] ?? ""));
    const rel = m?.[2];
    if (rel === undefined || !state.entries.has(rel)) {
      throw new PackratError(
        "PACKRAT_SOURCE",
        `${state.backend.where}: ${rel ?? fileUrl} is no longer there`,
        { hint: "it was removed or renamed after the listing; the next pass lists it again" },
      );
    }
    return state.backend.read(rel);
  }

  async close(): Promise<void> {
    for (const state of this.repos.values()) {
      state.wake?.();
      await state.watcher?.close();
      state.watcher = null;
    }
    await this.opts.onClose?.();
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
    if (state.watcher || !state.backend.watch) return;
    state.watcher = state.backend.watch(() => {
      state.dirty = true;
      state.wake?.();
    });
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
    if (names.size > 0) state.lastChangeAt = this.now();
    return [...names].sort();
  }

  private scan(state: RepoState, signal?: AbortSignal): Promise<void> {
    const run = state.chain.then(() => this.scanNow(state, signal));
    state.chain = run.catch(() => undefined);
    return run;
  }

  private async scanNow(state: RepoState, signal?: AbortSignal): Promise<void> {
    const { repo, layout, backend } = state;
    let objects: SourceObject[];
    try {
      objects = await backend.list(signal);
    } catch (err) {
      if (err instanceof PackratError) throw err;
      throw new PackratError(
        "PACKRAT_SOURCE",
        `[repo ${repo.name}] source ${backend.where} cannot be read: ${describeError(err)}`,
        { hint: "create it, or fix source in mirror.conf", cause: err },
      );
    }
    const now = this.now();
    const present = new Set<string>();
    let unsettled = 0;
    const packages = layout.sourceFilePattern ?? layout.filenamePattern;
    const reserved = repo.inPlace === true ? this.reservedIn(state) : null;
    // Objects are hashed and parsed TAKE_CONCURRENCY at a time (a bucket's GETs wait on the
    // network; a directory's reads on the disk), in listing order.
    const takes = new PQueue({ concurrency: TAKE_CONCURRENCY });
    const failed: { error?: Error } = {};
    for (const obj of objects) {
      signal?.throwIfAborted();
      if (!packages.test(path.posix.basename(obj.rel))) continue;
      const collision = reserved?.(obj.rel);
      if (collision === "agent") continue;
      present.add(obj.rel);
      if (collision !== undefined && collision !== null) {
        state.entries.set(obj.rel, { stamp: obj.stamp, entry: collision });
        continue;
      }
      const before = state.seen.get(obj.rel);
      state.seen.set(obj.rel, obj);
      const taken = state.entries.get(obj.rel);
      if (taken && taken.stamp === obj.stamp) continue;
      if (backend.settled && !backend.settled(obj, before, now)) {
        unsettled++;
        continue; // still being written: the entry taken earlier (if any) stands for now
      }
      void takes
        .add(async () => {
          const entry = await this.take(state, obj);
          // Gone between the listing and the read: as if not listed; the next scan sees.
          if (entry === null) present.delete(obj.rel);
          else state.entries.set(obj.rel, { stamp: obj.stamp, entry });
        })
        .catch((err: unknown) => {
          failed.error ??= err instanceof Error ? err : new Error(String(err));
        });
    }
    await takes.onIdle();
    if (failed.error) throw failed.error;
    if (unsettled > 0) {
      this.opts.log.info(
        { repo: repo.name, files: unsettled },
        "files still being written in the source; taken once they have not changed for the settle time",
      );
    }
    for (const rel of [...state.entries.keys()]) if (!present.has(rel)) state.entries.delete(rel);
    for (const rel of [...state.seen.keys()]) if (!present.has(rel)) state.seen.delete(rel);
    state.unsettled = unsettled;
  }

  /**
   * In place, the agent's metadata lies among the packages: a path where the layout writes
   * metadata is never a package. The agent's own files there are passed over quietly; one that
   * is named like a package is a producer's file in the agent's place: reported once (it is not
   * indexed, and left where it is).
   */
  private reservedIn(state: RepoState): (rel: string) => Entry | "agent" | null {
    const { repo, layout } = state;
    const context = {
      repo: { name: repo.name, managerType: repo.format } as Repo,
      repoDir: repo.publishDir ?? repo.name,
      options: this.opts.layoutOptions ?? DEFAULT_LAYOUT_OPTIONS,
    };
    return (rel) => {
      if (!layout.reservesPath(rel, context)) return null;
      if (!layout.filenamePattern.test(path.posix.basename(rel))) return "agent";
      const reason = `${state.backend.where}${rel} lies where the ${layout.managerType} layout writes the repo's metadata: not indexed, and left where it is; move it elsewhere in the source`;
      if (!state.refusedInPlace.has(rel)) {
        state.refusedInPlace.add(rel);
        this.opts.log.error({ repo: repo.name, file: rel }, reason);
      }
      return {
        kind: "invalid",
        skipped: {
          uri: `${repoUri(repo.name)}${rel}`,
          fileUrl: rel,
          code: "PACKRAT_UNSAFE_FILENAME",
          reason,
        },
      };
    };
  }

  /** Hash and parse one complete object into a package file, or a skipped entry saying why. */
  private async take(state: RepoState, obj: SourceObject): Promise<Entry | null> {
    const { repo, layout, backend } = state;
    const filename = path.posix.basename(obj.rel);
    const invalid = (code: SkippedPackageFile["code"], reason: string): Entry => ({
      kind: "invalid",
      skipped: { uri: `${repoUri(repo.name)}${obj.rel}`, fileUrl: obj.rel, code, reason },
    });
    try {
      assertSafeFilename(filename, `${backend.where}${obj.rel}`);
    } catch (err) {
      return invalid("PACKRAT_UNSAFE_FILENAME", describeError(err));
    }
    let sha256: string;
    let identity;
    try {
      const opened = await backend.open(obj.rel);
      sha256 = opened.sha256;
      try {
        identity = layout.identify(await layout.parse(opened.source, filename), filename);
      } finally {
        await opened.source.close();
      }
    } catch (err) {
      if (err instanceof PackratError && err.code === "PACKRAT_SOURCE") return null;
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      this.opts.log.warn(
        { repo: repo.name, file: obj.rel, size: obj.size, err: describeError(err) },
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
        fileUrl: `local://${repo.name}/${obj.rel}`,
        filename,
        sha256,
        tags: [SOURCE_TAG],
        failedAt: null,
        deprecatedAt: null,
      },
    };
  }
}

/**
 * The path relative to its source of a file this class listed (its fileUrl), or undefined for
 * a file from elsewhere (a master's). Where an in-place repo's package is served.
 */
export function sourcePathOf(file: Pick<PackageFile, "fileUrl">): string | undefined {
  const m = /^local:\/\/[^/]+\/(.+)$/.exec(file.fileUrl);
  return m?.[1];
}

/** Names producers write to before renaming into place: never read. */
export const IN_PROGRESS = /^\.|(\.tmp|\.part|\.partial|\.crdownload|~)$/;

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
