/**
 * The registry of repository formats. sync asks for a layout by manager_type and never learns
 * a format's details (aptly's PublishedStorage idea).
 */
import { jsonLayout } from "./json.js";
import type { RepoLayout } from "./types.js";

const LAYOUTS = new Map<string, RepoLayout>([[jsonLayout.managerType, jsonLayout]]);

export function registerLayout(layout: RepoLayout): void {
  LAYOUTS.set(layout.managerType, layout);
}

/** The layout for a manager_type, or undefined for types this agent does not publish (docker). */
export function layoutFor(managerType: string): RepoLayout | undefined {
  return LAYOUTS.get(managerType);
}

export function supportedManagerTypes(): string[] {
  return [...LAYOUTS.keys()].sort();
}

/** Does a package file of this type belong in a repo of this layout? */
export function layoutAccepts(layout: RepoLayout, fileType: string): boolean {
  return layout.fileTypes.includes("*") || layout.fileTypes.includes(fileType);
}
