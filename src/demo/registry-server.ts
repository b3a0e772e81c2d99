/**
 * The demo's registry: a docker repo's tree (layout/docker.ts) served on 127.0.0.1 as
 * etc/nginx/packrat-docker.conf serves it (GET/HEAD only, `/v2/` with the API version header,
 * manifests with their media type, indexes looked up in `_indexes/`, blobs as octet streams),
 * so `podman pull --tls-verify=false` and skopeo read the demo without a web server installed.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";

export interface RegistryServer {
  /** `127.0.0.1:<port>`, as image references name a registry. */
  readonly host: string;
  close(): Promise<void>;
}

/** The file a registry path is served from, and how; null for anything else. */
function route(urlPath: string): { files: [string, string][]; cache: string } | null {
  if (urlPath === "/v2/" || urlPath === "/v2")
    return { files: [["v2/_root", "application/json"]], cache: "no-cache" };
  if (urlPath === "/v2/_catalog")
    return { files: [["v2/_catalog", "application/json"]], cache: "no-cache" };
  const tags = /^\/v2\/(.+)\/tags\/list$/.exec(urlPath);
  if (tags) return { files: [[`v2/${tags[1]}/tags/list`, "application/json"]], cache: "no-cache" };
  const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(urlPath);
  if (blob)
    return {
      files: [[`v2/${blob[1]}/blobs/${blob[2]}`, "application/octet-stream"]],
      cache: "public, max-age=31536000, immutable",
    };
  const manifest = /^\/v2\/(.+)\/manifests\/([A-Za-z0-9_:][A-Za-z0-9._:-]{0,127})$/.exec(urlPath);
  if (manifest) {
    const [, name, ref] = manifest as unknown as [string, string, string];
    return {
      files: [
        [`v2/${name}/manifests/${ref}`, MANIFEST],
        [`v2/${name}/_indexes/${ref}`, INDEX],
      ],
      cache: ref.startsWith("sha256:") ? "public, max-age=31536000, immutable" : "no-cache",
    };
  }
  return null;
}

export async function startRegistryServer(dir: string, port = 0): Promise<RegistryServer> {
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    void (async () => {
      const headers: Record<string, string | number> = {
        "Docker-Distribution-API-Version": "registry/2.0",
      };
      const urlPath = new URL(req.url ?? "/", "http://x").pathname;
      const r = route(urlPath);
      if ((req.method !== "GET" && req.method !== "HEAD") || r === null || urlPath.includes(".."))
        return void res
          .writeHead(req.method === "GET" || req.method === "HEAD" ? 404 : 405, headers)
          .end();
      for (const [rel, type] of r.files) {
        const full = path.join(root, rel);
        const st = await stat(full).catch(() => null);
        if (!st?.isFile()) continue;
        const digest = /(sha256:[0-9a-f]{64})$/.exec(urlPath)?.[1];
        res.writeHead(200, {
          ...headers,
          "Content-Type": type,
          "Content-Length": st.size,
          "Cache-Control": r.cache,
          ...(digest ? { "Docker-Content-Digest": digest } : {}),
        });
        if (req.method === "HEAD") return void res.end();
        createReadStream(full).pipe(res);
        return;
      }
      res.writeHead(404, headers).end();
    })();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
