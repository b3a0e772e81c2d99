/**
 * The packrat master client (docs/master-api.md): CInP over undici, with optional login, one
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
import type { FileDownload, MasterClient, PackageFileListing } from "./master-types.js";

/** Ids per multi-object GET until DESCRIBE tells the master's multi-uri-max (100 on packrat). */
export const MULTI_GET_MAX = 10;
/** Never more per multi GET than this, whatever the master describes (URI length). */
const MULTI_GET_CEILING = 100;
/**
 * The Count of a LIST: the whole filtered set in one answer. The packrat master pages with
 * OFFSET over an unordered query (cinp 0.12 DjangoTransaction.list: `qs[position:position +
 * count]`, no ORDER BY), so two pages may overlap and skip a file between them; it has no upper
 * bound on Count (the default is 10), so asking for everything at once is the consistent read.
 */
export const LIST_WHOLE_COUNT = 1_000_000;
/**
 * A master that answers fewer than Total at once is paged at its size, in rounds, until every
 * URI was seen. If its pages were shuffled anew on each request, seeing all n takes about
 * ln(n) rounds (the coupon collector); an ordered one needs one. Three times that bounds it.
 */
function cappedListRounds(total: number): number {
  return Math.ceil(3 * Math.log(total + 1)) + 2;
}
/** Multi-object GETs in flight at once while reading a large repo. */
const GET_CONCURRENCY = 4;
/** A LIST whose Total changes while it is read, or whose objects vanish, is read again, this often. */
const LIST_ATTEMPTS = 3;
/** Bound on a JSON answer: 1,000,000 URIs are ~35 MB; a hostile master must not OOM us. */
const MAX_JSON_BYTES = 64 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;

const LOGIN_URI = "/api/v2/Auth/User(login)";
const MIRROR_MODEL = "/api/v2/Repo/Mirror";
const REPO_MODEL = "/api/v2/Repo/Repo";
const DISTRO_VERSION_MODEL = "/api/v2/Attrib/DistroVersion";
const PACKAGE_FILE_MODEL = "/api/v2/Package/PackageFile";
const PACKAGE_MODEL = "/api/v2/Package/Package";
const TAG_MODEL = "/api/v2/Attrib/Tag";
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

