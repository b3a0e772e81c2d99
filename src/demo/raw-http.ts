/**
 * A minimal HTTP/1.1 server on 127.0.0.1 that accepts any method token: the fake packrat
 * master's transport. It sits on node:net rather than node:http because node's HTTP parser
 * rejects the CInP verbs (DESCRIBE, LIST, CALL) with a 400 before any handler runs.
 * Dependency-free besides node:* so it can be compiled into dist/ for the demo.
 */
import { STATUS_CODES } from "node:http";
import { createServer, type Server, type Socket } from "node:net";

export type HeaderMap = Record<string, string | string[] | undefined>;

export interface RawRequest {
  method: string;
  /** As sent: origin-form (/path) or absolute-form (http://host/path, through a proxy). */
  target: string;
  /** Lower-cased names. */
  headers: HeaderMap;
  body: Buffer;
}

export interface RawResponse {
  readonly socket: Socket;
  /** True once an answer was sent or the connection was dropped. */
  readonly finished: boolean;
  send(status: number, headers: Record<string, string>, body: Buffer | string): void;
  /**
   * Send the body with Transfer-Encoding: chunked and no Content-Length (as gunicorn does for a
   * WSGI body of unknown length); with `cutAfter`, drop the connection after that many bytes.
   */
  sendChunked(
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    cutAfter?: number,
  ): void;
  json(status: number, value: unknown, headers?: Record<string, string>): void;
  /**
   * Send the head at once, then the body `bytes` at a time every `everyMs` (a master that
   * trickles: each piece comes well within any idle timeout). Chunked unless `contentLength`.
   * Stops when the client goes away.
   */
  sendTrickled(
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    pace: { bytes: number; everyMs: number; contentLength: boolean },
  ): void;
  /** Send the head and the first `bytes` of body, then drop the connection. */
  sendTruncated(status: number, headers: Record<string, string>, body: Buffer, bytes: number): void;
  /** Drop the connection without an answer (a reset as the client sees it). */
  reset(): void;
  /** Never answer; the connection stays open until the client gives up or the server closes. */
  hang(): void;
}

export type RawHandler = (req: RawRequest, res: RawResponse) => void | Promise<void>;

export interface RawHttpServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const MAX_HEAD_BYTES = 64 * 1024;

/** Start a keep-alive HTTP/1.1 server on 127.0.0.1, port 0. Bodies need Content-Length. */
export async function startRawHttpServer(handler: RawHandler): Promise<RawHttpServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffered: Buffer = Buffer.alloc(0);
    let busy = false;

    const pump = (): void => {
      while (!busy && !socket.destroyed) {
        const headEnd = buffered.indexOf("\r\n\r\n");
        if (headEnd < 0) {
          if (buffered.length > MAX_HEAD_BYTES) socket.destroy();
          return;
        }
        const lines = buffered.subarray(0, headEnd).toString("latin1").split("\r\n");
        const parts = (lines[0] ?? "").split(" ");
        if (parts.length !== 3 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(parts[0]!)) {
          socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
          return;
        }
        const headers: HeaderMap = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          if (colon <= 0) continue;
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          const prev = headers[name];
          headers[name] =
            prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
        }
        if (headers["transfer-encoding"] !== undefined) {
          socket.end(
            "HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
          );
          return;
        }
        const length = Number.parseInt(String(headers["content-length"] ?? "0"), 10) || 0;
        if (buffered.length < headEnd + 4 + length) return;
        const body = Buffer.from(buffered.subarray(headEnd + 4, headEnd + 4 + length));
        buffered = buffered.subarray(headEnd + 4 + length);
        busy = true;
        const keepAlive = String(headers.connection ?? "").toLowerCase() !== "close";
        const res = new Response(socket, keepAlive, () => {
          busy = false;
          setImmediate(pump);
        });
        const req: RawRequest = { method: parts[0]!, target: parts[1]!, headers, body };
        Promise.resolve()
          .then(() => handler(req, res))
          .catch((err: unknown) => {
            if (!res.finished) {
              res.json(500, { class: "ServerError", message: `fake master bug: ${String(err)}` });
            }
          });
      }
    };
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      pump();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

