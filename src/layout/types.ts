import type { Signer } from "../signing/signer.js";
import type { RepoChecker } from "./checks/types.js";

export type {
  CheckInput,
  CheckProblem,
  CheckResult,
  PackageInfo,
  RepoChecker,
  SignatureVerifier,
  TreeReader,
} from "./checks/types.js";
import type { DistroVersion, PackageFile, Repo } from "../types.js";
import type { ValueParser } from "../config-values.js";

/**
 * Random access to a package's bytes. Parsers take this, not a path, so layouts stay pure
 * (no fs) and read only what they need (a .deb's control.tar, an RPM's headers, a wheel's
 * central directory). The sync side implements it over a file handle; tests over a Buffer.
 */
export interface ByteSource {
  readonly size: number;
  /** Up to `length` bytes at `offset`; fewer only at the end of the data. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * The SHA-256 of these bytes, when the caller has checked it (sync: the file was hashed, or
   * vouched for by its fingerprint, or downloaded and verified, in this pass). A parser that
   * reports the file's SHA-256 may take it instead of hashing every byte again.
   */
  readonly verifiedSha256?: string;
}

/** A ByteSource over bytes in memory. */
export function bufferSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (offset, length) =>
      Promise.resolve(bytes.subarray(offset, Math.min(bytes.length, offset + length))),
  };
}

/**
 * Parsed package metadata: JSON-serialisable, cached in the state DB by the file's sha256 so
 * that each package is parsed once, ever. Its shape is the layout's own business.
 */
export type PackageMeta = Record<string, unknown>;

/**
 * Options layouts read. Each one but mirrorDescription is a [mirror] key that one layout owns
 * and declares in its `options` (key, parser, default, documentation); the agent builds the
 * config keys, their defaults and the example file's section from those declarations.
 */
export interface LayoutOptions {
  aptArchitectures: readonly string[];
  aptValidUntilSeconds: number | null;
  yumCompression: "gz" | "zstd";
  rpmChangelogLimit: number;
  signRpmPackages: boolean;
  /** pacman repo names by filesystem_dir. */
  pacmanRepoNames: Readonly<Record<string, string>>;
  /** The mirror's description ([mirror] description: apt's Origin/Label/Description). */
  mirrorDescription: string;
}

/** The layout options that are config keys of their own (all but mirrorDescription). */
export type LayoutSettings = Omit<LayoutOptions, "mirrorDescription">;

/** What an option's cross-key check may look at in the rest of [mirror]. */
export interface OptionContext {
  /** gpg_sign_key is set (or was written, even if its value was refused). */
  signing: boolean;
  /** full_sync_interval in seconds (its default when unset); null when its value was refused. */
  fullSyncInterval: number | null;
}

/**
 * One [mirror] key a layout owns. The config key is the field's snake_case
 * (`aptArchitectures` → `apt_architectures`).
 */
export interface OptionSpec<T> {
  parse: ValueParser<T>;
  /** The value when the key is not written (or written empty). */
  default: T;
  /** A valid value, for "add a line ..." hints. */
  example: string;
  /** A short noun phrase for messages ("the apt architectures"). */
  what: string;
  /**
   * The comment above the key in etc/mirror.conf.example (its "Default: ..." line included),
   * one line per array entry, each under 96 characters.
   */
  doc: readonly string[];
  /** A problem with this value given the rest of [mirror] (phrased as `expected ...`), or null. */
  check?: (value: NonNullable<T>, context: OptionContext) => string | null;
}

/** The options one layout owns, by LayoutOptions field. */
export type OptionSpecs = { readonly [F in keyof LayoutSettings]?: OptionSpec<LayoutSettings[F]> };

/** Where a package file sits, and what the layout needs to decide it. */
export interface PlacementInput {
  repo: Repo;
  file: PackageFile;
  distroVersion: DistroVersion;
  /** Every packrat arch present among the repo's files (pacman puts `all` files in each). */
  repoArches: readonly string[];
  options: LayoutOptions;
  /**
   * The file's path relative to its source directory, for a repo published in place (its
   * packages stay where the producer put them, the metadata is written beside them): the layout
   * places the file there and nowhere else, or throws PACKRAT_UNSAFE_FILENAME saying why it
   * cannot serve it from there. Absent for every other repo.
   */
  sourcePath?: string;
}

/** A package as a source without a master lists it (RepoLayout.identify). */
export interface PackageIdentity {
  name: string;
  version: string;
  /** In packrat's naming: x86_64, i386, arm64, all (others as the package says). */
  arch: string;
}

/** What a layout may look at when it says which paths it reserves. */
export interface ReservationContext {
  repo: Repo;
  /** The repo's directory relative to root_dir. */
  repoDir: string;
  options: LayoutOptions;
}

