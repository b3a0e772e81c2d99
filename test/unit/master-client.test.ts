/**
 * The master client against the fake master (a real HTTP server on 127.0.0.1), one call and
 * one fault at a time; narrow paging edge cases use undici's MockAgent without the network.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import type { Readable } from "node:stream";
import { MockAgent, request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PackratError, type ErrorCode } from "../../src/errors.js";
import { createLogger, type Logger } from "../../src/log.js";
import { MasterHttpError } from "../../src/sync/cinp.js";
import {
  createMasterClient,
  filenameOf,
  parsePackageFile,
  type MasterClientOptions,
  type RejectedPackageFile,
} from "../../src/sync/master-client.js";
import type { MasterClient } from "../../src/sync/master-types.js";
import {
  startFakeMaster,
  startRawHttpServer,
  type FakeMaster,
  type RawHttpServer,
} from "../support/fake-master.js";

const PSK = "psk-Very-Secret-123";
const REPO_APT = "/api/v2/Repo/Repo:prod-apt:";
const REPO_YUM = "/api/v2/Repo/Repo:prod-yum:";

interface Captured {
  log: Logger;
  text(): string;
  lines(): Record<string, unknown>[];
}

function captureLog(): Captured {
  const out: string[] = [];
  const log = createLogger({ level: "debug", destination: { write: (s: string) => out.push(s) } });
  return {
    log,
    text: () => out.join(""),
    lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Seed: two repos (apt on bookworm tagged prod, yum on el9 tagged prod) in mirror "prod". */
function seed(fm: FakeMaster): void {
  fm.addDistroVersion({ name: "bookworm", distro: "debian", version: "bookworm", fileType: "deb" });
  fm.addDistroVersion({ name: "el9", distro: "rhel", version: "9", fileType: "rpm" });
  fm.addDistroVersion({ name: "none", distro: "none", version: null, fileType: "whl" });
  fm.addRepo({
    name: "prod-apt",
    filesystemDir: "apt",
    managerType: "apt",
    distroVersions: ["bookworm"],
    tag: "prod",
    description: "Production apt",
  });
  fm.addRepo({
    name: "prod-yum",
    filesystemDir: "yum",
    managerType: "yum",
    distroVersions: ["el9"],
    tag: "prod",
    showOnlyLatest: true,
  });
  fm.addMirror({ name: "prod", repos: ["prod-apt", "prod-yum"], description: "the mirror" });
}

function addDeb(fm: FakeMaster, pkg: string, version: string, tags = ["prod"]): number {
  return fm.addPackageFile({
    package: pkg,
    distroVersion: "bookworm",
    version,
    type: "deb",
    arch: "all",
    filename: `${pkg}_${version}_all.deb`,
    content: Buffer.from(`${pkg} ${version} contents`),
    tags,
  });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject");
}

