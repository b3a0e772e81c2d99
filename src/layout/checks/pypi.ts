/**
 * pip's view of a PEP 503 / PEP 691 repo: `simple/index.html` links each project page; each
 * project page (and its `index.json` twin, when published) links files whose `#sha256=` (or
 * `hashes.sha256`) and size match the bytes served at the link.
 */
import {
  Findings,
  checkPackageRef,
  decodeUtf8,
  errorText,
  joinRel,
  readRequired,
} from "./common.js";
import type { CheckInput, CheckResult } from "./types.js";

const entities: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" };
const unescape = (s: string) =>
  s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_m, e: string) => entities[e] ?? "'");

/** The href of every <a> in an HTML page, unescaped. */
export function anchorHrefs(html: string): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(/<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)')/gi))
    out.push(unescape(m[1] ?? m[2] ?? ""));
  return out;
}

/** A relative URL (path + optional fragment) to a repo path, as pip resolves it. */
function resolveUrl(baseDir: string, url: string): { rel: string | null; fragment: string } {
  const hash = url.indexOf("#");
  const pathPart = hash === -1 ? url : url.slice(0, hash);
  const fragment = hash === -1 ? "" : url.slice(hash + 1);
  if (/^[a-z][a-z0-9+.-]*:/i.test(pathPart) || pathPart.startsWith("/"))
    return { rel: null, fragment };
  let decoded: string;
  try {
    decoded = pathPart.split("/").map(decodeURIComponent).join("/");
  } catch {
    return { rel: null, fragment };
  }
  return { rel: joinRel(baseDir, decoded), fragment };
}

async function checkProject(dir: string, input: CheckInput, f: Findings): Promise<void> {
  const { reader } = input;
  const pagePath = `${dir}/index.html`;
  const page = await readRequired(f, reader, pagePath, "simple/index.html links it");
  if (page === null) return;
  const html = decodeUtf8(page);
  if (html === null) {
    f.add(pagePath, "is not valid UTF-8");
    return;
  }
  for (const href of anchorHrefs(html)) {
    const { rel, fragment } = resolveUrl(dir, href);
    const m = /^sha256=([0-9a-f]{64})$/i.exec(fragment);
    if (!m) f.add(pagePath, `link ${href} has no #sha256= fragment`);
    await checkPackageRef(f, reader, rel, { sha256: m?.[1] ?? null }, pagePath, href);
  }
  const jsonPath = `${dir}/index.json`;
  if (!input.metadataPaths.includes(jsonPath)) return;
  const json = await readRequired(f, reader, jsonPath, "it is published");
  if (json === null) return;
  let doc: { files?: { url?: string; hashes?: { sha256?: string }; size?: number }[] };
  try {
    doc = JSON.parse(decodeUtf8(json) ?? "") as typeof doc;
  } catch (err) {
    f.add(jsonPath, `is not valid JSON: ${errorText(err)}`);
    return;
  }
  for (const file of doc.files ?? []) {
    const url = String(file.url ?? "");
    const { rel } = resolveUrl(dir, url);
    if (!file.hashes?.sha256) f.add(jsonPath, `file ${url} has no hashes.sha256`);
    await checkPackageRef(
      f,
      reader,
      rel,
      {
        sha256: file.hashes?.sha256 ?? null,
        size: typeof file.size === "number" ? file.size : null,
      },
      jsonPath,
      url,
    );
  }
}

export async function checkPypiRepo(input: CheckInput): Promise<CheckResult> {
  const f = new Findings();
  if (input.metadataPaths.length === 0) return f.result();
  f.entryPoints++;
  const rootPath = "simple/index.html";
  const root = await readRequired(f, input.reader, rootPath, "pip reads it");
  if (root === null) return f.result();
  try {
    for (const href of anchorHrefs(decodeUtf8(root) ?? "")) {
      const { rel } = resolveUrl("simple", href);
      if (rel === null || !/^simple\/[^/]+$/.test(rel)) {
        f.add(rootPath, `link ${href} is not a project page under simple/`);
        continue;
      }
      await checkProject(rel, input, f);
    }
  } catch (err) {
    f.add(rootPath, `cannot be read as pip does: ${errorText(err)}`);
  }
  await checkRootJson(input, f);
  return f.result();
}

/**
 * The PEP 691 root (`simple/index.json`, served for `Accept: application/vnd.pypi.simple.v1+json`)
 * when the generation lists it: valid JSON whose projects each have a published page.
 */
async function checkRootJson(input: CheckInput, f: Findings): Promise<void> {
  const jsonPath = "simple/index.json";
  if (!input.metadataPaths.includes(jsonPath)) return;
  const bytes = await readRequired(f, input.reader, jsonPath, "the generation lists it");
  if (bytes === null) return;
  let doc: { projects?: { name?: unknown }[] };
  try {
    doc = JSON.parse(decodeUtf8(bytes) ?? "") as typeof doc;
  } catch (err) {
    f.add(jsonPath, `is not valid JSON: ${errorText(err)}`);
    return;
  }
  if (!Array.isArray(doc.projects)) {
    f.add(jsonPath, "has no projects list");
    return;
  }
  for (const project of doc.projects) {
    const name = typeof project.name === "string" ? project.name : "";
    const normalized = name.toLowerCase().replace(/[-_.]+/g, "-");
    if (!input.metadataPaths.includes(`simple/${normalized}/index.html`))
      f.add(jsonPath, `project ${JSON.stringify(name)} has no page under simple/`);
  }
}
