/**
 * The packrat master client (PACKRAT_API.md): CInP over undici, with optional login, one
 * re-login on 401, a timeout on every call, and shape checks on every answer it uses.
 */
import { Transform } from "node:stream";
import { Agent, ProxyAgent, request, type Dispatcher } from "undici";
import { PackratError } from "../errors.js";
import { redactUrl, type Logger } from "../log.js";
import type { DistroVersion, MirrorInfo, PackageFile, Repo } from "../types.js";
import {
  API_ROOT,
  CINP_API_VERSION,
  CINP_HEADERS,
  MasterHttpError,
  ShapeReader,
  describeCinpError,
  intHeader,
  isRecord,
  isValidId,
  multiUris,
  objectUri,
  parseCinpError,
  parseObjectUri,
  protocolError,
  snippet,
  typeName,
} from "./cinp.js";
import { assertSafeFilename } from "./filename-guard.js";
import type { FileDownload, MasterClient } from "./master-types.js";

/** Ids per multi-object GET; the contract says 10 is safe on every master. */
export const MULTI_GET_MAX = 10;
/** Never more per multi GET than this, whatever the master describes (URI length). */
const MULTI_GET_CEILING = 100;
/** URIs per LIST page. */
export const LIST_PAGE_SIZE = 100;
/** LIST pages requested ahead of the one being read (see listOnce). */
const LIST_PAGES_AHEAD = 4;
/** Multi-object GETs in flight at once while reading a large repo. */
const GET_CONCURRENCY = 4;
/** A LIST whose Total changes while it is paged is read again from the start, this often. */
const LIST_ATTEMPTS = 3;
/** Bound on a JSON answer: a page of 10 objects is a few kB; a hostile master must not OOM us. */
const MAX_JSON_BYTES = 32 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;

const LOGIN_URI = "/api/v2/Auth/User(login)";
const MIRROR_MODEL = "/api/v2/Repo/Mirror";
const REPO_MODEL = "/api/v2/Repo/Repo";
const DISTRO_VERSION_MODEL = "/api/v2/Attrib/DistroVersion";
const PACKAGE_FILE_MODEL = "/api/v2/Package/PackageFile";
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
// eslint-disable-next-line no-control-regex
const UNSAFE_URL_CHARS = /[\\\u0000-\u001f\u007f?#]/;

/** A connection that broke under a request (as opposed to one that could not be made). */
const RESET_CODES = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE"]);

const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "ETIMEDOUT",
]);

/** A package file the client left out of a listing, and why. */
export interface RejectedPackageFile {
  uri: string;
  fileUrl: string;
  reason: string;
}

export interface MasterClientOptions {
  /** http(s)://name[:port], no trailing slash needed. */
  host: string;
  /** The mirror's name on the master ([packrat] name). */
  name: string;
  /** Pre-shared key; when set the client logs in as `name` and sends Auth-Id/Auth-Token. */
  psk: string | null;
  /** http://[user:pass@]proxy:port; http masters are reached by forwarding, https by CONNECT. */
  proxy: string | null;
  /** Time allowed for each call (a download: until headers, then between chunks). */
  requestTimeoutMs: number;
  log: Logger;
  /** For tests (undici MockAgent); the client then does not close it. */
  dispatcher?: Dispatcher;
  /** Added to a poll's own timeout for its HTTP deadline; 30 s as the contract says. */
  pollGraceMs?: number;
  /** Told about each package file left out of a listing (unsafe name); also logged as warn. */
  onRejectedFile?: (rejected: RejectedPackageFile) => void;
}

interface CallOptions {
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

interface Answer {
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export { MasterHttpError } from "./cinp.js";

export function createMasterClient(options: MasterClientOptions): MasterClient {
  return new HttpMasterClient(options);
}

class HttpMasterClient implements MasterClient {
  private readonly host: string;
  private readonly name: string;
  private readonly psk: string | null;
  private readonly timeoutMs: number;
  private readonly pollGraceMs: number;
  private readonly log: Logger;
  private multiGetMax = MULTI_GET_MAX;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly onRejectedFile: ((rejected: RejectedPackageFile) => void) | undefined;
  private token: string | null = null;
  private loginInFlight: Promise<void> | null = null;
  private closed = false;

