/**
 * Every mirror.conf key: its section, parser and an example. A key is the snake_case of its
 * Settings field (`rootDir` → `root_dir`). The mapped types make this table fail to compile when
 * src/settings.ts gains a field without a key here. Defaults are not here: they live in
 * MIRROR_DEFAULTS (src/settings.ts), the one place for them.
 */
import { layoutOptionSpecs, supportedManagerTypes } from "../../layout/index.js";
import { redactUrl } from "../../log.js";
import type { MirrorSettings, PackratSettings, RepoSettings, S3Settings } from "../../settings.js";
import {
  absolutePath,
  boolean,
  bucketName,
  endpointUrl,
  fileName,
  keyPrefix,
  fraction,
  gpgKeyId,
  integer,
  keepPaths,
  listenAddress,
  masterUrl,
  oneOf,
  proxyUrl,
  text,
  type ValueParser,
} from "../../config-values.js";

export interface KeySpec<T> {
  parse: ValueParser<T>;
  /** A valid value, for "add a line ..." hints. */
  example: string;
  /** What the key is, for messages about a missing key. */
  what: string;
  required?: boolean;
  /** Never shown in messages or logs. */
  secret?: boolean;
  /** How a value appears in messages, when it may hold credentials. */
  show?: (raw: string) => string;
}

export type SectionSpec<S> = { [F in keyof S]-?: KeySpec<NonNullable<S[F]>> };

/** Node's timers cannot wait longer than 2^31-1 ms; a longer delay would fire at once. */
const MAX_TIMER_SECONDS = 2_147_483;

export const PACKRAT_KEYS: SectionSpec<PackratSettings> = {
  host: {
    parse: masterUrl(),
    example: "http://packrat.example.com",
    what: "the packrat master's URL",
    required: true,
  },
  name: {
    parse: (raw) =>
      /^[^\s:/]+$/.test(raw)
        ? { value: raw }
        : {
            expected: `expected the mirror's name on the master, without spaces, ":" or "/", e.g. prod`,
          },
    example: "prod",
    what: "this mirror's name on the master",
    required: true,
  },
  username: {
    parse: (raw) =>
      /^[\w.@+-]+$/.test(raw)
        ? { value: raw }
        : {
            expected:
              "expected a user name of the master (letters, digits, @ . + - _), e.g. mirror",
          },
    example: "mirror",
    what: "the master user to log in as when it refuses anonymous reads",
  },
  psk: {
    parse: text(),
    example: "s3cret",
    what: "the password of [packrat] username on the master",
    secret: true,
  },
  proxy: {
    parse: proxyUrl(),
    example: "http://proxy.example.com:3128",
    what: "the HTTP proxy",
    show: redactUrl,
  },
};

