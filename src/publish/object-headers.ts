/**
 * Content-Type and Cache-Control of each uploaded object. A bucket has no web-server config to
 * say these, so they travel with the object; a CDN in front of the bucket then needs no
 * invalidations (docs/operations.md, "Publishing to S3"):
 * - packages and content-addressed metadata (order 0) never change under their name: cached a
 *   year and `immutable`, so browsers and CDNs do not even revalidate;
 * - entry points (InRelease, repomd.xml, a pacman db, PyPI pages, ...) change with every
 *   generation: `no-cache`, the same as the shipped nginx and Apache configs. A cache may keep
 *   them but must revalidate each use (a cheap 304 from the bucket), never a fixed TTL: with
 *   max-age a CDN could hand out a pacman db of one generation and a .sig of the next, or
 *   Release beside another generation's Release.gpg, for as long as the TTL.
 */

export const IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable";
export const ENTRY_POINT_CACHE_CONTROL = "no-cache";

export function cacheControlFor(order: number): string {
  return order === 0 ? IMMUTABLE_CACHE_CONTROL : ENTRY_POINT_CACHE_CONTROL;
}

/** By the end of the name; the longest match wins (`.pkg.tar.zst` before `.zst`). */
const TYPES: readonly [string, string][] = [
  [".deb", "application/vnd.debian.binary-package"],
  [".udeb", "application/vnd.debian.binary-package"],
  [".ddeb", "application/vnd.debian.binary-package"],
  [".rpm", "application/x-rpm"],
  [".whl", "application/zip"],
  [".zip", "application/zip"],
  [".tar.gz", "application/gzip"],
  [".gz", "application/gzip"],
  [".xz", "application/x-xz"],
  [".zst", "application/zstd"],
  [".bz2", "application/x-bzip2"],
  [".html", "text/html; charset=utf-8"],
  [".json", "application/json"],
  [".xml", "application/xml"],
  [".asc", "application/pgp-signature"],
  [".sig", "application/pgp-signature"],
  [".gpg", "application/pgp-keys"],
  [".db", "application/octet-stream"],
  [".files", "application/octet-stream"],
];

/** Names with no telling extension that clients read as text. */
const TEXT_NAMES = new Set(["InRelease", "Release", "Packages", "Sources", "Contents", "repo-key"]);

export function contentTypeFor(key: string): string {
  if (key === "" || key.endsWith("/")) return "text/html; charset=utf-8";
  const base = key.slice(key.lastIndexOf("/") + 1);
  if (TEXT_NAMES.has(base)) return "text/plain; charset=utf-8";
  let best: [string, string] | undefined;
  for (const t of TYPES)
    if (base.endsWith(t[0]) && (best === undefined || t[0].length > best[0].length)) best = t;
  return best?.[1] ?? "application/octet-stream";
}

/**
 * Plain S3 has no index documents: a client that asks for `simple/pkg/` gets the object under
 * that very key. So every `…/index.html` is also published under its directory's key. Returns
 * that key, or null (`index.html` at the top has no key of its own under an empty prefix).
 */
export function directoryAliasOf(key: string): string | null {
  if (key === "index.html") return null;
  return key.endsWith("/index.html") ? key.slice(0, -"index.html".length) : null;
}
