/**
 * A fake packrat master for tests, benchmarks and the demo: a test double of the real one
 * (vspeter/packrat@3e72655 on pnhowe/cinp-python 0.12, docs/master-api.md), a real HTTP server
 * on 127.0.0.1 that renders every object, header and error the way that server does, over
 * packrat's data model (tags, distro versions, repos filtered by tag and distro version,
 * mirrors, packages, package files that can be failed and deprecated in place), with its poll
 * semantics, its login, recorded requests and heartbeats, and fault switches.
 *
 * Where it departs from the real master, an option says so: `tagsAs: "array"` (a shape no
 * master sends; kept to test that the client takes it too), `maxListCount` (the real master has
 * no cap), `fileContentLength` (the real dev server streams /files/ chunked; Apache or nginx in
 * front of a production master send a length). test/unit/master-contract.test.ts compares its
 * answers with answers recorded from the real master, so it cannot drift unnoticed.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  startRawHttpServer,
  type HeaderMap,
  type RawHttpServer,
  type RawRequest,
  type RawResponse,
} from "./raw-http.js";

export {
  startRawHttpServer,
  type HeaderMap,
  type RawHandler,
  type RawHttpServer,
  type RawRequest,
  type RawResponse,
} from "./raw-http.js";

// --- faults ---------------------------------------------------------------------------

/** Which requests a fault applies to; all given conditions must hold. */
export interface FaultMatch {
  /** CInP verb or GET, e.g. "LIST". */
  method?: string;
  /** Substring of the request URI (e.g. "(poll)", "/files/foo.deb"), or a RegExp tested on it. */
  uri?: string | RegExp;
  /** How many matching requests it affects; unlimited when left out. */
  times?: number;
}

export type Fault = FaultMatch &
  /** Answer with this status and body (default: the real master's body for that status). */
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
    /** File downloads: the connection drops after `bytes` of the body (default half). */
    | { kind: "truncate"; bytes?: number }
    /** File downloads: same length, other bytes, so the SHA-256 does not match. */
    | { kind: "wrong-bytes" }
    /**
     * File downloads: the right bytes, `bytes` (default 1) every `everyMs`, each piece well
     * within any idle timeout: a master behind a saturated or broken link.
     */
    | { kind: "trickle"; everyMs: number; bytes?: number }
    /** The package file's `file` field carries this (percent-encoded) name instead. */
    | { kind: "hostile-filename"; fileId: number; filename: string }
    /** The package file's `file` field is exactly this string. */
    | { kind: "file-field"; fileId: number; file: string }
    /** The package file's field `field` is rendered as `value` (undefined: left out). */
    | { kind: "field"; fileId: number; field: string; value: unknown }
  );

type ObjectFaultKind = "hostile-filename" | "file-field" | "field";
type RequestFaultKind = Exclude<Fault["kind"], ObjectFaultKind>;
const OBJECT_FAULTS: ReadonlySet<Fault["kind"]> = new Set([
  "hostile-filename",
  "file-field",
  "field",
]);
const FILE_ONLY: ReadonlySet<Fault["kind"]> = new Set(["truncate", "wrong-bytes", "trickle"]);

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
      if (OBJECT_FAULTS.has(f.kind)) continue;
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
      return f as Fault & { kind: RequestFaultKind };
    }
    return null;
  }

  /** Field overrides a test set for a package file, applied in the order they were added. */
  fieldsFor(fileId: number): { field: string; value: unknown }[] {
    const out: { field: string; value: unknown }[] = [];
    for (const { fault: f } of this.rules) {
      if (f.kind === "file-field" && f.fileId === fileId)
        out.push({ field: "file", value: f.file });
      if (f.kind === "hostile-filename" && f.fileId === fileId) {
        out.push({ field: "file", value: `/files/${encodeURIComponent(f.filename)}` });
      }
      if (f.kind === "field" && f.fileId === fileId) out.push({ field: f.field, value: f.value });
    }
    return out;
  }
}

// --- the data model and the CInP API ---------------------------------------------------

/** A Django user of the master. */
export interface FakeUser {
  password: string;
  /** The view_* permissions that let cinp 0.12 on Django >= 2.1 answer GET and LIST. */
  view?: boolean;
  /** can_tag, can_fail, can_deprocate and every tag_<name>: the PackageFile actions. */
  actions?: boolean;
}