export const MIRROR_KEYS: SectionSpec<MirrorSettings> = {
  description: { parse: text(), example: "Packrat Mirror", what: "a description" },
  rootDir: {
    parse: absolutePath("/var/www/repo"),
    example: "/var/www/repo",
    what: "the directory the web server publishes",
    required: true,
  },
  gpgSignKey: { parse: gpgKeyId(), example: "4A9E8B1C", what: "the signing key ID" },
  stateDb: {
    parse: absolutePath("/var/lib/packratAgent/state.db"),
    example: "/var/lib/packratAgent/state.db",
    what: "the state database",
  },
  fullSyncInterval: {
    parse: integer({ min: 60, max: MAX_TIMER_SECONDS, unit: "whole seconds", example: 900 }),
    example: "900",
    what: "seconds between full syncs",
  },
  keepFileList: { parse: keepPaths(), example: "repo-key, index.html", what: "files to keep" },
  gpgKeyFile: {
    parse: absolutePath("/etc/packrat/signing-key.asc"),
    example: "/etc/packrat/signing-key.asc",
    what: "the exported secret signing key",
  },
  gpgPassphraseFile: {
    parse: absolutePath("/etc/packrat/signing-key.pass"),
    example: "/etc/packrat/signing-key.pass",
    what: "the file holding the key's passphrase",
  },
  publicKeyName: {
    parse: fileName("repo-key"),
    example: "repo-key",
    what: "the published public key's file name",
  },
  keyExpiryWarnDays: {
    parse: integer({ min: 0, max: 3650, unit: "a whole number of days", example: 30 }),
    example: "30",
    what: "days of warning before the key expires",
  },
  downloadConcurrency: {
    parse: integer({ min: 1, max: 64, unit: "a whole number of downloads", example: 4 }),
    example: "4",
    what: "parallel downloads",
  },
  downloadMinRate: {
    parse: integer({ min: 1, max: 1_073_741_824, unit: "bytes per second", example: 1024 }),
    example: "1024",
    what: "the slowest download rate accepted",
  },
  downloadMinRateWindow: {
    parse: integer({ min: 1, max: 3600, unit: "whole seconds", example: 30 }),
    example: "30",
    what: "the window download_min_rate is measured over",
  },
  downloadDeadlineBase: {
    parse: integer({ min: 1, max: MAX_TIMER_SECONDS, unit: "whole seconds", example: 120 }),
    example: "120",
    what: "the fixed part of each download's deadline",
  },
  deepVerifyEvery: {
    parse: integer({ min: 1, max: 10_000, unit: "a whole number of full syncs", example: 8 }),
    example: "8",
    what: "full syncs between deep verifies",
  },
  maxRemovalRatio: {
    parse: fraction({ example: 0.5 }),
    example: "0.5",
    what: "the largest fraction of files one sync may remove",
  },
  triggerDebounceMs: {
    parse: integer({ min: 0, max: 60_000, unit: "whole milliseconds", example: 250 }),
    example: "250",
    what: "the poll debounce",
  },
  metadataGraceSeconds: {
    parse: integer({ min: 0, max: 31_536_000, unit: "whole seconds", example: 86400 }),
    example: "86400",
    what: "how long superseded files stay",
  },
  pollTimeout: {
    // The master raises anything under 10 to 10 (docs/master-api.md).
    parse: integer({ min: 10, max: 3600, unit: "whole seconds", example: 30 }),
    example: "30",
    what: "the long-poll timeout",
  },
  requestTimeout: {
    parse: integer({ min: 1, max: 3600, unit: "whole seconds", example: 30 }),
    example: "30",
    what: "the request timeout",
  },
  watchTree: { parse: boolean(), example: "yes", what: "whether to watch root_dir" },
  sourceEventsListen: {
    parse: listenAddress(),
    example: "127.0.0.1:8095",
    what: "where bucket notifications for s3:// sources are received",
  },
  metricsListen: {
    parse: listenAddress(),
    example: "127.0.0.1:9100",
    what: "the metrics listen address",
  },
  logLevel: {
    parse: oneOf(["fatal", "error", "warn", "info", "debug", "trace"] as const),
    example: "info",
    what: "the log level",
  },
  publishFailed: {
    parse: boolean(),
    example: "no",
    what: "whether to publish package files the master marks failed",
  },
  publishDeprecated: {
    parse: boolean(),
    example: "yes",
    what: "whether to publish package files the master marks deprecated",
  },
};

/** `[s3]`: read only when the file has that section (then bucket is required). */
export const S3_KEYS: SectionSpec<S3Settings> = {
  bucket: {
    parse: bucketName(),
    example: "packages-example",
    what: "the bucket to publish into",
    required: true,
  },
  prefix: { parse: keyPrefix(), example: "mirror/", what: "the key prefix inside the bucket" },
  endpoint: {
    parse: endpointUrl(),
    example: "https://s3.example.com",
    what: "the S3 endpoint (default: AWS for the region)",
  },
  region: {
    parse: (raw) =>
      /^[a-z0-9-]+$/.test(raw)
        ? { value: raw }
        : { expected: "expected a region name such as us-east-1" },
    example: "us-east-1",
    what: "the bucket's region",
  },
  pathStyle: { parse: boolean(), example: "yes", what: "whether to use path-style URLs" },
  accessKeyId: {
    parse: text(),
    example: "AKIAIOSFODNN7EXAMPLE",
    what: "the access key ID (default: the AWS credential chain)",
    secret: true,
  },
  secretAccessKey: {
    parse: text(),
    example: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    what: "the secret access key",
    secret: true,
  },
  acl: {
    parse: oneOf(["private", "public-read"] as const),
    example: "public-read",
    what: "the canned ACL of every object",
  },
  uploadConcurrency: {
    parse: integer({ min: 1, max: 64, unit: "a whole number of uploads", example: 8 }),
    example: "8",
    what: "parallel uploads",
  },
};