  constructor(options: MasterClientOptions) {
    this.host = normaliseHost(options.host);
    if (!isValidId(options.name)) {
      throw new PackratError(
        "PACKRAT_CONFIG_INVALID",
        `[packrat] name = ${JSON.stringify(options.name)}: a mirror name cannot contain ":", "/", "(", ")" or spaces`,
      );
    }
    if (!(options.requestTimeoutMs > 0)) {
      throw new RangeError(`requestTimeoutMs must be positive, got ${options.requestTimeoutMs}`);
    }
    this.name = options.name;
    this.psk = options.psk === "" ? null : options.psk;
    this.timeoutMs = options.requestTimeoutMs;
    this.pollGraceMs = options.pollGraceMs ?? 30_000;
    this.log = options.log.child({ component: "master" });
    this.onRejectedFile = options.onRejectedFile;
    if (options.dispatcher) {
      this.dispatcher = options.dispatcher;
      this.ownsDispatcher = false;
    } else {
      const connect = { timeout: this.timeoutMs };
      this.dispatcher = options.proxy
        ? // Forward (no CONNECT) for http masters, as the original agent's `requests` did: common
          // proxy setups refuse CONNECT to anything but port 443. https still tunnels.
          new ProxyAgent({ uri: options.proxy, proxyTunnel: false, connect })
        : new Agent({ connect });
      this.ownsDispatcher = true;
      if (options.proxy) this.log.debug({ proxy: redactUrl(options.proxy) }, "using a proxy");
    }
  }

  async checkVersion(signal?: AbortSignal): Promise<void> {
    const ans = await this.call("DESCRIBE", API_ROOT, { signal });
    const where = `DESCRIBE ${ans.url}`;
    const description = parseJson(ans, where);
    const root = ShapeReader.of(description, where, "the API description");
    const version = root.string("api-version");
    if (version !== CINP_API_VERSION) {
      throw new PackratError(
        "PACKRAT_API_VERSION",
        `${where}: the master speaks API version ${JSON.stringify(version)}, this agent needs "${CINP_API_VERSION}"`,
        { hint: "upgrade the packrat master, or run an agent release made for its API version" },
      );
    }
    // Ask for as many objects per multi GET as the master allows (10 is the safe floor when it
    // does not say): 10,000 package files are 100 requests instead of 1,000.
    const max = (description as Record<string, unknown>)["multi-uri-max"];
    if (typeof max === "number" && Number.isInteger(max) && max >= 1) {
      this.multiGetMax = Math.min(max, MULTI_GET_CEILING);
    }
  }

  async getMirror(signal?: AbortSignal): Promise<MirrorInfo> {
    const uri = objectUri(MIRROR_MODEL, this.name);
    const ans = await this.call("GET", uri, { signal });
    const where = `GET ${ans.url}`;
    const r = ShapeReader.of(parseJson(ans, where), where, "the mirror");
    const repoUris = r.stringArray("repo_list");
    for (const u of repoUris) expectModel(u, REPO_MODEL, `${where}: repo_list`);
    return {
      name: r.string("name"),
      description: r.optionalString("description"),
      repoUris,
      lastHeartbeat: r.stringOrNull("last_heartbeat"),
    };
  }

  async getRepos(uris: readonly string[], signal?: AbortSignal): Promise<Repo[]> {
    for (const u of uris) expectModel(u, REPO_MODEL, "getRepos");
    const objects = await this.multiGet(uris, "repo", signal);
    return uris.map((uri) => {
      const where = `repo ${this.host}${uri}`;
      const r = ShapeReader.of(objects.get(uri), where, "a repo");
      const distroVersionUris = r.stringArray("distroversion_list");
      for (const u of distroVersionUris) expectModel(u, DISTRO_VERSION_MODEL, where);
      return {
        uri,
        name: r.nonEmptyString("name"),
        description: r.optionalString("description"),
        filesystemDir: r.nonEmptyString("filesystem_dir"),
        managerType: r.nonEmptyString("manager_type"),
        distroVersionUris,
        tag: r.nonEmptyString("tag"),
        showOnlyLatest: r.boolean("show_only_latest"),
      };
    });
  }