async function expectCode(p: Promise<unknown>, code: ErrorCode, message?: RegExp) {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(PackratError);
  const e = err as PackratError;
  expect(e.code, e.message).toBe(code);
  if (message) expect(e.message).toMatch(message);
  return e;
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in 5 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("master client against the fake master", () => {
  let fm: FakeMaster;
  let logs: Captured;
  const clients: MasterClient[] = [];

  function client(extra: Partial<MasterClientOptions> = {}): MasterClient {
    const c = createMasterClient({
      host: fm.url,
      name: "prod",
      psk: null,
      proxy: null,
      requestTimeoutMs: 2000,
      log: logs.log,
      ...extra,
    });
    clients.push(c);
    return c;
  }

  beforeEach(async () => {
    fm = await startFakeMaster({ minPollTimeout: 1 });
    logs = captureLog();
    seed(fm);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await fm.close();
  });

  describe("checkVersion", () => {
    it("accepts 2.0 and sends the CInP headers", async () => {
      await client().checkVersion();
      const req = fm.requests[0]!;
      expect(req.method).toBe("DESCRIBE");
      expect(req.uri).toBe("/api/v2/");
      expect(req.headers["cinp-version"]).toBe("0.9");
      expect(req.headers["accept-charset"]).toBe("utf-8");
      expect(req.headers["content-type"]).toBe("application/json;charset=utf-8");
      expect(req.headers["auth-token"]).toBeUndefined();
    });

    it("refuses another api-version and names it", async () => {
      fm.faults.add({ kind: "api-version", version: "1.1", times: 1 });
      const e = await expectCode(client().checkVersion(), "PACKRAT_API_VERSION", /"1\.1"/);
      expect(e.message).toContain(`${fm.url}/api/v2/`);
      expect(e.message).toContain('needs "2.0"');
    });

    it("refuses a master started with another version", async () => {
      const old = await startFakeMaster({ apiVersion: "3.0" });
      try {
        const c = createMasterClient({
          host: `${old.url}/`,
          name: "prod",
          psk: null,
          proxy: null,
          requestTimeoutMs: 2000,
          log: logs.log,
        });
        await expectCode(c.checkVersion(), "PACKRAT_API_VERSION", /"3\.0"/);
        await c.close();
      } finally {
        await old.close();
      }
    });

    it("reports invalid JSON as a protocol error", async () => {
      fm.faults.add({ kind: "invalid-json" });
      await expectCode(client().checkVersion(), "PACKRAT_MASTER_PROTOCOL", /invalid JSON/);
    });

    it("reports a description without api-version", async () => {
      fm.faults.add({ kind: "json", body: { name: "root" } });
      await expectCode(
        client().checkVersion(),
        "PACKRAT_MASTER_PROTOCOL",
        /field "api-version" is missing, expected a string/,
      );
    });
  });

  describe("getMirror and getRepos", () => {
    it("reads the mirror", async () => {
      const m = await client().getMirror();
      expect(m).toEqual({
        name: "prod",
        description: "the mirror",
        repoUris: [REPO_APT, REPO_YUM],
        lastHeartbeat: null,
      });
      expect(fm.requests.at(-1)).toMatchObject({ method: "GET", uri: "/api/v2/Repo/Mirror:prod:" });
    });

    it("reports an unknown mirror as HTTP 404 with the CInP fields", async () => {
      const c = client({ name: "nope" });
      const e = await expectCode(c.getMirror(), "PACKRAT_MASTER_HTTP", /HTTP 404 NotFound/);
      expect(e).toBeInstanceOf(MasterHttpError);
      const h = e as MasterHttpError;
      expect(h.status).toBe(404);
      expect(h.cinpClass).toBe("NotFound");
      expect(h.url).toBe(`${fm.url}/api/v2/Repo/Mirror:nope:`);
      expect(h.message).toContain(`GET ${fm.url}/api/v2/Repo/Mirror:nope:`);
    });

    it("handles a mirror with no repos", async () => {
      fm.setRepoList("prod", []);
      const c = client();
      const m = await c.getMirror();
      expect(m.repoUris).toEqual([]);
      expect(await c.getRepos(m.repoUris)).toEqual([]);
    });

    it("reads repos with chunked multi-object GETs, in the order asked", async () => {
      const names: string[] = [];
      for (let i = 0; i < 23; i++) {
        const name = `r${String(i).padStart(2, "0")}`;
        fm.addRepo({
          name,
          filesystemDir: `d/${name}`,
          managerType: "json",
          distroVersions: ["none"],
          tag: "t",
        });
        names.push(name);
      }
      fm.setRepoList("prod", names.reverse());
      const c = client();
      const m = await c.getMirror();
      const repos = await c.getRepos(m.repoUris);
      expect(repos.map((r) => r.name)).toEqual(names);
      expect(repos[0]).toEqual({
        uri: "/api/v2/Repo/Repo:r22:",
        name: "r22",
        description: "",
        filesystemDir: "d/r22",
        managerType: "json",
        distroVersionUris: ["/api/v2/Attrib/DistroVersion:none:"],
        tag: "t",
        showOnlyLatest: false,
      });
      const gets = fm.requests.filter((r) => r.method === "GET" && r.uri.includes("Repo:"));
      expect(gets.map((g) => g.uri.split(":").length - 2)).toEqual([10, 10, 3]);
      for (const g of gets) expect(g.headers["multi-object"]).toBe("True");
    });

    it("reports a listed repo the master cannot find as inconsistent", async () => {
      fm.setRepoList("prod", ["prod-apt", "gone"]);
      const c = client();
      const m = await c.getMirror();
      await expectCode(
        c.getRepos(m.repoUris),
        "PACKRAT_MASTER_INCONSISTENT",
        /named a repo it then could not find \(HTTP 404/,
      );
    });

    it("refuses a repo answer of the wrong shape, naming the field", async () => {
      fm.faults.add({
        kind: "json",
        method: "GET",
        uri: "Repo:prod-apt:",
        body: { [REPO_APT]: { name: "prod-apt", distroversion_list: [], filesystem_dir: 7 } },
      });
      await expectCode(
        client().getRepos([REPO_APT]),
        "PACKRAT_MASTER_PROTOCOL",
        /^repo http:\/\/127\.0\.0\.1:\d+\/api\/v2\/Repo\/Repo:prod-apt:: field "filesystem_dir" is number 7, expected a non-empty string$/,
      );
    });

    it("refuses a multi-object answer that lacks an object", async () => {
      fm.faults.add({ kind: "json", method: "GET", uri: "Repo:", body: { [REPO_APT]: {} } });
      await expectCode(
        client().getRepos([REPO_APT, REPO_YUM]),
        "PACKRAT_MASTER_PROTOCOL",
        /no entry for \/api\/v2\/Repo\/Repo:prod-yum:/,
      );
    });

    it("refuses a mirror whose repo_list is not a list of Repo URIs", async () => {
      fm.faults.add({
        kind: "json",
        uri: "Mirror:prod:",
        body: { name: "prod", repo_list: "/api/v2/Repo/Repo:a:" },
      });
      await expectCode(client().getMirror(), "PACKRAT_MASTER_PROTOCOL", /field "repo_list"/);
      fm.faults.set({
        kind: "json",
        uri: "Mirror:prod:",
        body: { name: "prod", repo_list: ["/etc/passwd"] },
      });
      await expectCode(
        client().getMirror(),
        "PACKRAT_MASTER_PROTOCOL",
        /is not a .*Repo:<id>: URI/,
      );
    });
  });

  describe("getDistroVersions", () => {
    it("lists every distro version, paged, then reads them", async () => {
      for (let i = 0; i < 120; i++) {
        fm.addDistroVersion({ name: `dv${i}`, distro: "none", version: `${i}`, fileType: "json" });
      }
      const dvs = await client().getDistroVersions();
      expect(dvs).toHaveLength(123);
      expect(dvs[0]).toEqual({
        uri: "/api/v2/Attrib/DistroVersion:bookworm:",
        name: "bookworm",
        distro: "debian",
        version: "bookworm",
        fileType: "deb",
        releaseNames: "",
      });
      expect(dvs.find((d) => d.name === "none")!.version).toBeNull();
      const lists = fm.requests.filter((r) => r.method === "LIST");
      expect(lists.map((l) => [l.headers.position, l.headers.count])).toEqual([
        ["0", "100"],
        ["100", "100"],
      ]);
    });
  });

  describe("listPackageFiles", () => {
    it("pages the repo filter and reads every file in chunks", async () => {
      const ids: number[] = [];
      for (let i = 0; i < 250; i++) ids.push(addDeb(fm, `pkg${i % 7}`, `1.${i}`));
      addDeb(fm, "untagged", "1", []); // not in the repo: no tag
      addDeb(fm, "other", "1", ["dev"]); // not in the repo: other tag
      fm.addPackageFile({
        package: "rpmonly",
        distroVersion: "el9",
        version: "1",
        type: "rpm",
        arch: "x86_64",
        filename: "rpmonly-1.x86_64.rpm",
        content: Buffer.from("rpm"),
        tags: ["prod"],
      });
      const files = await client().listPackageFiles(REPO_APT);
      expect(files.map((f) => f.uri)).toEqual(
        ids.map((id) => `/api/v2/Package/PackageFile:${id}:`),
      );
      expect(files[3]).toEqual({
        uri: `/api/v2/Package/PackageFile:${ids[3]}:`,
        packageName: "pkg3",
        distroVersionUri: "/api/v2/Attrib/DistroVersion:bookworm:",
        version: "1.3",
        type: "deb",
        arch: "all",
        fileUrl: `/files/${ids[3]}/pkg3_1.3_all.deb`,
        filename: "pkg3_1.3_all.deb",
        sha256: createHash("sha256").update("pkg3 1.3 contents").digest("hex"),
        tags: ["prod"],
      });
      const lists = fm.requests.filter((r) => r.method === "LIST");
      expect(lists.map((l) => l.headers.position)).toEqual(["0", "100", "200"]);
      for (const l of lists) {
        expect(l.uri).toBe("/api/v2/Package/PackageFile");
        expect(l.headers.filter).toBe("repo");
        expect(l.body).toEqual({ repo: REPO_APT, package_list: null });
      }
      const gets = fm.requests.filter((r) => r.method === "GET");
      expect(gets).toHaveLength(25);
      expect(Math.max(...gets.map((g) => g.uri.split(":").length - 2))).toBe(10);
    });

    it("does not GET package files the caller already knows", async () => {
      for (let i = 0; i < 30; i++) addDeb(fm, `pkg${i}`, "1");
      const all = await client().listPackageFiles(REPO_APT);
      const known = new Map(all.slice(0, 25).map((f) => [f.uri, f]));
      const mark = fm.requests.length;
      const again = await client().listPackageFiles(REPO_APT, null, undefined, known);
      expect(again).toEqual(all);
      const gets = fm.requests.slice(mark).filter((r) => r.method === "GET");
      expect(gets).toHaveLength(1);
      expect(gets[0]!.uri.split(":").length - 2).toBe(5);
    });

    it("after DESCRIBE, asks for as many objects per GET as multi-uri-max allows", async () => {
      const ids: number[] = [];
      for (let i = 0; i < 250; i++) ids.push(addDeb(fm, `pkg${i % 7}`, `1.${i}`));
      const c = client();
      await c.checkVersion(); // the fake master describes multi-uri-max 100
      const files = await c.listPackageFiles(REPO_APT);
      expect(files).toHaveLength(250);
      const gets = fm.requests.filter((r) => r.method === "GET");
      expect(gets).toHaveLength(3);
      expect(Math.max(...gets.map((g) => g.uri.split(":").length - 2))).toBe(100);
    });

    it("reads only the packages asked for", async () => {
      addDeb(fm, "foo", "1");
      addDeb(fm, "bar", "1");
      addDeb(fm, "foo", "2");
      const files = await client().listPackageFiles(REPO_APT, ["foo"]);
      expect(files.map((f) => `${f.packageName} ${f.version}`)).toEqual(["foo 1", "foo 2"]);
      expect(fm.requests.find((r) => r.method === "LIST")!.body).toEqual({
        repo: REPO_APT,
        package_list: ["foo"],
      });
    });

    it("returns nothing for an empty repo, with one LIST and no GET", async () => {
      expect(await client().listPackageFiles(REPO_YUM)).toEqual([]);
      expect(fm.requests.map((r) => r.method)).toEqual(["LIST"]);
    });

    it("leaves out files with hostile names, logs each, keeps the rest", async () => {
      const good = addDeb(fm, "good", "1");
      const hostile = [
        "../../etc/passwd",
        "a/b.deb",
        "nul\0.deb",
        "with space.deb",
        ".hidden.deb",
        "..",
      ];
      const ids = hostile.map((name, i) => {
        const id = addDeb(fm, `bad${i}`, "1");
        fm.faults.add({ kind: "hostile-filename", fileId: id, filename: name });
        return id;
      });
      const raw = addDeb(fm, "raw", "1");
      fm.faults.add({ kind: "file-field", fileId: raw, file: "/files/../../etc/passwd" });
      const rejected: RejectedPackageFile[] = [];
      const files = await client({ onRejectedFile: (r) => rejected.push(r) }).listPackageFiles(
        REPO_APT,
      );
      expect(files.map((f) => f.filename)).toEqual(["good_1_all.deb"]);
      expect(files[0]!.uri).toBe(`/api/v2/Package/PackageFile:${good}:`);
      expect(rejected.map((r) => r.uri)).toEqual(
        [...ids, raw].map((id) => `/api/v2/Package/PackageFile:${id}:`),
      );
      for (const r of rejected) expect(r.reason).toMatch(/not a (safe basename|plain path)/);
      const warns = logs.lines().filter((l) => l.level === 40);
      expect(warns).toHaveLength(hostile.length + 1);
      expect(warns[0]).toMatchObject({
        uri: `/api/v2/Package/PackageFile:${ids[0]}:`,
        file: `/files/${ids[0]}/..%2F..%2Fetc%2Fpasswd`,
        repo: REPO_APT,
      });
      expect(String(warns[0]!.msg)).toContain('filename "../../etc/passwd" is not a safe basename');
    });

    it("refuses a file with a malformed sha256 as a protocol error", async () => {
      fm.addPackageFile({
        package: "liar",
        distroVersion: "bookworm",
        version: "1",
        type: "deb",
        arch: "all",
        filename: "liar.deb",
        content: Buffer.from("x"),
        tags: ["prod"],
        sha256: "not-a-hash",
      });
      await expectCode(
        client().listPackageFiles(REPO_APT),
        "PACKRAT_MASTER_PROTOCOL",
        /^package file http:\/\/127\.0\.0\.1:\d+\/api\/v2\/Package\/PackageFile:1:: field "sha256" is "not-a-hash", expected 64 hex digits$/,
      );
    });

    it("refuses a LIST answer that is not an array of PackageFile URIs", async () => {
      fm.faults.add({ kind: "json", method: "LIST", body: { oops: 1 }, times: 1 });
      await expectCode(
        client().listPackageFiles(REPO_APT),
        "PACKRAT_MASTER_PROTOCOL",
        /LIST .*PackageFile \(Position 0\): expected an array of URIs, got an object/,
      );
      fm.faults.add({ kind: "json", method: "LIST", body: ["/api/v2/Repo/Repo:x:"], times: 1 });
      await expectCode(
        client().listPackageFiles(REPO_APT),
        "PACKRAT_MASTER_PROTOCOL",
        /is not a \/api\/v2\/Package\/PackageFile:<id>: URI/,
      );
    });

    it("refuses a repo URI that is not one", async () => {
      await expectCode(client().listPackageFiles("/etc/passwd"), "PACKRAT_MASTER_PROTOCOL");
      expect(fm.requests).toHaveLength(0);
    });
  });

  describe("HTTP faults", () => {
    it("carries the CInP class, error and message of an error answer", async () => {
      fm.faults.add({
        kind: "status",
        status: 500,
        body: { class: "ServerError", error: "DB_DOWN", message: "database is down", trace: "x" },
      });
      const e = (await expectCode(
        client().getMirror(),
        "PACKRAT_MASTER_HTTP",
        new RegExp(
          `^GET ${escape(fm.url)}/api/v2/Repo/Mirror:prod:: HTTP 500 ServerError \\(DB_DOWN\\): database is down$`,
        ),
      )) as MasterHttpError;
      expect([e.status, e.cinpClass, e.cinpError, e.cinpMessage]).toEqual([
        500,
        "ServerError",
        "DB_DOWN",
        "database is down",
      ]);
      expect(e.hint).toMatch(/retries later/);
    });

    it("reports 403 as an HTTP error with a permission hint, and a 3xx as a protocol error", async () => {
      fm.faults.add({ kind: "status", status: 403, times: 1 });
      const e = await expectCode(client().heartbeat(), "PACKRAT_MASTER_HTTP", /HTTP 403/);
      expect(e.hint).toMatch(/permission/);
      fm.faults.add({ kind: "status", status: 302, times: 1 });
      await expectCode(
        client().getMirror(),
        "PACKRAT_MASTER_PROTOCOL",
        /unexpected HTTP status 302/,
      );
    });

    it("keeps a non-JSON error body as an excerpt", async () => {
      fm.faults.add({ kind: "status", status: 502, body: "<html>Bad Gateway</html>" });
      await expectCode(client().getMirror(), "PACKRAT_MASTER_HTTP", /HTTP 502 <html>Bad Gateway/);
    });

    it("reports a connection reset as unreachable", async () => {
      fm.faults.add({ kind: "reset", uri: "Mirror" });
      await expectCode(
        client().getMirror(),
        "PACKRAT_MASTER_UNREACHABLE",
        new RegExp(`^GET ${escape(fm.url)}/api/v2/Repo/Mirror:prod:: cannot reach the master`),
      );
    });

    it("tries a read once more after a reset, but never an action", async () => {
      fm.faults.add({ kind: "reset", uri: "Mirror:prod:", times: 1 });
      expect((await client().getMirror()).name).toBe("prod");
      expect(fm.requests.map((r) => r.method)).toEqual(["GET", "GET"]);
      fm.faults.add({ kind: "reset", uri: "(heartbeat)", times: 1 });
      await expectCode(client().heartbeat(), "PACKRAT_MASTER_UNREACHABLE", /\(heartbeat\)/);
      expect(fm.heartbeats).toHaveLength(0);
    });

    it("reports a refused connection as unreachable", async () => {
      const s = createServer();
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      const port = (s.address() as { port: number }).port;
      await new Promise<void>((r) => s.close(() => r()));
      const c = client({ host: `http://127.0.0.1:${port}` });
      await expectCode(c.checkVersion(), "PACKRAT_MASTER_UNREACHABLE", /ECONNREFUSED/);
    });

    it("times out a call that never answers", async () => {
      fm.faults.add({ kind: "hang", uri: "Mirror" });
      const started = Date.now();
      await expectCode(
        client({ requestTimeoutMs: 300 }).getMirror(),
        "PACKRAT_MASTER_TIMEOUT",
        new RegExp(`^GET ${escape(fm.url)}/api/v2/Repo/Mirror:prod:: no answer within 300 ms`),
      );
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it("times out a slow answer but not a quick one", async () => {
      fm.faults.add({ kind: "delay", ms: 100, times: 1 });
      await client({ requestTimeoutMs: 1000 }).checkVersion();
      fm.faults.add({ kind: "delay", ms: 600, times: 1 });
      await expectCode(client({ requestTimeoutMs: 200 }).checkVersion(), "PACKRAT_MASTER_TIMEOUT");
    });

    it("passes a caller's abort through as the abort, not as a master failure", async () => {
      fm.faults.add({ kind: "hang" });
      const ac = new AbortController();
      const p = client().getMirror(ac.signal);
      setTimeout(() => ac.abort(new Error("stopping")), 50);
      expect(await rejection(p)).toEqual(new Error("stopping"));
    });
  });

  describe("poll", () => {
    it("returns [] when nothing changes, asking with the timeout and the repo URI", async () => {
      const started = Date.now();
      expect(await client().poll(REPO_APT, 0)).toEqual([]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900); // raised to minPollTimeout 1 s
      expect(fm.requests[0]).toMatchObject({
        method: "CALL",
        uri: "/api/v2/Repo/Repo:prod-apt:(poll)",
        body: { timeout: 0 },
      });
    });

    it("wakes with the package names of an addition, a tag, an untag and a removal", async () => {
      const c = client();
      const id = addDeb(fm, "foo", "1", []);
      const wake = async (change: () => void) => {
        const p = c.poll(REPO_APT, 5);
        await until(() => fm.openPolls === 1);
        change();
        return p;
      };
      expect(await wake(() => addDeb(fm, "bar", "1"))).toEqual(["bar"]);
      expect(await wake(() => fm.tag(id, "prod"))).toEqual(["foo"]);
      expect(await wake(() => fm.untag(id, "prod"))).toEqual(["foo"]);
      const baz = addDeb(fm, "baz", "1");
      expect(await wake(() => fm.removePackageFile(baz))).toEqual(["baz"]);
      expect(
        await wake(() => {
          addDeb(fm, "b", "2");
          addDeb(fm, "a", "2");
          addDeb(fm, "b", "3");
        }),
      ).toEqual(["a", "b"]);
    });

    it("gives the HTTP request the poll timeout plus the grace", async () => {
      fm.faults.add({ kind: "hang", uri: "(poll)" });
      const started = Date.now();
      await expectCode(
        client({ requestTimeoutMs: 100, pollGraceMs: 300 }).poll(REPO_APT, 1),
        "PACKRAT_MASTER_TIMEOUT",
        /\(poll\): no answer within 1300 ms/,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(1250);
    });

    it("stops at once when the caller aborts, and the master sees the poll go", async () => {
      const ac = new AbortController();
      const p = client().poll(REPO_APT, 30, ac.signal);
      await until(() => fm.openPolls === 1);
      const started = Date.now();
      ac.abort();
      const err = await rejection(p);
      expect((err as Error).name).toBe("AbortError");
      expect(Date.now() - started).toBeLessThan(500);
      await until(() => fm.openPolls === 0);
    });

    it("rejects at once with an already aborted signal", async () => {
      const ac = new AbortController();
      ac.abort();
      expect(((await rejection(client().poll(REPO_APT, 5, ac.signal))) as Error).name).toBe(
        "AbortError",
      );
    });

    it("reports a failing poll and a poll answer of the wrong shape", async () => {
      fm.faults.add({ kind: "status", status: 500, uri: "(poll)", times: 1 });
      await expectCode(client().poll(REPO_APT, 1), "PACKRAT_MASTER_HTTP", /\(poll\): HTTP 500/);
      fm.faults.add({ kind: "json", uri: "(poll)", body: { changed: "foo" }, times: 1 });
      await expectCode(
        client().poll(REPO_APT, 1),
        "PACKRAT_MASTER_PROTOCOL",
        /expected an array of package names, got an object/,
      );
    });
  });

  describe("heartbeat", () => {
    it("calls the mirror's heartbeat with an empty object", async () => {
      await client().heartbeat();
      expect(fm.heartbeats.map((h) => h.mirror)).toEqual(["prod"]);
      expect(fm.requests[0]).toMatchObject({
        method: "CALL",
        uri: "/api/v2/Repo/Mirror:prod:(heartbeat)",
        body: {},
      });
      expect((await client().getMirror()).lastHeartbeat).toBe(fm.heartbeats[0]!.at.toISOString());
    });
  });

  describe("download", () => {
    it("streams the file with its size", async () => {
      const id = addDeb(fm, "foo", "1");
      const [file] = await client().listPackageFiles(REPO_APT);
      const d = await client().download(file!.fileUrl);
      expect(d.size).toBe(Buffer.byteLength("foo 1 contents"));
      expect((await readAll(d.body)).toString()).toBe("foo 1 contents");
      expect(fm.requests.at(-1)).toMatchObject({
        method: "GET",
        uri: `/files/${id}/foo_1_all.deb`,
      });
    });

    it("streams a large file intact", async () => {
      const content = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < content.length; i++) content[i] = (i * 7) % 251;
      const id = fm.addPackageFile({
        package: "big",
        distroVersion: "bookworm",
        version: "1",
        type: "deb",
        arch: "all",
        filename: "big.deb",
        content,
      });
      const d = await client().download(`/files/${id}/big.deb`);
      expect((await readAll(d.body)).equals(content)).toBe(true);
    });

    it("reports a missing file as HTTP 404", async () => {
      const e = await expectCode(
        client().download("/files/99/gone.deb"),
        "PACKRAT_MASTER_HTTP",
        new RegExp(`^GET ${escape(fm.url)}/files/99/gone.deb: HTTP 404`),
      );
      expect((e as MasterHttpError).status).toBe(404);
    });

    it("errors the body stream when the connection dies mid-file", async () => {
      const id = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "truncate", bytes: 4 });
      const d = await client().download(`/files/${id}/foo_1_all.deb`);
      expect(d.size).toBe(14);
      const e = await expectCode(readAll(d.body), "PACKRAT_MASTER_UNREACHABLE");
      expect(e.message).toContain(`GET ${fm.url}/files/${id}/foo_1_all.deb`);
      expect(e.message).toMatch(/: the connection broke after 4 of 14 bytes \(UND_ERR_SOCKET/);
    });

    it("reports a reset before the answer as unreachable", async () => {
      const id = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "reset", uri: "/files/" });
      await expectCode(
        client().download(`/files/${id}/foo_1_all.deb`),
        "PACKRAT_MASTER_UNREACHABLE",
        /cannot reach the master/,
      );
    });

    it("times out a file server that never answers, and one that stalls mid-body", async () => {
      const id = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "hang", uri: "/files/", times: 1 });
      await expectCode(
        client({ requestTimeoutMs: 200 }).download(`/files/${id}/foo_1_all.deb`),
        "PACKRAT_MASTER_TIMEOUT",
        /no answer within 200 ms/,
      );
      // A stalled body: headers and Content-Length, then silence. Raw server to keep it open.
      const stall = await startRawHttpServer((_req, res) => {
        res.socket.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        res.hang();
      });
      try {
        const d = await client({ host: stall.url, requestTimeoutMs: 200 }).download("/f");
        await expectCode(
          readAll(d.body),
          "PACKRAT_MASTER_TIMEOUT",
          /GET http:\/\/127\.0\.0\.1:\d+\/f: the transfer stalled for 200 ms after 3 of 10 bytes$/,
        );
      } finally {
        await stall.close();
      }
    });

    it("serves other bytes under the wrong-bytes fault (the caller's hash check catches it)", async () => {
      const id = addDeb(fm, "foo", "1");
      const [file] = await client().listPackageFiles(REPO_APT);
      fm.faults.add({ kind: "wrong-bytes" });
      const bytes = await readAll((await client().download(`/files/${id}/foo_1_all.deb`)).body);
      expect(bytes).toHaveLength(14);
      expect(createHash("sha256").update(bytes).digest("hex")).not.toBe(file!.sha256);
    });

    it("errors the body stream with the caller's abort reason mid-file", async () => {
      const id = fm.addPackageFile({
        package: "big",
        distroVersion: "bookworm",
        version: "1",
        type: "deb",
        arch: "all",
        filename: "big.deb",
        content: Buffer.alloc(8 * 1024 * 1024, 1),
      });
      const ac = new AbortController();
      const d = await client().download(`/files/${id}/big.deb`, ac.signal);
      let received = 0;
      const err = await rejection(
        (async () => {
          for await (const chunk of d.body) {
            received += (chunk as Buffer).length;
            ac.abort(new Error("shutting down"));
          }
        })(),
      );
      expect(err).toEqual(new Error("shutting down"));
      expect(received).toBeLessThan(8 * 1024 * 1024);
    });

    it("ends an open poll when the client is closed", async () => {
      const c = createMasterClient({
        host: fm.url,
        name: "prod",
        psk: null,
        proxy: null,
        requestTimeoutMs: 2000,
        log: logs.log,
      });
      const p = c.poll(REPO_APT, 30);
      await until(() => fm.openPolls === 1);
      const outcome = rejection(p);
      await c.close();
      expect(await outcome).toBeInstanceOf(PackratError);
      await until(() => fm.openPolls === 0);
    });

    it("refuses a file URL that is not a path", async () => {
      await expectCode(client().download("http://evil.example/x"), "PACKRAT_MASTER_PROTOCOL");
      await expectCode(client().download("//evil.example/x"), "PACKRAT_MASTER_PROTOCOL");
    });
  });

  describe("login", () => {
    let secured: FakeMaster;
    beforeEach(async () => {
      secured = await startFakeMaster({ minPollTimeout: 1, auth: { name: "prod", psk: PSK } });
      seed(secured);
    });
    afterEach(() => secured.close());

    const securedClient = (psk: string | null = PSK) => client({ host: secured.url, psk });
    const logins = () => secured.requests.filter((r) => r.uri === "/api/v2/Auth/User(login)");

    it("logs in once and sends Auth-Id and Auth-Token on every call", async () => {
      const c = securedClient();
      await Promise.all([c.getMirror(), c.getDistroVersions(), c.checkVersion()]);
      await c.heartbeat();
      expect(logins()).toHaveLength(1);
      expect(logins()[0]!.body).toEqual({ username: "prod", password: PSK });
      const token = secured.requests
        .map((r) => r.headers["auth-token"])
        .find((t) => t !== undefined);
      expect(typeof token).toBe("string");
      for (const r of secured.requests.filter((r) => !r.uri.includes("(login)"))) {
        expect(r.headers["auth-id"]).toBe("prod");
        expect(r.headers["auth-token"]).toBe(token);
      }
    });

    it("logs in again once after a 401 and retries the call", async () => {
      const c = securedClient();
      await c.getMirror();
      secured.faults.add({ kind: "status", status: 401, uri: "Mirror", times: 1 });
      expect((await c.getMirror()).name).toBe("prod");
      expect(logins()).toHaveLength(2);
      secured.expireSessions();
      await c.heartbeat();
      expect(logins()).toHaveLength(3);
      expect(secured.heartbeats).toHaveLength(1);
    });

    it("shares one re-login between concurrent calls that all hit an expired session", async () => {
      const c = securedClient();
      await c.getMirror();
      secured.expireSessions();
      const [mirror, dvs] = await Promise.all([
        c.getMirror(),
        c.getDistroVersions(),
        c.heartbeat(),
        c.listPackageFiles(REPO_APT),
      ]);
      expect(mirror.name).toBe("prod");
      expect(dvs).toHaveLength(3);
      expect(logins()).toHaveLength(2);
    });

    it("fails with PACKRAT_MASTER_AUTH when the 401 persists after the re-login", async () => {
      secured.faults.add({ kind: "status", status: 401, uri: "Mirror" });
      const e = await expectCode(
        securedClient().getMirror(),
        "PACKRAT_MASTER_AUTH",
        /refused the session of mirror "prod" \(HTTP 401/,
      );
      expect((e as MasterHttpError).status).toBe(401);
      expect(logins()).toHaveLength(2);
    });

    it("fails with PACKRAT_MASTER_AUTH on a wrong psk, without telling it", async () => {
      const e = await expectCode(
        securedClient("wrong-psk-value").getMirror(),
        "PACKRAT_MASTER_AUTH",
        /refused the login of mirror "prod" \(HTTP 400 InvalidRequest: Invalid Login\)/,
      );
      expect(e.hint).toMatch(/psk/);
      expect(`${e.message} ${e.hint}`).not.toContain("wrong-psk-value");
      expect(logins()).toHaveLength(1);
    });

    it("says a psk is needed when the master asks for a login and none is set", async () => {
      const e = await expectCode(securedClient(null).getMirror(), "PACKRAT_MASTER_AUTH");
      expect(e.hint).toMatch(/set \[packrat\] psk/);
    });

    it("refuses a login answer that is not a token", async () => {
      secured.faults.add({ kind: "json", uri: "(login)", body: { value: "tok-ABC" } });
      const e = await expectCode(
        securedClient().getMirror(),
        "PACKRAT_MASTER_PROTOCOL",
        /expected a session token string, got an object/,
      );
      expect(e.message).not.toContain("tok-ABC");
    });

    it("never writes the psk or the token to the log, even at debug level", async () => {
      const c = securedClient();
      await c.checkVersion();
      await c.getMirror();
      secured.faults.add({ kind: "status", status: 401, times: 1 });
      await c.listPackageFiles(REPO_APT);
      secured.faults.add({ kind: "status", status: 500, uri: "Mirror", times: 1 });
      await rejection(c.getMirror());
      const tokens = new Set(
        secured.requests.map((r) => r.headers["auth-token"]).filter((t) => t !== undefined),
      );
      expect(tokens.size).toBe(2);
      const text = logs.text();
      expect(text).toContain("logged in to the master");
      expect(text).toContain("master session expired");
      expect(text).toContain('"verb":"LIST"');
      expect(text).not.toContain(PSK);
      for (const t of tokens) expect(text).not.toContain(String(t));
    });
  });

  describe("proxy", () => {
    let proxy: RawHttpServer;
    let seen: { method: string; target: string; auth: string | undefined }[];

    /** A forward proxy (no CONNECT): absolute-form request in, the same request out. */
    beforeEach(async () => {
      seen = [];
      proxy = await startRawHttpServer(async (req, res) => {
        const auth = req.headers["proxy-authorization"];
        seen.push({ method: req.method, target: req.target, auth: auth as string | undefined });
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) {
          if (v === undefined || /^(host|connection|keep-alive|proxy-.*)$/.test(k)) continue;
          headers[k] = Array.isArray(v) ? v.join(", ") : v;
        }
        try {
          const up = await request(req.target, {
            method: req.method,
            headers,
            body: req.body.length > 0 ? req.body : undefined,
          });
          const out: Record<string, string> = {};
          for (const [k, v] of Object.entries(up.headers)) {
            if (
              v === undefined ||
              /^(content-length|connection|keep-alive|transfer-encoding)$/.test(k)
            )
              continue;
            out[k] = Array.isArray(v) ? v.join(", ") : v;
          }
          res.send(up.statusCode, out, Buffer.from(await up.body.arrayBuffer()));
        } catch {
          res.send(502, {}, "bad gateway");
        }
      });
    });
    afterEach(() => proxy.close());

    it("reports a proxy that refuses the request", async () => {
      const strict = await startRawHttpServer((_req, res) =>
        res.send(407, { "Proxy-Authenticate": 'Basic realm="p"' }, ""),
      );
      try {
        const c = client({ proxy: strict.url });
        const e = await expectCode(c.getMirror(), "PACKRAT_MASTER_UNREACHABLE", /407/);
        expect(e.message).toContain(`GET ${fm.url}/api/v2/Repo/Mirror:prod:`);
      } finally {
        await strict.close();
      }
    });

    it("sends every call and download through the proxy, with its credentials", async () => {
      const id = addDeb(fm, "foo", "1");
      const c = client({ proxy: `http://user:pr0xy-pw@127.0.0.1:${proxy.port}` });
      await c.checkVersion();
      const m = await c.getMirror();
      await c.getRepos(m.repoUris);
      const files = await c.listPackageFiles(REPO_APT);
      expect(files).toHaveLength(1);
      const body = await readAll((await c.download(files[0]!.fileUrl)).body);
      expect(body.toString()).toBe("foo 1 contents");
      expect(seen.map((s) => `${s.method} ${s.target}`)).toEqual([
        `DESCRIBE ${fm.url}/api/v2/`,
        `GET ${fm.url}/api/v2/Repo/Mirror:prod:`,
        `GET ${fm.url}/api/v2/Repo/Repo:prod-apt:prod-yum:`,
        `LIST ${fm.url}/api/v2/Package/PackageFile`,
        `GET ${fm.url}/api/v2/Package/PackageFile:${id}:`,
        `GET ${fm.url}/files/${id}/foo_1_all.deb`,
      ]);
      const basic = `Basic ${Buffer.from("user:pr0xy-pw").toString("base64")}`;
      for (const s of seen) expect(s.auth).toBe(basic);
      expect(fm.requests).toHaveLength(seen.length);
      expect(logs.text()).not.toContain("pr0xy-pw");
    });
  });
});

