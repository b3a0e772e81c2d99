import path from "node:path";
import { PackratError } from "../errors.js";

/** The master's own rule for package filenames (docs/master-api.md). */
const SAFE_BASENAME = /^[0-9a-zA-Z._-]+$/;

/**
 * Refuse any filename from the master that is not a plain basename. The master enforces the
 * same pattern, but a master that lies must never make the agent write outside its tree.
 */
export function assertSafeFilename(name: string, context: string): string {
  if (!SAFE_BASENAME.test(name) || name === "." || name === ".." || name.startsWith(".")) {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${context}: filename ${JSON.stringify(name)} is not a safe basename (expected ^[0-9a-zA-Z._-]+$, not starting with ".")`,
      { hint: "the file is skipped; fix its name on the master" },
    );
  }
  return name;
}

const NORMAL_SAFE = /^[0-9a-zA-Z._+~@:-]+(?:\/[0-9a-zA-Z._+~@:-]+)*$/;
const DOT_SEGMENT = /(?:^|\/)\.\.?(?:\/|$)/;

/**
 * Check a relative path made of safe segments (a repo's filesystem_dir, a layout's output path)
 * and return it normalised with forward slashes.
 */
export function assertSafeRelativePath(rel: string, context: string): string {
  // Already normal (no empty segment) and of safe characters: the answer is `rel` itself when
  // no segment is "." or "..". One regex pass instead of a split per segment: a pass checks
  // every path of a 10,000-package repo (and a pacman repo's 10,000 .sig files) again.
  if (NORMAL_SAFE.test(rel) && !DOT_SEGMENT.test(rel)) return rel;
  const segments = rel.split("/").filter((s) => s !== "");
  const bad =
    rel.includes("\0") ||
    rel.includes("\\") ||
    rel.startsWith("/") ||
    segments.length === 0 ||
    segments.some((s) => s === "." || s === ".." || !/^[0-9a-zA-Z._+~@:-]+$/.test(s));
  if (bad) {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${context}: path ${JSON.stringify(rel)} is not a safe relative path (segments of [0-9a-zA-Z._+~@:-], no "." or "..")`,
    );
  }
  return segments.join("/");
}

/** Join a checked relative path onto root, and prove the result is still inside root. */
export function resolveInside(root: string, rel: string, context: string): string {
  const clean = assertSafeRelativePath(rel, context);
  const full = path.resolve(root, clean);
  const rootResolved = path.resolve(root);
  if (full !== rootResolved && !full.startsWith(rootResolved + path.sep)) {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${context}: ${JSON.stringify(rel)} resolves outside ${rootResolved}`,
    );
  }
  return full;
}
