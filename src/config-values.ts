/**
 * Parsers for single mirror.conf values: the agent's own keys (src/agent/config/keys.ts) and the
 * options each layout declares (RepoLayout.options). Each takes the interpolated, non-empty text
 * of one key and returns the typed value or what was expected, phrased to follow `key = "found": ` in a
 * message (`expected whole seconds, e.g. 900`). The number and boolean forms follow Python's
 * `int()`, `float()` and configparser's `getboolean()`, so values the original agent accepted
 * still parse.
 */
import { posix } from "node:path";

export type ValueResult<T> = { value: T } | { expected: string };
export type ValueParser<T> = (raw: string) => ValueResult<T>;

function ok<T>(value: T): ValueResult<T> {
  return { value };
}

function expected(text: string): { expected: string } {
  return { expected: text };
}

/** Free text; any value is valid. */
export function text(): ValueParser<string> {
  return (raw) => ok(raw);
}

/** Python's `int()` on a stripped string: optional sign, digits, `_` between digits. */
const PY_INT = /^[+-]?\d+(?:_\d+)*$/;
/** Python's `float()` for finite decimal forms (`.5`, `5.`, `1e-3`, `1_000.5`). */
const PY_FLOAT =
  /^[+-]?(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)(?:[eE][+-]?\d+(?:_\d+)*)?$/;

export interface IntegerOptions {
  min: number;
  max: number;
  /** What a number means, in the plural: "whole seconds", "a whole number of days". */
  unit: string;
  example: number;
}

export function integer(options: IntegerOptions): ValueParser<number> {
  const { min, max, unit, example } = options;
  return (raw) => {
    if (!PY_INT.test(raw)) return expected(`expected ${unit}, e.g. ${example}`);
    const n = Number(raw.replaceAll("_", ""));
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      return expected(`expected ${unit} from ${min} to ${max}, e.g. ${example}`);
    }
    return ok(n);
  };
}

export function fraction(options: { example: number }): ValueParser<number> {
  return (raw) => {
    const n = PY_FLOAT.test(raw) ? Number(raw.replaceAll("_", "")) : NaN;
    if (!(n >= 0 && n <= 1)) {
      return expected(`expected a fraction from 0 to 1, e.g. ${options.example}`);
    }
    return ok(n);
  };
}

/** configparser's BOOLEAN_STATES, compared case-insensitively like `getboolean()`. */
const BOOLEANS: Record<string, boolean> = {
  "1": true,
  yes: true,
  true: true,
  on: true,
  "0": false,
  no: false,
  false: false,
  off: false,
};

export function boolean(): ValueParser<boolean> {
  return (raw) => {
    const b = BOOLEANS[raw.toLowerCase()];
    return b === undefined ? expected("expected yes/no, true/false, on/off or 1/0") : ok(b);
  };
}

export function oneOf<T extends string>(choices: readonly T[]): ValueParser<T> {
  return (raw) => {
    const found = choices.find((c) => c === raw.toLowerCase());
    return found === undefined ? expected(`expected one of ${choices.join(", ")}`) : ok(found);
  };
}

/**
 * An absolute path, normalized (`//`, `/./` and a trailing `/` removed). `/` itself is refused:
 * every path key names a file or a directory the agent owns, and / is neither.
 */
export function absolutePath(example: string): ValueParser<string> {
  return (raw) => {
    if (!raw.startsWith("/") || raw.includes("\0") || raw.includes("\n")) {
      return expected(`expected an absolute path, e.g. ${example}`);
    }
    const normalized = posix.normalize(raw).replace(/\/+$/, "");
    if (normalized === "")
      return expected(`expected an absolute path other than /, e.g. ${example}`);
    return ok(normalized);
  };
}

/** A DNS name (underscores allowed, as container names have them), an IPv4 address or [IPv6]. */
const HOST_NAME = String.raw`(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*|\[[0-9A-Fa-f:.]+\])`;
const MASTER_URL = new RegExp(String.raw`^(https?)://(${HOST_NAME})(?::(\d{1,5}))?/?$`, "i");
const MASTER_EXPECTED =
  "expected http(s)://name[:port] with no path (the agent adds /api/v2/ itself), e.g. http://packrat.example.com:8080";

function validPort(port: string | undefined, allowZero = false): boolean {
  if (port === undefined) return true;
  const n = Number(port);
  return Number.isInteger(n) && n <= 65535 && (allowZero ? n >= 0 : n >= 1);
}

/** The master's base URL; one trailing slash is dropped, anything else after the port is refused. */
export function masterUrl(): ValueParser<string> {
  return (raw) => {
    const m = MASTER_URL.exec(raw);
    if (!raw.includes("://")) return expected(`${MASTER_EXPECTED} (the scheme is missing)`);
    if (!m || !validPort(m[3])) return expected(MASTER_EXPECTED);
    const scheme = (m[1] ?? "").toLowerCase();
    return ok(`${scheme}://${m[2] ?? ""}${m[3] === undefined ? "" : `:${m[3]}`}`);
  };
}

/** An HTTP(S) proxy URL; credentials in it are allowed (messages show it through redactUrl). */
export function proxyUrl(): ValueParser<string> {
  const text = "expected an http:// or https:// proxy URL, e.g. http://proxy.example.com:3128";
  return (raw) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return expected(text);
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
      return expected(text);
    }
    if (url.pathname !== "/" || url.search !== "" || url.hash !== "") return expected(text);
    return ok(raw);
  };
}