describe("master client paging edge cases (MockAgent, no network)", () => {
  const HOST = "http://master.test";
  let agent: MockAgent;

  beforeEach(() => {
    agent = new MockAgent();
    agent.disableNetConnect();
  });
  afterEach(() => agent.close());

  const mockClient = () =>
    createMasterClient({
      host: HOST,
      name: "prod",
      psk: null,
      proxy: null,
      requestTimeoutMs: 1000,
      log: captureLog().log,
      dispatcher: agent,
    });

  const fileUri = (i: number) => `/api/v2/Package/PackageFile:${i}:`;
  const fileObj = (i: number) => ({
    package: `/api/v2/Package/Package:p${i}:`,
    distroversion: "/api/v2/Attrib/DistroVersion:bookworm:",
    version: "1",
    type: "deb",
    arch: "all",
    file: `/files/p${i}.deb`,
    sha256: "A".repeat(64),
    tags: ["prod"],
  });

  function mockList(uris: string[], total: number | null, position: number) {
    agent
      .get(HOST)
      .intercept({
        path: "/api/v2/Package/PackageFile",
        method: "LIST",
        headers: { position: String(position) },
      })
      .reply(200, JSON.stringify(uris), {
        headers: total === null ? {} : { Total: String(total), Count: String(uris.length) },
      });
  }

  /** Answer every multi-object GET of package files, however the client chunks them. */
  function mockGets() {
    agent
      .get(HOST)
      .intercept({
        path: (p: string) => p.startsWith("/api/v2/Package/PackageFile:"),
        method: "GET",
      })
      .reply(200, (opts) => {
        const ids = String(opts.path).split(":").slice(1, -1).map(Number);
        expect(ids.length).toBeLessThanOrEqual(10);
        return JSON.stringify(Object.fromEntries(ids.map((i) => [fileUri(i), fileObj(i)])));
      })
      .persist();
  }

  it("reads the list again when its Total changes between pages", async () => {
    const first = Array.from({ length: 100 }, (_, i) => fileUri(i));
    mockList(first, 150, 0);
    mockList([fileUri(200)], 101, 100); // a file vanished meanwhile: start over
    mockList(first, 100, 0);
    mockGets();
    const files = await mockClient().listPackageFiles(REPO_APT);
    expect(files).toHaveLength(100);
    expect(files[0]).toMatchObject({
      packageName: "p0",
      filename: "p0.deb",
      sha256: "a".repeat(64),
    });
    agent.assertNoPendingInterceptors();
  });

  it("reads the list again when a listed file is gone by the time it is read", async () => {
    mockList([fileUri(1), fileUri(2)], 2, 0);
    agent
      .get(HOST)
      .intercept({ path: "/api/v2/Package/PackageFile:1:2:", method: "GET" })
      .reply(404, JSON.stringify({ class: "NotFound", message: "gone" }));
    mockList([fileUri(1)], 1, 0);
    mockGets();
    const files = await mockClient().listPackageFiles(REPO_APT);
    expect(files.map((f) => f.packageName)).toEqual(["p1"]);
    agent.assertNoPendingInterceptors();
  });

  it("overlaps the GETs of a page with the LIST of the next one", async () => {
    const total = 300;
    const uris = Array.from({ length: total }, (_, i) => fileUri(i));
    for (let p = 0; p < total; p += 100) mockList(uris.slice(p, p + 100), total, p);
    mockGets();
    const order: string[] = [];
    const c = createMasterClient({
      host: HOST,
      name: "prod",
      psk: null,
      proxy: null,
      requestTimeoutMs: 1000,
      log: captureLog().log,
      dispatcher: {
        // Record the order requests leave in, then hand them to the mock.
        dispatch: (opts: { method: string; path: string }, handler: unknown) => {
          order.push(`${opts.method} ${opts.path}`);
          return agent.dispatch(opts, handler as never);
        },
      } as never,
    });
    expect(await c.listPackageFiles(REPO_APT)).toHaveLength(total);
    const lastList = order.lastIndexOf("LIST /api/v2/Package/PackageFile");
    expect(order.findIndex((o) => o.startsWith("GET "))).toBeLessThan(lastList);
  });

  it("gives up as inconsistent when the list keeps changing", async () => {
    const page = Array.from({ length: 100 }, (_, i) => fileUri(i));
    for (let n = 0; n < 3; n++) {
      mockList(page, 150 + n, 0);
      mockList([], 999, 100);
    }
    await expectCode(
      mockClient().listPackageFiles(REPO_APT),
      "PACKRAT_MASTER_INCONSISTENT",
      /kept changing while it was read \(3 attempts\)/,
    );
  });

  it("stops paging without Total on a short page, and refuses pages that do not advance", async () => {
    mockList([fileUri(1)], null, 0);
    mockGets();
    expect(await mockClient().listPackageFiles(REPO_APT)).toHaveLength(1);

    const page = Array.from({ length: 100 }, (_, i) => fileUri(i));
    mockList(page, null, 0);
    mockList(page, null, 100);
    await expectCode(
      mockClient().listPackageFiles(REPO_APT),
      "PACKRAT_MASTER_PROTOCOL",
      /paging does not advance/,
    );
  });

  it("refuses a master that ignores Position, even when Total is set", async () => {
    mockGets();
    const page = Array.from({ length: 100 }, (_, i) => fileUri(i));
    mockList(page, 250, 0);
    mockList(page, 250, 100);
    await expectCode(
      mockClient().listPackageFiles(REPO_APT),
      "PACKRAT_MASTER_PROTOCOL",
      /\(Position 100\): the page repeats URIs already listed/,
    );
  });

  it("reads the list again when it shifted and some URIs came twice", async () => {
    const uris = Array.from({ length: 110 }, (_, i) => fileUri(i));
    mockList(uris.slice(0, 100), 110, 0);
    mockList([fileUri(99), ...uris.slice(100, 109)], 110, 100); // an insert pushed #99 forward
    mockList(uris.slice(0, 100), 110, 0);
    mockList(uris.slice(100), 110, 100);
    mockGets();
    expect(await mockClient().listPackageFiles(REPO_APT)).toHaveLength(110);
    agent.assertNoPendingInterceptors();
  });

  it("refuses a Total header that is not a number", async () => {
    agent
      .get(HOST)
      .intercept({ path: "/api/v2/Package/PackageFile", method: "LIST" })
      .reply(200, "[]", { headers: { Total: "lots" } });
    await expectCode(
      mockClient().listPackageFiles(REPO_APT),
      "PACKRAT_MASTER_PROTOCOL",
      /header Total is lots, expected a whole number/,
    );
  });

  it("refuses an oversized-looking Content-Length mismatch on download", async () => {
    agent
      .get(HOST)
      .intercept({ path: "/files/x.deb", method: "GET" })
      .reply(200, "abcdef", { headers: { "content-length": "3" } });
    const d = await mockClient().download("/files/x.deb");
    expect(d.size).toBe(3);
    await expectCode(
      readAll(d.body),
      "PACKRAT_MASTER_PROTOCOL",
      /more bytes than the Content-Length/,
    );
  });
});