  async getDistroVersions(signal?: AbortSignal): Promise<DistroVersion[]> {
    const { uris, objects } = await this.listAndGet(
      DISTRO_VERSION_MODEL,
      null,
      "distro version",
      signal,
    );
    return uris.map((uri) => {
      const r = ShapeReader.of(
        objects.get(uri),
        `distro version ${this.host}${uri}`,
        "a distro version",
      );
      return {
        uri,
        name: r.nonEmptyString("name"),
        distro: r.nonEmptyString("distro"),
        version: r.stringOrNull("version"),
        fileType: r.nonEmptyString("file_type"),
        releaseNames: r.optionalString("release_names"),
      };
    });
  }

  async listPackageFiles(
    repoUri: string,
    packageNames?: readonly string[] | null,
    signal?: AbortSignal,
    known?: ReadonlyMap<string, PackageFile>,
  ): Promise<PackageFile[]> {
    expectModel(repoUri, REPO_MODEL, "listPackageFiles");
    const filterBody = { repo: repoUri, package_list: packageNames ? [...packageNames] : null };
    const { uris, objects } = await this.listAndGet(
      PACKAGE_FILE_MODEL,
      { name: "repo", body: filterBody },
      "package file",
      signal,
      known ? (uri) => known.has(uri) : undefined,
    );
    const files: PackageFile[] = [];
    for (const uri of uris) {
      const already = known?.get(uri);
      if (already !== undefined) {
        files.push(already);
        continue;
      }
      try {
        files.push(parsePackageFile(uri, objects.get(uri), this.host));
      } catch (err) {
        if (!(err instanceof PackratError) || err.code !== "PACKRAT_UNSAFE_FILENAME") throw err;
        // One hostile name must not stop the mirror: leave that file out, say so loudly.
        const fileUrl = fileField(objects.get(uri));
        this.log.warn({ uri, file: fileUrl, repo: repoUri }, err.message);
        this.onRejectedFile?.({ uri, fileUrl, reason: err.message });
      }
    }
    return files;
  }

  async poll(repoUri: string, timeoutSeconds: number, signal?: AbortSignal): Promise<string[]> {
    expectModel(repoUri, REPO_MODEL, "poll");
    if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0) {
      throw new RangeError(`poll timeout must be whole seconds >= 0, got ${timeoutSeconds}`);
    }
    const ans = await this.call("CALL", `${repoUri}(poll)`, {
      body: { timeout: timeoutSeconds },
      timeoutMs: timeoutSeconds * 1000 + this.pollGraceMs,
      signal,
    });
    const where = `CALL ${ans.url}`;
    const value = parseJson(ans, where);
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
      throw protocolError(where, `expected an array of package names, got ${typeName(value)}`);
    }
    return value;
  }

  async heartbeat(signal?: AbortSignal): Promise<void> {
    // The answer (if any) carries nothing the agent needs; only the status matters.
    await this.call("CALL", `${objectUri(MIRROR_MODEL, this.name)}(heartbeat)`, {
      body: {},
      signal,
    });
  }

