/**
 * The registry of repository formats. sync asks for a layout by manager_type and never learns
 * a format's details (aptly's PublishedStorage idea).
 */
import { aptLayout } from "./apt.js";
import { jsonLayout } from "./json.js";
import { pacmanLayout } from "./pacman.js";
import { pypiLayout } from "./pypi.js";
import type { RepoLayout } from "./types.js";
import { yumLayout } from "./yum.js";

const LAYOUTS = new Map<string, RepoLayout>(
  [aptLayout, yumLayout, pacmanLayout, pypiLayout, jsonLayout].map((l) => [l.managerType, l]),
);

/** The layout for a manager_type, or undefined for types this agent does not publish (docker). */
export function layoutFor(managerType: string): RepoLayout | undefined {
  return LAYOUTS.get(managerType);
}

export function supportedManagerTypes(): string[] {
  return [...LAYOUTS.keys()].sort();
}

/** Every layout drops its render caches of repos not in `keep` (see RepoLayout.forgetRepos). */
export function forgetRepos(keep: ReadonlySet<string>): void {
  for (const layout of LAYOUTS.values()) layout.forgetRepos?.(keep);
}

/** The layout that reads a package file, by its name (for `inspect`). */
export function layoutForFilename(filename: string): RepoLayout | undefined {
  const rules: [RegExp, string][] = [
    [/\.[ud]?deb$/, "apt"],
    [/\.rpm$/, "yum"],
    [/\.pkg\.tar(\.[a-z0-9]+)?$/, "pacman"],
    [/\.(whl|tar\.gz|tgz|tar\.bz2|tbz|tar\.xz|txz|tar\.lzma|tlz|tar|zip)$/, "pypi"],
  ];
  const match = rules.find(([re]) => re.test(filename));
  return match ? LAYOUTS.get(match[1]) : undefined;
}

/** Does a package file of this type belong in a repo of this layout? */
export function layoutAccepts(layout: RepoLayout, fileType: string): boolean {
  return layout.fileTypes.includes("*") || layout.fileTypes.includes(fileType);
}