/** One package as it goes into a render: the master's record, where it sits, what it holds. */
export interface PublishedPackage {
  file: PackageFile;
  distroVersion: DistroVersion;
  /** Paths relative to the repo directory (placement order; the first is canonical). */
  paths: string[];
  /** Bytes on disk (after a derive rewrite, e.g. RPM signing). */
  size: number;
  /** SHA-256 of the bytes on disk (differs from file.sha256 only after a derive rewrite). */
  sha256: string;
  meta: PackageMeta;
  /**
   * Detached binary signature of the package file by the configured signer; present only for
   * layouts whose derive() makes one (pacman's `.sig` and %PGPSIG%). Sync makes it once per
   * (sha256, signing key) and caches it in the state DB (package_signatures).
   */
  signature?: Uint8Array;
}

/** What a layout derives from one package file's bytes (RepoLayout.derive). */
export interface DerivedArtifacts {
  /** Bytes to serve instead of the master's (an RPM with a header signature); absent: as listed. */
  bytes?: Uint8Array;
  /** A detached binary signature of the bytes served (pacman's `<file>.sig` and %PGPSIG%). */
  signature?: Uint8Array;
}

/**
 * The one hook for per-package artifacts (issue 17). Sync never knows which format wants what:
 * it asks `wants`, runs `run` once per content digest and signer, and caches the result (a
 * rewrite as the file on disk and its SHA-256 in the package file row, a signature in the
 * package_signatures table).
 */
export interface PackageDerivation {
  /**
   * What the layout derives under these options with this signer, or null for nothing.
   * `rewrite`: the served bytes differ from the master's, so sync derives while the download is
   * still a temp file and places the result; `signature`: sync hands it to render as
   * PublishedPackage.signature.
   */
  wants(
    options: LayoutOptions,
    signer: Signer | null,
  ): { rewrite: boolean; signature: boolean } | null;
  /**
   * Derive from one package file: the master's bytes when `wants` says rewrite (the signature,
   * if any, must then be of the rewritten bytes), else the bytes served.
   */
  run(
    source: ByteSource,
    filename: string,
    signer: Signer,
    options: LayoutOptions,
  ): Promise<DerivedArtifacts>;
}

export interface RenderInput {
  repo: Repo;
  /** The repo's distro versions, by URI. */
  distroVersions: ReadonlyMap<string, DistroVersion>;
  /** Sorted by file URI; the layout sorts as its format requires. */
  packages: readonly PublishedPackage[];
  signer: Signer | null;
  options: LayoutOptions;
  /** The generation's timestamp (Release Date, repomd revision...). */
  now: Date;
  /**
   * A generation that must be out fast (an incremental pass answering a tag): a layout may
   * leave out what is slow to make and that clients do not need while an alternative is listed
   * (apt: Packages.xz of a large index, Packages.gz being there). The engine publishes a
   * complete generation once the repo has been quiet for a moment.
   */
  quick?: boolean;
}

/**
 * A metadata file the publisher writes. Stages are switched in increasing order, each one
 * whole and fsynced before the next begins, so that every reference already resolves
 * (FIELD_NOTES §1): content-addressed files in stage 0, plain-name indexes after them,
 * signed entry points last.
 */
export interface RenderedFile {
  /** Relative to the repo directory, forward slashes, never `..` or absolute. */
  path: string;
  content: Uint8Array;
  /**
   * true: the path names its content (by-hash, checksum-named repodata); it is never
   * rewritten, and when a later generation drops it, it stays for metadata_grace_seconds.
   */
  contentAddressed: boolean;
  stage: number;
  /**
   * A file too large to render in memory (a docker layer): `content` is empty and the bytes are
   * `length` bytes at `offset` of the package file at `from` (relative to the repo directory),
   * whose SHA-256 is `sha256`. The publisher copies them, hashing as it copies, and refuses the
   * generation if the hash differs; a file with the same SHA-256 already published is linked,
   * not copied again. Only for content-addressed files.
   */
  extract?: {
    from: string;
    offset: number;
    length: number;
    sha256: string;
    /** Other package files holding the same bytes (a layer shared by images), tried in turn. */
    alternatives?: { from: string; offset: number }[];
  };
}

export interface RenderResult {
  files: RenderedFile[];
  /** Lines for the log (e.g. "publishing unsigned: no signing key configured"). */
  warnings: string[];
  /** A quick render left something out (see RenderInput.quick): render again without quick. */
  deferred?: boolean;
}

/**
 * How a web server or CDN may cache a format's files, as regular expressions on the request
 * path (PCRE, as nginx `map` and Apache `SetEnvIf` read them). The shipped nginx and Apache
 * configs are generated from these (test/unit/generated-files.test.ts).
 */
export interface CacheRules {
  /** Entry points, rewritten by every generation: caches must revalidate them (no-cache). */
  readonly entryPoints: readonly string[];
  /** Paths whose bytes never change under one name: cached a year, immutable. */
  readonly immutable: readonly string[];
}

