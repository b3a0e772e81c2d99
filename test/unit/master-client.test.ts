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
} from "../../src/sync/master-client.js";
import type { MasterClient } from "../../src/sync/master-types.js";
import {
  isoformat,
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
      const e = await expectCode(
        c.getMirror(),
        "PACKRAT_MASTER_HTTP",
        /HTTP 404 ObjectNotFound: \/api\/v2\/Repo\/Mirror:nope: not found/,
      );
      expect(e).toBeInstanceOf(MasterHttpError);
      const h = e as MasterHttpError;
      expect(h.status).toBe(404);
      expect(h.cinpClass).toBe("ObjectNotFound");
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
      fm.setRepoList("prod", names);
      const c = client();
      const m = await c.getMirror();
      const repos = await c.getRepos([...m.repoUris].reverse());
      expect(repos.map((r) => r.name)).toEqual([...names].reverse());
      expect(repos[0]).toEqual({
        uri: "/api/v2/Repo/Repo:r22:",
        name: "r22",
        description: "",
        filesystemDir: "d/r22",
        managerType: "json",
        distroVersionUris: ["/api/v2/Attrib/DistroVersion:none:"],
        tag: "t",
        showOnlyLatest: true,
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

    it("reads a repo's tag from the Tag URI the master sends, and refuses another model's", async () => {
      const [apt] = await client().getRepos([REPO_APT]);
      expect(apt!.tag).toBe("prod");
      fm.faults.add({
        kind: "json",
        method: "GET",
        uri: "Repo:prod-apt:",
        body: {
          [REPO_APT]: {
            name: "prod-apt",
            description: "",
            filesystem_dir: "apt",
            manager_type: "apt",
            tag: "/api/v2/Repo/Mirror:prod:",
            show_only_latest: true,
            distroversion_list: [],
          },
        },
      });
      await expectCode(
        client().getRepos([REPO_APT]),
        "PACKRAT_MASTER_PROTOCOL",
        /field "tag" is "\/api\/v2\/Repo\/Mirror:prod:", expected a \/api\/v2\/Attrib\/Tag:<name>: URI/,
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
      // The whole list in one LIST: the master's pages are unordered, and Count has no cap.
      const lists = fm.requests.filter((r) => r.method === "LIST");
      expect(lists.map((l) => [l.headers.position, l.headers.count])).toEqual([["0", "1000000"]]);
    });
  });

  describe("listPackageFiles", () => {
    it("lists the repo filter in one LIST and reads every file in multi-object GETs", async () => {
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
      const { files, skipped } = await client().listPackageFiles(REPO_APT);
      expect(skipped).toEqual([]);
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
        fileUrl: "/files/pkg3_1.3_all.deb",
        filename: "pkg3_1.3_all.deb",
        sha256: createHash("sha256").update("pkg3 1.3 contents").digest("hex"),
        tags: ["prod"],
        failedAt: null,
        deprecatedAt: null,
      });
      const lists = fm.requests.filter((r) => r.method === "LIST");
      expect(lists).toHaveLength(1);
      expect([lists[0]!.headers.position, lists[0]!.headers.count]).toEqual(["0", "1000000"]);
      expect(lists[0]!.uri).toBe("/api/v2/Package/PackageFile");
      expect(lists[0]!.headers.filter).toBe("repo");
      expect(lists[0]!.body).toEqual({ repo: REPO_APT, package_list: null });
      const gets = fm.requests.filter((r) => r.method === "GET");
      expect(gets).toHaveLength(25);
      expect(Math.max(...gets.map((g) => g.uri.split(":").length - 2))).toBe(10);
    });

    it("reads the tags the real master joins into one string, and an array too", async () => {
      const two = addDeb(fm, "two", "1", ["prod", "stage"]);
      const { files } = await client().listPackageFiles(REPO_APT);
      expect(files.find((f) => f.uri.endsWith(`:${two}:`))!.tags).toEqual(["prod", "stage"]);
      expect(fm.requests.some((r) => r.method === "GET")).toBe(true);
      fm.faults.add({
        kind: "field",
        fileId: two,
        field: "tags",
        value: ["stage", "prod", "prod"],
      });
      const again = await client().listPackageFiles(REPO_APT);
      expect(again.files[0]!.tags).toEqual(["prod", "stage"]);
      fm.faults.set({ kind: "field", fileId: two, field: "tags", value: " ,prod,  , stage " });
      expect((await client().listPackageFiles(REPO_APT)).files[0]!.tags).toEqual(["prod", "stage"]);
    });

    it("reads failed and deprecated marks, which change on the same id", async () => {
      const a = addDeb(fm, "a", "1");
      const b = addDeb(fm, "b", "1");
      const c = client();
      expect((await c.listPackageFiles(REPO_APT)).files.map((f) => f.failedAt)).toEqual([
        null,
        null,
      ]);
      fm.fail(a);
      fm.deprecate(b);
      const { files } = await c.listPackageFiles(REPO_APT);
      expect(files.map((f) => f.uri)).toEqual(
        [a, b].map((id) => `/api/v2/Package/PackageFile:${id}:`),
      );
      expect(files[0]!.failedAt).toMatch(/\+00:00$/);
      expect(files[0]!.deprecatedAt).toBeNull();
      expect(files[1]!.deprecatedAt).toMatch(/\+00:00$/);
    });

    it("after DESCRIBE, asks for as many objects per GET as multi-uri-max allows", async () => {
      const ids: number[] = [];
      for (let i = 0; i < 250; i++) ids.push(addDeb(fm, `pkg${i % 7}`, `1.${i}`));
      const c = client();
      await c.checkVersion(); // the master describes multi-uri-max 100
      const { files } = await c.listPackageFiles(REPO_APT);
      expect(files).toHaveLength(250);
      const gets = fm.requests.filter((r) => r.method === "GET");
      expect(gets).toHaveLength(3);
      expect(Math.max(...gets.map((g) => g.uri.split(":").length - 2))).toBe(100);
    });

    it("reads only the packages asked for, once each", async () => {
      addDeb(fm, "foo", "1");
      addDeb(fm, "bar", "1");
      addDeb(fm, "foo", "2");
      const { files } = await client().listPackageFiles(REPO_APT, ["foo", "foo"]);
      expect(files.map((f) => `${f.packageName} ${f.version}`)).toEqual(["foo 1", "foo 2"]);
      expect(fm.requests.find((r) => r.method === "LIST")!.body).toEqual({
        repo: REPO_APT,
        package_list: ["foo"],
      });
    });

    it("returns nothing for an empty repo, with one LIST and no GET", async () => {
      expect(await client().listPackageFiles(REPO_YUM)).toEqual({ files: [], skipped: [] });
      expect(fm.requests.map((r) => r.method)).toEqual(["LIST"]);
    });

    it("reads 10,000 files of a master that shuffles every answer, missing none", async () => {
      await fm.close();
      fm = await startFakeMaster({ listOrder: "shuffled" });
      seed(fm);
      const ids = new Set<string>();
      for (let i = 0; i < 10_000; i++)
        ids.add(`/api/v2/Package/PackageFile:${addDeb(fm, `p${i}`, "1")}:`);
      const c = client();
      await c.checkVersion();
      const { files } = await c.listPackageFiles(REPO_APT);
      expect(new Set(files.map((f) => f.uri))).toEqual(ids);
    });

    it("pages a master that caps Count, in rounds, until it saw every file of its unordered pages", async () => {
      await fm.close();
      fm = await startFakeMaster({ listOrder: "shuffled", maxListCount: 50 });
      seed(fm);
      const ids = new Set<string>();
      for (let i = 0; i < 300; i++)
        ids.add(`/api/v2/Package/PackageFile:${addDeb(fm, `p${i}`, "1")}:`);
      const { files } = await client().listPackageFiles(REPO_APT);
      expect(new Set(files.map((f) => f.uri))).toEqual(ids);
      const lists = fm.requests.filter((r) => r.method === "LIST");
      expect(lists.length).toBeGreaterThan(6);
      expect(lists.slice(1).every((l) => l.headers.count === "50")).toBe(true);
    });

    it("skips files with hostile names, logs each, keeps the rest", async () => {
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
      const { files, skipped } = await client().listPackageFiles(REPO_APT);
      expect(files.map((f) => f.filename)).toEqual(["good_1_all.deb"]);
      expect(files[0]!.uri).toBe(`/api/v2/Package/PackageFile:${good}:`);
      expect(skipped.map((r) => r.uri)).toEqual(
        [...ids, raw].map((id) => `/api/v2/Package/PackageFile:${id}:`),
      );
      for (const r of skipped) {
        expect(r.code).toBe("PACKRAT_UNSAFE_FILENAME");
        expect(r.reason).toMatch(/not a (safe basename|plain path)/);
      }
      const warns = logs.lines().filter((l) => l.level === 40);
      expect(warns).toHaveLength(hostile.length + 1);
      expect(warns[0]).toMatchObject({
        uri: `/api/v2/Package/PackageFile:${ids[0]}:`,
        file: "/files/..%2F..%2Fetc%2Fpasswd",
        repo: REPO_APT,
      });
      expect(String(warns[0]!.msg)).toContain('filename "../../etc/passwd" is not a safe basename');
    });

    it("skips a malformed file (sha256: 42), naming it and the field, and keeps the rest", async () => {
      const good = addDeb(fm, "good", "1");
      const liar = addDeb(fm, "liar", "1");
      fm.faults.add({ kind: "field", fileId: liar, field: "sha256", value: 42 });
      const { files, skipped } = await client().listPackageFiles(REPO_APT);
      expect(files.map((f) => f.uri)).toEqual([`/api/v2/Package/PackageFile:${good}:`]);
      expect(skipped).toEqual([
        {
          uri: `/api/v2/Package/PackageFile:${liar}:`,
          fileUrl: "/files/liar_1_all.deb",
          code: "PACKRAT_MASTER_PROTOCOL",
          reason: expect.stringMatching(
            /^package file http:\/\/127\.0\.0\.1:\d+\/api\/v2\/Package\/PackageFile:\d+:: field "sha256" is number 42, expected a string$/,
          ) as unknown,
        },
      ]);
      fm.faults.set({ kind: "field", fileId: liar, field: "tags", value: 7 });
      expect((await client().listPackageFiles(REPO_APT)).skipped[0]!.reason).toMatch(
        /field "tags" is number 7, expected tag names/,
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

    it("reports an anonymous 403 as a master that needs a login, and a 3xx as a protocol error", async () => {
      fm.faults.add({ kind: "status", status: 403, times: 1 });
      const e = await expectCode(
        client().heartbeat(),
        "PACKRAT_MASTER_AUTH",
        /the master refuses anonymous reads \(HTTP 403 Not Authorized\)/,
      );
      expect(e.hint).toMatch(/set \[packrat\] username and psk/);
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

    it("wakes with the package names the master announces: a tag, a fail, a deprecation", async () => {
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
      expect(await wake(() => fm.fail(id))).toEqual(["foo"]);
      const baz = addDeb(fm, "baz", "1");
      expect(await wake(() => fm.deprecate(baz))).toEqual(["baz"]);
      // Newest first, repeats kept: the answer is a hint, not a set.
      expect(
        await wake(() => {
          addDeb(fm, "b", "2");
          addDeb(fm, "a", "2");
          addDeb(fm, "b", "3");
        }),
      ).toEqual(["b", "a", "b"]);
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
      expect((await client().getMirror()).lastHeartbeat).toBe(isoformat(fm.heartbeats[0]!.at));
    });
  });

  describe("download", () => {
    it("streams the file, chunked as packrat's dev server sends it, or with its size", async () => {
      const id = addDeb(fm, "foo", "1");
      const { files } = await client().listPackageFiles(REPO_APT);
      const d = await client().download(files[0]!.fileUrl);
      expect(d.size).toBeNull();
      expect((await readAll(d.body)).toString()).toBe("foo 1 contents");
      expect(fm.requests.at(-1)).toMatchObject({ method: "GET", uri: "/files/foo_1_all.deb" });
      await fm.close();
      fm = await startFakeMaster({ fileContentLength: true });
      seed(fm);
      const again = addDeb(fm, "foo", "1");
      const sized = await client().download(fm.fileUrl(again));
      expect(sized.size).toBe(Buffer.byteLength("foo 1 contents"));
      expect((await readAll(sized.body)).toString()).toBe("foo 1 contents");
      expect(id).toBe(again);
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
      const d = await client().download(fm.fileUrl(id));
      expect((await readAll(d.body)).equals(content)).toBe(true);
    });

    it("reports a missing file as HTTP 404", async () => {
      const e = await expectCode(
        client().download("/files/gone.deb"),
        "PACKRAT_MASTER_HTTP",
        new RegExp(`^GET ${escape(fm.url)}/files/gone.deb: HTTP 404 file "gone.deb" not found`),
      );
      expect((e as MasterHttpError).status).toBe(404);
    });

    it("errors the body stream when the connection dies mid-file", async () => {
      const id = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "truncate", bytes: 4 });
      const d = await client().download(fm.fileUrl(id));
      expect(d.size).toBeNull();
      const e = await expectCode(readAll(d.body), "PACKRAT_MASTER_UNREACHABLE");
      expect(e.message).toContain(`GET ${fm.url}/files/foo_1_all.deb`);
      expect(e.message).toMatch(/: the connection broke after 4 bytes \(UND_ERR_SOCKET/);
      await fm.close();
      fm = await startFakeMaster({ fileContentLength: true });
      seed(fm);
      const sized = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "truncate", bytes: 4 });
      const d2 = await client().download(fm.fileUrl(sized));
      expect(d2.size).toBe(14);
      const e2 = await expectCode(readAll(d2.body), "PACKRAT_MASTER_UNREACHABLE");
      expect(e2.message).toMatch(/: the connection broke after 4 of 14 bytes \(UND_ERR_SOCKET/);
    });

    it("reports a reset before the answer as unreachable", async () => {
      const id = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "reset", uri: "/files/" });
      await expectCode(
        client().download(fm.fileUrl(id)),
        "PACKRAT_MASTER_UNREACHABLE",
        /cannot reach the master/,
      );
    });

    it("times out a file server that never answers, and one that stalls mid-body", async () => {
      const id = addDeb(fm, "foo", "1");
      fm.faults.add({ kind: "hang", uri: "/files/", times: 1 });
      await expectCode(
        client({ requestTimeoutMs: 200 }).download(fm.fileUrl(id)),
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
      const { files } = await client().listPackageFiles(REPO_APT);
      fm.faults.add({ kind: "wrong-bytes" });
      const bytes = await readAll((await client().download(fm.fileUrl(id))).body);
      expect(bytes).toHaveLength(14);
      expect(createHash("sha256").update(bytes).digest("hex")).not.toBe(files[0]!.sha256);
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
      const d = await client().download(fm.fileUrl(id), ac.signal);
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
      // packrat on Django >= 2.1: anonymous GET/LIST refused, a user with the view rights reads.
      secured = await startFakeMaster({
        minPollTimeout: 1,
        users: { prod: PSK, reader: "reader-pw", blind: { password: "blind-pw", view: false } },
        anonymousReads: "refused",
      });
      seed(secured);
    });
    afterEach(() => secured.close());

    const securedClient = (psk: string | null = PSK, username: string | null = null) =>
      client({ host: secured.url, psk, username });
    const logins = () => secured.requests.filter((r) => r.uri === "/api/v2/Auth/User(login)");

    it("reads anonymously first, logs in once when refused, then sends the session on every call", async () => {
      const c = securedClient();
      await c.checkVersion(); // DESCRIBE is open to anyone
      expect(logins()).toHaveLength(0);
      await Promise.all([c.getMirror(), c.getDistroVersions()]);
      await c.heartbeat();
      expect(logins()).toHaveLength(1);
      expect(logins()[0]!.body).toEqual({ username: "prod", password: PSK });
      const afterLogin = secured.requests.slice(secured.requests.indexOf(logins()[0]!) + 1);
      const token = afterLogin[0]!.headers["auth-token"];
      expect(typeof token).toBe("string");
      for (const r of afterLogin.filter((r) => !r.uri.includes("(login)"))) {
        expect(r.headers["auth-id"]).toBe("prod");
        expect(r.headers["auth-token"]).toBe(token);
      }
      expect(logs.text()).toContain("the master refuses anonymous reads; logging in");
    });

    it("logs in as [packrat] username when it is set", async () => {
      const c = securedClient("reader-pw", "reader");
      expect((await c.getMirror()).name).toBe("prod");
      expect(logins()[0]!.body).toEqual({ username: "reader", password: "reader-pw" });
      expect(secured.requests.at(-1)!.headers["auth-id"]).toBe("reader");
    });

    it("logs in again once after a stale session, without the dead headers, and retries", async () => {
      const c = securedClient();
      await c.getMirror();
      secured.expireSessions();
      await c.heartbeat();
      expect((await c.getMirror()).name).toBe("prod");
      expect(logins()).toHaveLength(2);
      for (const l of logins()) expect(l.headers["auth-token"]).toBeUndefined();
      expect(secured.heartbeats).toHaveLength(1);
      expect(logs.text()).toContain("master session no longer valid; logging in again");
    });

    it("shares one re-login between concurrent calls that all hit a stale session", async () => {
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
      const c = securedClient();
      await c.getMirror();
      secured.faults.add({ kind: "status", status: 401, uri: "Mirror" });
      const e = await expectCode(
        c.getMirror(),
        "PACKRAT_MASTER_AUTH",
        /refused the session of user "prod" \(HTTP 401 Invalid Session/,
      );
      expect((e as MasterHttpError).status).toBe(401);
      expect(logins()).toHaveLength(2);
    });

    it("fails naming username and psk when the master needs a login and refuses it", async () => {
      const e = await expectCode(
        securedClient("wrong-psk-value").getMirror(),
        "PACKRAT_MASTER_AUTH",
        /refused the login of user "prod" \(HTTP 400 Invalid Login\), and it does not serve this mirror anonymously/,
      );
      expect(e.hint).toMatch(/\[packrat\] username .* psk/);
      expect(`${e.message} ${e.hint}`).not.toContain("wrong-psk-value");
      expect(logins()).toHaveLength(1);
    });

    it("says a user and psk are needed when the master refuses anonymous reads and none is set", async () => {
      const e = await expectCode(
        securedClient(null).getMirror(),
        "PACKRAT_MASTER_AUTH",
        /the master refuses anonymous reads \(HTTP 403 Not Authorized\)/,
      );
      expect(e.hint).toMatch(/set \[packrat\] username and psk/);
      expect(logins()).toHaveLength(0);
    });

    it("names the missing view permissions when the logged-in user may not read", async () => {
      const e = await expectCode(
        securedClient("blind-pw", "blind").getMirror(),
        "PACKRAT_MASTER_AUTH",
        /the master refused user "blind" \(HTTP 403 Not Authorized\)/,
      );
      expect(e.hint).toMatch(/view permissions/);
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
      secured.expireSessions();
      await c.listPackageFiles(REPO_APT);
      secured.faults.add({ kind: "status", status: 500, uri: "Mirror", times: 1 });
      await rejection(c.getMirror());
      const tokens = new Set(
        secured.requests.map((r) => r.headers["auth-token"]).filter((t) => t !== undefined),
      );
      expect(tokens.size).toBe(2);
      const text = logs.text();
      expect(text).toContain("logged in to the master");
      expect(text).toContain('"verb":"LIST"');
      expect(text).not.toContain(PSK);
      for (const t of tokens) expect(text).not.toContain(String(t));
    });
  });

  describe("login against a master that serves reads anonymously", () => {
    let open: FakeMaster;
    beforeEach(async () => {
      open = await startFakeMaster({ users: { prod: PSK }, anonymousReads: "allowed" });
      seed(open);
    });
    afterEach(() => open.close());
    const logins = () => open.requests.filter((r) => r.uri === "/api/v2/Auth/User(login)");

    it("reads anonymously with an old config's unknown psk, and warns once with what to change", async () => {
      const c = client({ host: open.url, psk: "prod_psk" });
      await c.checkVersion();
      expect((await c.getMirror()).name).toBe("prod");
      await c.getDistroVersions();
      await c.listPackageFiles(REPO_APT);
      expect(logins()).toHaveLength(1);
      for (const r of open.requests) expect(r.headers["auth-token"]).toBeUndefined();
      const warns = logs.lines().filter((l) => l.level === 40);
      expect(warns).toHaveLength(1);
      expect(String(warns[0]!.msg)).toMatch(
        /refused the login of user "prod" \(HTTP 400 Invalid Login\); it serves this mirror without a login, so the agent reads anonymously.*Set \[packrat\] username .*or remove psk/,
      );
      expect(logs.text()).not.toContain("prod_psk");
    });

    it("stays anonymous, as the original agent was, when the psk does log in", async () => {
      const c = client({ host: open.url, psk: PSK });
      await c.getMirror();
      await c.getMirror();
      expect(logins()).toHaveLength(1);
      for (const r of open.requests) expect(r.headers["auth-token"]).toBeUndefined();
      expect(logs.lines().filter((l) => Number(l.level) >= 40)).toEqual([]);
    });

    it("never logs in without a psk", async () => {
      const c = client({ host: open.url, psk: null });
      await c.getMirror();
      expect(logins()).toHaveLength(0);
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
      const { files } = await c.listPackageFiles(REPO_APT);
      expect(files).toHaveLength(1);
      const body = await readAll((await c.download(files[0]!.fileUrl)).body);
      expect(body.toString()).toBe("foo 1 contents");
      expect(seen.map((s) => `${s.method} ${s.target}`)).toEqual([
        `DESCRIBE ${fm.url}/api/v2/`,
        `GET ${fm.url}/api/v2/Repo/Mirror:prod:`,
        `GET ${fm.url}/api/v2/Repo/Repo:prod-apt:prod-yum:`,
        `LIST ${fm.url}/api/v2/Package/PackageFile`,
        `GET ${fm.url}/api/v2/Package/PackageFile:${id}:`,
        `GET ${fm.url}/files/foo_1_all.deb`,
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
    failed_at: null,
    deprocated_at: null,
    tags: "prod",
  });

  function mockList(uris: string[], total: number | null, position: number, count?: number) {
    agent
      .get(HOST)
      .intercept({
        path: "/api/v2/Package/PackageFile",
        method: "LIST",
        headers: {
          position: String(position),
          ...(count === undefined ? {} : { count: String(count) }),
        },
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

  it("reads the list again when its Total disagrees with the answer", async () => {
    const first = Array.from({ length: 100 }, (_, i) => fileUri(i));
    mockList([...first, fileUri(100)], 100, 0); // a file came between COUNT and SELECT
    mockList(first, 100, 0);
    mockGets();
    const { files } = await mockClient().listPackageFiles(REPO_APT);
    expect(files).toHaveLength(100);
    expect(files[0]).toMatchObject({
      packageName: "p0",
      filename: "p0.deb",
      sha256: "a".repeat(64),
      tags: ["prod"],
    });
    agent.assertNoPendingInterceptors();
  });

  it("reads the list again when a listed file is gone by the time it is read", async () => {
    mockList([fileUri(1), fileUri(2)], 2, 0);
    agent
      .get(HOST)
      .intercept({ path: "/api/v2/Package/PackageFile:1:2:", method: "GET" })
      .reply(404, JSON.stringify({ model_path: "/api/v2/Package/PackageFile", object_id: "2" }));
    mockList([fileUri(1)], 1, 0);
    mockGets();
    const { files } = await mockClient().listPackageFiles(REPO_APT);
    expect(files.map((f) => f.packageName)).toEqual(["p1"]);
    agent.assertNoPendingInterceptors();
  });

  it("gives up as inconsistent when the list keeps changing", async () => {
    const page = Array.from({ length: 100 }, (_, i) => fileUri(i));
    for (let n = 0; n < 3; n++) mockList(page, 99, 0);
    await expectCode(
      mockClient().listPackageFiles(REPO_APT),
      "PACKRAT_MASTER_INCONSISTENT",
      /kept changing while it was read \(3 attempts\)/,
    );
  });

  it("stops paging without Total on a short answer", async () => {
    mockList([fileUri(1)], null, 0);
    mockGets();
    expect((await mockClient().listPackageFiles(REPO_APT)).files).toHaveLength(1);
  });

  it("refuses a capped master that ignores Position", async () => {
    mockGets();
    const page = Array.from({ length: 100 }, (_, i) => fileUri(i));
    mockList(page, 250, 0, 1_000_000);
    mockList(page, 250, 100, 100);
    mockList(page, 250, 200, 100);
    await expectCode(
      mockClient().listPackageFiles(REPO_APT),
      "PACKRAT_MASTER_PROTOCOL",
      /the master ignores Position: every page repeats URIs already listed \(Total 250\)/,
    );
  });

  it("pages a capped master in rounds until every URI was seen, repeats and all", async () => {
    const uris = Array.from({ length: 110 }, (_, i) => fileUri(i));
    mockList(uris.slice(0, 100), 110, 0, 1_000_000); // at most 100 per answer
    mockList([fileUri(99), ...uris.slice(100, 109)], 110, 100, 100); // unordered: #109 skipped
    mockList(uris.slice(10, 110), 110, 0, 100); // the next round finds it
    mockGets();
    expect((await mockClient().listPackageFiles(REPO_APT)).files).toHaveLength(110);
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
    failed_at: null,
    deprocated_at: null,
    tags: "prod",
  };
  const URI = "/api/v2/Package/PackageFile:1:";

  it("maps the fields", () => {
    expect(parsePackageFile(URI, base)).toMatchObject({
      packageName: "foo",
      filename: "foo_1.0-1_all.deb",
      fileUrl: "/files/foo_1.0-1_all.deb",
      tags: ["prod"],
      failedAt: null,
      deprecatedAt: null,
    });
  });

  it.each([
    ["", []],
    ["prod", ["prod"]],
    ["prod, stage", ["prod", "stage"]],
    ["stage,prod", ["prod", "stage"]],
    [" prod , , stage ,", ["prod", "stage"]],
    [
      ["stage", "prod"],
      ["prod", "stage"],
    ],
    [[], []],
  ])("reads tags %j as %j", (tags, names) => {
    expect(parsePackageFile(URI, { ...base, tags }).tags).toEqual(names);
  });

  it("keeps the master's datetimes of a failed and a deprecated file", () => {
    const f = parsePackageFile(URI, {
      ...base,
      failed_at: "2026-12-02T18:46:53.317804+00:00",
      deprocated_at: "2026-12-02T18:46:53+00:00",
    });
    expect([f.failedAt, f.deprecatedAt]).toEqual([
      "2026-12-02T18:46:53.317804+00:00",
      "2026-12-02T18:46:53+00:00",
    ]);
  });

  it.each([
    ["tags", 7, /field "tags" is number 7, expected tag names/],
    ["tags", ["prod", 1], /field "tags" is an array, expected tag names/],
    ["failed_at", "yesterday", /field "failed_at" is the string "yesterday", expected an ISO 8601/],
    ["deprocated_at", 1, /field "deprocated_at" is number 1, expected an ISO 8601/],
    [
      "package",
      "foo",
      /field "package" is "foo", expected a \/api\/v2\/Package\/Package:<name>: URI/,
    ],
    ["package", "/api/v2/Repo/Repo:x:", /expected a \/api\/v2\/Package\/Package:<name>: URI/],
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
