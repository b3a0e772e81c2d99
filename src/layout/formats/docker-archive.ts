/**
 * Image archives as `docker save` and `podman save` write them, read over a ByteSource
 * without holding a layer in memory:
 *
 * - the classic docker-archive: `manifest.json` (`[{ Config, RepoTags, Layers }]`) naming a
 *   config JSON and one tar per layer (`<id>/layer.tar`, podman's `<diffid>.tar`), and
 * - the OCI image layout newer `docker save` writes (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`),
 *   where `index.json` names image manifests (or an image index of them) by digest.
 *
 * When both are present (docker 25+ writes both), the OCI index is read. Every byte that ends
 * up served is checked here: the config's SHA-256 against its name, each OCI blob against its
 * descriptor, and each layer's content (decompressed when compressed) against the config's
 * `rootfs.diff_ids`, in order, one for one. Entry names with `..`, absolute names and links
 * are refused outright: an archive is never unpacked by name, but a hostile one must not pass
 * for a good one either. Errors are FormatError("docker-archive") naming the member.
 */
import { createHash } from "node:crypto";
import type { ByteSource } from "../types.js";
import { decompressedChunks, detectCompression, sourceChunks } from "./compress.js";
import { FormatError } from "./format-error.js";
import { normalizeTarName, readTarSource, type TarMember } from "./tar.js";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

/** Most members an archive may hold (a hostile archive of empty entries). */
const MAX_MEMBERS = 100_000;
/** JSON documents (manifest.json, index.json, configs, OCI manifests) larger than this are refused. */
const MAX_JSON = 8 << 20;
/** A layer's decompressed size cap while checking its diff_id (64 GiB). */
const MAX_LAYER_OUTPUT = 64 * 2 ** 30;

/** A blob of the image: where its bytes are in the archive, and what they are. */
export interface ArchiveBlob {
  /** `sha256:<hex>` of the bytes as stored (and served). */
  digest: string;
  size: number;
  /** Offset of the bytes in the archive. */
  offset: number;
  mediaType: string;
}

export interface ArchiveLayer extends ArchiveBlob {
  /** The config's diff_id for it: the digest of the uncompressed layer tar. */
  diffId: string;
}

export interface ArchiveImage {
  /** RepoTags as the archive records them (informational; the file name decides the tag). */
  repoTags: string[];
  config: ArchiveBlob;
  layers: ArchiveLayer[];
  platform: { os: string; architecture: string; variant?: string };
}

export interface ImageArchive {
  shape: "docker-archive" | "oci-layout";
  images: ArchiveImage[];
}

function archiveError(message: string, member?: TarMember): FormatError {
  return new FormatError(
    "docker-archive",
    member ? `${member.name}: ${message}` : message,
    member ? { offset: member.offset } : {},
  );
}