  async download(fileUrl: string, signal?: AbortSignal): Promise<FileDownload> {
    if (!fileUrl.startsWith("/") || fileUrl.startsWith("//")) {
      throw protocolError(
        `download ${JSON.stringify(fileUrl)}`,
        "a file URL must be a path on the master",
      );
    }
    const url = this.host + fileUrl;
    const guard = new Deadline(this.timeoutMs, signal);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method: "GET",
        dispatcher: this.dispatcher,
        signal: guard.signal,
        headersTimeout: this.timeoutMs + 1000,
        // Between chunks: a big file may take long, a stalled one must not.
        bodyTimeout: this.timeoutMs,
      });
    } catch (err) {
      guard.done();
      throw this.transportError(err, "GET", url, guard);
    }
    // From here on only the caller's signal and the idle timeout apply.
    guard.disarmTimer();
    if (res.statusCode !== 200) {
      const text = await readText(res.body, MAX_ERROR_BODY_BYTES, url, false).catch(() => "");
      guard.done();
      throw httpError("GET", url, res.statusCode, text);
    }
    const size = contentLength(res.headers);
    let received = 0;
    const out = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        received += chunk.length;
        if (size !== null && received > size) {
          cb(
            new PackratError(
              "PACKRAT_MASTER_PROTOCOL",
              `GET ${url}: more bytes than the Content-Length of ${size}`,
            ),
          );
        } else cb(null, chunk);
      },
      flush(cb) {
        if (size !== null && received !== size) {
          cb(truncated(url, received, size));
        } else cb();
      },
    });
    const src = res.body;
    src.on("error", (err) => {
      const progress = size === null ? `${received} bytes` : `${received} of ${size} bytes`;
      const mapped = this.transportError(err, "GET", url, guard, progress);
      out.destroy(mapped instanceof Error ? mapped : new Error(String(mapped)));
    });
    out.on("close", () => {
      guard.done();
      if (!src.destroyed) src.destroy();
    });
    src.pipe(out);
    return { size, body: out };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsDispatcher) await this.dispatcher.destroy();
  }

  // --- CInP plumbing ---------------------------------------------------------------------

  /** One CInP call, logged in when a psk is set, re-logging in once on 401. */
  private async call(verb: string, uri: string, options: CallOptions): Promise<Answer> {
    if (this.psk !== null && this.token === null) await this.login();
    const tokenUsed = this.token;
    let ans = await this.exchangeRetryingReads(verb, uri, options, tokenUsed);
    if (ans.status === 401 && this.psk !== null) {
      this.log.info({ url: ans.url }, "master session expired; logging in again");
      // Concurrent 401s share one re-login: the first drops the stale token, all wait on login().
      if (this.token === tokenUsed) this.token = null;
      if (this.token === null) await this.login();
      ans = await this.exchangeRetryingReads(verb, uri, options, this.token);
    }
    if (ans.status === 401) {
      const e = parseCinpError(ans.text);
      throw new MasterHttpError(
        "PACKRAT_MASTER_AUTH",
        `${verb} ${ans.url}: the master refused the session of mirror ${JSON.stringify(this.name)} (HTTP 401 ${describeCinpError(e)})`,
        { status: 401, url: ans.url, ...e },
        {
          hint:
            this.psk === null
              ? "the master requires a login: set [packrat] psk"
              : "check [packrat] name and psk against the master's user",
        },
      );
    }
    if (ans.status !== 200 && ans.status !== 201 && ans.status !== 202) {
      throw httpError(verb, ans.url, ans.status, ans.text);
    }
    return ans;
  }

  /** Log in (shared by concurrent callers); never logs or reports the psk or the token. */
  private login(): Promise<void> {
    this.loginInFlight ??= this.doLogin().finally(() => {
      this.loginInFlight = null;
    });
    return this.loginInFlight;
  }

  private async doLogin(): Promise<void> {
    const ans = await this.exchange(
      "CALL",
      LOGIN_URI,
      { body: { username: this.name, password: this.psk } },
      null,
    );
    if (ans.status !== 200) {
      const e = parseCinpError(ans.text);
      throw new MasterHttpError(
        "PACKRAT_MASTER_AUTH",
        `CALL ${ans.url}: the master refused the login of mirror ${JSON.stringify(this.name)} (HTTP ${ans.status} ${describeCinpError(e)})`,
        { status: ans.status, url: ans.url, ...e },
        { hint: "check [packrat] name and psk against the master's user" },
      );
    }
    const where = `CALL ${ans.url}`;
    const token = parseJson(ans, where);
    if (typeof token !== "string" || token === "") {
      // Do not echo the body: it might be a token in an unexpected wrapping.
      throw protocolError(where, `expected a session token string, got ${shapeOnly(token)}`);
    }
    this.token = token;
    this.log.info({ mirror: this.name }, "logged in to the master");
  }

  /**
   * A read (DESCRIBE, GET, LIST) whose kept-alive connection the server closed just as it was
   * reused fails with a reset; that says nothing about the master, so try it once more on a
   * fresh connection. Actions (CALL) are never repeated.
   */
  private async exchangeRetryingReads(
    verb: string,
    uri: string,
    options: CallOptions,
    token: string | null,
  ): Promise<Answer> {
    try {
      return await this.exchange(verb, uri, options, token);
    } catch (err) {
      const retry =
        verb !== "CALL" &&
        err instanceof PackratError &&
        err.code === "PACKRAT_MASTER_UNREACHABLE" &&
        RESET_CODES.has(errorCode(err.cause) ?? "") &&
        options.signal?.aborted !== true;
      if (!retry) throw err;
      this.log.debug({ verb, url: this.host + uri }, "connection reset; trying once more");
      return this.exchange(verb, uri, options, token);
    }
  }

  /** One HTTP exchange with a deadline; the whole answer body is read. */
  private async exchange(
    verb: string,
    uri: string,
    options: CallOptions,
    token: string | null,
  ): Promise<Answer> {
    const url = this.host + uri;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const headers: Record<string, string> = { ...CINP_HEADERS, ...options.headers };
    if (token !== null) {
      headers["Auth-Id"] = this.name;
      headers["Auth-Token"] = token;
    }
    const guard = new Deadline(timeoutMs, options.signal);
    const started = Date.now();
    try {
      const res = await request(url, {
        method: verb,
        headers,
        body: options.body === undefined ? "" : JSON.stringify(options.body),
        dispatcher: this.dispatcher,
        signal: guard.signal,
        // Our own deadline fires first; these only stop undici's defaults cutting a long poll.
        headersTimeout: timeoutMs + 1000,
        bodyTimeout: timeoutMs + 1000,
      });
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      const text = await readText(res.body, ok ? MAX_JSON_BYTES : MAX_ERROR_BODY_BYTES, url, ok);
      this.log.debug(
        { verb, url, status: res.statusCode, ms: Date.now() - started },
        "master request",
      );
      return { url, status: res.statusCode, headers: res.headers, text };
    } catch (err) {
      throw this.transportError(err, verb, url, guard);
    } finally {
      guard.done();
    }
  }

  /**
   * Map an undici/network error to a PackratError. `progress` is set for a download body that
   * broke off ("4 of 14 bytes"), so the message says how far it got.
   */
  private transportError(
    err: unknown,
    verb: string,
    url: string,
    guard: Deadline,
    progress?: string,
  ): unknown {
    if (guard.callerAborted()) return guard.callerReason();
    if (err instanceof PackratError) return err;
    const code = errorCode(err);
    if (guard.timedOut || (code !== null && TIMEOUT_CODES.has(code))) {
      return new PackratError(
        "PACKRAT_MASTER_TIMEOUT",
        progress
          ? `${verb} ${url}: the transfer stalled for ${guard.timeoutMs} ms after ${progress}`
          : `${verb} ${url}: no answer within ${guard.timeoutMs} ms`,
        { hint: "the master or the network is slow or down; the agent retries later", cause: err },
      );
    }
    const message = err instanceof Error ? err.message : String(err);
    return new PackratError(
      "PACKRAT_MASTER_UNREACHABLE",
      progress
        ? `${verb} ${url}: the connection broke after ${progress} (${code ?? "error"}: ${message})`
        : `${verb} ${url}: cannot reach the master (${code ?? "error"}: ${message})`,
      { hint: "check [packrat] host and proxy, and that the master is running", cause: err },
    );
  }

  /**
   * LIST every URI of a model, paged, and GET the objects while the pages still come in (the
   * GETs of page 1 overlap the LIST of page 2). A list that moves under us (Total changes, URIs
   * shift, a listed object is gone by the time we GET it) is read again from the start.
   */
  private async listAndGet(
    model: string,
    filter: { name: string; body: unknown } | null,
    what: string,
    signal: AbortSignal | undefined,
    skipGet?: (uri: string) => boolean,
  ): Promise<{ uris: string[]; objects: Map<string, unknown> }> {
    for (let attempt = 1; ; attempt++) {
      const getter = new ChunkedGetter(
        (chunk) => this.getChunk(chunk, what, signal),
        this.multiGetMax,
      );
      let outcome: string[] | "changed";
      let lastChange: unknown = null;
      try {
        outcome = await this.listOnce(model, filter, signal, (fresh) =>
          getter.add(skipGet ? fresh.filter((u) => !skipGet(u)) : fresh),
        );
        if (outcome !== "changed") return { uris: outcome, objects: await getter.finish() };
      } catch (err) {
        if (!(err instanceof PackratError && err.code === "PACKRAT_MASTER_INCONSISTENT")) {
          getter.abandon();
          throw err;
        }
        lastChange = err;
      }
      getter.abandon();
      if (attempt >= LIST_ATTEMPTS) {
        throw new PackratError(
          "PACKRAT_MASTER_INCONSISTENT",
          `LIST ${this.host}${model}: the list kept changing while it was read (${LIST_ATTEMPTS} attempts)`,
          { hint: "the master is busy; the next sync retries", cause: lastChange ?? undefined },
        );
      }
      this.log.debug({ model, attempt }, "list changed while it was read; reading it again");
    }
  }

  private async listOnce(
    model: string,
    filter: { name: string; body: unknown } | null,
    signal: AbortSignal | undefined,
    onPage: (fresh: string[]) => void,
  ): Promise<string[] | "changed"> {
    const seen = new Set<string>();
    let position = 0;
    let firstTotal: number | null = null;
    const fetchPage = (at: number): Promise<Answer> => {
      const headers: Record<string, string> = {
        Position: String(at),
        Count: String(LIST_PAGE_SIZE),
      };
      if (filter) headers.Filter = filter.name;
      return this.call("LIST", model, { headers, body: filter?.body, signal });
    };
    // Once the first page has told the Total, the next pages are requested ahead, a few at a
    // time (a 10,000-file repo is 100 pages: one after the other they were most of a
    // no-change sync). They are still checked strictly in order; a page that does not land
    // where expected (the list shifted) is read again at its real position.
    const ahead = new Map<number, Promise<Answer>>();
    const prefetch = (from: number, total: number) => {
      for (let at = from; at < total && ahead.size < LIST_PAGES_AHEAD; at += LIST_PAGE_SIZE) {
        if (ahead.has(at)) continue;
        const p = fetchPage(at);
        p.catch(() => undefined); // awaited when used; an unused one must not go unhandled
        ahead.set(at, p);
      }
    };
    for (;;) {
      const pending = ahead.get(position);
      ahead.delete(position);
      const ans = await (pending ?? fetchPage(position));
      const where = `LIST ${ans.url} (Position ${position})`;
      const page = parseJson(ans, where);
      if (!Array.isArray(page)) {
        throw protocolError(where, `expected an array of URIs, got ${typeName(page)}`);
      }
      const total = intHeader(ans.headers, "Total");
      if (total !== null && Number.isNaN(total)) {
        throw protocolError(
          where,
          `response header Total is ${snippet(String(ans.headers.total))}, expected a whole number`,
        );
      }
      firstTotal ??= total;
      if (total !== firstTotal) return "changed";
      const fresh: string[] = [];
      for (const item of page) {
        if (typeof item !== "string") {
          throw protocolError(where, `expected URIs, got ${typeName(item)} in the list`);
        }
        expectModel(item, model, where);
        if (!seen.has(item)) {
          seen.add(item);
          fresh.push(item);
        }
      }
      onPage(fresh);
      if (page.length > 0 && fresh.length === 0) {
        throw protocolError(where, "the page repeats URIs already listed; paging does not advance");
      }
      position += page.length;
      if (total !== null && page.length === LIST_PAGE_SIZE) {
        for (const at of ahead.keys()) if (at < position) ahead.delete(at);
        prefetch(position, total);
      }
      if (total !== null) {
        // Fewer distinct URIs than Total means the list shifted under us: read it again.
        if (position >= total) return seen.size === total ? [...seen] : "changed";
        if (page.length === 0) return "changed";
      } else if (page.length < LIST_PAGE_SIZE) {
        return [...seen];
      }
    }
  }

  /** Multi-object GET in chunks; every requested URI must come back. */
  private multiGet(
    uris: readonly string[],
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Map<string, unknown>> {
    const getter = new ChunkedGetter(
      (chunk) => this.getChunk(chunk, what, signal),
      this.multiGetMax,
    );
    getter.add(uris);
    return getter.finish();
  }

  /** One multi-object GET; the answer must hold every member asked for. */
  private async getChunk(
    chunk: { uri: string; members: string[] },
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Map<string, unknown>> {
    let ans: Answer;
    try {
      ans = await this.call("GET", chunk.uri, { headers: { "Multi-Object": "True" }, signal });
    } catch (err) {
      if (err instanceof MasterHttpError && err.status === 404) {
        throw new PackratError(
          "PACKRAT_MASTER_INCONSISTENT",
          `GET ${err.url}: the master named a ${what} it then could not find (HTTP 404 ${describeCinpError(err)})`,
          { hint: "the master changed while it was being read; the next sync retries", cause: err },
        );
      }
      throw err;
    }
    const where = `GET ${ans.url}`;
    const body = parseJson(ans, where);
    if (!isRecord(body)) {
      throw protocolError(where, `expected an object keyed by ${what} URI, got ${typeName(body)}`);
    }
    const found = new Map<string, unknown>();
    for (const member of chunk.members) {
      if (!Object.hasOwn(body, member)) {
        throw protocolError(where, `the answer has no entry for ${member}`);
      }
      found.set(member, body[member]);
    }
    return found;
  }
}

// --- helpers -------------------------------------------------------------------------------

/**
 * Multi-object GETs in chunks of MULTI_GET_MAX, GET_CONCURRENCY at a time, fed while a LIST
 * is still paging. The first failure stops new GETs and is thrown by add() and finish().
 */
class ChunkedGetter {
  private readonly queue: { uri: string; members: string[] }[] = [];
  private readonly found = new Map<string, unknown>();
  private running = 0;
  private failure: { err: unknown } | null = null;
  private abandoned = false;
  private onIdle: (() => void) | null = null;

  constructor(
    private readonly fetchChunk: (chunk: {
      uri: string;
      members: string[];
    }) => Promise<Map<string, unknown>>,
    private readonly perGet: number = MULTI_GET_MAX,
  ) {}

  add(uris: readonly string[]): void {
    if (this.failure) throw this.failure.err;
    if (uris.length === 0) return;
    this.queue.push(...multiUris(uris, this.perGet));
    this.pump();
  }

  async finish(): Promise<Map<string, unknown>> {
    if (this.running > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
    if (this.failure) throw this.failure.err;
    return this.found;
  }

  /** Drop queued GETs and ignore the answers of running ones (the list is read again). */
  abandon(): void {
    this.abandoned = true;
    this.queue.length = 0;
  }

  private pump(): void {
    while (
      !this.abandoned &&
      this.failure === null &&
      this.running < GET_CONCURRENCY &&
      this.queue.length > 0
    ) {
      const chunk = this.queue.shift()!;
      this.running++;
      void this.fetchChunk(chunk)
        .then(
          (objects) => {
            for (const [uri, value] of objects) this.found.set(uri, value);
          },
          (err: unknown) => {
            if (!this.abandoned) this.failure ??= { err };
          },
        )
        .finally(() => {
          this.running--;
          this.pump();
          if (this.running === 0) this.onIdle?.();
        });
    }
  }
}

/**
 * The call's own deadline plus the caller's AbortSignal, as one signal for undici. Records
 * which one fired so errors say "timeout" or pass the caller's abort reason through.
 */
class Deadline {
  readonly signal: AbortSignal;
  timedOut = false;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly onAbort: () => void;

  constructor(
    readonly timeoutMs: number,
    private readonly caller: AbortSignal | undefined,
  ) {
    this.signal = this.controller.signal;
    this.onAbort = () => this.controller.abort(caller?.reason);
    if (caller?.aborted) this.controller.abort(caller.reason);
    else caller?.addEventListener("abort", this.onAbort, { once: true });
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  }

  callerAborted(): boolean {
    return this.caller?.aborted === true;
  }

  callerReason(): unknown {
    return this.caller?.reason;
  }

  disarmTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  done(): void {
    this.disarmTimer();
    this.caller?.removeEventListener("abort", this.onAbort);
  }
}

function normaliseHost(host: string): string {
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    url = new URL("invalid:");
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash) {
    throw new PackratError(
      "PACKRAT_CONFIG_INVALID",
      `[packrat] host = ${JSON.stringify(redactUrl(host))}: expected http(s)://name[:port]`,
    );
  }
  return host.replace(/\/+$/, "");
}

/** Read a body up to `limit` bytes; over it, fail (JSON) or cut (error excerpts). */
async function readText(
  body: Dispatcher.ResponseData["body"],
  limit: number,
  url: string,
  strict: boolean,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      if (strict) throw protocolError(url, `answer is larger than ${limit} bytes`);
      break;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseJson(ans: Answer, where: string): unknown {
  if (ans.text.trim() === "") throw protocolError(where, "empty answer, expected JSON");
  try {
    return JSON.parse(ans.text) as unknown;
  } catch (err) {
    throw protocolError(where, `invalid JSON: ${snippet(ans.text)}`, err);
  }
}

function httpError(verb: string, url: string, status: number, text: string): PackratError {
  const e = parseCinpError(text);
  const described = `${verb} ${url}: HTTP ${status} ${describeCinpError(e)}`;
  if (status >= 400 && status < 600) {
    return new MasterHttpError(
      "PACKRAT_MASTER_HTTP",
      described,
      { status, url, ...e },
      {
        hint:
          status === 403
            ? "the mirror's user lacks a permission on the master"
            : status >= 500
              ? "the master failed; see its logs. The agent retries later"
              : undefined,
      },
    );
  }
  // CInP knows 200-202 and 400-500; a redirect or 1xx means we are not talking to a master.
  return protocolError(
    `${verb} ${url}`,
    `unexpected HTTP status ${status} (${describeCinpError(e)})`,
  );
}

function expectModel(uri: string, model: string, where: string): void {
  const parsed = parseObjectUri(uri);
  if (!parsed || parsed.model !== model || parsed.ids.length !== 1) {
    throw protocolError(where, `${JSON.stringify(snippet(uri))} is not a ${model}:<id>: URI`);
  }
}

function errorCode(err: unknown): string | null {
  if (typeof err !== "object" || err === null) return null;
  const e = err as { code?: unknown; errors?: unknown; cause?: unknown };
  if (typeof e.code === "string") return e.code;
  if (Array.isArray(e.errors)) return errorCode(e.errors[0]);
  if (e.cause !== undefined && e.cause !== err) return errorCode(e.cause);
  return null;
}

function contentLength(headers: Record<string, string | string[] | undefined>): number | null {
  const n = intHeader(headers, "Content-Length");
  return n === null || Number.isNaN(n) ? null : n;
}

function truncated(url: string, received: number, size: number): PackratError {
  return new PackratError(
    "PACKRAT_MASTER_UNREACHABLE",
    `GET ${url}: the answer ended after ${received} of ${size} bytes`,
    { hint: "the download is retried" },
  );
}

/** Describe a value's type without its content (for answers that may hold secrets). */
function shapeOnly(value: unknown): string {
  if (typeof value === "string") return "an empty string";
  return typeName(typeof value === "object" ? value : typeof value);
}

function fileField(value: unknown): string {
  const file = (value as { file?: unknown } | null)?.file;
  return typeof file === "string" ? file : "";
}

/**
 * One PackageFile object → PackageFile. Throws PACKRAT_MASTER_PROTOCOL on a wrong shape and
 * PACKRAT_UNSAFE_FILENAME when its file URL or name is not safe to use.
 */
export function parsePackageFile(uri: string, value: unknown, host = ""): PackageFile {
  const where = `package file ${host}${uri}`;
  const r = ShapeReader.of(value, where, "a package file");
  const packageUri = r.nonEmptyString("package");
  const pkg = parseObjectUri(packageUri);
  if (!pkg) {
    throw protocolError(
      where,
      `field "package" is ${JSON.stringify(snippet(packageUri))}, expected a Package URI`,
    );
  }
  const distroVersionUri = r.nonEmptyString("distroversion");
  expectModel(distroVersionUri, DISTRO_VERSION_MODEL, where);
  const sha256 = r.string("sha256");
  if (!SHA256_HEX.test(sha256)) {
    throw protocolError(
      where,
      `field "sha256" is ${JSON.stringify(snippet(sha256))}, expected 64 hex digits`,
    );
  }
  const fileUrl = r.nonEmptyString("file");
  return {
    uri,
    packageName: pkg.ids[pkg.ids.length - 1]!,
    distroVersionUri,
    version: r.nonEmptyString("version"),
    type: r.nonEmptyString("type"),
    arch: r.nonEmptyString("arch"),
    fileUrl,
    filename: filenameOf(fileUrl, where),
    sha256: sha256.toLowerCase(),
    tags: r.stringArray("tags"),
  };
}

/**
 * The on-disk filename of a file URL: its last path segment, percent-decoded (Django encodes
 * FileField URLs), and then held to the master's own name rule. A URL with dot segments,
 * backslashes or control characters is refused whole: it is not something packrat produces.
 */
export function filenameOf(fileUrl: string, where: string): string {
  const segments = fileUrl.split("/");
  const bad =
    !fileUrl.startsWith("/") ||
    UNSAFE_URL_CHARS.test(fileUrl) ||
    segments.some((s) => s === "." || s === "..");
  if (bad) {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${where}: file URL ${JSON.stringify(fileUrl)} is not a plain path on the master (no "..", ".", "\\", "?", "#" or control characters)`,
      { hint: "the file is skipped; fix it on the master" },
    );
  }
  let name: string;
  try {
    name = decodeURIComponent(segments[segments.length - 1]!);
  } catch {
    name = segments[segments.length - 1]! + "\0";
  }
  return assertSafeFilename(name, `${where} (file ${JSON.stringify(fileUrl)})`);
}