class Response implements RawResponse {
  finished = false;

  constructor(
    readonly socket: Socket,
    private readonly keepAlive: boolean,
    private readonly onDone: () => void,
  ) {}

  private head(status: number, headers: Record<string, string>, length: number | null): string {
    const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}`];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    lines.push(length === null ? "Transfer-Encoding: chunked" : `Content-Length: ${length}`);
    lines.push(`Connection: ${this.keepAlive ? "keep-alive" : "close"}`);
    return lines.join("\r\n") + "\r\n\r\n";
  }

  sendChunked(
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    cutAfter?: number,
  ): void {
    if (this.finished) return;
    this.finished = true;
    if (this.socket.destroyed) return this.onDone();
    const CHUNK = 64 * 1024;
    const end = cutAfter === undefined ? body.length : Math.min(cutAfter, body.length);
    const parts: Buffer[] = [Buffer.from(this.head(status, headers, null))];
    for (let at = 0; at < end; at += CHUNK) {
      const piece = body.subarray(at, Math.min(end, at + CHUNK));
      parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"));
    }
    if (cutAfter !== undefined) {
      this.socket.write(Buffer.concat(parts), () => this.socket.destroy());
      return;
    }
    parts.push(Buffer.from("0\r\n\r\n"));
    const whole = Buffer.concat(parts);
    if (this.keepAlive) this.socket.write(whole);
    else this.socket.end(whole);
    this.onDone();
  }

  send(status: number, headers: Record<string, string>, body: Buffer | string): void {
    if (this.finished) return;
    this.finished = true;
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    if (!this.socket.destroyed) {
      // One write: a head and a body in two small segments meet Nagle + delayed ACK (40 ms).
      const whole = Buffer.concat([Buffer.from(this.head(status, headers, bytes.length)), bytes]);
      if (this.keepAlive) this.socket.write(whole);
      else this.socket.end(whole);
    }
    this.onDone();
  }

  json(status: number, value: unknown, headers: Record<string, string> = {}): void {
    this.send(
      status,
      { "Content-Type": "application/json;charset=utf-8", ...headers },
      value === undefined ? "" : JSON.stringify(value),
    );
  }

  sendTrickled(
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    pace: { bytes: number; everyMs: number; contentLength: boolean },
  ): void {
    if (this.finished) return;
    this.finished = true;
    const chunked = !pace.contentLength;
    this.socket.write(this.head(status, headers, chunked ? null : body.length));
    let at = 0;
    const timer = setInterval(() => {
      if (this.socket.destroyed || !this.socket.writable) {
        clearInterval(timer);
        return;
      }
      const piece = body.subarray(at, Math.min(body.length, at + pace.bytes));
      at += piece.length;
      if (piece.length > 0) {
        this.socket.write(
          chunked
            ? Buffer.concat([
                Buffer.from(`${piece.length.toString(16)}\r\n`),
                piece,
                Buffer.from("\r\n"),
              ])
            : piece,
        );
      }
      if (at >= body.length) {
        clearInterval(timer);
        if (chunked) this.socket.write("0\r\n\r\n");
        if (!this.keepAlive) this.socket.end();
        this.onDone();
      }
    }, pace.everyMs);
    this.socket.once("close", () => clearInterval(timer));
  }

  sendTruncated(
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    bytes: number,
  ): void {
    if (this.finished) return;
    this.finished = true;
    this.socket.write(this.head(status, headers, body.length));
    this.socket.write(body.subarray(0, bytes), () => this.socket.destroy());
  }

  reset(): void {
    this.finished = true;
    this.socket.resetAndDestroy();
  }

  hang(): void {
    this.finished = true;
  }
}
