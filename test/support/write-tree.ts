/**
 * Test-only: lay a layout's output and its package files into a directory, so format tests can
 * run real clients against a tree without the sync engine. (The real publisher, with staging,
 * ordering and grace, is src/sync/publish.ts.)
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { RenderedFile } from "../../src/layout/types.js";

export async function writeTree(
  dir: string,
  files: readonly RenderedFile[],
  packages: readonly { paths: readonly string[]; content: Uint8Array }[] = [],
): Promise<void> {
  for (const pkg of packages) {
    for (const rel of pkg.paths) {
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), pkg.content);
    }
  }
  for (const file of [...files].sort((a, b) => a.stage - b.stage)) {
    await mkdir(path.dirname(path.join(dir, file.path)), { recursive: true });
    await writeFile(path.join(dir, file.path), file.content);
  }
}
