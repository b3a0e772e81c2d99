/**
 * Image archives built in memory for unit tests, in both shapes the docker layout reads: the
 * classic docker-archive (`manifest.json`, `<id>/layer.tar`, `<hex>.json`) and the OCI layout
 * (`oci-layout`, `index.json`, `blobs/sha256/<hex>`). Integration tests use archives made by
 * buildah and podman instead (test/support/docker-images.ts); these only need to be valid by
 * the spec, and easy to break on purpose.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { writeTar, type TarWriteEntry } from "../../src/layout/formats/tar.js";

const enc = new TextEncoder();
export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A layer: a tar of the given files. */
export function layerTar(files: Record<string, string>): Uint8Array {
  return writeTar(
    Object.entries(files).map(([name, text]) => ({ name, content: enc.encode(text), mtime: 0 })),
  );
}

export interface ImageSpec {
  layers: Uint8Array[];
  architecture?: string;
  /** Extra config fields (Env, Labels...). */
  config?: Record<string, unknown>;
  repoTag?: string;
  /** The config's rootfs.diff_ids, if not those of `layers` (a config that disagrees). */
  diffIds?: string[];
}

export function configJson(
  spec: ImageSpec,
  diffIds = spec.diffIds ?? spec.layers.map((l) => `sha256:${sha256(l)}`),
) {
  return enc.encode(
    JSON.stringify({
      architecture: spec.architecture ?? "amd64",
      os: "linux",
      config: { Env: ["PATH=/usr/bin"], ...(spec.config ?? {}) },
      rootfs: { type: "layers", diff_ids: diffIds },
      history: spec.layers.map(() => ({ created_by: "test" })),
    }),
  );
}

export interface ArchiveTweaks {
  /** Entries added to the archive as they are. */
  extra?: TarWriteEntry[];
  /** Replace the config bytes (after the name was chosen from the good ones). */
  configBytes?: (good: Uint8Array) => Uint8Array;
  /** Replace a layer's bytes in the archive (index, good bytes). */
  layerBytes?: (i: number, good: Uint8Array) => Uint8Array;
  /** Edit manifest.json / index.json before it is written. */
  manifest?: (doc: unknown) => unknown;
  omit?: string[];
}

/** `docker save` classic shape (one image per spec). */
export function dockerArchive(specs: ImageSpec[], tweaks: ArchiveTweaks = {}): Uint8Array {
  const entries: TarWriteEntry[] = [];
  const manifest: unknown[] = [];
  specs.forEach((spec, n) => {
    const config = configJson(spec);
    const configName = `${sha256(config)}.json`;
    const layers: string[] = [];
    spec.layers.forEach((layer, i) => {
      const id = sha256(enc.encode(`${n}/${i}/${sha256(layer)}`));
      entries.push({ name: `${id}/`, mtime: 0 });
      entries.push({
        name: `${id}/layer.tar`,
        content: tweaks.layerBytes?.(i, layer) ?? layer,
        mtime: 0,
      });
      layers.push(`${id}/layer.tar`);
    });
    entries.push({ name: configName, content: tweaks.configBytes?.(config) ?? config, mtime: 0 });
    manifest.push({ Config: configName, RepoTags: [spec.repoTag ?? "test:1"], Layers: layers });
  });
  const doc = tweaks.manifest ? tweaks.manifest(manifest) : manifest;
  entries.push({ name: "manifest.json", content: enc.encode(JSON.stringify(doc)), mtime: 0 });
  return writeTar(
    [...entries, ...(tweaks.extra ?? [])].filter((e) => !(tweaks.omit ?? []).includes(e.name)),
  );
}

/** The OCI layout (newer `docker save`, `podman save --format oci-archive`); gzip layers optional. */
export function ociArchive(
  specs: ImageSpec[],
  options: { gzip?: boolean } = {},
  tweaks: ArchiveTweaks = {},
): Uint8Array {
  const blobs = new Map<string, Uint8Array>();
  const put = (b: Uint8Array) => {
    const d = sha256(b);
    blobs.set(d, b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const manifests: unknown[] = [];
  for (const spec of specs) {
    const config = configJson(spec);
    const layers = spec.layers.map((l, i) => {
      const stored = options.gzip ? gzipSync(l) : l;
      const desc = put(stored);
      const tweaked = tweaks.layerBytes?.(i, stored);
      if (tweaked) blobs.set(desc.digest.slice(7), tweaked);
      return {
        mediaType: `application/vnd.oci.image.layer.v1.tar${options.gzip ? "+gzip" : ""}`,
        ...desc,
      };
    });
    const configDesc = put(config);
    if (tweaks.configBytes) blobs.set(configDesc.digest.slice(7), tweaks.configBytes(config));
    const manifest = enc.encode(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configDesc },
        layers,
      }),
    );
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...put(manifest),
      annotations: { "org.opencontainers.image.ref.name": spec.repoTag ?? "1" },
    });
  }
  const index = { schemaVersion: 2, manifests };
  const doc = tweaks.manifest ? tweaks.manifest(index) : index;
  const entries: TarWriteEntry[] = [
    { name: "oci-layout", content: enc.encode('{"imageLayoutVersion":"1.0.0"}'), mtime: 0 },
    { name: "index.json", content: enc.encode(JSON.stringify(doc)), mtime: 0 },
    { name: "blobs/", mtime: 0 },
    { name: "blobs/sha256/", mtime: 0 },
    ...[...blobs].map(([d, b]) => ({ name: `blobs/sha256/${d}`, content: b, mtime: 0 })),
  ];
  return writeTar(
    [...entries, ...(tweaks.extra ?? [])].filter((e) => !(tweaks.omit ?? []).includes(e.name)),
  );
}

/**
 * A tar whose entry `name` is rewritten as another tar type (symlink "2", hard link "1"), its
 * header checksum fixed, to make archives with links in them.
 */
export function withEntryType(
  archive: Uint8Array,
  name: string,
  typeflag: string,
  linkName = "",
): Uint8Array {
  const out = new Uint8Array(archive);
  for (let at = 0; at + 512 <= out.length;) {
    const header = out.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const entryName = new TextDecoder().decode(header.subarray(0, 100)).replace(/\0.*$/s, "");
    const size = parseInt(
      new TextDecoder().decode(header.subarray(124, 136)).replace(/\0.*$/s, ""),
      8,
    );
    if (entryName === name) {
      header[156] = typeflag.charCodeAt(0);
      header.set(enc.encode("0".repeat(11)), 124); // links carry no data
      header.fill(0, 157, 257);
      header.set(enc.encode(linkName).subarray(0, 100), 157);
      header.fill(0x20, 148, 156);
      const sum = header.reduce((n, b) => n + b, 0);
      header.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
      // The data blocks that followed stay, read as (bogus) headers would be: drop them.
      const dataEnd = at + 512 + Math.ceil(size / 512) * 512;
      return new Uint8Array([...out.subarray(0, at + 512), ...out.subarray(dataEnd)]);
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no entry ${name}`);
}
