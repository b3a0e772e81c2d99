/**
 * One error type with a stable `code` that callers and tests match on (undici's advice),
 * a `hint` that tells the user the next step, and the underlying `cause`.
 * Every code is listed in docs/errors.md; test/unit/errors.test.ts keeps the two in step.
 * Bugs stay plain `Error`s: the CLI shows those as internal errors.
 */
export const ERROR_CODES = {
  PACKRAT_CONFIG_NOT_FOUND: "The configuration file does not exist or cannot be read.",
  PACKRAT_CONFIG_INVALID: "The configuration file has one or more invalid lines or values.",
  PACKRAT_USAGE: "The command line is not valid.",
  PACKRAT_API_VERSION: "The master speaks an API version this agent does not support.",
  PACKRAT_MASTER_HTTP: "The master answered with an HTTP error status.",
  PACKRAT_MASTER_UNREACHABLE:
    "The master could not be reached (connection refused, reset, DNS, TLS).",
  PACKRAT_MASTER_TIMEOUT: "The master did not answer within the time allowed.",
  PACKRAT_MASTER_PROTOCOL:
    "The master's answer does not follow the CInP contract (bad JSON, wrong shape).",
  PACKRAT_MASTER_AUTH:
    "The master refuses anonymous reads and the login, or the logged-in user may not read.",
  PACKRAT_MASTER_INCONSISTENT:
    "The master reported data that contradicts itself or earlier answers.",
  PACKRAT_UNSAFE_FILENAME:
    "A filename from the master is not a safe basename, or would land where repository metadata goes.",
  PACKRAT_UNSAFE_REPO_DIR:
    "A repo's filesystem_dir is unsafe or overlaps a reserved name or another repo's directory.",
  PACKRAT_HASH_MISMATCH: "Downloaded or on-disk bytes do not match the expected SHA-256.",
  PACKRAT_DOWNLOAD_FAILED: "A package file could not be downloaded after every retry.",
  PACKRAT_DOWNLOAD_STALLED:
    "A download was too slow (download_min_rate) or passed its deadline; abandoned.",
  PACKRAT_STATE_LOCKED: "Another agent holds the state database.",
  PACKRAT_STATE_DB: "The state database cannot be opened or migrated.",
  PACKRAT_SAFETY_VALVE: "A sync was refused because it would remove too much.",
  PACKRAT_PACKAGE_INVALID:
    "A package file cannot be parsed (corrupt, truncated, hostile or unsupported).",
  PACKRAT_SIGNING_KEY: "The signing key cannot be loaded or used.",
  PACKRAT_PUBLISH_CHECK: "A newly built generation failed its self-check and was not switched in.",
  PACKRAT_VERIFY_FAILED: "`verify` found problems in the published tree.",
  PACKRAT_UNSUPPORTED: "The repo's manager type is not supported by this agent.",
  PACKRAT_BUCKET:
    "The bucket (or other replica) refused a request, could not be reached, or holds something it should not.",
  PACKRAT_BUCKET_LOCKED:
    "Another agent publishes to the same bucket and prefix (its lock object is there).",
  PACKRAT_SOURCE: "A repo's source directory cannot be read, or a file it listed is gone.",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface PackratErrorOptions {
  hint?: string;
  cause?: unknown;
}

export class PackratError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: PackratErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PackratError";
    this.code = code;
    this.hint = options.hint;
  }
}

/** A hash check failed; callers read the fields to report and to decide what to delete. */
export class IntegrityError extends PackratError {
  readonly path: string;
  readonly expected: string;
  readonly actual: string;

  constructor(path: string, expected: string, actual: string, options: PackratErrorOptions = {}) {
    super("PACKRAT_HASH_MISMATCH", `${path}: SHA-256 is ${actual}, expected ${expected}`, options);
    this.name = "IntegrityError";
    this.path = path;
    this.expected = expected;
    this.actual = actual;
  }
}

export function isPackratError(err: unknown, code?: ErrorCode): err is PackratError {
  return err instanceof PackratError && (code === undefined || err.code === code);
}

/** A one-line description of any thrown value, for logs and CLI output. */
export function describeError(err: unknown): string {
  if (err instanceof PackratError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