export interface FakeMasterOptions {
  apiVersion?: string;
  /** Users that can log in (Auth/User(login)); a bare string is a password with view rights. */
  users?: Record<string, string | FakeUser>;
  /**
   * Anonymous GET and LIST: "allowed" (cinp 0.12 on Django < 2.1, where the original agent,
   * which never logs in, worked) or "refused" with 403 (Django >= 2.1, e.g. Debian 12: only
   * users with the view permissions read). CALL (poll, heartbeat) and DESCRIBE are open in both.
   */
  anonymousReads?: "allowed" | "refused";
  /** Shorthand for users {name: psk} and anonymousReads "refused". */
  auth?: { name: string; psk: string };
  /** Polls shorter than this (seconds) are raised to it; packrat uses 10, tests 1. */
  minPollTimeout?: number;
  /**
   * "notify": packrat on PostgreSQL, LISTEN while a poll is open; a change while no poll of
   * that repo waits is lost; answers are package names, newest first, repeats kept.
   * "sleep": packrat on SQLite (Repo.poll: `time.sleep(timeout); return []`).
   */
  pollMode?: "notify" | "sleep";
  /** PackageFile.tags as the real master sends it ("string": `"dev, prod"`) or as an array. */
  tagsAs?: "string" | "array";
  /** "insertion", or "shuffled" anew on every LIST (cinp 0.12 pages an unordered query). */
  listOrder?: "insertion" | "shuffled";
  /** A cap on LIST Count, which the real master does not have (a capped master's paging). */
  maxListCount?: number;
  /** Send Content-Length with /files/ downloads (a web server in front); default chunked. */
  fileContentLength?: boolean;
}

export interface RecordedRequest {
  method: string;
  uri: string;
  headers: HeaderMap;
  body: unknown;
}

/** A package file as a pipeline uploads it to the master (addPackageFile). */
export interface NewPackageFile {
  package: string;
  distroVersion: string;
  version: string;
  type: string;
  arch: string;
  filename: string;
  content: Uint8Array;
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
  /**
   * A new PackageFile (`create`, which notifies nothing) tagged with `tags` through the `tag`
   * action (which notifies the repos that hold the tag). Returns its id. The file is served at
   * fileUrl(id), `/files/<filename>` like packrat's MEDIA_URL.
   */
  addPackageFile(
    f: NewPackageFile & {
      tags?: string[];
      /** Report this instead of the real hash: a master that lies. */
      sha256?: string;
    },
  ): number;
  /** The `file` field of a package file: the path its bytes are served at. */
  fileUrl(id: number): string;
  /** The `tag` action: notifies the repos that hold the tag. */
  tag(id: number, tag: string): void;
  /** An untag through the ORM or the admin (packrat has no untag action): notifies nothing. */
  untag(id: number, tag: string): void;
  /** The `fail` action: sets failed_at/failed_by and notifies every repo holding the file. */
  fail(id: number, by?: string): void;
  /** The `deprocate` action (packrat's spelling): sets deprocated_at/_by and notifies. */
  deprecate(id: number, by?: string): void;
  /** A delete through the ORM (the API refuses DELETE on PackageFile): notifies nothing. */
  removePackageFile(id: number): void;
  setRepoList(mirror: string, repos: string[]): void;
  /** Forget every session: the next call with one gets a 401 and must log in again. */
  expireSessions(): void;
  /** Number of polls waiting right now (tests wait for a poll to be open before changing data). */
  readonly openPolls: number;
  readonly heartbeats: { mirror: string; at: Date }[];
  readonly requests: RecordedRequest[];
  faults: Faults;
  close(): Promise<void>;
}

