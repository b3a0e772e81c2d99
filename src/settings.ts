/**
 * The agent's settings after mirror.conf is parsed and validated (src/agent/config.ts).
 * This is the one documented place for defaults of the keys this project added; the original
 * agent's keys keep their meaning. etc/mirror.conf.example documents every key.
 */
import type { LayoutSettings } from "./layout/types.js";

export interface PackratSettings {
  /** Master base URL, `http(s)://name[:port]`, no trailing slash. Required. */
  host: string;
  /** This mirror's name on the master. Required. */
  name: string;
  /**
   * The master user to log in as, when the master refuses anonymous reads; null = the mirror's
   * name. packrat has no user per mirror: this is one of its Django users.
   */
  username: string | null;
  /**
   * That user's password. The original agent read it and never used it: the agent reads
   * anonymously first and logs in only when the master refuses that.
   */
  psk: string | null;
  /** HTTP(S) proxy URL for every request to the master. */
  proxy: string | null;
}

export interface MirrorSettings {
  description: string;
  /** Absolute path of the published tree. Required. */
  rootDir: string;
  /** ID of the (sub)key to sign with: 8/16 hex key ID or a fingerprint; null = unsigned. */
  gpgSignKey: string | null;
  /** Absolute path of the SQLite state database. */
  stateDb: string;
  /** Seconds between full syncs. */
  fullSyncInterval: number;
  /** Paths relative to root_dir that cleanup never removes. */
  keepFileList: string[];

  // ---- keys added by this project (all optional) ----
  /** ASCII-armored secret key export holding gpg_sign_key. */
  gpgKeyFile: string | null;
  /** File holding the passphrase of a protected key. */
  gpgPassphraseFile: string | null;
  /** Basename of the exported public key: `<name>` (armored) and `<name>.gpg` (binary). */
  publicKeyName: string;
  /** Warn when the signing key expires within this many days. */
  keyExpiryWarnDays: number;
  /** Parallel downloads. */
  downloadConcurrency: number;
  /**
   * A download slower than this many bytes per second over download_min_rate_window seconds is
   * abandoned (curl's --speed-limit / --speed-time), and retried on a later pass with backoff.
   */
  downloadMinRate: number;
  downloadMinRateWindow: number;
  /** Each file's deadline: this many seconds plus its size / download_min_rate. */
  downloadDeadlineBase: number;
  /** Every Nth full sync re-hashes every file. */
  deepVerifyEvery: number;
  /** Refuse a sync that would remove more than this fraction of managed files. */
  maxRemovalRatio: number;
  /** Debounce for poll answers, per repo. */
  triggerDebounceMs: number;
  /** How long superseded metadata and dropped packages stay on disk. */
  metadataGraceSeconds: number;
  /** Long-poll timeout sent to the master (seconds); the HTTP timeout is this + 30. */
  pollTimeout: number;
  /** Timeout for every other request to the master (seconds). */
  requestTimeout: number;
  /** Watch root_dir with chokidar while `run` is going, to repair tampering quickly. */
  watchTree: boolean;
  // The format options (apt_architectures, yum_compression, ...) are [mirror] keys too, but
  // each layout owns its own (RepoLayout.options): they are in Settings.layouts.
  /**
   * `host:port` where bucket notifications for `s3://` sources arrive (RGW's push endpoint, an
   * SNS HTTP subscription); null = none (polls list the bucket when they time out).
   */
  sourceEventsListen: string | null;
  /** `host:port` for the Prometheus endpoint; null = off. */
  metricsListen: string | null;
  /** pino level. */
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  /** Publish package files the master marks failed (default no: a pipeline marked them bad). */
  publishFailed: boolean;
  /** Publish package files the master marks deprecated (default yes: still valid). */
  publishDeprecated: boolean;
}

/**
 * A `[repo NAME]` section. With a [packrat] master: per-repo overrides of [mirror] keys (NAME is
 * the repo's name on the master). Without one: the repo itself, its packages read from
 * `source` (src/sync/directory-source.ts), published under root_dir/NAME.
 */
export interface RepoSettings {
  publishFailed?: boolean;
  publishDeprecated?: boolean;
  /** The repository format (a registered layout's manager_type); only without [packrat]. */
  format?: string;
  /**
   * Where the packages are: an absolute directory path, or `s3://bucket/prefix/` (read with the
   * [s3] section's endpoint, region and credentials); only without [packrat].
   */
  source?: string;
  /** apt: the dists/ codename (default "stable"); yum: the release version (default "1"). */
  version?: string;
  /** yum: the distro directory (default "el"). */
  distro?: string;
  /**
   * root_dir (the default): packages copied to root_dir/NAME at the layout's paths. in-place:
   * the source directory (inside root_dir) is the served tree, metadata written beside the
   * packages, which stay where they are.
   */
  publish?: "root_dir" | "in-place";
}

/**
 * `[s3]`: publish the mirror into an S3-compatible bucket as well (src/publish). root_dir stays
 * the working tree; each generation is built and checked there first.
 */
export interface S3Settings {
  bucket: string;
  /** Key prefix: empty, or ending in "/" (a value without one gets it). */
  prefix: string;
  /** The S3 endpoint URL; null = AWS for `region`. */
  endpoint: string | null;
  region: string;
  /** Path-style URLs (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`). */
  pathStyle: boolean;
  /** Credentials in mirror.conf (only when the file is not readable by others); null = the AWS chain. */
  accessKeyId: string | null;
  secretAccessKey: string | null;
  /** A canned ACL on every object: `public-read` to serve the bucket over plain HTTP. */
  acl: "private" | "public-read" | null;
  /** Uploads at once. */
  uploadConcurrency: number;
}

export const S3_DEFAULTS: Readonly<Omit<S3Settings, "bucket">> = Object.freeze({
  prefix: "",
  endpoint: null,
  region: "us-east-1",
  pathStyle: false,
  accessKeyId: null,
  secretAccessKey: null,
  acl: null,
  uploadConcurrency: 8,
});

export interface Settings {
  /** Path of the file these settings came from, for messages. */
  source: string;
  /** The master; null when the repos are declared in [repo NAME] sections with a `source`. */
  packrat: PackratSettings | null;
  mirror: MirrorSettings;
  /**
   * The [mirror] keys the layouts own (RepoLayout.options), their defaults applied. Keyed by
   * LayoutOptions field; the registry (src/layout/index.ts) says which format owns which.
   */
  layouts: LayoutSettings;
  /** `[s3]`, when the file has that section. */
  s3: S3Settings | null;
  /** `[repo NAME]` sections, by repo name. */
  repos: Record<string, RepoSettings>;
}

/** Defaults of optional keys. The original agent's defaults are kept where it had one. */
export const MIRROR_DEFAULTS: Readonly<Omit<MirrorSettings, "rootDir">> = Object.freeze({
  description: "",
  gpgSignKey: null,
  stateDb: "/var/lib/packratAgent/state.db",
  fullSyncInterval: 900,
  keepFileList: [],
  gpgKeyFile: null,
  gpgPassphraseFile: null,
  publicKeyName: "repo-key",
  keyExpiryWarnDays: 30,
  downloadConcurrency: 4,
  downloadMinRate: 1024,
  downloadMinRateWindow: 30,
  downloadDeadlineBase: 120,
  deepVerifyEvery: 8,
  maxRemovalRatio: 0.5,
  triggerDebounceMs: 250,
  metadataGraceSeconds: 86400,
  pollTimeout: 30,
  requestTimeout: 30,
  watchTree: true,
  sourceEventsListen: null,
  metricsListen: null,
  logLevel: "info",
  publishFailed: false,
  publishDeprecated: true,
});
