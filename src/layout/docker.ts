/**
 * The `docker` repository: every image archive the master holds (`<name>_<version>.tar`,
 * `docker save` / `podman save` output in either shape, see formats/docker-archive.ts) served
 * as a read-only registry tree (OCI distribution spec, pull only) under the repo directory:
 *
 *   v2/_root                               `{}` for `GET /v2/` (the API root)
 *   v2/_catalog                            `{"repositories": [...]}`
 *   v2/<name>/tags/list                    `{"name": ..., "tags": [...]}`
 *   v2/<name>/blobs/sha256:<hex>           config and layers, byte for byte as archived
 *   v2/<name>/manifests/sha256:<hex>       OCI image manifests
 *   v2/<name>/manifests/<tag>              the same bytes, by tag
 *   v2/<name>/_indexes/sha256:<hex>|<tag>  OCI image indexes (a name and version the master
 *                                          holds for more than one platform)
 *
 * Manifests are OCI image manifests and indexes (never Docker schema 1, which current docker
 * and podman refuse): docker (17.x on), podman, skopeo and containerd all pull them, and an OCI
 * manifest describes an uncompressed layer (`…layer.v1.tar`) as it is, so layers are served
 * with the bytes and digests the archive has, without recompressing. Indexes live apart from
 * manifests only so a static server can tell the two media types apart by path (etc/nginx,
 * etc/apache2). CI pulls with skopeo and podman; docker is not in CI.
 *
 * Tags: each version is a tag, and `latest` names the highest version in Debian version order
 * (formats/debian-version.ts: 1.10 > 1.9, 1.0~rc1 < 1.0) unless the master has a version
 * called `latest`.
 *
 * An archive is downloaded to `archives/<arch>/<file>`; blobs are byte ranges of it that the
 * publisher copies (RenderedFile.extract) and checks against their digest while copying; a blob
 * shared by several images and names is one file (hard links). Once published, the archive is
 * deleted (dropsPackageFiles): the disk holds each image's blobs once, and the state DB which
 * archive (by SHA-256) yielded which blobs.
 */
import { createHash } from "node:crypto";
import { PackratError } from "../errors.js";
import { checkDockerRepo } from "./checks/docker.js";
import {
  OCI_INDEX,
  OCI_MANIFEST,
  readImageArchive,
  type ArchiveImage,
  type ImageArchive,
} from "./formats/docker-archive.js";
import { compareDebianVersions } from "./formats/debian-version.js";
import { FormatError } from "./formats/format-error.js";
import type {
  PackageMeta,
  PlacementInput,
  RenderInput,
  RenderResult,
  RenderedFile,
  RepoLayout,
} from "./types.js";

/** distribution/reference's repository name (one path component per `/`). */
export const DOCKER_NAME_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
/** distribution/reference's tag. */
export const DOCKER_TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const FILENAME_RE = /^([^_/]+)_([^/]+)\.tar$/;

export const DOCKER_V2 = "v2";
const encoder = new TextEncoder();

/** The image name and tag a package file's name states, or a PackratError saying why not. */
export function dockerNameAndTag(filename: string): { name: string; tag: string } {
  const m = FILENAME_RE.exec(filename);
  const invalid = (why: string, hint: string) =>
    new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: ${why}`, { hint });
  if (!m)
    throw invalid(
      "a docker image file is named <name>_<version>.tar",
      "name the archive <image name>_<tag>.tar on the master",
    );
  const [, name, tag] = m as unknown as [string, string, string];
  if (!DOCKER_NAME_RE.test(name))
    throw invalid(
      `${JSON.stringify(name)} is not a valid image repository name`,
      "lowercase letters and digits, separated by single '.', '_' or '-'",
    );
  if (!DOCKER_TAG_RE.test(tag))
    throw invalid(
      `${JSON.stringify(tag)} is not a valid image tag`,
      "a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
    );
  return { name, tag };
}

/** Why a docker repo is never published in place. */
const NOT_IN_PLACE =
  "a docker registry serves blobs at content-addressed paths (v2/<name>/blobs/sha256:...), unpacked from the image archives and not the archives themselves";

function placePackage({ file, sourcePath }: PlacementInput): string[] {
  if (sourcePath !== undefined)
    throw new PackratError("PACKRAT_UNSAFE_FILENAME", `${file.filename}: ${NOT_IN_PLACE}`);
  dockerNameAndTag(file.filename);
  const arch = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(file.arch) ? file.arch : "unknown";
  return [`archives/${arch}/${file.filename}`];
}

async function parse(
  source: Parameters<RepoLayout["parse"]>[0],
  filename: string,
): Promise<PackageMeta> {
  dockerNameAndTag(filename);
  try {
    return (await readImageArchive(source)) as unknown as PackageMeta;
  } catch (err) {
    if (err instanceof FormatError)
      throw new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: ${err.message}`, {
        hint: "the file is not served; put a good image archive on the master",
        cause: err,
      });
    throw err;
  }
}