/** A view of `length` bytes at `offset` of `source`. */
export function rangeSource(source: ByteSource, offset: number, length: number): ByteSource {
  return {
    size: length,
    read: (at, n) => source.read(offset + at, Math.max(0, Math.min(n, length - at))),
  };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A member's name as a relative path, or an error for `..`, absolute names and odd ones. */
function safeName(member: TarMember): string {
  const raw = member.name;
  if (raw.startsWith("/")) throw archiveError("absolute entry name", member);
  if (raw.includes("\\") || raw.includes("\0"))
    throw archiveError("entry name with \\ or NUL", member);
  const name = normalizeTarName(raw).replace(/\/+$/, "");
  const parts = name.split("/");
  if (parts.includes("..")) throw archiveError("entry name with ..", member);
  return parts.filter((p) => p !== "" && p !== ".").join("/");
}

function parseJson(bytes: Uint8Array, what: string, member?: TarMember): unknown {
  try {
    return JSON.parse(utf8.decode(bytes)) as unknown;
  } catch (err) {
    throw archiveError(`${what} is not valid JSON: ${(err as Error).message}`, member);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

function dirOf(name: string): string {
  const i = name.lastIndexOf("/");
  return i === -1 ? "" : name.slice(0, i);
}

/** `target` resolved against `dir` inside the archive, or null if it leaves it (or is absolute). */
function joinInside(dir: string, target: string): string | null {
  if (target.startsWith("/")) return null;
  const out = dir === "" ? [] : dir.split("/");
  for (const seg of target.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(seg);
  }
  return out.join("/");
}

function sha256Of(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Read an archive's structure and check every digest. Throws FormatError("docker-archive"). */
export async function readImageArchive(source: ByteSource): Promise<ImageArchive> {
  const files = new Map<string, TarMember>();
  const small = new Map<string, Uint8Array>();
  const links = new Set<string>();
  // Only the top-level documents are kept while listing; configs and OCI blobs are read when
  // named (a hostile archive of many large .json members must not fill memory).
  const wantSmall = (name: string) =>
    name === "manifest.json" || name === "index.json" || name === "oci-layout";
  try {
    await readTarSource(source, {
      maxMembers: MAX_MEMBERS,
      maxContent: MAX_JSON,
      wantContent: (m) => m.type === "file" && wantSmall(safeName(m)),
      onMember: (m, content) => {
        const name = safeName(m);
        if (m.type === "symlink" || m.type === "hardlink") {
          // podman and older docker write the legacy v1 layout beside manifest.json, its
          // `<id>/layer.tar` a link to the real layer: tolerated, never followed, and refused
          // if it points outside the archive or if manifest.json names it.
          const target = m.linkName ?? "";
          const resolved = joinInside(m.type === "symlink" ? dirOf(name) : "", target);
          if (resolved === null)
            throw archiveError(`link to ${JSON.stringify(target)}, outside the archive`, m);
          links.add(name);
          return;
        }
        if (m.type === "directory") return;
        if (m.type !== "file") throw archiveError(`entry of tar type ${m.typeflag}`, m);
        if (files.has(name)) throw archiveError("entry appears twice", m);
        files.set(name, m);
        if (content) small.set(name, content);
      },
    });
  } catch (err) {
    if (err instanceof FormatError && err.code === "tar")
      throw new FormatError("docker-archive", `not an image archive (tar: ${err.message})`, {
        ...(err.offset === undefined ? {} : { offset: err.offset }),
        cause: err,
      });
    throw err;
  }
  const archive = files.has("index.json")
    ? await readOciLayout(source, files, small, links)
    : files.has("manifest.json")
      ? await readDockerArchive(source, files, small, links)
      : null;
  if (archive === null)
    throw archiveError(
      "not an image archive: neither manifest.json (docker-archive) nor index.json (OCI layout) at its top",
    );
  if (archive.images.length === 0) throw archiveError("the archive holds no image");
  return archive;
}

/** A member's bytes (small members were kept while listing; others are read now, bounded). */
async function memberBytes(
  source: ByteSource,
  small: ReadonlyMap<string, Uint8Array>,
  member: TarMember,
  name: string,
): Promise<Uint8Array> {
  const kept = small.get(name);
  if (kept) return kept;
  if (member.size > MAX_JSON)
    throw archiveError(
      `${member.size} bytes, over the ${MAX_JSON} a JSON document may have`,
      member,
    );
  return source.read(member.offset + 512, member.size);
}

interface Config {
  diffIds: string[];
  platform: ArchiveImage["platform"];
}

function readConfig(bytes: Uint8Array, member: TarMember): Config {
  const doc = parseJson(bytes, "image config", member);
  if (!isObject(doc)) throw archiveError("image config is not a JSON object", member);
  const rootfs = doc.rootfs;
  if (!isObject(rootfs) || !Array.isArray(rootfs.diff_ids))
    throw archiveError("image config has no rootfs.diff_ids", member);
  const diffIds = rootfs.diff_ids.map((d) => {
    if (typeof d !== "string" || !DIGEST_RE.test(d))
      throw archiveError(
        `image config: diff_id ${JSON.stringify(d)} is not a sha256 digest`,
        member,
      );
    return d;
  });
  const str = (v: unknown, fallback: string) => (typeof v === "string" && v !== "" ? v : fallback);
  const variant = typeof doc.variant === "string" && doc.variant !== "" ? doc.variant : undefined;
  return {
    diffIds,
    platform: {
      os: str(doc.os, "linux"),
      architecture: str(doc.architecture, "amd64"),
      ...(variant ? { variant } : {}),
    },
  };
}

/**
 * Hash a blob's bytes (and, when compressed, its decompressed bytes) in one pass: the stored
 * digest, and the digest of the uncompressed tar (the diff_id).
 */
async function hashLayer(
  source: ByteSource,
  offset: number,
  size: number,
): Promise<{ digest: string; diffId: string; compressed: "gzip" | "zstd" | null }> {
  const range = rangeSource(source, offset, size);
  const head = await range.read(0, 512);
  const kind = detectCompression(head);
  const raw = createHash("sha256");
  if (kind === null || kind === "none") {
    for await (const chunk of sourceChunks(range)) raw.update(chunk);
    const digest = `sha256:${raw.digest("hex")}`;
    return { digest, diffId: digest, compressed: null };
  }
  if (kind !== "gzip" && kind !== "zstd")
    throw archiveError(`a layer compressed with ${kind}, which image layers never are`);
  const inner = createHash("sha256");
  for await (const chunk of decompressedChunks(range, kind, { maxOutput: MAX_LAYER_OUTPUT }, (c) =>
    raw.update(c),
  ))
    inner.update(chunk);
  return {
    digest: `sha256:${raw.digest("hex")}`,
    diffId: `sha256:${inner.digest("hex")}`,
    compressed: kind,
  };
}

function layerMediaType(compressed: "gzip" | "zstd" | null): string {
  return compressed === null ? OCI_LAYER : `${OCI_LAYER}+${compressed}`;
}

async function readDockerArchive(
  source: ByteSource,
  files: ReadonlyMap<string, TarMember>,
  small: ReadonlyMap<string, Uint8Array>,
  links: ReadonlySet<string>,
): Promise<ImageArchive> {
  const manifestMember = files.get("manifest.json")!;
  const linked = (name: string, what: string) => {
    if (links.has(name))
      throw archiveError(`${what} ${name} is a link; links are not accepted as image content`);
  };
  const doc = parseJson(
    small.get("manifest.json") ?? new Uint8Array(),
    "manifest.json",
    manifestMember,
  );
  if (!Array.isArray(doc))
    throw archiveError("manifest.json is not a list of images", manifestMember);
  const images: ArchiveImage[] = [];
  const referenced = new Set<string>();
  for (const [i, entry] of doc.entries()) {
    const where = `manifest.json image ${i}`;
    if (!isObject(entry) || typeof entry.Config !== "string" || !Array.isArray(entry.Layers))
      throw archiveError(`${where}: needs Config and Layers`, manifestMember);
    const configName = normalizeTarName(entry.Config);
    linked(configName, "config");
    const configMember = files.get(configName);
    if (!configMember) throw archiveError(`${where}: config ${entry.Config} is not in the archive`);
    referenced.add(configName);
    const configBytes = await memberBytes(source, small, configMember, configName);
    const configDigest = sha256Of(configBytes);
    // The config's name states its digest (`<hex>.json`, `blobs/sha256/<hex>`): it must hold.
    const named = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(configName)?.[1];
    if (named !== undefined && `sha256:${named}` !== configDigest)
      throw archiveError(
        `config's SHA-256 is ${configDigest}, its name says sha256:${named}`,
        configMember,
      );
    const config = readConfig(configBytes, configMember);
    if (entry.Layers.length !== config.diffIds.length)
      throw archiveError(
        `${where}: ${entry.Layers.length} layer(s) listed, the config's rootfs has ${config.diffIds.length} (a missing or extra layer)`,
      );
    const layers: ArchiveLayer[] = [];
    for (const [j, layerName] of entry.Layers.entries()) {
      if (typeof layerName !== "string") throw archiveError(`${where}: layer ${j} is not a name`);
      const name = normalizeTarName(layerName);
      linked(name, "layer");
      const member = files.get(name);
      if (!member)
        throw archiveError(`${where}: layer ${layerName} is not in the archive (missing layer)`);
      referenced.add(name);
      const hashed = await hashLayer(source, member.offset + 512, member.size);
      const expected = config.diffIds[j]!;
      if (hashed.diffId !== expected)
        throw archiveError(
          `layer ${j} holds content ${hashed.diffId}, the config's diff_ids say ${expected} (digest mismatch)`,
          member,
        );
      layers.push({
        digest: hashed.digest,
        diffId: expected,
        size: member.size,
        offset: member.offset + 512,
        mediaType: layerMediaType(hashed.compressed),
      });
    }
    const repoTags = Array.isArray(entry.RepoTags)
      ? entry.RepoTags.filter((t): t is string => typeof t === "string")
      : [];
    images.push({
      repoTags,
      config: {
        digest: configDigest,
        size: configMember.size,
        offset: configMember.offset + 512,
        mediaType: OCI_CONFIG,
      },
      layers,
      platform: config.platform,
    });
  }
  // A layer tar nothing lists is not part of any image: an archive put together wrongly.
  for (const name of files.keys()) {
    if ((name.endsWith("/layer.tar") || /^[0-9a-f]{64}\.tar$/.test(name)) && !referenced.has(name))
      throw archiveError(`${name} is a layer no image in manifest.json lists (extra layer)`);
  }
  return { shape: "docker-archive", images };
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function descriptor(v: unknown, where: string): Descriptor {
  if (
    !isObject(v) ||
    typeof v.mediaType !== "string" ||
    typeof v.digest !== "string" ||
    typeof v.size !== "number" ||
    !Number.isSafeInteger(v.size) ||
    v.size < 0
  )
    throw archiveError(`${where}: not a descriptor (mediaType, digest, size)`);
  if (!DIGEST_RE.test(v.digest))
    throw archiveError(`${where}: digest ${JSON.stringify(v.digest)} is not sha256:<64 hex>`);
  return { mediaType: v.mediaType, digest: v.digest, size: v.size };
}

async function readOciLayout(
  source: ByteSource,
  files: ReadonlyMap<string, TarMember>,
  small: ReadonlyMap<string, Uint8Array>,
  links: ReadonlySet<string>,
): Promise<ImageArchive> {
  const blobMember = (d: Descriptor, where: string): TarMember => {
    const name = `blobs/sha256/${d.digest.slice("sha256:".length)}`;
    if (links.has(name))
      throw archiveError(
        `${where}: blob ${name} is a link; links are not accepted as image content`,
      );
    const m = files.get(name);
    if (!m) throw archiveError(`${where}: blob ${d.digest} is not in the archive (${name})`);
    if (m.size !== d.size)
      throw archiveError(
        `${where}: blob ${d.digest} is ${m.size} bytes, its descriptor says ${d.size}`,
        m,
      );
    return m;
  };
  /** A small blob (manifest, index, config), checked against its digest. */
  const smallBlob = async (d: Descriptor, where: string): Promise<[Uint8Array, TarMember]> => {
    const m = blobMember(d, where);
    const bytes = await memberBytes(source, small, m, `blobs/sha256/${d.digest.slice(7)}`);
    const actual = sha256Of(bytes);
    if (actual !== d.digest)
      throw archiveError(
        `blob's SHA-256 is ${actual}, not the ${d.digest} it is named (digest mismatch)`,
        m,
      );
    return [bytes, m];
  };
  const indexMember = files.get("index.json")!;
  const manifests: { d: Descriptor; repoTags: string[] }[] = [];
  const collect = async (
    bytes: Uint8Array,
    where: string,
    member: TarMember | undefined,
    depth: number,
  ) => {
    const doc = parseJson(bytes, where, member);
    if (!isObject(doc) || !Array.isArray(doc.manifests))
      throw archiveError(`${where}: has no manifests list`, member);
    for (const [i, raw] of doc.manifests.entries()) {
      const d = descriptor(raw, `${where} manifest ${i}`);
      if (d.mediaType === OCI_INDEX || d.mediaType === DOCKER_LIST) {
        if (depth > 2) throw archiveError(`${where}: image indexes nested too deep`, member);
        const [nested, m] = await smallBlob(d, `${where} manifest ${i}`);
        await collect(nested, `index ${d.digest}`, m, depth + 1);
        continue;
      }
      if (d.mediaType !== OCI_MANIFEST && d.mediaType !== DOCKER_MANIFEST) {
        // An index may also name attestations and other artifacts: only images are served.
        if (depth > 0) continue;
        throw archiveError(
          `${where} manifest ${i}: media type ${d.mediaType} is not an image manifest`,
          member,
        );
      }
      // `docker save` with the containerd store writes an image's whole index but only the
      // platforms it holds: the others are left out, not an error.
      if (depth > 0 && !files.has(`blobs/sha256/${d.digest.slice(7)}`)) continue;
      const annotations = isObject(raw) && isObject(raw.annotations) ? raw.annotations : {};
      const ref =
        annotations["io.containerd.image.name"] ?? annotations["org.opencontainers.image.ref.name"];
      manifests.push({ d, repoTags: typeof ref === "string" ? [ref] : [] });
    }
  };
  await collect(
    await memberBytes(source, small, indexMember, "index.json"),
    "index.json",
    indexMember,
    0,
  );
  const images: ArchiveImage[] = [];
  const seen = new Set<string>();
  for (const { d, repoTags } of manifests) {
    if (seen.has(d.digest)) continue; // one image under several names
    seen.add(d.digest);
    const where = `manifest ${d.digest}`;
    const [bytes, member] = await smallBlob(d, where);
    const doc = parseJson(bytes, where, member);
    if (!isObject(doc) || !Array.isArray(doc.layers))
      throw archiveError(`${where}: has no config or layers`, member);
    const configD = descriptor(doc.config, `${where} config`);
    const [configBytes, configMember] = await smallBlob(configD, `${where} config`);
    const config = readConfig(configBytes, configMember);
    if (doc.layers.length !== config.diffIds.length)
      throw archiveError(
        `${where}: ${doc.layers.length} layer(s) listed, the config's rootfs has ${config.diffIds.length} (a missing or extra layer)`,
      );
    const layers: ArchiveLayer[] = [];
    for (const [j, raw] of doc.layers.entries()) {
      const ld = descriptor(raw, `${where} layer ${j}`);
      const m = blobMember(ld, `${where} layer ${j}`);
      const hashed = await hashLayer(source, m.offset + 512, m.size);
      if (hashed.digest !== ld.digest)
        throw archiveError(
          `layer's SHA-256 is ${hashed.digest}, not the ${ld.digest} it is named (digest mismatch)`,
          m,
        );
      const expected = config.diffIds[j]!;
      if (hashed.diffId !== expected)
        throw archiveError(
          `layer ${j} holds content ${hashed.diffId}, the config's diff_ids say ${expected} (digest mismatch)`,
          m,
        );
      layers.push({
        digest: ld.digest,
        diffId: expected,
        size: m.size,
        offset: m.offset + 512,
        mediaType: layerMediaType(hashed.compressed),
      });
    }
    images.push({
      repoTags,
      config: {
        digest: configD.digest,
        size: configD.size,
        offset: configMember.offset + 512,
        mediaType: OCI_CONFIG,
      },
      layers,
      platform: config.platform,
    });
  }
  return { shape: "oci-layout", images };
}