/** Keys of a `[repo NAME]` section: per-repo overrides of [mirror] keys of the same name. */
export const REPO_KEYS: SectionSpec<RepoSettings> = {
  publishFailed: MIRROR_KEYS.publishFailed,
  publishDeprecated: MIRROR_KEYS.publishDeprecated,
  format: {
    parse: oneOf(supportedManagerTypes()),
    example: "apt",
    what: "the repository format",
  },
  source: {
    parse: (raw) => {
      if (!raw.startsWith("s3://")) return absolutePath("/srv/incoming/prod-apt")(raw);
      // s3://bucket/prefix: normalized to s3://bucket/ or s3://bucket/prefix/.
      const [bucket = "", ...rest] = raw.slice("s3://".length).split("/");
      const b = bucketName()(bucket);
      if ("expected" in b) return { expected: `${b.expected} (in s3://BUCKET/PREFIX)` };
      const p = keyPrefix()(rest.join("/"));
      if ("expected" in p) return { expected: `${p.expected} (in s3://BUCKET/PREFIX)` };
      return { value: `s3://${b.value}/${p.value}` };
    },
    example: "/srv/incoming/prod-apt",
    what: "the directory (or s3://bucket/prefix) the repo's packages are read from",
  },
  version: {
    parse: (raw) =>
      /^[0-9A-Za-z._+~-]+$/.test(raw) && raw !== "." && raw !== ".."
        ? { value: raw }
        : { expected: "expected a codename or version of letters, digits and ._+~-, e.g. stable" },
    example: "stable",
    what: "the apt codename or yum release version",
  },
  publish: {
    parse: oneOf(["root_dir", "in-place"] as const),
    example: "in-place",
    what: "where the repo is published: root_dir (a copy under root_dir/NAME) or in-place (the source directory itself, inside root_dir, metadata beside the packages)",
  },
  distro: {
    parse: (raw) =>
      /^[0-9A-Za-z._+~-]+$/.test(raw) && raw !== "." && raw !== ".."
        ? { value: raw }
        : { expected: "expected a distro name of letters, digits and ._+~-, e.g. el" },
    example: "el",
    what: "the yum distro directory",
  },
};

/** The [repo NAME] keys that declare a repo of its own (no [packrat] master). */
export const SOURCE_REPO_KEYS = ["format", "source", "version", "distro", "publish"] as const;

/** `[repo prod-apt]` → `prod-apt`; null for any other section name. */
export function repoSectionName(section: string): string | null {
  const m = /^repo\s+(\S+)$/.exec(section);
  return m ? m[1]! : null;
}

/** `rootDir` → `root_dir`. */
export function keyOf(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export const SECTIONS = { packrat: PACKRAT_KEYS, mirror: MIRROR_KEYS, s3: S3_KEYS } as const;
export type SectionName = keyof typeof SECTIONS;
export const SECTION_NAMES = Object.keys(SECTIONS) as SectionName[];

/**
 * The [mirror] keys the layouts own (RepoLayout.options), as key specs. They are read from
 * [mirror] beside MIRROR_KEYS; a new format's options need no entry in this file.
 */
export const LAYOUT_KEYS: Readonly<Record<string, KeySpec<unknown>>> = layoutOptionSpecs();

/** Config keys of a section, in table order (for [mirror]: the layouts' keys after its own). */
export function keysOf(section: SectionName): string[] {
  const own = Object.keys(SECTIONS[section]).map(keyOf);
  return section === "mirror" ? [...own, ...Object.keys(LAYOUT_KEYS).map(keyOf)] : own;
}
