/**
 * A docker repo's client view, read as `docker pull` / skopeo read a registry: `v2/_catalog`
 * names the repositories; each one's `tags/list` names its tags; every tag resolves to an
 * image manifest (`manifests/<tag>`) or an image index (`_indexes/<tag>`, see layout/docker.ts);
 * every manifest an index names is there by digest and hashes to it; every blob a manifest
 * names (config and layers) is there with that size and SHA-256.
 */
import { Findings, decodeUtf8, errorText, readRequired, sha256Hex } from "./common.js";
import type { CheckInput, CheckResult } from "./types.js";

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(decodeUtf8(bytes) ?? "") as unknown;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function descriptorOf(v: unknown): Descriptor | null {
  if (!isObject(v)) return null;
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== "string" || typeof digest !== "string" || typeof size !== "number")
    return null;
  if (!DIGEST_RE.test(digest)) return null;
  return { mediaType, digest, size };
}

export async function checkDockerRepo(input: CheckInput): Promise<CheckResult> {
  const f = new Findings();
  const { reader } = input;
  if (!input.metadataPaths.includes("v2/_catalog")) {
    if (input.metadataPaths.length > 0)
      f.add("v2/_catalog", "missing (clients list names with it)");
    return f.result();
  }
  f.entryPoints++;
  const root = await readRequired(f, reader, "v2/_root", "GET /v2/ answers with it");
  if (root !== null && !isObject(parseJson(root))) f.add("v2/_root", "is not a JSON object");
  const catalogBytes = await readRequired(f, reader, "v2/_catalog", "it is published");
  if (catalogBytes === null) return f.result();
  const catalog = parseJson(catalogBytes);
  if (!isObject(catalog) || !Array.isArray(catalog.repositories)) {
    f.add("v2/_catalog", 'is not {"repositories": [...]}');
    return f.result();
  }
  const checkedBlobs = new Set<string>();
  const checkedManifests = new Set<string>();

  const checkManifest = async (base: string, bytes: Uint8Array, where: string) => {
    const doc = parseJson(bytes);
    if (!isObject(doc) || doc.schemaVersion !== 2 || doc.mediaType !== MANIFEST) {
      f.add(where, "is not an OCI image manifest (schemaVersion 2)");
      return;
    }
    const config = descriptorOf(doc.config);
    if (!config) f.add(where, "has no config descriptor");
    if (!Array.isArray(doc.layers)) f.add(where, "has no layers list");
    const blobs = [config, ...(Array.isArray(doc.layers) ? doc.layers.map(descriptorOf) : [])];
    for (const d of blobs) {
      if (d === null) {
        f.add(where, "names a blob with a malformed descriptor");
        continue;
      }
      const rel = `${base}/blobs/${d.digest}`;
      if (checkedBlobs.has(rel)) continue;
      checkedBlobs.add(rel);
      f.packages++;
      let info;
      try {
        info = await reader.packageInfo(rel);
      } catch (err) {
        f.add(rel, `cannot be read (${errorText(err)})`);
        continue;
      }
      if (info === null) f.add(rel, `missing (named by ${where})`);
      else if (info.size !== d.size) f.add(rel, `is ${info.size} bytes, ${where} says ${d.size}`);
      else if (`sha256:${info.sha256}` !== d.digest)
        f.add(rel, `SHA-256 is ${info.sha256}, its name says ${d.digest}`);
    }
  };

  /** A manifest or index by digest: present, hashing to its name. */
  const byDigest = async (rel: string, d: Descriptor, where: string) => {
    const bytes = await readRequired(f, reader, rel, `named by ${where}`);
    if (bytes === null) return null;
    if (`sha256:${sha256Hex(bytes)}` !== d.digest)
      f.add(rel, `SHA-256 is sha256:${sha256Hex(bytes)}, ${where} names ${d.digest}`);
    else if (bytes.length !== d.size)
      f.add(rel, `is ${bytes.length} bytes, ${where} says ${d.size}`);
    return bytes;
  };

  for (const name of catalog.repositories) {
    if (typeof name !== "string" || name.includes("..") || name.startsWith("/")) {
      f.add("v2/_catalog", `names ${JSON.stringify(name)}, not a repository name`);
      continue;
    }
    const base = `v2/${name}`;
    const listBytes = await readRequired(f, reader, `${base}/tags/list`, "_catalog names it");
    if (listBytes === null) continue;
    const list = parseJson(listBytes);
    if (!isObject(list) || list.name !== name || !Array.isArray(list.tags)) {
      f.add(`${base}/tags/list`, `is not {"name": ${JSON.stringify(name)}, "tags": [...]}`);
      continue;
    }
    for (const tag of list.tags) {
      if (typeof tag !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag)) {
        f.add(`${base}/tags/list`, `lists ${JSON.stringify(tag)}, not a tag`);
        continue;
      }
      const asManifest = await reader.read(`${base}/manifests/${tag}`);
      const asIndex = asManifest === null ? await reader.read(`${base}/_indexes/${tag}`) : null;
      if (asManifest === null && asIndex === null) {
        f.add(`${base}/manifests/${tag}`, "missing (tags/list names the tag)");
        continue;
      }
      const where = `${name}:${tag}`;
      const digest = `sha256:${sha256Hex((asManifest ?? asIndex)!)}`;
      // The tag's bytes are also served by digest (clients pull by digest after resolving).
      const digestRel = `${base}/${asManifest ? "manifests" : "_indexes"}/${digest}`;
      if (!checkedManifests.has(digestRel)) {
        checkedManifests.add(digestRel);
        const bytes = (asManifest ?? asIndex)!;
        await byDigest(digestRel, { mediaType: "", digest, size: bytes.length }, where);
      }
      if (asManifest) {
        await checkManifest(base, asManifest, where);
        continue;
      }
      const index = parseJson(asIndex!);
      if (!isObject(index) || index.mediaType !== INDEX || !Array.isArray(index.manifests)) {
        f.add(`${base}/_indexes/${tag}`, "is not an OCI image index");
        continue;
      }
      for (const raw of index.manifests) {
        const d = descriptorOf(raw);
        if (d === null || d.mediaType !== MANIFEST) {
          f.add(`${base}/_indexes/${tag}`, "names something that is not an image manifest");
          continue;
        }
        const rel = `${base}/manifests/${d.digest}`;
        if (checkedManifests.has(rel)) continue;
        checkedManifests.add(rel);
        const bytes = await byDigest(rel, d, where);
        if (bytes) await checkManifest(base, bytes, `${where} (${d.digest})`);
      }
    }
  }
  return f.result();
}
