/**
 * The registry of repository formats. sync asks for a layout by manager_type and never learns
 * a format's details (aptly's PublishedStorage idea). Layouts are instances: each holds its
 * own render caches, so the agent makes one set per engine (createLayouts, in
 * agent/context.ts) and two engines in one process share nothing.
 */
import { createAptLayout } from "./apt.js";
import { dockerLayout } from "./docker.js";
import { jsonLayout } from "./json.js";
import { createPacmanLayout } from "./pacman.js";
import { pypiLayout } from "./pypi.js";
import type { LayoutOptions, LayoutSettings, OptionSpec, RepoLayout } from "./types.js";
import { createYumLayout } from "./yum.js";

/** Every format the agent publishes: one factory each (pypi, json and docker keep no state). */
const FACTORIES: readonly (() => RepoLayout)[] = [
  createAptLayout,
  createYumLayout,
  createPacmanLayout,
  () => pypiLayout,
  () => jsonLayout,
  () => dockerLayout,
];

/** One set of layout instances. */
export interface LayoutRegistry {
  /** The layout for a manager_type, or undefined for types the agent does not publish. */
  readonly layoutFor: (managerType: string) => RepoLayout | undefined;
  /** Every layout drops its render caches of repos not in `keep` (RepoLayout.forgetRepos). */
  readonly forgetRepos: (keep: ReadonlySet<string>) => void;
  /** Every layout of the set, in registry order (the order help and docs list them in). */
  readonly all: readonly RepoLayout[];
}

export function createLayouts(): LayoutRegistry {
  const layouts = new Map(
    FACTORIES.map((make) => {
      const layout = make();
      return [layout.managerType, layout] as const;
    }),
  );
  return {
    all: [...layouts.values()],
    layoutFor: (managerType) => layouts.get(managerType),
    forgetRepos: (keep) => {
      for (const layout of layouts.values()) layout.forgetRepos?.(keep);
    },
  };
}

/** A shared set, for what keeps no render state between calls: inspect, verify, tests. */
const SHARED = createLayouts();

/**
 * Every layout's options, merged: the [mirror] keys that belong to a format, by LayoutOptions
 * field. A field two layouts both declare is a programming error (one owner per key).
 */
export function layoutOptionSpecs(): Readonly<Record<keyof LayoutSettings, OptionSpec<unknown>>> {
  const merged: Partial<Record<keyof LayoutSettings, OptionSpec<unknown>>> = {};
  const owner = new Map<string, string>();
  for (const layout of SHARED.all) {
    for (const [field, spec] of Object.entries(layout.options)) {
      const first = owner.get(field);
      if (first !== undefined)
        throw new Error(
          `layout option ${field} is declared by both ${first} and ${layout.managerType}`,
        );
      owner.set(field, layout.managerType);
      merged[field as keyof LayoutSettings] = spec as OptionSpec<unknown>;
    }
  }
  return merged as Record<keyof LayoutSettings, OptionSpec<unknown>>;
}

/** The manager_type that declares a layout option (for documentation and messages). */
export function optionOwner(field: keyof LayoutSettings): string | undefined {
  return SHARED.all.find((l) => field in l.options)?.managerType;
}

/** Every layout option at its declared default (mirrorDescription: empty). */
export const DEFAULT_LAYOUT_OPTIONS: LayoutOptions = Object.freeze({
  ...(Object.fromEntries(
    Object.entries(layoutOptionSpecs()).map(([field, spec]) => [field, spec.default]),
  ) as unknown as LayoutSettings),
  mirrorDescription: "",
});

/** The shared layout for a manager_type (see createLayouts for one of your own). */
export function layoutFor(managerType: string): RepoLayout | undefined {
  return SHARED.layoutFor(managerType);
}

/** The shared layouts, in registry order. */
export function supportedLayouts(): readonly RepoLayout[] {
  return SHARED.all;
}

export function supportedManagerTypes(): string[] {
  return SHARED.all.map((l) => l.managerType);
}

/** The layout that reads a package file, by its name (for `inspect`). */
export function layoutForFilename(filename: string): RepoLayout | undefined {
  return SHARED.all.find((l) => l.filenamePattern.test(filename));
}

/** Does a package file of this type belong in a repo of this layout? */
export function layoutAccepts(layout: RepoLayout, fileType: string): boolean {
  return layout.fileTypes.includes("*") || layout.fileTypes.includes(fileType);
}