/** JSON with no insignificant whitespace and keys in the order given: the bytes digests name. */
function jsonBytes(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

interface Tagged {
  image: ArchiveImage;
  from: string;
  uri: string;
}

function platformKey(p: ArchiveImage["platform"]): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function renderSync(input: RenderInput): RenderResult {
  const warnings: string[] = [];
  /** name → tag → images (one per platform). */
  const names = new Map<string, Map<string, Tagged[]>>();
  for (const pkg of input.packages) {
    const { name, tag } = dockerNameAndTag(pkg.file.filename);
    const meta = pkg.meta as unknown as ImageArchive;
    const from = pkg.paths[0];
    if (from === undefined || !Array.isArray(meta.images)) continue;
    let tags = names.get(name);
    if (!tags) names.set(name, (tags = new Map<string, Tagged[]>()));
    let list = tags.get(tag);
    if (!list) tags.set(tag, (list = []));
    for (const image of meta.images) {
      const clash = list.find((t) => platformKey(t.image.platform) === platformKey(image.platform));
      if (clash) {
        if (clash.image.config.digest !== image.config.digest)
          warnings.push(
            `repo ${input.repo.name}: ${name}:${tag} for ${platformKey(image.platform)} is in ${clash.uri} and ${pkg.file.uri}; serving the first`,
          );
        continue;
      }
      list.push({ image, from, uri: pkg.file.uri });
    }
  }
  const files: RenderedFile[] = [];
  const add = (path: string, content: Uint8Array, contentAddressed: boolean, stage: number) =>
    files.push({ path, content, contentAddressed, stage });
  const sortedNames = [...names.keys()].sort();
  for (const name of sortedNames) {
    const base = `${DOCKER_V2}/${name}`;
    const tags = names.get(name)!;
    const blobs = new Map<string, RenderedFile>();
    const blob = (from: string, b: { digest: string; size: number; offset: number }) => {
      const known = blobs.get(b.digest)?.extract;
      if (known) {
        if (known.from !== from && !known.alternatives?.some((a) => a.from === from))
          (known.alternatives ??= []).push({ from, offset: b.offset });
        return;
      }
      blobs.set(b.digest, {
        path: `${base}/blobs/${b.digest}`,
        content: new Uint8Array(0),
        contentAddressed: true,
        stage: 0,
        extract: { from, offset: b.offset, length: b.size, sha256: b.digest.slice(7) },
      });
    };
    const byTag = new Map<string, { bytes: Uint8Array; index: boolean }>();
    const manifests: RenderedFile[] = [];
    for (const tag of [...tags.keys()].sort()) {
      const images = tags
        .get(tag)!
        .sort((a, b) => platformKey(a.image.platform).localeCompare(platformKey(b.image.platform)));
      const refs: { bytes: Uint8Array; digest: string; image: ArchiveImage }[] = [];
      for (const { image, from } of images) {
        blob(from, image.config);
        for (const layer of image.layers) blob(from, layer);
        const bytes = jsonBytes({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: {
            mediaType: image.config.mediaType,
            digest: image.config.digest,
            size: image.config.size,
          },
          layers: image.layers.map((l) => ({
            mediaType: l.mediaType,
            digest: l.digest,
            size: l.size,
          })),
        });
        const digest = `sha256:${sha256Hex(bytes)}`;
        refs.push({ bytes, digest, image });
        manifests.push({
          path: `${base}/manifests/${digest}`,
          content: bytes,
          contentAddressed: true,
          stage: 1,
        });
      }
      if (refs.length === 1) {
        byTag.set(tag, { bytes: refs[0]!.bytes, index: false });
        continue;
      }
      const index = jsonBytes({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: refs.map((r) => ({
          mediaType: OCI_MANIFEST,
          digest: r.digest,
          size: r.bytes.length,
          platform: r.image.platform,
        })),
      });
      manifests.push({
        path: `${base}/_indexes/sha256:${sha256Hex(index)}`,
        content: index,
        contentAddressed: true,
        stage: 2,
      });
      byTag.set(tag, { bytes: index, index: true });
    }
    if (!byTag.has("latest")) {
      const highest = [...byTag.keys()].sort(compareDebianVersions).at(-1);
      if (highest !== undefined) byTag.set("latest", byTag.get(highest)!);
    }
    files.push(...[...blobs.values()].sort((a, b) => (a.path < b.path ? -1 : 1)));
    // One manifest may serve several tags: each digest path once.
    const seen = new Set<string>();
    for (const m of manifests) {
      if (seen.has(m.path)) continue;
      seen.add(m.path);
      files.push(m);
    }
    const tagNames = [...byTag.keys()].sort();
    for (const tag of tagNames) {
      const t = byTag.get(tag)!;
      add(`${base}/${t.index ? "_indexes" : "manifests"}/${tag}`, t.bytes, false, 3);
    }
    add(`${base}/tags/list`, jsonBytes({ name, tags: tagNames }), false, 4);
  }
  add(`${DOCKER_V2}/_catalog`, jsonBytes({ repositories: sortedNames }), false, 5);
  add(`${DOCKER_V2}/_root`, jsonBytes({}), false, 5);
  return { files, warnings };
}

// eslint-disable-next-line @typescript-eslint/require-await -- the port is async; this render is not
async function render(input: RenderInput): Promise<RenderResult> {
  return renderSync(input);
}

function describe(meta: PackageMeta, filename: string): string {
  const archive = meta as unknown as ImageArchive;
  const { name, tag } = dockerNameAndTag(filename);
  const lines = [`${name}:${tag} (${archive.shape})`];
  for (const image of archive.images) {
    const size = image.layers.reduce((n, l) => n + l.size, 0);
    lines.push(
      `  ${platformKey(image.platform)} config ${image.config.digest}, ${image.layers.length} layer(s), ${size} bytes`,
    );
    for (const l of image.layers) lines.push(`    ${l.digest} ${l.size} ${l.mediaType}`);
  }
  return lines.join("\n");
}

export const dockerLayout: RepoLayout = {
  managerType: "docker",
  title: "docker (OCI registry)",
  fileKinds: "<name>_<tag>.tar (docker save / OCI archive)",
  // Served by a server of its own (etc/nginx/packrat-docker.conf); in the mirror's config,
  // blobs and manifests by digest never change, tags and lists are the default no-cache.
  cacheRules: {
    entryPoints: [],
    immutable: [String.raw`/v2/.+/(blobs|manifests)/sha256:[0-9a-f]{64}$`],
  },
  options: {},
  // packrat's PackageFile type for image archives (lib/info.py Docker).
  fileTypes: ["docker"],
  optionsUsed: [],
  // The archives are unpacked into blobs and not kept (about 1x the images' size on disk).
  dropsPackageFiles: true,
  notInPlace: NOT_IN_PLACE,
  filenamePattern: /^[^_/]+_[^/]+\.tar$/,
  check: checkDockerRepo,
  placePackage,
  // The registry tree; archives/ holds the package files themselves.
  reservesPath: (rel) => rel === DOCKER_V2 || rel.startsWith(`${DOCKER_V2}/`),
  parse,
  render,
  describe,
  // The platforms are read from the archive at render time; like the real master (which gives
  // every docker upload arch "all"), a source lists the file as "all".
  identify(_meta, filename) {
    const { name, tag } = dockerNameAndTag(filename);
    return { name, version: tag, arch: "all" };
  },
};
