/**
 * Record what a master answers the agent's own client, and play it back: a recording proxy in
 * front of the real packrat master writes every exchange; a replay server answers the same
 * requests with the recorded answers, so unit tests run the client against the real master's
 * bytes without the real master.
 */
import { request } from "undici";
import { startRawHttpServer, type RawHttpServer } from "./raw-http.js";

export interface Exchange {
  method: string;
  uri: string;
  /** The request headers that select an answer (Filter, Position, Count, Multi-Object). */
  select: Record<string, string>;
  /** Whether the request carried a session (Auth-Token). */
  session: boolean;
  body: unknown;
  status: number;
  headers: Record<string, string>;
  /** The answer body, base64 (file bytes are not text). */
  answer: string;
}

const SELECT = ["filter", "position", "count", "multi-object"];
const DROP_REQUEST = /^(host|connection|keep-alive|content-length|transfer-encoding)$/;
const DROP_ANSWER = /^(connection|keep-alive|content-length|transfer-encoding|date|server)$/;

function selectHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of SELECT) {
    const v = headers[k];
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

function parseBody(bytes: Buffer): unknown {
  const text = bytes.toString("utf8").trim();
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const keyOf = (e: Pick<Exchange, "method" | "uri" | "select" | "session" | "body">) =>
  JSON.stringify([e.method, e.uri, e.select, e.session, e.body]);

export async function startRecordingProxy(
  target: string,
): Promise<RawHttpServer & { exchanges: Exchange[] }> {
  const exchanges: Exchange[] = [];
  const server = await startRawHttpServer(async (req, res) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined || DROP_REQUEST.test(k)) continue;
      headers[k] = Array.isArray(v) ? v.join(", ") : v;
    }
    const up = await request(`${target}${req.target}`, {
      method: req.method,
      headers,
      body: req.body.length > 0 ? req.body : undefined,
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    const bytes = Buffer.from(await up.body.arrayBuffer());
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(up.headers)) {
      if (v === undefined || DROP_ANSWER.test(k)) continue;
      out[k] = Array.isArray(v) ? v.join(", ") : v;
    }
    exchanges.push({
      method: req.method,
      uri: req.target,
      select: selectHeaders(req.headers),
      session: req.headers["auth-token"] !== undefined,
      body: parseBody(req.body),
      status: up.statusCode,
      headers: out,
      answer: bytes.toString("base64"),
    });
    res.send(up.statusCode, out, bytes);
  });
  return Object.assign(server, { exchanges });
}

/** Answers each request with the recorded answer to the same request; 599 for one not recorded. */
export async function startReplay(
  exchanges: readonly Exchange[],
): Promise<RawHttpServer & { missed: string[] }> {
  const byKey = new Map(exchanges.map((e) => [keyOf(e), e]));
  const missed: string[] = [];
  const server = await startRawHttpServer((req, res) => {
    const asked = {
      method: req.method,
      uri: req.target,
      select: selectHeaders(req.headers),
      session: req.headers["auth-token"] !== undefined,
      body: parseBody(req.body),
    };
    const found = byKey.get(keyOf(asked));
    if (!found) {
      missed.push(keyOf(asked));
      res.send(599, {}, "not recorded");
      return;
    }
    res.send(found.status, found.headers, Buffer.from(found.answer, "base64"));
  });
  return Object.assign(server, { missed });
}