describe("package file parsing", () => {
  const base = {
    package: "/api/v2/Package/Package:foo:",
    distroversion: "/api/v2/Attrib/DistroVersion:bookworm:",
    version: "1.0-1",
    type: "deb",
    arch: "all",
    file: "/files/foo_1.0-1_all.deb",
    sha256: "0".repeat(64),
    tags: ["prod"],
  };
  const URI = "/api/v2/Package/PackageFile:1:";

  it("maps the fields", () => {
    expect(parsePackageFile(URI, base)).toMatchObject({
      packageName: "foo",
      filename: "foo_1.0-1_all.deb",
      fileUrl: "/files/foo_1.0-1_all.deb",
    });
  });

  it.each([
    ["tags", "prod", /field "tags" is the string "prod", expected an array of strings/],
    ["package", "foo", /field "package" is "foo", expected a Package URI/],
    ["version", null, /field "version" is null, expected a non-empty string/],
    ["arch", undefined, /field "arch" is missing/],
  ])("names the field %s when it has the wrong shape", (key, value, message) => {
    const obj: Record<string, unknown> = { ...base, [key]: value };
    if (value === undefined) delete obj[key];
    expect(() => parsePackageFile(URI, obj)).toThrow(message);
  });

  it("refuses a non-object", () => {
    expect(() => parsePackageFile(URI, [1])).toThrow(
      /expected a package file as a JSON object, got an array/,
    );
  });

  it.each([
    ["/files/a%2Fb.deb", /"a\/b\.deb" is not a safe basename/],
    ["/files/../x.deb", /is not a plain path/],
    ["/files/./x.deb", /is not a plain path/],
    ["/files/x\\y.deb", /is not a plain path/],
    ["/files/x.deb?y", /is not a plain path/],
    ["files/x.deb", /is not a plain path/],
    ["/files/%E0%A4%A.deb", /is not a safe basename/],
    ["/files/", /"" is not a safe basename/],
  ])("refuses the file URL %s", (url, message) => {
    expect(() => filenameOf(url, "t")).toThrow(message);
  });

  it("takes the decoded basename of a nested path", () => {
    expect(filenameOf("/files/pool/f/foo%2B1.deb".replace("%2B", "_"), "t")).toBe("foo_1.deb");
  });
});