export interface RepoLayout {
  readonly managerType: string;
  /** The format's name for people ("yum/dnf", "PyPI"), for help and docs. */
  readonly title: string;
  /** The package files it reads, for help and `inspect` hints (".rpm"); "" when none. */
  readonly fileKinds: string;
  readonly cacheRules: CacheRules;
  /** Package file names of this format, for `inspect` (which has a file but no repo). */
  readonly filenamePattern: RegExp;
  /**
   * Which files in a source directory (src/sync/directory-source.ts) are this format's packages,
   * when not filenamePattern (json: every file, though `inspect` has nothing to say of one).
   */
  readonly sourceFilePattern?: RegExp;
  /**
   * The client-view check (src/layout/checks): reads a generation as the format's clients do.
   * The publisher runs it before switching a generation in; `verify` on the published tree.
   */
  readonly check: RepoChecker;
  /** Package file types (PackageFile.type) this layout publishes; others are skipped. */
  readonly fileTypes: readonly string[];
  /**
   * The options this format reads. Only these go into a repo's inputs hash, so changing a
   * pacman option republishes pacman repos and leaves apt ones alone; the contract suite
   * checks a render does not change with any other option.
   */
  readonly optionsUsed: readonly (keyof LayoutOptions)[];
  /**
   * The [mirror] keys this format owns (each also in optionsUsed). The registry merges them:
   * config parsing, defaults (DEFAULT_LAYOUT_OPTIONS) and the example file come from here.
   */
  readonly options: OptionSpecs;
  /**
   * Package files are only the source of what the render extracts from them (RenderedFile
   * extract: docker's blobs), not served themselves: once a generation holding every extract of
   * a package file is published, the engine deletes the file and records, by its SHA-256, which
   * files it yielded. A later pass counts the package file as present while those files are
   * there with their hashes (fetching it again otherwise), so a repo takes its space once.
   */
  readonly dropsPackageFiles?: boolean;
  /**
   * Why a repo of this format cannot be published in place (PlacementInput.sourcePath); absent
   * when it can. The config refuses `publish = in-place` for such a format with this reason.
   */
  readonly notInPlace?: string;
  /** Where a package file goes, relative to the repo directory; first path canonical. */
  placePackage(input: PlacementInput): string[];
  /**
   * Does this path (relative to the repo directory) lie where the layout renders, or may one
   * day render, metadata: a metadata file, a directory of them, or a directory above one? The
   * sync side refuses a package placed there (src/sync/path-authority.ts), so that no package
   * replaces an index and no index a package, whatever names the master sends.
   */
  reservesPath(rel: string, context: ReservationContext): boolean;
  /** Parse a package's bytes; throws PackratError PACKRAT_PACKAGE_INVALID naming `filename`. */
  parse(source: ByteSource, filename: string): Promise<PackageMeta>;
  /**
   * The version of what parse() yields (absent: 1). Raise it when a parser change alters the
   * result for files already parsed: the state DB caches parses (and failures) by sha256 for
   * good, so only a new version makes files cached by an older agent be parsed again.
   */
  readonly metaVersion?: number;
  render(input: RenderInput): Promise<RenderResult>;
  /**
   * What the layout derives from each package file (PackageDerivation): served bytes that
   * differ from the master's (yum: RPMs with a header signature), a detached signature
   * (pacman), or both. Sync runs it once per content and signer and caches the result.
   */
  readonly derive?: PackageDerivation;
  /**
   * Drop what the layout keeps between renders (its render caches) for repos not in `keep`:
   * repos that left the mirror. Called after each full sync.
   */
  forgetRepos?(keep: ReadonlySet<string>): void;
  /**
   * Name, version and packrat architecture of a parsed package, read from the package itself
   * (control file, RPM header, .PKGINFO, wheel name), as dpkg-scanpackages and createrepo_c
   * do: what a source without a master (a directory) lists the file as.
   */
  identify(meta: PackageMeta, filename: string): PackageIdentity;
  /**
   * Where a repo from a source without a master (a directory, a bucket) keeps its packages:
   * the distro version it stands for, from its [repo NAME] `version` and `distro`. Absent: no
   * distro (distro "none", version null).
   */
  sourceDistroVersion?(given: {
    version?: string | undefined;
    distro?: string | undefined;
    /** The repo is published in place: its metadata goes at the top of the source directory. */
    inPlace?: boolean | undefined;
  }): {
    distro: string;
    version: string | null;
  };
  /** Human-readable index entry for `packrat-agent inspect` (e.g. a Packages stanza). */
  describe(meta: PackageMeta, filename: string): string;
}

/** The state DB's cache key for a layout's parsed metadata (see RepoLayout.metaVersion). */
export function metaCacheKey(layout: Pick<RepoLayout, "managerType" | "metaVersion">): string {
  const version = layout.metaVersion ?? 1;
  return version === 1 ? layout.managerType : `${layout.managerType}@${version}`;
}
