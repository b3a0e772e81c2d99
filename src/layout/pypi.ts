/**
 * PyPI "simple" repositories: packages at the original agent's `packages/<first 6 chars of
 * the project>/<file>`, and the index in both forms, side by side, so that a web server can
 * pick one by content negotiation (etc/nginx/packrat-mirror.conf):
 * - PEP 503 HTML: `simple/index.html` and `simple/<normalized>/index.html`, links with a
 *   `#sha256=` fragment and `data-requires-python` (PEP 503/345) when the metadata has it.
 * - PEP 691 JSON (api-version 1.1, PEP 700 `versions` and `size`): `simple/index.json` and
 *   `simple/<normalized>/index.json`.
 * Project pages are entry points rewritten in place (pip revalidates them); they switch before
 * the root index that links to them. Nothing here is signed: pip checks the sha256 fragments.
 */
import { checkPypiRepo } from "./checks/pypi.js";
import { PackratError } from "../errors.js";
import {
  asPythonMeta,
  normalizeProjectName,
  parseDistFilename,
  readPythonDist,
} from "./formats/python-dist.js";
import type { PythonDistMeta } from "./formats/python-dist.js";
import type {
  PackageMeta,
  PlacementInput,
  PublishedPackage,
  RenderInput,
  RenderResult,
  RenderedFile,
  RepoLayout,
} from "./types.js";

export { normalizeProjectName };

const SAFE_SEGMENT = /^[A-Za-z0-9._-]+$/;

function placePackage(input: PlacementInput): string[] {
  // In place: where the producer put it (the simple index links to it by a relative URL).
  if (input.sourcePath !== undefined) return [input.sourcePath];
  const prefix = input.file.packageName.slice(0, 6);
  if (!SAFE_SEGMENT.test(prefix) || prefix === "." || prefix === "..") {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `package name ${JSON.stringify(input.file.packageName)} gives an unsafe directory ${JSON.stringify(prefix)}`,
      { hint: "PyPI package names are letters, digits, '.', '_' and '-'" },
    );
  }
  return [`packages/${prefix}/${input.file.filename}`];
}

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

interface ProjectFile {
  pkg: PublishedPackage;
  meta: PythonDistMeta;
  /** The version pip reads from the file name. */
  version: string;
  /** Relative to simple/<project>/. */
  url: string;
}

interface Project {
  normalized: string;
  /** The Name as the first file (by filename) declares it. */
  display: string;
  files: ProjectFile[];
}

function fileUrl(pkg: PublishedPackage): string {
  const canonical = pkg.paths[0];
  if (canonical === undefined) throw new Error(`${pkg.file.filename} has no path`);
  return `../../${canonical.split("/").map(encodeURIComponent).join("/")}`;
}

/** PEP 440-ish ordering for the `versions` list: numeric runs compare as numbers. */
function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true }) || (a < b ? -1 : a > b ? 1 : 0);
}

function projectPage(project: Project): string {
  const title = `Links for ${escapeHtml(project.display)}`;
  const links = project.files.map(({ pkg, meta, url }) => {
    const rp =
      meta.requiresPython === null
        ? ""
        : ` data-requires-python="${escapeHtml(meta.requiresPython)}"`;
    return `    <a href="${escapeHtml(url)}#sha256=${pkg.sha256}"${rp}>${escapeHtml(pkg.file.filename)}</a><br/>\n`;
  });
  return [
    "<!DOCTYPE html>\n<html>\n  <head>\n",
    '    <meta name="pypi:repository-version" content="1.1">\n',
    `    <title>${title}</title>\n  </head>\n  <body>\n    <h1>${title}</h1>\n`,
    ...links,
    "  </body>\n</html>\n",
  ].join("");
}

function projectJson(project: Project): string {
  const versions = [...new Set(project.files.map((f) => f.version))].sort(compareVersions);
  return `${JSON.stringify(
    {
      meta: { "api-version": "1.1" },
      name: project.normalized,
      versions,
      files: project.files.map(({ pkg, meta, url }) => ({
        filename: pkg.file.filename,
        url,
        hashes: { sha256: pkg.sha256 },
        ...(meta.requiresPython === null ? {} : { "requires-python": meta.requiresPython }),
        size: pkg.size,
      })),
    },
    null,
    2,
  )}\n`;
}

function rootPage(projects: readonly Project[]): string {
  const links = projects.map(
    (p) =>
      `    <a href="${escapeHtml(encodeURIComponent(p.normalized))}/">${escapeHtml(p.display)}</a><br/>\n`,
  );
  return [
    "<!DOCTYPE html>\n<html>\n  <head>\n",
    '    <meta name="pypi:repository-version" content="1.1">\n',
    "    <title>Simple index</title>\n  </head>\n  <body>\n",
    ...links,
    "  </body>\n</html>\n",
  ].join("");
}

function rootJson(projects: readonly Project[]): string {
  return `${JSON.stringify(
    { meta: { "api-version": "1.1" }, projects: projects.map((p) => ({ name: p.display })) },
    null,
    2,
  )}\n`;
}

