/**
 * A fake packrat master for tests, benchmarks and the demo: a real HTTP server on 127.0.0.1
 * speaking the CInP contract of ../shared/PACKRAT_API.md over packrat's data model (distro
 * versions, repos filtered by tag and distro version, mirrors, packages, package files), with a
 * blocking poll, recorded requests and heartbeats, optional login, and fault switches.
 *
 * It sits on node:net rather than node:http because node's HTTP parser rejects the CInP verbs
 * (DESCRIBE, LIST, CALL) with a 400 before any handler runs; a small HTTP/1.1 reader does.
 * Dependency-free besides node:* so it can be compiled into dist/ for the demo.
 */
import { createHash, randomBytes } from "node:crypto";
import { STATUS_CODES } from "node:http";
import { createServer, type Server, type Socket } from "node:net";

// --- a minimal HTTP/1.1 server that accepts any method token ---------------------------

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
  json(status: number, value: unknown, headers?: Record<string, string>): void;
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

  private head(status: number, headers: Record<string, string>, length: number): string {
    const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}`];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    lines.push(`Content-Length: ${length}`);
    lines.push(`Connection: ${this.keepAlive ? "keep-alive" : "close"}`);
    return lines.join("\r\n") + "\r\n\r\n";
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
      { "Content-Type": "application/json;charset=utf-8", "CInP-Version": "0.9", ...headers },
      value === undefined ? "" : JSON.stringify(value),
    );
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

// --- faults ---------------------------------------------------------------------------

/** Which requests a fault applies to; all given conditions must hold. */
export interface FaultMatch {
  /** CInP verb or GET, e.g. "LIST". */
  method?: string;
  /** Substring of the request URI (e.g. "(poll)", "/files/3/"), or a RegExp tested on it. */
  uri?: string | RegExp;
  /** How many matching requests it affects; unlimited when left out. */
  times?: number;
}

export type Fault = FaultMatch &
  (
    | { kind: "status"; status: number; body?: unknown }
    | { kind: "hang" }
    | { kind: "reset" }
    | { kind: "invalid-json" }
    /** Answer 200 with this JSON instead of the real answer: a master that lies. */
    | { kind: "json"; body: unknown; headers?: Record<string, string> }
    /** Wait this long before the real answer. */
    | { kind: "delay"; ms: number }
    /** DESCRIBE /api/v2/ reports this api-version. */
    | { kind: "api-version"; version: string }
    /** File downloads: full Content-Length, then the connection drops after `bytes` (default half). */
    | { kind: "truncate"; bytes?: number }
    /** File downloads: same length, other bytes, so the SHA-256 does not match. */
    | { kind: "wrong-bytes" }
    /** The package file's `file` field carries this (percent-encoded) name instead. */
    | { kind: "hostile-filename"; fileId: number; filename: string }
    /** The package file's `file` field is exactly this string. */
    | { kind: "file-field"; fileId: number; file: string }
  );

type RequestFaultKind = Exclude<Fault["kind"], "hostile-filename" | "file-field">;
const FILE_ONLY: ReadonlySet<Fault["kind"]> = new Set(["truncate", "wrong-bytes"]);

/** Fault switches, set and cleared by tests at any time. */
export class Faults {
  private rules: { fault: Fault; left: number }[] = [];

  /** Add a fault beside the ones already set. */
  add(fault: Fault): void {
    this.rules.push({ fault, left: fault.times ?? Number.POSITIVE_INFINITY });
  }

  /** Replace every fault with these. */
  set(...faults: Fault[]): void {
    this.clear();
    for (const f of faults) this.add(f);
  }

  clear(): void {
    this.rules = [];
  }

  get active(): readonly Fault[] {
    return this.rules.map((r) => r.fault);
  }

  /** The first request fault matching this request, counted as used. */
  take(method: string, uri: string, isFile: boolean): (Fault & { kind: RequestFaultKind }) | null {
    for (const rule of this.rules) {
      const f = rule.fault;
      if (f.kind === "hostile-filename" || f.kind === "file-field") continue;
      if (FILE_ONLY.has(f.kind) && !isFile) continue;
      if (f.kind === "api-version" && (method !== "DESCRIBE" || uri !== "/api/v2/")) continue;
      if (f.method !== undefined && f.method.toUpperCase() !== method) continue;
      if (
        f.uri !== undefined &&
        !(typeof f.uri === "string" ? uri.includes(f.uri) : f.uri.test(uri))
      )
        continue;
      rule.left--;
      if (rule.left <= 0) this.rules = this.rules.filter((r) => r !== rule);
      return f;
    }
    return null;
  }

  /** The `file` field override for a package file, if a test set one. */
  fileFieldFor(fileId: number): string | null {
    for (const { fault: f } of this.rules) {
      if (f.kind === "file-field" && f.fileId === fileId) return f.file;
      if (f.kind === "hostile-filename" && f.fileId === fileId) {
        return `/files/${fileId}/${encodeURIComponent(f.filename)}`;
      }
    }
    return null;
  }
}

// --- the data model and the CInP API ---------------------------------------------------

export interface FakeMasterOptions {
  apiVersion?: string;
  /** When set, every CInP call but DESCRIBE and login needs a session from this user. */
  auth?: { name: string; psk: string };
  /** Polls shorter than this (seconds) are raised to it; packrat uses 10, tests 1. */
  minPollTimeout?: number;
}

export interface RecordedRequest {
  method: string;
  uri: string;
  headers: HeaderMap;
  body: unknown;
}

export interface FakeMaster {
  readonly url: string;
  addDistroVersion(d: {
    name: string;
    distro: string;
    version: string | null;
    fileType: string;
    releaseNames?: string;
  }): string;
  addRepo(r: {
    name: string;
    filesystemDir: string;
    managerType: string;
    distroVersions: string[];
    tag: string;
    description?: string;
    showOnlyLatest?: boolean;
  }): string;
  addMirror(m: { name: string; repos: string[]; description?: string }): string;
  /** Returns the id; the file is served at /files/<id>/<filename>. */
  addPackageFile(f: {
    package: string;
    distroVersion: string;
    version: string;
    type: string;
    arch: string;
    filename: string;
    content: Uint8Array;
    tags?: string[];
    /** Report this instead of the real hash: a master that lies. */
    sha256?: string;
  }): number;
  tag(id: number, tag: string): void;
  untag(id: number, tag: string): void;
  removePackageFile(id: number): void;
  setRepoList(mirror: string, repos: string[]): void;
  /** Forget every session: the next call gets a 401 and must log in again. */
  expireSessions(): void;
  /** Number of polls waiting right now (tests wait for a poll to be open before changing data). */
  readonly openPolls: number;
  readonly heartbeats: { mirror: string; at: Date }[];
  readonly requests: RecordedRequest[];
  faults: Faults;
  close(): Promise<void>;
}

const DV_MODEL = "/api/v2/Attrib/DistroVersion";
const REPO_MODEL = "/api/v2/Repo/Repo";
const MIRROR_MODEL = "/api/v2/Repo/Mirror";
const PACKAGE_MODEL = "/api/v2/Package/Package";
const FILE_MODEL = "/api/v2/Package/PackageFile";
const LIST_DEFAULT_COUNT = 10;
const LIST_MAX_COUNT = 100;

interface DvRow {
  name: string;
  distro: string;
  version: string | null;
  fileType: string;
  releaseNames: string;
  created: string;
}
interface RepoRow {
  name: string;
  filesystemDir: string;
  managerType: string;
  distroVersions: string[];
  tag: string;
  description: string;
  showOnlyLatest: boolean;
  created: string;
}
interface MirrorRow {
  name: string;
  repos: string[];
  description: string;
  lastHeartbeat: string | null;
  created: string;
  updated: string;
}
interface FileRow {
  id: number;
  package: string;
  distroVersion: string;
  version: string;
  type: string;
  arch: string;
  filename: string;
  content: Buffer;
  tags: Set<string>;
  sha256: string;
  created: string;
  updated: string;
}
interface PendingPoll {
  repo: string;
  res: RawResponse;
  timer: NodeJS.Timeout;
  onClose: () => void;
}

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

function error(status: number, cls: string, message: string): Answer {
  return { status, body: { class: cls, message } };
}

export async function startFakeMaster(opts: FakeMasterOptions = {}): Promise<FakeMaster> {
  const master = new FakeMasterImpl(opts);
  await master.start();
  return master;
}

class FakeMasterImpl implements FakeMaster {
  url = "";
  readonly heartbeats: { mirror: string; at: Date }[] = [];
  readonly requests: RecordedRequest[] = [];
  faults = new Faults();
  private server: RawHttpServer | null = null;
  private readonly distroVersions = new Map<string, DvRow>();
  private readonly repos = new Map<string, RepoRow>();
  private readonly mirrors = new Map<string, MirrorRow>();
  private readonly files = new Map<number, FileRow>();
  private nextFileId = 1;
  private readonly sessions = new Set<string>();
  private readonly polls = new Set<PendingPoll>();
  /** Changes seen in this tick for repos with an open poll; sent together on the next one. */
  private readonly changed = new Map<string, Set<string>>();
  private flushScheduled = false;

  constructor(private readonly opts: FakeMasterOptions) {}

  async start(): Promise<void> {
    this.server = await startRawHttpServer((req, res) => this.handle(req, res));
    this.url = this.server.url;
  }

  /** Bumped by every test-side mutation; keys the LIST memo. */
  private dataVersion = 0;
  private listMemo: { key: string; uris: string[] } | null = null;

  get openPolls(): number {
    return this.polls.size;
  }

  async close(): Promise<void> {
    for (const p of this.polls) clearTimeout(p.timer);
    this.polls.clear();
    await this.server?.close();
  }

  // --- test-side mutations ---

  addDistroVersion(d: {
    name: string;
    distro: string;
    version: string | null;
    fileType: string;
    releaseNames?: string;
  }): string {
    this.dataVersion++;
    this.distroVersions.set(d.name, {
      name: d.name,
      distro: d.distro,
      version: d.version,
      fileType: d.fileType,
      releaseNames: d.releaseNames ?? "",
      created: now(),
    });
    return `${DV_MODEL}:${d.name}:`;
  }

  addRepo(r: {
    name: string;
    filesystemDir: string;
    managerType: string;
    distroVersions: string[];
    tag: string;
    description?: string;
    showOnlyLatest?: boolean;
  }): string {
    this.dataVersion++;
    for (const dv of r.distroVersions) this.requireDistroVersion(dv);
    this.repos.set(r.name, {
      name: r.name,
      filesystemDir: r.filesystemDir,
      managerType: r.managerType,
      distroVersions: [...r.distroVersions],
      tag: r.tag,
      description: r.description ?? "",
      showOnlyLatest: r.showOnlyLatest ?? false,
      created: now(),
    });
    return `${REPO_MODEL}:${r.name}:`;
  }

  addMirror(m: { name: string; repos: string[]; description?: string }): string {
    this.dataVersion++;
    for (const r of m.repos) {
      if (!this.repos.has(r)) throw new Error(`fake master: no repo ${r}`);
    }
    this.mirrors.set(m.name, {
      name: m.name,
      repos: [...m.repos],
      description: m.description ?? "",
      lastHeartbeat: null,
      created: now(),
      updated: now(),
    });
    return `${MIRROR_MODEL}:${m.name}:`;
  }

  addPackageFile(f: {
    package: string;
    distroVersion: string;
    version: string;
    type: string;
    arch: string;
    filename: string;
    content: Uint8Array;
    tags?: string[];
    sha256?: string;
  }): number {
    this.dataVersion++;
    this.requireDistroVersion(f.distroVersion);
    const content = Buffer.from(f.content);
    const id = this.nextFileId++;
    const row: FileRow = {
      id,
      package: f.package,
      distroVersion: f.distroVersion,
      version: f.version,
      type: f.type,
      arch: f.arch,
      filename: f.filename,
      content,
      tags: new Set(f.tags ?? []),
      sha256: f.sha256 ?? createHash("sha256").update(content).digest("hex"),
      created: now(),
      updated: now(),
    };
    this.files.set(id, row);
    this.notify(row, row.tags);
    return id;
  }

  tag(id: number, tag: string): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    if (row.tags.has(tag)) return;
    row.tags.add(tag);
    row.updated = now();
    this.notify(row, [tag]);
  }

  untag(id: number, tag: string): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    if (!row.tags.delete(tag)) return;
    row.updated = now();
    this.notify(row, [tag]);
  }

  removePackageFile(id: number): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    this.files.delete(id);
    this.notify(row, row.tags);
  }

  setRepoList(mirror: string, repos: string[]): void {
    this.dataVersion++;
    const m = this.mirrors.get(mirror);
    if (!m) throw new Error(`fake master: no mirror ${mirror}`);
    m.repos = [...repos];
    m.updated = now();
  }

  expireSessions(): void {
    this.sessions.clear();
  }

  private requireDistroVersion(name: string): void {
    if (!this.distroVersions.has(name)) throw new Error(`fake master: no distro version ${name}`);
  }

  private requireFile(id: number): FileRow {
    const row = this.files.get(id);
    if (!row) throw new Error(`fake master: no package file ${id}`);
    return row;
  }

  // --- polls ---

  private repoHasFile(repo: RepoRow, row: FileRow, tags: ReadonlySet<string>): boolean {
    return repo.distroVersions.includes(row.distroVersion) && tags.has(repo.tag);
  }

  /** A file changed under these tags: wake the polls of every repo whose set it touches. */
  private notify(row: FileRow, tags: Iterable<string>): void {
    const tagList = new Set(tags);
    for (const repo of this.repos.values()) {
      if (!this.repoHasFile(repo, row, tagList)) continue;
      // Like packrat (LISTEN only while a poll is open), nobody waiting means nobody is told.
      if (![...this.polls].some((p) => p.repo === repo.name)) continue;
      const names = this.changed.get(repo.name) ?? new Set<string>();
      names.add(row.package);
      this.changed.set(repo.name, names);
    }
    if (this.changed.size > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushChanges());
    }
  }

  private flushChanges(): void {
    this.flushScheduled = false;
    for (const [repo, names] of this.changed) {
      for (const p of [...this.polls]) {
        if (p.repo !== repo) continue;
        this.answerPoll(p, [...names].sort());
      }
    }
    this.changed.clear();
  }

  private answerPoll(poll: PendingPoll, names: string[]): void {
    this.polls.delete(poll);
    clearTimeout(poll.timer);
    poll.res.socket.off("close", poll.onClose);
    poll.res.json(200, names);
  }

  // --- HTTP ---

  private async handle(req: RawRequest, res: RawResponse): Promise<void> {
    const uri = req.target.replace(/^https?:\/\/[^/]+/, "");
    let body: unknown = undefined;
    let badJson = false;
    if (req.body.length > 0) {
      try {
        body = JSON.parse(req.body.toString("utf8"));
      } catch {
        badJson = true;
      }
    }
    this.requests.push({ method: req.method, uri, headers: req.headers, body });
    const isFile = req.method === "GET" && uri.startsWith("/files/");

    const fault = this.faults.take(req.method, uri, isFile);
    if (fault) {
      switch (fault.kind) {
        case "status":
          return res.json(
            fault.status,
            fault.body ?? { class: "FaultInjected", message: `injected HTTP ${fault.status}` },
          );
        case "hang":
          return res.hang();
        case "reset":
          return res.reset();
        case "invalid-json":
          return res.send(200, { "Content-Type": "application/json" }, '{"api-version": "2.0", ');
        case "json":
          return res.json(200, fault.body, fault.headers);
        case "delay":
          await new Promise((r) => setTimeout(r, fault.ms));
          break;
        case "api-version":
          return res.json(200, describeRoot(fault.version));
        case "truncate":
        case "wrong-bytes":
          return this.serveFile(uri, res, fault);
      }
    }
    if (isFile) return this.serveFile(uri, res, null);
    if (badJson) return res.json(400, { class: "InvalidRequest", message: "Invalid JSON body" });
    const answer = this.cinp(req.method, uri, req.headers, body, res);
    if (answer) res.json(answer.status, answer.body, answer.headers);
  }

  private serveFile(
    uri: string,
    res: RawResponse,
    fault: { kind: "truncate"; bytes?: number } | { kind: "wrong-bytes" } | null,
  ): void {
    const m = /^\/files\/(\d+)\//.exec(uri);
    const row = m ? this.files.get(Number(m[1])) : undefined;
    if (!row) {
      return res.send(404, { "Content-Type": "text/plain" }, `no file at ${uri}\n`);
    }
    const headers = { "Content-Type": "application/octet-stream" };
    if (fault?.kind === "truncate") {
      const cut = fault.bytes ?? Math.floor(row.content.length / 2);
      return res.sendTruncated(200, headers, row.content, cut);
    }
    if (fault?.kind === "wrong-bytes") {
      const other = Buffer.from(row.content.map((b) => b ^ 0xff));
      return res.send(200, headers, other.length > 0 ? other : Buffer.from("x"));
    }
    res.send(200, headers, row.content);
  }

  /** Route one CInP request; returns null when the answer is deferred (poll). */
  private cinp(
    method: string,
    uri: string,
    headers: HeaderMap,
    body: unknown,
    res: RawResponse,
  ): Answer | null {
    if (method === "DESCRIBE" && uri === "/api/v2/") {
      return { status: 200, body: describeRoot(this.opts.apiVersion ?? "2.0") };
    }
    if (method === "CALL" && uri === "/api/v2/Auth/User(login)") return this.login(body);
    const m = /^(\/api\/v2\/[A-Za-z]+\/[A-Za-z]+)(?::((?:[^:()/]+:)+))?(?:\((\w+)\))?$/.exec(uri);
    if (!m) return error(404, "NotFound", `no such URI ${uri}`);
    if (this.opts.auth) {
      const ok =
        headers["auth-id"] === this.opts.auth.name &&
        typeof headers["auth-token"] === "string" &&
        this.sessions.has(headers["auth-token"]);
      if (!ok) return error(401, "InvalidSession", "Invalid Session");
    }
    const model = m[1]!;
    const ids = m[2] ? m[2].split(":").slice(0, -1) : [];
    const action = m[3];
    if (method === "DESCRIBE") return { status: 200, body: { name: model.split("/").pop() } };
    if (method === "GET" && ids.length > 0 && !action) return this.get(model, ids, headers);
    if (method === "LIST" && ids.length === 0 && !action) return this.list(model, headers, body);
    if (method === "CALL" && ids.length === 1 && action) {
      return this.call(model, ids[0]!, action, body, res);
    }
    return error(400, "InvalidRequest", `${method} is not valid on ${uri}`);
  }

  private login(body: unknown): Answer {
    const creds = body as { username?: unknown; password?: unknown } | undefined;
    const auth = this.opts.auth;
    if (!auth || creds?.username !== auth.name || creds.password !== auth.psk) {
      return error(400, "InvalidRequest", "Invalid Login");
    }
    const token = randomBytes(20).toString("hex");
    this.sessions.add(token);
    return { status: 200, body: token };
  }

  private render(model: string, id: string): unknown {
    switch (model) {
      case DV_MODEL: {
        const d = this.distroVersions.get(id);
        return (
          d && {
            name: d.name,
            distro: d.distro,
            version: d.version,
            file_type: d.fileType,
            release_names: d.releaseNames,
            created: d.created,
            updated: d.created,
          }
        );
      }
      case REPO_MODEL: {
        const r = this.repos.get(id);
        return (
          r && {
            name: r.name,
            description: r.description,
            filesystem_dir: r.filesystemDir,
            manager_type: r.managerType,
            distroversion_list: r.distroVersions.map((d) => `${DV_MODEL}:${d}:`),
            tag: r.tag,
            show_only_latest: r.showOnlyLatest,
            created: r.created,
            updated: r.created,
          }
        );
      }
      case MIRROR_MODEL: {
        const mi = this.mirrors.get(id);
        return (
          mi && {
            name: mi.name,
            description: mi.description,
            repo_list: mi.repos.map((r) => `${REPO_MODEL}:${r}:`),
            last_heartbeat: mi.lastHeartbeat,
            created: mi.created,
            updated: mi.updated,
          }
        );
      }
      case PACKAGE_MODEL: {
        const known = [...this.files.values()].some((f) => f.package === id);
        return known ? { name: id, created: now(), updated: now() } : undefined;
      }
      case FILE_MODEL: {
        const f = /^\d+$/.test(id) ? this.files.get(Number(id)) : undefined;
        return (
          f && {
            package: `${PACKAGE_MODEL}:${f.package}:`,
            distroversion: `${DV_MODEL}:${f.distroVersion}:`,
            version: f.version,
            type: f.type,
            arch: f.arch,
            file:
              this.faults.fileFieldFor(f.id) ?? `/files/${f.id}/${encodeURIComponent(f.filename)}`,
            sha256: f.sha256,
            tags: [...f.tags].sort(),
            created: f.created,
            updated: f.updated,
            created_by: "fake-master",
            updated_by: "fake-master",
          }
        );
      }
      default:
        return undefined;
    }
  }

  private get(model: string, ids: string[], headers: HeaderMap): Answer {
    const multi = ids.length > 1 || String(headers["multi-object"] ?? "").toLowerCase() === "true";
    const out: Record<string, unknown> = {};
    for (const id of ids) {
      const obj = this.render(model, id);
      if (obj === undefined) return error(404, "NotFound", `${model}:${id}: not found`);
      out[`${model}:${id}:`] = obj;
    }
    return { status: 200, body: multi ? out : out[`${model}:${ids[0]}:`] };
  }

  private list(model: string, headers: HeaderMap, body: unknown): Answer {
    let uris: string[];
    const filter = headers.filter;
    if (model === FILE_MODEL && filter === "repo") {
      const args = body as { repo?: unknown; package_list?: unknown } | undefined;
      const repoName =
        typeof args?.repo === "string"
          ? /^\/api\/v2\/Repo\/Repo:([^:]+):$/.exec(args.repo)?.[1]
          : undefined;
      const repo = repoName === undefined ? undefined : this.repos.get(repoName);
      if (!repo) return error(400, "InvalidRequest", `repo filter: no repo ${String(args?.repo)}`);
      const pl = args?.package_list;
      if (
        pl !== null &&
        pl !== undefined &&
        !(Array.isArray(pl) && pl.every((p) => typeof p === "string"))
      ) {
        return error(400, "InvalidRequest", "package_list must be null or a list of names");
      }
      const only = Array.isArray(pl) ? new Set(pl) : null;
      // Every page of one listing filters the same files: remember the result until the data
      // changes (100 pages of a 10,000-file repo each filtered all of them).
      const memoKey = `${this.dataVersion}\0${repo.name}\0${JSON.stringify(pl ?? null)}`;
      if (this.listMemo?.key !== memoKey) {
        this.listMemo = {
          key: memoKey,
          uris: [...this.files.values()]
            .filter((f) => this.repoHasFile(repo, f, f.tags))
            .filter((f) => only === null || only.has(f.package))
            .map((f) => `${FILE_MODEL}:${f.id}:`),
        };
      }
      uris = this.listMemo.uris;
    } else if (filter !== undefined) {
      return error(400, "InvalidRequest", `unknown filter ${String(filter)} on ${model}`);
    } else {
      const keys: Record<string, () => Iterable<string | number>> = {
        [DV_MODEL]: () => this.distroVersions.keys(),
        [REPO_MODEL]: () => this.repos.keys(),
        [MIRROR_MODEL]: () => this.mirrors.keys(),
        [FILE_MODEL]: () => this.files.keys(),
        [PACKAGE_MODEL]: () => new Set([...this.files.values()].map((f) => f.package)),
      };
      const ids = keys[model];
      if (!ids) return error(404, "NotFound", `no model ${model}`);
      uris = [...ids()].map((id) => `${model}:${id}:`);
    }
    const position = Math.max(0, Number.parseInt(String(headers.position ?? "0"), 10) || 0);
    const asked = Number.parseInt(String(headers.count ?? LIST_DEFAULT_COUNT), 10);
    const count = Math.min(
      LIST_MAX_COUNT,
      Number.isFinite(asked) && asked > 0 ? asked : LIST_DEFAULT_COUNT,
    );
    const page = uris.slice(position, position + count);
    return {
      status: 200,
      body: page,
      headers: {
        Position: String(position),
        Count: String(page.length),
        Total: String(uris.length),
      },
    };
  }

  private call(
    model: string,
    id: string,
    action: string,
    body: unknown,
    res: RawResponse,
  ): Answer | null {
    if (model === MIRROR_MODEL && action === "heartbeat") {
      const mirror = this.mirrors.get(id);
      if (!mirror) return error(404, "NotFound", `${model}:${id}: not found`);
      const at = new Date();
      mirror.lastHeartbeat = at.toISOString();
      this.heartbeats.push({ mirror: id, at });
      return { status: 200, body: null };
    }
    if (model === REPO_MODEL && action === "poll") {
      if (!this.repos.has(id)) return error(404, "NotFound", `${model}:${id}: not found`);
      const timeout = (body as { timeout?: unknown } | undefined)?.timeout;
      if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0) {
        return error(400, "InvalidRequest", "timeout must be a number of seconds");
      }
      const seconds = Math.max(timeout, this.opts.minPollTimeout ?? 10);
      const poll: PendingPoll = {
        repo: id,
        res,
        timer: setTimeout(() => this.answerPoll(poll, []), seconds * 1000),
        // A client that gives up (abort, timeout) closes the socket: stop waiting for it.
        onClose: () => {
          clearTimeout(poll.timer);
          this.polls.delete(poll);
        },
      };
      this.polls.add(poll);
      res.socket.once("close", poll.onClose);
      return null;
    }
    return error(400, "InvalidRequest", `no action ${action} on ${model}`);
  }
}

function describeRoot(version: string): unknown {
  return {
    name: "root",
    "api-version": version,
    "multi-uri-max": 100,
    namespaces: ["/api/v2/Auth/", "/api/v2/Attrib/", "/api/v2/Package/", "/api/v2/Repo/"],
  };
}

function now(): string {
  return new Date().toISOString();
}
