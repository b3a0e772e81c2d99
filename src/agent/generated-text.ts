/**
 * Text the agent ships that lists the formats: the format-options block of
 * etc/mirror.conf.example and the cache rules of etc/nginx and etc/apache2. Each is made from the
 * layout registry, so a new format (or a new option of one) reaches them without an edit here;
 * test/unit/generated-files.test.ts checks the shipped files hold exactly this text
 * (`npm run generate` rewrites them).
 */
import { keyOf } from "./config/keys.js";
import { supportedLayouts } from "../layout/index.js";
import type { OptionSpec, RepoLayout } from "../layout/types.js";

/** Lines that open and close a generated block inside a shipped file. */
export const BEGIN_MARK = "---- generated from the layout registry:";
export const END_MARK = "---- end of generated block ----";

/** The example line of an option: its default, or nothing when the default is "unset". */
function shownDefault(spec: OptionSpec<unknown>): string {
  const d = spec.default;
  if (d === null) return "";
  if (Array.isArray(d)) return d.join(", ");
  if (typeof d === "boolean") return d ? "yes" : "no";
  if (typeof d === "object") {
    return Object.entries(d as Record<string, string>)
      .map(([k, v]) => `${k}:${v}`)
      .join(", ");
  }
  return typeof d === "number" || typeof d === "string" ? String(d) : "";
}

/** The [mirror] keys each format owns, documented, commented out at their defaults. */
export function formatOptionsExample(layouts: readonly RepoLayout[] = supportedLayouts()): string {
  const blocks: string[] = [];
  for (const layout of layouts) {
    for (const [field, spec] of Object.entries(layout.options) as [string, OptionSpec<unknown>][]) {
      const value = shownDefault(spec);
      const doc = spec.doc.map((line) => `# ${line}`).join("\n");
      blocks.push(`${doc}\n#${keyOf(field)}:${value === "" ? "" : ` ${value}`}`);
    }
  }
  return blocks.join("\n\n");
}

function rules(layouts: readonly RepoLayout[], kind: "entryPoints" | "immutable"): string[] {
  return layouts.flatMap((l) => l.cacheRules[kind]);
}

/** nginx `map $uri $packrat_cache_control` body: entry points first (the first match wins). */
export function nginxCacheMap(layouts: readonly RepoLayout[] = supportedLayouts()): string {
  const width =
    Math.max(
      ...[...rules(layouts, "entryPoints"), ...rules(layouts, "immutable")].map((r) => r.length),
    ) + 4;
  const line = (re: string, value: string): string => `    ${`"~${re}"`.padEnd(width)} "${value}";`;
  return [
    `    ${"default".padEnd(width)} "no-cache";`,
    "    # -- entry points: revalidate every time (cheap: ETag / If-Modified-Since) --",
    ...rules(layouts, "entryPoints").map((re) => line(re, "no-cache")),
    "    # -- content-addressed: the name changes whenever the bytes do --",
    ...rules(layouts, "immutable").map((re) => line(re, "public, max-age=31536000, immutable")),
  ].join("\n");
}

/**
 * Apache `SetEnvIf` lines: the immutable flag is set by content-addressed paths and then
 * cleared by entry points, so an entry point wins as in the nginx map.
 */
export function apacheCacheRules(layouts: readonly RepoLayout[] = supportedLayouts()): string {
  return [
    `    SetEnvIf Request_URI "${rules(layouts, "immutable").join("|")}" packrat_immutable`,
    `    SetEnvIf Request_URI "${rules(layouts, "entryPoints").join("|")}" !packrat_immutable`,
  ].join("\n");
}

/** "apt, yum/dnf, pacman, PyPI and JSON": the formats, for help and headers. */
export function formatTitles(layouts: readonly RepoLayout[] = supportedLayouts()): string {
  const titles = layouts.map((l) => l.title);
  return titles.length < 2
    ? titles.join("")
    : `${titles.slice(0, -1).join(", ")} and ${titles[titles.length - 1]!}`;
}

/** ".deb, .rpm, ...": the package files `inspect` reads. */
export function inspectableKinds(layouts: readonly RepoLayout[] = supportedLayouts()): string {
  return layouts
    .map((l) => l.fileKinds)
    .filter((k) => k !== "")
    .join("; ");
}