function render(input: RenderInput): Promise<RenderResult> {
  const byProject = new Map<string, Project>();
  const sorted = [...input.packages].sort((a, b) =>
    a.file.filename < b.file.filename ? -1 : a.file.filename > b.file.filename ? 1 : 0,
  );
  const warnings: string[] = [];
  for (const pkg of sorted) {
    let meta: PythonDistMeta;
    try {
      meta = asPythonMeta(pkg.meta, pkg.file.filename);
    } catch (err) {
      // One bad record must not take the whole index down: leave it out and say so.
      warnings.push(`${(err as Error).message}; not listed`);
      continue;
    }
    // pip finds a file under the project its file name gives (PEP 427/503), whatever the
    // metadata inside says; decided here rather than from the parse, so metadata cached by
    // an older agent is listed the same way.
    const dist = parseDistFilename(pkg.file.filename, meta.declaredName ?? meta.name);
    if (dist === null) {
      warnings.push(
        `${pkg.file.filename}: pip reads no project and version from this file name; not listed`,
      );
      continue;
    }
    const normalized = normalizeProjectName(dist.project);
    const display = normalizeProjectName(meta.name) === normalized ? meta.name : dist.project;
    const project = byProject.get(normalized) ?? { normalized, display, files: [] };
    project.files.push({ pkg, meta, version: dist.version, url: fileUrl(pkg) });
    byProject.set(normalized, project);
  }
  const projects = [...byProject.values()].sort((a, b) =>
    a.normalized < b.normalized ? -1 : a.normalized > b.normalized ? 1 : 0,
  );
  const enc = new TextEncoder();
  const files: RenderedFile[] = [];
  const listed: Project[] = [];
  for (const project of projects) {
    if (!SAFE_SEGMENT.test(project.normalized)) {
      // Name fields are free text in the metadata; a page path must stay one segment.
      warnings.push(
        `${project.files.map((f) => f.pkg.file.filename).join(", ")}: project name ${JSON.stringify(project.display)} is not a valid Python project name; not listed`,
      );
      continue;
    }
    const dir = `simple/${project.normalized}`;
    files.push(
      {
        path: `${dir}/index.html`,
        content: enc.encode(projectPage(project)),
        contentAddressed: false,
        stage: 0,
      },
      {
        path: `${dir}/index.json`,
        content: enc.encode(projectJson(project)),
        contentAddressed: false,
        stage: 0,
      },
    );
    listed.push(project);
  }
  files.push(
    {
      path: "simple/index.html",
      content: enc.encode(rootPage(listed)),
      contentAddressed: false,
      stage: 1,
    },
    {
      path: "simple/index.json",
      content: enc.encode(rootJson(listed)),
      contentAddressed: false,
      stage: 1,
    },
  );
  return Promise.resolve({ files, warnings });
}

function describe(meta: PackageMeta, filename: string): string {
  const m = asPythonMeta(meta, filename);
  const lines = [
    `Filename: ${filename}`,
    `Kind: ${m.kind}`,
    `Name: ${m.name}`,
    `Normalized-Name: ${normalizeProjectName(m.name)}`,
    `Version: ${m.version}`,
  ];
  if (m.summary !== null) lines.push(`Summary: ${m.summary}`);
  if (m.requiresPython !== null) lines.push(`Requires-Python: ${m.requiresPython}`);
  for (const dep of Array.isArray(m.metadata["requires-dist"]) ? m.metadata["requires-dist"] : []) {
    lines.push(`Requires-Dist: ${dep}`);
  }
  return `${lines.join("\n")}\n`;
}

export const pypiLayout: RepoLayout = {
  managerType: "pypi",
  title: "PyPI",
  fileKinds: ".whl, sdist (.tar.gz, .zip)",
  // simple/ pages change with every generation; packages/ holds the files under their own names.
  cacheRules: { entryPoints: ["/simple/"], immutable: ["/packages/", String.raw`\.whl$`] },
  // 2: name and version from the file name, sdists in every archive pip unpacks, PKG-INFO
  // optional (files an older agent refused are parsed again).
  metaVersion: 2,
  // packrat's PackageFile type for wheels and sdists.
  fileTypes: ["python"],
  // Wheels, and sdists in every archive format pip unpacks.
  optionsUsed: [],
  options: {},
  filenamePattern: /\.(whl|tar\.gz|tgz|tar\.bz2|tbz|tar\.xz|txz|tar\.lzma|tlz|tar|zip)$/,
  check: checkPypiRepo,
  placePackage,
  // The simple index: every page is under simple/.
  reservesPath: (rel) => rel === "simple" || rel.startsWith("simple/"),
  parse: async (source, filename) =>
    (await readPythonDist(source, filename)) as unknown as PackageMeta,
  render,
  describe,
  identify(meta, filename) {
    const m = asPythonMeta(meta, filename);
    return { name: m.name, version: m.version, arch: "all" };
  },
};
