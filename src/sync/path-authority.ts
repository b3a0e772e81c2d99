/**
 * The one place that decides which paths under root_dir belong to whom. Every path the agent
 * writes is one of four kinds, and no two may overlap:
 *
 * - the agent's own: the temp directory (TMP_DIR) and the exported public key files;
 * - the operator's: keep_file_list entries, never written or removed;
 * - a repo's directory (its filesystem_dir from the master), holding
 *   - package files, placed by the repo's layout, and
 *   - metadata, rendered by the layout (`RepoLayout.reservesPath` says where it may go).
 *
 * A master that names a repo directory after a reserved name, or a package after a metadata
 * file, is refused here, per repo or per file with a named error, before anything touches the
 * disk; every other repo and file goes on (issue: a package named `_repo_main/MANIFEST_all.json`
 * used to replace the json manifest; a repo dir `repo-key` made every sync fail).
 */
import { PackratError } from "../errors.js";
import type { LayoutOptions, RenderedFile, RepoLayout } from "../layout/types.js";
import type { Repo } from "../types.js";
import { TMP_DIR } from "./disk.js";
import { assertSafeRelativePath } from "./filename-guard.js";

export interface PathAuthoritySettings {
  /** Files the agent writes at root_dir itself (the public key exports), relative paths. */
  rootFiles: readonly string[];
  /** keep_file_list: exact paths, or directory prefixes ending with "/". */
  keep: readonly string[];
}

/** Is `a` the same path as `b`, or a directory above it (or below it)? */
function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

export class PathAuthority {
  /** Root-level names no repo directory may take, with the reason each is reserved. */
  private readonly reserved: { path: string; why: string }[];
  /** Repo directories claimed in this planning round: dir → repo name. */
  private readonly claims = new Map<string, { repo: string; published: boolean }>();

  constructor(settings: PathAuthoritySettings) {
    this.reserved = [
      { path: TMP_DIR, why: "the agent's temp directory" },
      ...settings.rootFiles.map((p) => ({ path: p, why: "the exported public key" })),
      ...settings.keep.map((k) => ({
        path: k.replace(/\/+$/, ""),
        why: "listed in keep_file_list",
      })),
    ].filter((r) => r.path !== "");
  }

  /** Forget the claims of the last round: call at the start of each planning round. */
  reset(): void {
    this.claims.clear();
  }

  /**
   * Check and claim a repo's directory. `published` is false for repos whose manager type the
   * agent does not publish (their directory is claimed only so that no published repo lands
   * in it: cleanup never touches it). Throws PACKRAT_UNSAFE_REPO_DIR naming the repo.
   */
  claimRepoDir(repo: Repo, published: boolean): string {
    const context = `repo ${repo.name} filesystem_dir`;
    let dir: string;
    try {
      dir = assertSafeRelativePath(repo.filesystemDir, context);
    } catch (err) {
      throw this.refusal(repo, (err as Error).message);
    }
    const dotted = dir.split("/").find((s) => s.startsWith("."));
    if (dotted !== undefined) {
      throw this.refusal(
        repo,
        `${context} ${JSON.stringify(dir)} has a segment starting with "." (${dotted}); such names are the agent's own (${TMP_DIR})`,
      );
    }
    const taken = this.reserved.find((r) => overlaps(dir, r.path));
    if (taken) {
      throw this.refusal(
        repo,
        `${context} ${JSON.stringify(dir)} overlaps ${JSON.stringify(taken.path)}, ${taken.why}`,
      );
    }
    const clash = [...this.claims].find(([other]) => overlaps(dir, other));
    if (clash) {
      throw this.refusal(
        repo,
        `${context} ${JSON.stringify(dir)} overlaps repo ${clash[1].repo}'s ${JSON.stringify(clash[0])}` +
          (clash[1].published ? "" : " (a repo this agent does not publish, left untouched)"),
      );
    }
    this.claims.set(dir, { repo: repo.name, published });
    return dir;
  }

  /**
   * The root-relative paths of a package file, from its layout's placement (relative to the
   * repo dir). Refuses (PACKRAT_UNSAFE_FILENAME) a path that is unsafe or that lies where the
   * layout renders or may render metadata: the package would replace the metadata, or the
   * metadata the package.
   */
  packagePaths(
    repo: Repo,
    dir: string,
    layout: RepoLayout,
    options: LayoutOptions,
    filename: string,
    placed: readonly string[],
  ): string[] {
    return placed.map((p) => {
      const rel = assertSafeRelativePath(p, `repo ${repo.name} file ${filename}`);
      if (layout.reservesPath(rel, { repo, repoDir: dir, options })) {
        throw new PackratError(
          "PACKRAT_UNSAFE_FILENAME",
          `repo ${repo.name}: package file ${filename} would be published at ${dir}/${rel}, where the ${layout.managerType} layout writes repository metadata`,
          {
            hint: "the file is skipped and the metadata stays; rename the package file on the master",
          },
        );
      }
      return `${dir}/${rel}`;
    });
  }

  /**
   * The last line of defence before metadata is written: no rendered file may be, or be under,
   * or be above, a package path of the same generation. A layout whose reservesPath is right
   * never trips this; one that is wrong fails its repo's publish instead of overwriting bytes.
   */
  static assertRenderedApart(
    repo: Repo,
    files: readonly RenderedFile[],
    packagePaths: readonly string[],
  ): void {
    if (packagePaths.length === 0 || files.length === 0) return;
    const packages = new Set(packagePaths);
    // Directories above each package path, so a metadata file can't be a package's directory.
    const packageDirs = new Set<string>();
    for (const p of packagePaths)
      for (let i = p.indexOf("/"); i > 0; i = p.indexOf("/", i + 1)) packageDirs.add(p.slice(0, i));
    for (const f of files) {
      let clash: string | undefined;
      if (packages.has(f.path) || packageDirs.has(f.path)) clash = f.path;
      for (
        let i = f.path.indexOf("/");
        clash === undefined && i > 0;
        i = f.path.indexOf("/", i + 1)
      )
        if (packages.has(f.path.slice(0, i))) clash = f.path.slice(0, i);
      if (clash !== undefined) {
        throw new PackratError(
          "PACKRAT_UNSAFE_FILENAME",
          `repo ${repo.name}: metadata ${f.path} and package file ${clash} overlap; the generation is not published`,
          {
            hint: "a bug in the layout's reservesPath: please report it; rename the package file on the master meanwhile",
          },
        );
      }
    }
  }

  private refusal(repo: Repo, message: string): PackratError {
    return new PackratError("PACKRAT_UNSAFE_REPO_DIR", message, {
      hint: `repo ${repo.name} is skipped and what it served stays; change its filesystem_dir on the master`,
    });
  }
}
