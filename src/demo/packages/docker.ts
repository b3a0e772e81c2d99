/**
 * A small image archive for the demo, in the classic `docker save` shape (manifest.json, a
 * config named by its SHA-256, one `<id>/layer.tar` per layer), written without docker: what
 * `podman save --format docker-archive` would write for an image of these files.
 */
import { createHash } from "node:crypto";
import { writeTar, type TarWriteEntry } from "../../layout/formats/tar.js";

const enc = new TextEncoder();
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export interface DemoImage {
  /** One layer per entry: files (path → text). */
  layers: Record<string, string>[];
  labels?: Record<string, string>;
  architecture?: string;
}

export function buildDockerArchive(image: DemoImage, repoTag: string): Uint8Array {
  const layers = image.layers.map((files) =>
    writeTar(
      Object.entries(files).map(([name, text]) => ({ name, content: enc.encode(text), mtime: 0 })),
    ),
  );
  const config = enc.encode(
    JSON.stringify({
      architecture: image.architecture ?? "amd64",
      os: "linux",
      config: { Env: ["PATH=/usr/bin:/bin"], Labels: image.labels ?? {} },
      rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${sha256(l)}`) },
      history: layers.map(() => ({ created_by: "packrat-agent demo" })),
    }),
  );
  const entries: TarWriteEntry[] = [];
  const names: string[] = [];
  for (const layer of layers) {
    const id = sha256(layer);
    entries.push({ name: `${id}/layer.tar`, content: layer, mtime: 0 });
    names.push(`${id}/layer.tar`);
  }
  const configName = `${sha256(config)}.json`;
  entries.push({ name: configName, content: config, mtime: 0 });
  const manifest = [{ Config: configName, RepoTags: [repoTag], Layers: names }];
  entries.push({ name: "manifest.json", content: enc.encode(JSON.stringify(manifest)), mtime: 0 });
  return writeTar(entries);
}