/**
 * An OpenPGP key ID (8 or 16 hex digits) or fingerprint (40 hex for v4, 64 for v6), any case,
 * optional `0x`; the spaces `gpg --fingerprint` prints between groups are accepted. Normalized to
 * upper case without `0x` or spaces.
 */
export function gpgKeyId(): ValueParser<string> {
  return (raw) => {
    const compact = raw.replace(/\s+/g, "").replace(/^0x/i, "");
    if (!/^[0-9A-Fa-f]+$/.test(compact) || ![8, 16, 40, 64].includes(compact.length)) {
      return expected(
        "expected a key ID of 8 or 16 hex digits or a 40/64-hex fingerprint, e.g. 4A9E8B1C or 0x1F2E3D4C5B6A7988",
      );
    }
    return ok(compact.toUpperCase());
  };
}

/** Items of a comma-separated list; newlines separate too, so continuation lines work as lists. */
export function listItems(raw: string): string[] {
  return raw
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** A file name with no directory part, safe to publish at the top of each repo. */
export function fileName(example: string): ValueParser<string> {
  return (raw) =>
    /^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$/.test(raw)
      ? ok(raw)
      : expected(`expected a file name without "/" or spaces, e.g. ${example}`);
}

/** Paths that cleanup keeps: relative to root_dir, or absolute under it (the original's form). */
export function keepPaths(): ValueParser<string[]> {
  return (raw) => {
    const out: string[] = [];
    for (const item of listItems(raw)) {
      if (item.includes("\0") || item.split("/").includes("..")) {
        return expected(
          `expected paths under root_dir separated by commas, without "..", e.g. repo-key, index.html`,
        );
      }
      const normalized = posix.normalize(item).replace(/\/+$/, "");
      // "." (or "./") would keep the whole tree, which turns cleanup off without saying so.
      if (normalized === "." || normalized === "") {
        return expected(
          `expected paths of files under root_dir, not root_dir itself, e.g. repo-key`,
        );
      }
      if (!out.includes(normalized)) out.push(normalized);
    }
    return ok(out);
  };
}

/** Debian architecture names as dpkg-architecture spells them. */
export function architectureList(): ValueParser<string[]> {
  return (raw) => {
    const items = listItems(raw);
    if (items.length === 0 || !items.every((a) => /^[a-z0-9][a-z0-9-]*$/.test(a))) {
      return expected("expected Debian architecture names separated by commas, e.g. amd64, arm64");
    }
    return ok([...new Set(items)]);
  };
}

const REPO_NAME = /^[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*$/;

/** `dir:name, dir2:name2`: the pacman repo name to publish each filesystem_dir under. */
export function pacmanRepoNames(): ValueParser<Record<string, string>> {
  const text =
    "expected filesystem_dir:repo-name pairs separated by commas, e.g. arch-prod:prod, arch-dev:dev";
  return (raw) => {
    const pairs: [string, string][] = [];
    for (const item of listItems(raw)) {
      const colon = item.indexOf(":");
      const dir = item.slice(0, colon).trim();
      const name = item.slice(colon + 1).trim();
      if (colon < 0 || !REPO_NAME.test(dir) || !REPO_NAME.test(name)) return expected(text);
      if (pairs.some(([d]) => d === dir)) {
        return expected(`${text} (each filesystem_dir once; ${dir} appears twice)`);
      }
      pairs.push([dir, name]);
    }
    // fromEntries defines own properties, so a dir named __proto__ cannot reach the prototype.
    return ok(Object.fromEntries(pairs));
  };
}

const LISTEN = new RegExp(String.raw`^(${HOST_NAME}):(\d{1,5})$`);

/** `host:port` to listen on; port 0 picks a free port (useful in tests). */
export function listenAddress(): ValueParser<string> {
  return (raw) => {
    const m = LISTEN.exec(raw);
    return m && validPort(m[2], true)
      ? ok(raw)
      : expected("expected host:port, e.g. 127.0.0.1:9100 or [::1]:9100");
  };
}

/** An S3 bucket name as AWS's rules have it (3-63 of a-z 0-9 . -, a letter or digit at each end). */
export function bucketName(): ValueParser<string> {
  return (raw) =>
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(raw) && !raw.includes("..")
      ? ok(raw)
      : expected(
          "expected an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, e.g. packages-example",
        );
}

/** A key prefix inside the bucket: `mirror` and `mirror/` both mean `mirror/`; "" is the top. */
export function keyPrefix(): ValueParser<string> {
  return (raw) => {
    const trimmed = raw.replace(/^\/+/, "").replace(/\/+$/, "");
    if (trimmed === "") return ok("");
    const parts = trimmed.split("/");
    if (
      parts.some((p) => p === "" || p === "." || p === "..") ||
      [...trimmed].some((c) => c < " " || c === "\\")
    )
      return expected(
        'expected a key prefix such as mirror/prod (no empty, "." or ".." parts, no control characters)',
      );
    return ok(`${trimmed}/`);
  };
}

/** The S3 endpoint: an http(s) URL with no path (a bucket name goes in [s3] bucket). */
export function endpointUrl(): ValueParser<string> {
  return (raw) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return expected("expected an http:// or https:// URL, e.g. https://s3.example.com:7480");
    }
    if (!["http:", "https:"].includes(url.protocol) || url.username || url.password)
      return expected(
        "expected an http:// or https:// URL without credentials, e.g. https://s3.example.com:7480",
      );
    if (url.pathname !== "/" || url.search || url.hash)
      return expected(
        "expected the endpoint alone, without a path (put the bucket in [s3] bucket and a path in [s3] prefix)",
      );
    return ok(`${url.protocol}//${url.host}`);
  };
}