const ROOT = "/api/v2/";
const TAG_MODEL = "/api/v2/Attrib/Tag";
const DV_MODEL = "/api/v2/Attrib/DistroVersion";
const REPO_MODEL = "/api/v2/Repo/Repo";
const MIRROR_MODEL = "/api/v2/Repo/Mirror";
const PACKAGE_MODEL = "/api/v2/Package/Package";
const FILE_MODEL = "/api/v2/Package/PackageFile";
const FILE_TAG_MODEL = "/api/v2/Package/PackageFileTag";
const USER_MODEL = "/api/v2/Auth/User";
/** cinp 0.12 server_common: __MULTI_URI_MAX__. */
const MULTI_URI_MAX = 100;
/** cinp 0.12 Model.list: `header_map.get('COUNT', 10)`. */
const LIST_DEFAULT_COUNT = 10;
/** cinp 0.12's URI grammar (common.py URI.uri_regex), for /api/v2/ only. */
const URI_RE =
  /^\/api\/v2\/((?:[a-zA-Z0-9\-_.!~*]+\/)*)([a-zA-Z0-9\-_.!~*]+)?(:(?:[a-zA-Z0-9\-_.!~*']*:)*)?(\([a-zA-Z0-9\-_.!~*]+\))?$/;

/** Headers on every answer of the real server (cinp Server.handle). */
const BASE_HEADERS: Readonly<Record<string, string>> = {
  "Cinp-Version": "0.9",
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Expose-Headers":
    "Method, Type, Cinp-Version, Count, Position, Total, Multi-Object, Object-Id, Id-Only",
};

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
  /**
   * Where under /files/ it is served, percent-encoded as Django's FileField.url does: the
   * filename, unique as MEDIA_ROOT's names are (but see addPackageFile).
   */
  stored: string;
  content: Buffer;
  tags: Set<string>;
  sha256: string;
  failedAt: string | null;
  failedBy: string | null;
  deprecatedAt: string | null;
  deprecatedBy: string | null;
  created: string;
  updated: string;
}
interface PendingPoll {
  repo: string;
  res: RawResponse;
  timer: NodeJS.Timeout;
  onClose: () => void;
}
interface Session {
  user: string;
}

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

const message = (status: number, text: string): Answer => ({ status, body: { message: text } });
const notAuthorized = (): Answer => message(403, "Not Authorized");
/** cinp ObjectNotFound: 404 with the model path and the id asked for. */
const notFound = (model: string, id: string): Answer => ({
  status: 404,
  body: { model_path: model, object_id: id },
});
/** cinp Server.dispatch: a path with no element is a 404 whose body is a JSON string. */
const pathNotFound = (uri: string): Answer => ({ status: 404, body: `path not found "${uri}"` });

export async function startFakeMaster(opts: FakeMasterOptions = {}): Promise<FakeMaster> {
  const master = new FakeMasterImpl(opts);
  await master.start();
  return master;
}

/** Python's datetime.isoformat() of an aware UTC time: microseconds, `+00:00`, no `Z`. */
export function isoformat(d: Date): string {
  const base = d.toISOString().slice(0, 19);
  const ms = d.getUTCMilliseconds();
  return `${base}${ms === 0 ? "" : `.${String(ms * 1000).padStart(6, "0")}`}+00:00`;
}

function now(): string {
  return isoformat(new Date());
}

class FakeMasterImpl implements FakeMaster {
  url = "";
  readonly heartbeats: { mirror: string; at: Date }[] = [];
  readonly requests: RecordedRequest[] = [];
  faults = new Faults();
  private server: RawHttpServer | null = null;
  private readonly tags = new Map<string, { created: string }>();
  private readonly distroVersions = new Map<string, DvRow>();
  private readonly repos = new Map<string, RepoRow>();
  private readonly mirrors = new Map<string, MirrorRow>();
  private readonly files = new Map<number, FileRow>();
  /** Files by the name they are served at (`stored`): a bench of 100,000 files looks each up. */
  private readonly byStored = new Map<string, FileRow>();
  private readonly packages = new Map<string, { created: string }>();
  private nextFileId = 1;
  private readonly users: Map<string, Required<FakeUser>>;
  private readonly anonymousReads: "allowed" | "refused";
  private readonly sessions = new Map<string, Session>();
  private readonly polls = new Set<PendingPoll>();
  /** NOTIFYs of this tick by repo, newest last; delivered together on the next tick. */
  private readonly notified = new Map<string, string[]>();
  private flushScheduled = false;
  /** Bumped by every test-side mutation; keys the LIST memo. */
  private dataVersion = 0;
  private listMemo: { key: string; ids: number[] } | null = null;

  constructor(private readonly opts: FakeMasterOptions) {
    this.users = new Map();
    for (const [name, u] of Object.entries(opts.users ?? {})) {
      const user = typeof u === "string" ? { password: u } : u;
      this.users.set(name, { view: true, actions: false, ...user });
    }
    if (opts.auth)
      this.users.set(opts.auth.name, { password: opts.auth.psk, view: true, actions: false });
    this.anonymousReads = opts.anonymousReads ?? (opts.auth ? "refused" : "allowed");
  }

  async start(): Promise<void> {
    this.server = await startRawHttpServer((req, res) => this.handle(req, res));
    this.url = this.server.url;
  }

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
    this.ensureTag(r.tag);
    this.repos.set(r.name, {
      name: r.name,
      filesystemDir: r.filesystemDir,
      managerType: r.managerType,
      distroVersions: [...r.distroVersions],
      tag: r.tag,
      description: r.description ?? "",
      // packrat's model default; implemented nowhere (the master lists every version)
      showOnlyLatest: r.showOnlyLatest ?? true,
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
    if (!this.packages.has(f.package)) this.packages.set(f.package, { created: now() });
    const content = Buffer.from(f.content);
    const id = this.nextFileId++;
    // MEDIA_ROOT holds one file per name (packrat's create refuses a name in use). Two rows with
    // one name exist only through the ORM; a test that makes them (a master that lies) gets the
    // second under a name of its own directory, so both can be served.
    const name = encodeURIComponent(f.filename);
    const taken = this.byStored.has(name);
    const row: FileRow = {
      id,
      package: f.package,
      distroVersion: f.distroVersion,
      version: f.version,
      type: f.type,
      arch: f.arch,
      filename: f.filename,
      stored: taken ? `${id}/${name}` : name,
      content,
      tags: new Set(),
      sha256: f.sha256 ?? createHash("sha256").update(content).digest("hex"),
      failedAt: null,
      failedBy: null,
      deprecatedAt: null,
      deprecatedBy: null,
      created: now(),
      updated: now(),
    };
    this.files.set(id, row);
    this.byStored.set(row.stored, row);
    for (const t of f.tags ?? []) this.tag(id, t);
    return id;
  }

  fileUrl(id: number): string {
    return `/files/${this.requireFile(id).stored}`;
  }

  tag(id: number, tag: string): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    this.ensureTag(tag);
    if (row.tags.has(tag)) return;
    row.tags.add(tag);
    this.notifyRepos(row, [tag]);
  }

  untag(id: number, tag: string): void {
    this.dataVersion++;
    this.requireFile(id).tags.delete(tag);
  }

  fail(id: number, by = "root"): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    if (row.failedAt !== null) return;
    row.failedAt = now();
    row.failedBy = by;
    row.updated = now();
    this.notifyRepos(row, row.tags);
  }

  deprecate(id: number, by = "root"): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    if (row.deprecatedAt !== null) return;
    row.deprecatedAt = now();
    row.deprecatedBy = by;
    row.updated = now();
    this.notifyRepos(row, row.tags);
  }

  removePackageFile(id: number): void {
    this.dataVersion++;
    const row = this.requireFile(id);
    this.files.delete(id);
    if (this.byStored.get(row.stored) === row) this.byStored.delete(row.stored);
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

  private ensureTag(name: string): void {
    if (!this.tags.has(name)) this.tags.set(name, { created: now() });
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

  private repoHasFile(repo: RepoRow, row: FileRow): boolean {
    return repo.distroVersions.includes(row.distroVersion) && row.tags.has(repo.tag);
  }

  /**
   * PackageFile.notify: NOTIFY each repo whose tag is one of `tags` and whose distro versions
   * hold the file's, with the package name as payload. Only an open poll LISTENs (the payload
   * of a change while none waits is lost); the sleeping poll of a SQLite master hears nothing.
   */
  private notifyRepos(row: FileRow, tags: Iterable<string>): void {
    if ((this.opts.pollMode ?? "notify") === "sleep") return;
    const tagList = new Set(tags);
    for (const repo of this.repos.values()) {
      if (!tagList.has(repo.tag) || !repo.distroVersions.includes(row.distroVersion)) continue;
      if (![...this.polls].some((p) => p.repo === repo.name)) continue;
      const names = this.notified.get(repo.name) ?? [];
      names.push(row.package);
      this.notified.set(repo.name, names);
    }
    if (this.notified.size > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushNotifies());
    }
  }

  private flushNotifies(): void {
    this.flushScheduled = false;
    for (const [repo, names] of this.notified) {
      for (const p of [...this.polls]) {
        if (p.repo !== repo) continue;
        // Repo.poll pops conn.notifies from the end: newest first, repeats kept.
        this.answerPoll(p, [...names].reverse());
      }
    }
    this.notified.clear();
  }

  private answerPoll(poll: PendingPoll, names: string[]): void {
    this.polls.delete(poll);
    clearTimeout(poll.timer);
    poll.res.socket.off("close", poll.onClose);
    this.reply(poll.res, { status: 200, body: names, headers: this.callHeaders(false) });
  }

  // --- HTTP ---

  private reply(res: RawResponse, answer: Answer): void {
    res.json(answer.status, answer.body, { ...BASE_HEADERS, ...answer.headers });
  }

  private async handle(req: RawRequest, res: RawResponse): Promise<void> {
    const uri = req.target.replace(/^https?:\/\/[^/]+/, "");
    let body: unknown = undefined;
    let badJson = false;
    const text = req.body.toString("utf8").trim();
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
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
          return this.reply(res, {
            status: fault.status,
            body: fault.body === undefined ? defaultErrorBody(fault.status) : fault.body,
          });
        case "hang":
          return res.hang();
        case "reset":
          return res.reset();
        case "invalid-json":
          return res.send(200, { "Content-Type": "application/json" }, '{"api-version": "2.0", ');
        case "json":
          return this.reply(res, { status: 200, body: fault.body, headers: fault.headers ?? {} });
        case "delay":
          await new Promise((r) => setTimeout(r, fault.ms));
          break;
        case "api-version":
          return this.reply(res, this.describeRoot(fault.version));
        case "truncate":
        case "wrong-bytes":
        case "trickle":
          return this.serveFile(uri, res, fault);
      }
    }
    if (isFile) return this.serveFile(uri, res, null);
    if (badJson) {
      return this.reply(res, message(400, 'Error Parsing JSON Request data: "invalid JSON"'));
    }
    const answer = this.cinp(req.method, uri, req.headers, body, res);
    if (answer) this.reply(res, answer);
  }

  /** packrat's files_handler (the dev server's /files/): the stored bytes, streamed. */
  private serveFile(
    uri: string,
    res: RawResponse,
    fault:
      | { kind: "truncate"; bytes?: number }
      | { kind: "wrong-bytes" }
      | { kind: "trickle"; everyMs: number; bytes?: number }
      | null,
  ): void {
    const stored = uri.slice("/files/".length);
    const row = this.byStored.get(stored);
    const headers = { ...BASE_HEADERS, "Content-Type": "application/octet-stream" };
    if (!row) {
      return res.send(
        404,
        { ...BASE_HEADERS, "Content-Type": "text/plain;charset=utf-8" },
        `file "${stored}" not found`,
      );
    }
    let bytes = row.content;
    if (fault?.kind === "trickle") {
      return res.sendTrickled(200, headers, Buffer.from(bytes), {
        bytes: fault.bytes ?? 1,
        everyMs: fault.everyMs,
        contentLength: this.opts.fileContentLength === true,
      });
    }
    if (fault?.kind === "wrong-bytes") {
      bytes = bytes.length > 0 ? Buffer.from(bytes.map((b) => b ^ 0xff)) : Buffer.from("x");
    }
    const cut =
      fault?.kind === "truncate" ? (fault.bytes ?? Math.floor(row.content.length / 2)) : undefined;
    if (this.opts.fileContentLength) {
      if (cut !== undefined) return res.sendTruncated(200, headers, bytes, cut);
      return res.send(200, headers, bytes);
    }
    res.sendChunked(200, headers, bytes, cut);
  }

  /** Route one CInP request as cinp 0.12's Server.dispatch does; null when deferred (poll). */
  private cinp(
    method: string,
    uri: string,
    headers: HeaderMap,
    body: unknown,
    res: RawResponse,
  ): Answer | null {
    const verbs = ["GET", "LIST", "CALL", "CREATE", "UPDATE", "DELETE", "DESCRIBE", "OPTIONS"];
    if (!verbs.includes(method)) return message(400, `Invalid Verb (HTTP Method)"${method}"`);
    const m = URI_RE.exec(uri);
    if (!m) return message(400, `Unable to Parse "${uri}"`);
    const namespace = m[1] ?? "";
    const modelName = m[2];
    const ids = m[3] ? m[3].slice(1, -1).split(":") : null;
    const action = m[4] ? m[4].slice(1, -1) : null;
    if (ids && ids.length > MULTI_URI_MAX) {
      return message(400, `id_list longer than supported length of "${MULTI_URI_MAX}"`);
    }
    const model = modelName ? `${ROOT}${namespace}${modelName}` : null;
    if (!this.knownElement(namespace, model, action)) return pathNotFound(uri);
    if (headers["cinp-version"] !== "0.9") return message(400, "Invalid CInP Protocol Version");

    // Auth-Id and Auth-Token together name a session; a dead one is refused for every verb.
    const authId = headers["auth-id"];
    const authToken = headers["auth-token"];
    let user: string | null = null;
    if (typeof authId === "string" && typeof authToken === "string") {
      const session = this.sessions.get(authToken);
      if (!session || session.user !== authId) return message(401, "Invalid Session");
      user = session.user;
    }

    if (method === "DESCRIBE") {
      if (model === null) return this.describeRoot(this.opts.apiVersion ?? "2.0");
      return {
        status: 200,
        body: { name: modelName, path: model },
        headers: { Verb: "DESCRIBE", Type: "Model", "Cache-Control": "max-age=0" },
      };
    }
    if (model === null) return message(400, `Verb "${method}" requires model`);
    if (action !== null && method !== "CALL") {
      return message(400, `Invalid verb "${method}" for request with action`);
    }
    if (method === "CALL" && action === null)
      return message(400, `Verb "${method}" requires action`);
    if (ids !== null && method === "LIST") {
      return message(400, `Invalid Verb "${method}" for request with id`);
    }
    if (method === "GET" && ids === null) return message(400, `Verb "${method}" requires id`);

    if (model === USER_MODEL) return this.authAction(method, action, body, user, authToken);
    if (method !== "GET" && method !== "LIST" && method !== "CALL") return notAuthorized();

    const multiHeader = headers["multi-object"];
    let multi = ids !== null && ids.length > 1;
    if (typeof multiHeader === "string") {
      if (multiHeader.toUpperCase() === "TRUE") multi = true;
      else if (multi)
        return message(400, "requested non multi-object, however multiple ids where sent");
    }

    if (method === "GET" || method === "LIST") {
      const viewer =
        user === null ? this.anonymousReads === "allowed" : this.users.get(user)?.view === true;
      if (!viewer) return notAuthorized();
      if (method === "GET") return this.get(model, ids!, multi);
      return this.list(model, headers, body);
    }
    return this.call(model, ids, action!, body, res, user, multi);
  }

  private knownElement(namespace: string, model: string | null, action: string | null): boolean {
    if (model === null)
      return namespace === "" || ["Auth/", "Attrib/", "Package/", "Repo/"].includes(namespace);
    const actions: Record<string, string[]> = {
      [USER_MODEL]: ["login", "logout", "whoami", "change_password"],
      [TAG_MODEL]: ["tagMap"],
      [DV_MODEL]: [],
      [REPO_MODEL]: ["poll"],
      [MIRROR_MODEL]: ["heartbeat"],
      [PACKAGE_MODEL]: [],
      [FILE_MODEL]: ["tag", "deprocate", "fail", "distroversionOptions", "create", "filenameInUse"],
      [FILE_TAG_MODEL]: [],
    };
    const known = actions[model];
    return known !== undefined && (action === null || known.includes(action));
  }

  private describeRoot(version: string): Answer {
    return {
      status: 200,
      body: {
        name: "root",
        path: ROOT,
        "api-version": version,
        "multi-uri-max": MULTI_URI_MAX,
        doc: "",
        namespaces: ["/api/v2/Auth/", "/api/v2/Attrib/", "/api/v2/Package/", "/api/v2/Repo/"],
        models: [],
      },
      headers: { Verb: "DESCRIBE", Type: "Namespace", "Cache-Control": "max-age=0" },
    };
  }

  private callHeaders(multi: boolean): Record<string, string> {
    return { Verb: "CALL", "Cache-Control": "no-cache", "Multi-Object": multi ? "True" : "False" };
  }

  /** packrat Auth/models.py User: login answers the session key; a wrong one 400 Invalid Login. */
  private authAction(
    method: string,
    action: string | null,
    body: unknown,
    user: string | null,
    token: unknown,
  ): Answer {
    if (method !== "CALL" || action === null) return notAuthorized();
    const args = (body ?? {}) as Record<string, unknown>;
    if (action === "login") {
      const missing: Record<string, string> = {};
      for (const k of ["username", "password"]) if (!(k in args)) missing[k] = "Required Paramater";
      if (Object.keys(missing).length > 0) return { status: 400, body: missing };
      const u = this.users.get(String(args.username));
      if (!u || u.password !== String(args.password)) return message(400, "Invalid Login");
      const key = randomBytes(16).toString("hex");
      this.sessions.set(key, { user: String(args.username) });
      return { status: 200, body: key, headers: this.callHeaders(false) };
    }
    if (user === null)
      return message(
        500,
        "Exception (AttributeError)\"'AnonymousUser' object has no attribute '_django_session'\"",
      );
    if (action === "logout") {
      if (typeof token === "string") this.sessions.delete(token);
      return { status: 200, body: undefined, headers: this.callHeaders(false) };
    }
    if (action === "whoami") return { status: 200, body: user, headers: this.callHeaders(false) };
    return notAuthorized();
  }

  private fileFields(f: FileRow): Record<string, unknown> {
    const tags = [...f.tags].sort();
    const out: Record<string, unknown> = {
      package: `${PACKAGE_MODEL}:${f.package}:`,
      distroversion: `${DV_MODEL}:${f.distroVersion}:`,
      version: f.version,
      type: f.type,
      arch: f.arch,
      justification: "fake master",
      provenance: "test data",
      file: this.fileUrl(f.id),
      sha256: f.sha256,
      failed_at: f.failedAt,
      failed_by: f.failedBy,
      deprocated_at: f.deprecatedAt,
      deprocated_by: f.deprecatedBy,
      created_by: "root",
      created: f.created,
      updated: f.updated,
      // cinp renders the many-to-many through PackageFileTag with the Tags' keys: URIs of
      // PackageFileTag "objects" named after tags, which no GET resolves. The agent ignores it.
      tag_list: tags.map((t) => `${FILE_TAG_MODEL}:${t}:`),
      tags: (this.opts.tagsAs ?? "string") === "array" ? tags : tags.join(", "),
    };
    for (const { field, value } of this.faults.fieldsFor(f.id)) {
      if (value === undefined) delete out[field];
      else out[field] = value;
    }
    return out;
  }

  /** One object as cinp 0.12's Model._asDict renders it: fields, then many-to-many, then properties. */
  private render(model: string, id: string): Record<string, unknown> | undefined {
    switch (model) {
      case TAG_MODEL: {
        const t = this.tags.get(id);
        return (
          t && {
            name: id,
            change_control_required: false,
            created: t.created,
            updated: t.created,
            required_list: [],
          }
        );
      }
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
            tag: `${TAG_MODEL}:${r.tag}:`,
            show_only_latest: r.showOnlyLatest,
            created: r.created,
            updated: r.created,
            distroversion_list: [...r.distroVersions].sort().map((d) => `${DV_MODEL}:${d}:`),
          }
        );
      }
      case MIRROR_MODEL: {
        const mi = this.mirrors.get(id);
        return (
          mi && {
            name: mi.name,
            description: mi.description,
            last_heartbeat: mi.lastHeartbeat,
            created: mi.created,
            updated: mi.updated,
            repo_list: [...mi.repos].sort().map((r) => `${REPO_MODEL}:${r}:`),
          }
        );
      }
      case PACKAGE_MODEL: {
        const p = this.packages.get(id);
        return (
          p && {
            name: id,
            deprocated_count: 20,
            failed_count: 10,
            created: p.created,
            updated: p.created,
          }
        );
      }
      case FILE_MODEL: {
        const f = /^\d+$/.test(id) ? this.files.get(Number(id)) : undefined;
        return f && this.fileFields(f);
      }
      default:
        return undefined;
    }
  }

  private get(model: string, ids: string[], multi: boolean): Answer {
    const out: Record<string, unknown> = {};
    for (const id of ids) {
      const obj = this.render(model, id);
      if (obj === undefined) return notFound(model, id);
      out[`${model}:${id}:`] = obj;
    }
    return {
      status: 200,
      body: multi ? out : out[`${model}:${ids[0]}:`],
      headers: {
        Verb: "GET",
        "Cache-Control": "no-cache",
        "Multi-Object": multi ? "True" : "False",
      },
    };
  }

  /** A Model parameter (cinp Converter._toPython): the URI of an existing object of `model`. */
  private modelArg(
    value: unknown,
    model: string,
    rows: ReadonlyMap<string, unknown>,
  ): string | { error: string } {
    if (typeof value !== "string" || value === "")
      return { error: 'Invalid Value "Object is required"' };
    const m = /^(\/api\/v2\/[A-Za-z]+\/[A-Za-z]+):([^:]+):$/.exec(value);
    if (!m) return { error: `Invalid Value "Unable to parse URI ${JSON.stringify(value)}"` };
    if (m[1] !== model)
      return { error: `Invalid Value "Object "${value}" is for a model other than "${model}""` };
    if (!rows.has(m[2]!))
      return { error: `Invalid Value "Object "${value}" for model "${model}" NotFound"` };
    return m[2]!;
  }

  private list(model: string, headers: HeaderMap, body: unknown): Answer {
    const position = Number(headers.position ?? 0);
    let count = Number(headers.count ?? LIST_DEFAULT_COUNT);
    if (!Number.isInteger(position) || !Number.isInteger(count)) {
      return message(400, "Count and Position must be integers if specified");
    }
    if (this.opts.maxListCount !== undefined) count = Math.min(count, this.opts.maxListCount);
    const filter = headers.filter;
    let ids: (string | number)[];
    if (filter !== undefined) {
      if (body === undefined || body === null) {
        return message(400, "Filter Paramaters are required when Filter Name is specified");
      }
      if (typeof body !== "object" || Array.isArray(body))
        return message(400, "LIST data must be a dict or None");
      const args = body as Record<string, unknown>;
      if (model === FILE_MODEL && filter === "repo") {
        const errors: Record<string, string> = {};
        if (!("repo" in args)) errors.repo = "Required Paramater";
        if (!("package_list" in args)) errors.package_list = "Required Paramater";
        const repoName = "repo" in args ? this.modelArg(args.repo, REPO_MODEL, this.repos) : null;
        if (typeof repoName === "object" && repoName !== null) errors.repo = repoName.error;
        const pl = args.package_list;
        if (pl !== undefined && pl !== null && pl !== "" && !Array.isArray(pl)) {
          errors.package_list = `Invalid Value "Must be an Array/List, got "${typeof pl}""`;
        }
        if (Object.keys(errors).length > 0) return { status: 400, body: errors };
        ids = this.repoFileIds(
          this.repos.get(repoName as string)!,
          Array.isArray(pl) ? pl.map(String) : null,
        );
      } else if (model === FILE_MODEL && filter === "package") {
        if (!("package" in args)) return { status: 400, body: { package: "Required Paramater" } };
        const name = this.modelArg(args.package, PACKAGE_MODEL, this.packages);
        if (typeof name === "object") return { status: 400, body: { package: name.error } };
        ids = [...this.files.values()].filter((f) => f.package === name).map((f) => f.id);
      } else {
        return message(400, `Invalid Filter Name "${String(filter)}"`);
      }
    } else {
      const keys: Record<string, () => Iterable<string | number>> = {
        [TAG_MODEL]: () => this.tags.keys(),
        [DV_MODEL]: () => this.distroVersions.keys(),
        [REPO_MODEL]: () => this.repos.keys(),
        [MIRROR_MODEL]: () => this.mirrors.keys(),
        [FILE_MODEL]: () => this.files.keys(),
        [PACKAGE_MODEL]: () => this.packages.keys(),
        [FILE_TAG_MODEL]: () => [],
      };
      const all = keys[model];
      if (!all) return notAuthorized();
      ids = [...all()];
    }
    if ((this.opts.listOrder ?? "insertion") === "shuffled") ids = shuffled(ids);
    const page = ids.slice(position, position + count).map((id) => `${model}:${id}:`);
    return {
      status: 200,
      body: page,
      headers: {
        Verb: "LIST",
        "Cache-Control": "no-cache",
        Count: String(page.length),
        Position: String(position),
        Total: String(ids.length),
        "Id-Only": "False",
      },
    };
  }

  /** PackageFile.filterRepo: distroversion in the repo's list, the repo's tag among its tags. */
  private repoFileIds(repo: RepoRow, only: string[] | null): number[] {
    const onlySet = only && only.length > 0 ? new Set(only) : null;
    // Every LIST of one listing filters the same files: remember it until the data changes.
    const key = `${this.dataVersion}\0${repo.name}\0${JSON.stringify(onlySet ? [...onlySet].sort() : null)}`;
    if (this.listMemo?.key !== key) {
      this.listMemo = {
        key,
        ids: [...this.files.values()]
          .filter((f) => this.repoHasFile(repo, f) && (onlySet === null || onlySet.has(f.package)))
          .map((f) => f.id),
      };
    }
    return this.listMemo.ids;
  }

  private call(
    model: string,
    ids: string[] | null,
    action: string,
    body: unknown,
    res: RawResponse,
    user: string | null,
    multi: boolean,
  ): Answer | null {
    const args = (body ?? {}) as Record<string, unknown>;
    if (model === MIRROR_MODEL && action === "heartbeat") {
      if (ids === null) return message(400, "Non-Static Actions should be passed ids");
      const mirror = this.mirrors.get(ids[0]!);
      if (!mirror) return notFound(model, ids[0]!);
      const at = new Date();
      mirror.lastHeartbeat = isoformat(at);
      mirror.updated = isoformat(at);
      this.heartbeats.push({ mirror: ids[0]!, at });
      return { status: 200, body: undefined, headers: this.callHeaders(multi) };
    }
    if (model === REPO_MODEL && action === "poll") {
      if (ids === null) return message(400, "Non-Static Actions should be passed ids");
      if (!("timeout" in args)) return { status: 400, body: { timeout: "Required Paramater" } };
      const timeout = Number.parseInt(String(args.timeout), 10);
      if (!Number.isFinite(timeout)) {
        return { status: 400, body: { timeout: 'Invalid Value "Unable to convert to an int"' } };
      }
      if (!this.repos.has(ids[0]!)) return notFound(model, ids[0]!);
      const seconds = Math.max(timeout, this.opts.minPollTimeout ?? 10);
      const poll: PendingPoll = {
        repo: ids[0]!,
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
    if (model === FILE_MODEL && ["tag", "fail", "deprocate"].includes(action)) {
      // PackageFile.checkAuth: can_tag / can_fail / can_deprocate; nobody anonymous has them.
      if (user === null || this.users.get(user)?.actions !== true) return notAuthorized();
      if (ids === null) return message(400, "Non-Static Actions should be passed ids");
      const row = /^\d+$/.test(ids[0]!) ? this.files.get(Number(ids[0])) : undefined;
      if (!row) return notFound(model, ids[0]!);
      if (action === "tag") {
        const tag = this.modelArg(args.tag, TAG_MODEL, this.tags);
        if (typeof tag === "object") return { status: 400, body: { tag: tag.error } };
        if (row.failedAt !== null || row.deprecatedAt !== null) {
          return {
            status: 400,
            body: {
              class: "PackageException",
              error: "DEPROCATED/FAILED",
              message: "Can not tag when deprocated or failed",
            },
          };
        }
        this.tag(row.id, tag);
      } else if (action === "fail") {
        if (row.deprecatedAt !== null) {
          return {
            status: 400,
            body: {
              class: "PackageException",
              error: "DEPROCATED",
              message: "Can not fail when deprocated",
            },
          };
        }
        this.fail(row.id, user);
      } else {
        if (row.failedAt !== null) {
          return {
            status: 400,
            body: {
              class: "PackageException",
              error: "FAILED",
              message: "Can not deprocate when failed",
            },
          };
        }
        this.deprecate(row.id, user);
      }
      return { status: 200, body: undefined, headers: this.callHeaders(multi) };
    }
    return notAuthorized();
  }
}

/** The body the real server sends with each error status it uses. */
function defaultErrorBody(status: number): unknown {
  switch (status) {
    case 401:
      return { message: "Invalid Session" };
    case 403:
      return { message: "Not Authorized" };
    case 500:
      return {
        message: 'Exception (RuntimeError)"injected by the fake master"',
        trace:
          'Traceback (most recent call last):\n  File "fake", line 1\nRuntimeError: injected by the fake master\n',
      };
    default:
      return { message: `injected HTTP ${status}` };
  }
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
