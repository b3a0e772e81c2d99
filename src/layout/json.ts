/**
 * The `json` repository of the original agent: package files at `<package>/<filename>` and a
 * manifest per architecture at `_repo_main/MANIFEST_<arch>.json` (+ `.gpg`, a detached armored
 * signature), listing every file of that arch by package:
 * `{ "<package>": [{ version, path, type, sha256, size }] }`, keys sorted, 2-space indent, as
 * the original wrote it. `MANIFEST_all.json` is always written (clients of the original read it).
 */
import { checkJsonRepo } from "./checks/json.js";
import type { PackageMeta, RenderInput, RenderResult, RenderedFile, RepoLayout } from "./types.js";

const MANIFEST_DIR = "_repo_main";

interface ManifestEntry {
  version: string;
  path: string;
  type: string;
  sha256: string;
  size: number;
}

/** JSON.stringify with keys sorted at every level, like Python's json.dumps(sort_keys=True). */
function stableStringify(value: unknown): string {
  const sortKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sortKeys(value), null, 2);
}

async function render(input: RenderInput): Promise<RenderResult> {
  const byArch = new Map<string, Record<string, ManifestEntry[]>>([["all", {}]]);
  for (const pkg of input.packages) {
    const arch = pkg.file.arch;
    const manifest = byArch.get(arch) ?? {};
    byArch.set(arch, manifest);
    const path = pkg.paths[0];
    if (path === undefined) continue;
    (manifest[pkg.file.packageName] ??= []).push({
      version: pkg.file.version,
      path,
      type: pkg.file.type,
      sha256: pkg.sha256,
      size: pkg.size,
    });
  }
  const files: RenderedFile[] = [];
  const warnings: string[] = [];
  const encoder = new TextEncoder();
  for (const [arch, manifest] of [...byArch].sort(([a], [b]) => a.localeCompare(b))) {
    for (const entries of Object.values(manifest)) {
      entries.sort((a, b) => a.path.localeCompare(b.path));
    }
    const content = encoder.encode(stableStringify(manifest));
    const name = `${MANIFEST_DIR}/MANIFEST_${arch}.json`;
    // The manifest, then its signature, renamed back to back by the publisher. Clients read the
    // manifest first and the .gpg after it, so this order can only pair them wrongly if both
    // reads fall between the two renames (the reverse fails any read that spans the first).
    files.push({ path: name, content, contentAddressed: false, stage: 0 });
    if (input.signer) {
      const sig = await input.signer.signDetachedArmored(content);
      files.push({
        path: `${name}.gpg`,
        content: encoder.encode(sig),
        contentAddressed: false,
        stage: 1,
      });
    }
  }
  if (!input.signer)
    warnings.push(
      `repo ${input.repo.name}: manifests published unsigned (no signing key configured)`,
    );
  return { files, warnings };
}

export const jsonLayout: RepoLayout = {
  managerType: "json",
  title: "JSON",
  fileKinds: "",
  // The manifest is the entry point; the files are named by the master and never rewritten.
  cacheRules: { entryPoints: [String.raw`/MANIFEST_[^/]*\.json$`], immutable: [] },
  fileTypes: ["*"],
  // A json repo takes files of any kind; inspect has nothing to parse in them.
  optionsUsed: [],
  options: {},
  filenamePattern: /(?!)/,
  sourceFilePattern: /^[^.]/,
  check: checkJsonRepo,
  // In place: where the producer put it (the manifest names it by its path).
  placePackage: ({ file, sourcePath }) => [sourcePath ?? `${file.packageName}/${file.filename}`],
  // The manifests and their signatures; a package named like the directory would land in it.
  reservesPath: (rel) => rel === MANIFEST_DIR || rel.startsWith(`${MANIFEST_DIR}/`),
  parse: (): Promise<PackageMeta> => Promise.resolve({}),
  render,
  // packrat's convention for such files: name_version.ext (the whole stem when no "_").
  identify(_meta, filename) {
    const dot = filename.lastIndexOf(".");
    const stem = dot > 0 ? filename.slice(0, dot) : filename;
    const cut = stem.indexOf("_");
    return cut > 0
      ? { name: stem.slice(0, cut), version: stem.slice(cut + 1), arch: "all" }
      : { name: stem, version: "", arch: "all" };
  },
  describe: (_meta, filename) =>
    `${filename}: json repositories list files as they are; nothing to parse`,
};