export interface MasterClientOptions {
  /** http(s)://name[:port], no trailing slash needed. */
  host: string;
  /** The mirror's name on the master ([packrat] name). */
  name: string;
  /**
   * The master user to log in as when the master refuses anonymous reads ([packrat] username);
   * null means the mirror's name. packrat has no user per mirror: this is a Django user.
   */
  username?: string | null;
  /** That user's password ([packrat] psk); without it the client never logs in. */
  psk: string | null;
  /** http://[user:pass@]proxy:port; http masters are reached by forwarding, https by CONNECT. */
  proxy: string | null;
  /** Time allowed for each call (a download: until headers, then between chunks). */
  requestTimeoutMs: number;
  log: Logger;
  /** For tests (undici MockAgent); the client then does not close it. */
  dispatcher?: Dispatcher;
  /** Added to a poll's own timeout for its HTTP deadline; 30 s as the original agent did. */
  pollGraceMs?: number;
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

/**
 * How the client reads: anonymously (what the original agent always did, and what a packrat
 * master on Django < 2.1 allows), or with a session, once the master refused an anonymous read.
 */
type AuthMode = "anonymous" | "session";

class HttpMasterClient implements MasterClient {
  private readonly host: string;
  private readonly name: string;
  private readonly username: string;
  private readonly psk: string | null;
  private readonly timeoutMs: number;
  private readonly pollGraceMs: number;
  private readonly log: Logger;
  private multiGetMax = MULTI_GET_MAX;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private mode: AuthMode = "anonymous";
  private token: string | null = null;
  private loginInFlight: Promise<void> | null = null;
  /** The one check, per process, that a psk kept from an older config still logs in. */
  private pskProbed = false;
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
    this.username = options.username ?? options.name;
    this.psk = options.psk === "" ? null : options.psk;
    this.timeoutMs = options.requestTimeoutMs;
    this.pollGraceMs = options.pollGraceMs ?? 30_000;
    this.log = options.log.child({ component: "master" });
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
        tag: tagName(r.nonEmptyString("tag"), where),
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
  ): Promise<PackageFileListing> {
    expectModel(repoUri, REPO_MODEL, "listPackageFiles");
    // An empty package_list means "every package" to the master's filter (`if package_list:`).
    const only = packageNames && packageNames.length > 0 ? [...new Set(packageNames)] : null;
    const filterBody = { repo: repoUri, package_list: only };
    const { uris, objects } = await this.listAndGet(
      PACKAGE_FILE_MODEL,
      { name: "repo", body: filterBody },
      "package file",
      signal,
    );
    const listing: PackageFileListing = { files: [], skipped: [] };
    for (const uri of uris) {
      try {
        listing.files.push(parsePackageFile(uri, objects.get(uri), this.host));
      } catch (err) {
        if (
          !(err instanceof PackratError) ||
          (err.code !== "PACKRAT_UNSAFE_FILENAME" && err.code !== "PACKRAT_MASTER_PROTOCOL")
        ) {
          throw err;
        }
        // One file the agent cannot use must not stop the mirror: leave it out, say so loudly.
        const fileUrl = fileField(objects.get(uri));
        this.log.warn(
          { uri, file: fileUrl, repo: repoUri, code: err.code },
          `package file skipped: ${err.message}`,
        );
        listing.skipped.push({ uri, fileUrl, code: err.code, reason: err.message });
      }
    }
    return listing;
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

  /**
   * One CInP call. Anonymous first, as the original agent always read (packrat has no user per
   * mirror); a master that refuses anonymous reads (401/403: cinp 0.12 on Django >= 2.1 lets a
   * GET/LIST through only for users with the view permissions) switches the client to a session
   * as `username` with the psk, for the rest of the process. A 401 on a session (Invalid
   * Session: logged out, expired) logs in again once, without the stale headers, and retries.
   */
  private async call(verb: string, uri: string, options: CallOptions): Promise<Answer> {
    if (this.mode === "session" && this.token === null) await this.login();
    const tokenUsed = this.token;
    let ans = await this.exchangeRetryingReads(verb, uri, options, tokenUsed);
    const anonymousAnswer = tokenUsed === null && ans.status !== 401 && ans.status !== 403;
    if ((ans.status === 401 || ans.status === 403) && tokenUsed === null) {
      if (this.psk === null) throw this.refusedAnonymous(verb, ans);
      this.log.info(
        { url: ans.url, status: ans.status, user: this.username },
        "the master refuses anonymous reads; logging in",
      );
      this.mode = "session";
      if (this.token === null) await this.login();
      ans = await this.exchangeRetryingReads(verb, uri, options, this.token);
    } else if (ans.status === 401 && tokenUsed !== null) {
      this.log.info({ url: ans.url }, "master session no longer valid; logging in again");
      // Concurrent 401s share one re-login: the first drops the stale token, all wait on login().
      if (this.token === tokenUsed) this.token = null;
      if (this.token === null) await this.login();
      ans = await this.exchangeRetryingReads(verb, uri, options, this.token);
    }
    if (ans.status === 401) {
      const e = parseCinpError(ans.text);
      throw new MasterHttpError(
        "PACKRAT_MASTER_AUTH",
        `${verb} ${ans.url}: the master refused the session of user ${JSON.stringify(this.username)} (HTTP 401 ${describeCinpError(e)})`,
        { status: 401, url: ans.url, ...e },
        { hint: "check [packrat] username and psk against the master's users" },
      );
    }
    if (ans.status === 403 && this.mode === "session") {
      const e = parseCinpError(ans.text);
      throw new MasterHttpError(
        "PACKRAT_MASTER_AUTH",
        `${verb} ${ans.url}: the master refused user ${JSON.stringify(this.username)} (HTTP 403 ${describeCinpError(e)})`,
        { status: 403, url: ans.url, ...e },
        {
          hint:
            "give that user the view permissions on the master (Repo.view_mirror, Repo.view_repo, " +
            "Attrib.view_distroversion, Package.view_packagefile), or set [packrat] username to one that has them",
        },
      );
    }
    if (ans.status !== 200 && ans.status !== 201 && ans.status !== 202) {
      throw httpError(verb, ans.url, ans.status, ans.text);
    }
    if (anonymousAnswer && this.psk !== null && !this.pskProbed && verb !== "DESCRIBE") {
      this.pskProbed = true;
      await this.probeLogin(options.signal);
    }
    return ans;
  }

  private refusedAnonymous(verb: string, ans: Answer): MasterHttpError {
    const e = parseCinpError(ans.text);
    return new MasterHttpError(
      "PACKRAT_MASTER_AUTH",
      `${verb} ${ans.url}: the master refuses anonymous reads (HTTP ${ans.status} ${describeCinpError(e)})`,
      { status: ans.status, url: ans.url, ...e },
      {
        hint:
          "set [packrat] username and psk to a user of the master with the view permissions " +
          "(packrat on Django 2.1 or later lets only such users read)",
      },
    );
  }

  /**
   * A psk in mirror.conf while the master serves reads anonymously: the original agent never
   * used it, so a migrated config may carry one the master does not know. Check it once, so the
   * operator hears about it now rather than on the day the master starts requiring a login;
   * the client goes on reading anonymously either way.
   */
  private async probeLogin(signal: AbortSignal | undefined): Promise<void> {
    let ans: Answer;
    try {
      ans = await this.exchange(
        "CALL",
        LOGIN_URI,
        { body: { username: this.username, password: this.psk }, signal },
        null,
      );
    } catch {
      return; // the read that brought us here worked; a probe that cannot be made says nothing
    }
    if (ans.status === 200) {
      this.log.debug({ user: this.username }, "the psk logs in; reads stay anonymous");
      return;
    }
    const e = parseCinpError(ans.text);
    this.log.warn(
      { user: this.username, status: ans.status },
      `the master refused the login of user ${JSON.stringify(this.username)} (HTTP ${ans.status} ${describeCinpError(e)}); ` +
        "it serves this mirror without a login, so the agent reads anonymously, as the original agent always did. " +
        "Set [packrat] username to a user of the master whose password is the psk, or remove psk from mirror.conf",
    );
  }

  /** Log in (shared by concurrent callers); never logs or reports the psk or the token. */
  private login(): Promise<void> {
    this.loginInFlight ??= this.doLogin().finally(() => {
      this.loginInFlight = null;
    });
    return this.loginInFlight;
  }

  private async doLogin(): Promise<void> {
    // Never with the old Auth-Id/Auth-Token: the master answers 401 to any call carrying a dead
    // session (cinp Server.dispatch: getUser() is None), login included.
    const ans = await this.exchange(
      "CALL",
      LOGIN_URI,
      { body: { username: this.username, password: this.psk } },
      null,
    );
    if (ans.status !== 200) {
      const e = parseCinpError(ans.text);
      throw new MasterHttpError(
        "PACKRAT_MASTER_AUTH",
        `CALL ${ans.url}: the master refused the login of user ${JSON.stringify(this.username)} (HTTP ${ans.status} ${describeCinpError(e)}), and it does not serve this mirror anonymously`,
        { status: ans.status, url: ans.url, ...e },
        {
          hint: "set [packrat] username to a user of the master (default: the mirror's name) and psk to its password",
        },
      );
    }
    const where = `CALL ${ans.url}`;
    const token = parseJson(ans, where);
    if (typeof token !== "string" || token === "") {
      // Do not echo the body: it might be a token in an unexpected wrapping.
      throw protocolError(where, `expected a session token string, got ${shapeOnly(token)}`);
    }
    this.token = token;
    this.log.info({ user: this.username }, "logged in to the master");
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
      headers["Auth-Id"] = this.username;
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
   * LIST every URI of a model (or of a filter), then GET the objects in multi-object chunks. A
   * list that moves under us (Total changes, a listed object is gone by the time we GET it) is
   * read again from the start; one that never settles fails as PACKRAT_MASTER_INCONSISTENT, so
   * nothing is ever removed because of a listing that could have skipped a file.
   */
  private async listAndGet(
    model: string,
    filter: { name: string; body: unknown } | null,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<{ uris: string[]; objects: Map<string, unknown> }> {
    let lastChange: unknown = null;
    for (let attempt = 1; attempt <= LIST_ATTEMPTS; attempt++) {
      try {
        const uris = await this.listAll(model, filter, signal);
        if (uris !== "changed") {
          return { uris, objects: await this.multiGet(uris, what, signal) };
        }
      } catch (err) {
        if (!(err instanceof PackratError && err.code === "PACKRAT_MASTER_INCONSISTENT")) throw err;
        lastChange = err;
      }
      this.log.debug({ model, attempt }, "list changed while it was read; reading it again");
    }
    throw new PackratError(
      "PACKRAT_MASTER_INCONSISTENT",
      `LIST ${this.host}${model}: the list kept changing while it was read (${LIST_ATTEMPTS} attempts)`,
      { hint: "the master is busy; the next sync retries", cause: lastChange ?? undefined },
    );
  }

  /**
   * Every URI of one LIST: asked for all at once (LIST_WHOLE_COUNT). A master that gives fewer
   * than its Total at once is read in pages of the size it gave, in rounds, until every URI
   * was seen: its pages are unordered, so one round may repeat some and skip others.
   */
  private async listAll(
    model: string,
    filter: { name: string; body: unknown } | null,
    signal: AbortSignal | undefined,
  ): Promise<string[] | "changed"> {
    const seen = new Set<string>();
    const read = async (position: number, count: number) => {
      const headers: Record<string, string> = { Position: String(position), Count: String(count) };
      if (filter) headers.Filter = filter.name;
      const ans = await this.call("LIST", model, { headers, body: filter?.body, signal });
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
      let fresh = 0;
      for (const item of page) {
        if (typeof item !== "string") {
          throw protocolError(where, `expected URIs, got ${typeName(item)} in the list`);
        }
        expectModel(item, model, where);
        if (!seen.has(item)) {
          seen.add(item);
          fresh++;
        }
      }
      return { length: page.length, total, fresh, where };
    };

    const first = await read(0, LIST_WHOLE_COUNT);
    const total = first.total;
    if (total === null) {
      // No Total: only an answer shorter than what was asked for is known to be the end.
      let position = first.length;
      let last = first;
      while (last.length === LIST_WHOLE_COUNT) {
        last = await read(position, LIST_WHOLE_COUNT);
        if (last.length > 0 && last.fresh === 0) {
          throw protocolError(
            last.where,
            "the page repeats URIs already listed; paging does not advance",
          );
        }
        position += last.length;
      }
      return [...seen];
    }
    if (seen.size === total) return [...seen];
    if (seen.size > total || first.length === 0) return "changed";
    // The master caps Count at first.length: page at that size until the union is complete.
    const pageSize = first.length;
    let start = pageSize;
    const rounds = cappedListRounds(total);
    for (let round = 1; round <= rounds; round++) {
      let advanced = false;
      for (let position = start; position < total; position += pageSize) {
        const page = await read(position, pageSize);
        if (page.total !== total) return "changed";
        if (page.fresh > 0) advanced = true;
        if (seen.size === total) return [...seen];
        if (seen.size > total) return "changed";
      }
      start = 0;
      if (round === 1 && !advanced && total > pageSize) {
        throw protocolError(
          first.where,
          `the master ignores Position: every page repeats URIs already listed (Total ${total})`,
        );
      }
    }
    return "changed";
  }

  /** Multi-object GET in chunks, GET_CONCURRENCY at a time; every requested URI must come back. */
  private async multiGet(
    uris: readonly string[],
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Map<string, unknown>> {
    const found = new Map<string, unknown>();
    if (uris.length === 0) return found;
    const chunks = multiUris(uris, this.multiGetMax);
    let next = 0;
    let failure: { err: unknown } | null = null;
    const worker = async (): Promise<void> => {
      while (failure === null && next < chunks.length) {
        const chunk = chunks[next++]!;
        try {
          for (const [uri, value] of await this.getChunk(chunk, what, signal))
            found.set(uri, value);
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(GET_CONCURRENCY, chunks.length) }, worker));
    if (failure) throw (failure as { err: unknown }).err;
    return found;
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
 * One PackageFile object → PackageFile, as packrat renders it (Package/models.py PackageFile
 * through cinp 0.12's Django converter): `package` and `distroversion` are object URIs,
 * `file` the FileField's URL (`/files/<name>`), `sha256` 64 hex digits, `tags` the names
 * joined with ", ", `failed_at`/`deprocated_at` (the master's spelling) a datetime or null.
 * Throws PACKRAT_MASTER_PROTOCOL on a wrong shape and PACKRAT_UNSAFE_FILENAME when its file URL
 * or name is not safe to use.
 */
export function parsePackageFile(uri: string, value: unknown, host = ""): PackageFile {
  const where = `package file ${host}${uri}`;
  const r = ShapeReader.of(value, where, "a package file");
  const packageUri = r.nonEmptyString("package");
  const pkg = parseObjectUri(packageUri);
  if (!pkg || pkg.model !== PACKAGE_MODEL || pkg.ids.length !== 1) {
    throw protocolError(
      where,
      `field "package" is ${JSON.stringify(snippet(packageUri))}, expected a ${PACKAGE_MODEL}:<name>: URI`,
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
  const version = r.nonEmptyString("version");
  const type = r.nonEmptyString("type");
  const arch = r.nonEmptyString("arch");
  const tags = r.tagNames("tags");
  const failedAt = r.dateTimeOrNull("failed_at");
  const deprecatedAt = r.dateTimeOrNull("deprocated_at");
  const fileUrl = r.nonEmptyString("file");
  return {
    uri,
    packageName: pkg.ids[0]!,
    distroVersionUri,
    version,
    type,
    arch,
    fileUrl,
    filename: filenameOf(fileUrl, where),
    sha256: sha256.toLowerCase(),
    tags,
    failedAt,
    deprecatedAt,
  };
}

/**
 * A Repo's `tag`: the real master renders the foreign key as the Tag's URI
 * (`/api/v2/Attrib/Tag:prod:`); a bare name is taken as it is.
 */
export function tagName(value: string, where: string): string {
  const parsed = parseObjectUri(value);
  if (parsed) {
    if (parsed.model !== TAG_MODEL || parsed.ids.length !== 1) {
      throw protocolError(
        where,
        `field "tag" is ${JSON.stringify(snippet(value))}, expected a ${TAG_MODEL}:<name>: URI`,
      );
    }
    return parsed.ids[0]!;
  }
  if (!isValidId(value)) {
    throw protocolError(
      where,
      `field "tag" is ${JSON.stringify(snippet(value))}, expected a ${TAG_MODEL}:<name>: URI`,
    );
  }
  return value;
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
