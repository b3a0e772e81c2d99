/**
 * A minimal static file server on 127.0.0.1:0 for client tests (apt-get, dnf, pacman, pip)
 * that do not need nginx. Records every request path so a test can check which URLs a client
 * fetched (e.g. apt's by-hash paths). Symlinks are followed like nginx does by default.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

export interface StaticServer {
  readonly url: string;
  readonly requests: { method: string; path: string; status: number }[];
  close(): Promise<void>;
}

export async function startStaticServer(root: string, port = 0): Promise<StaticServer> {
  const requests: StaticServer["requests"] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      const full = path.join(root, path.normalize(urlPath));
      const record = (status: number) =>
        requests.push({ method: req.method ?? "GET", path: urlPath, status });
      if (!full.startsWith(path.resolve(root))) {
        record(403);
        res.writeHead(403).end();
        return;
      }
      try {
        let file = full;
        let st = await stat(file);
        // A directory answers with its index.html, as the shipped nginx config does (PyPI's
        // simple/<project>/ pages).
        if (st.isDirectory()) st = await stat((file = path.join(full, "index.html")));
        if (!st.isFile()) throw new Error("not a file");
        record(200);
        res.writeHead(200, {
          "Content-Length": st.size,
          "Last-Modified": st.mtime.toUTCString(),
          "Content-Type": file.endsWith(".html")
            ? "text/html; charset=utf-8"
            : "application/octet-stream",
        });
        if (req.method === "HEAD") {
          res.end();
          return;
        }
        createReadStream(file).pipe(res);
      } catch {
        record(404);
        res.writeHead(404).end("not found\n");
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
