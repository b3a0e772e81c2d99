/**
 * The fake master itself, spoken to with plain undici requests: if it drifts from what the real
 * packrat master does, every test that leans on it proves less. test/unit/master-contract.test.ts
 * compares its answers with ones recorded from the real master; these tests pin the behaviour
 * (filters, polls, login, actions) that a recording of shapes cannot.
 */
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { Client, request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFakeMaster, type FakeMaster } from "../support/fake-master.js";

const CINP = { "CInP-Version": "0.9", "Content-Type": "application/json;charset=utf-8" };

let fm: FakeMaster;

async function cinp(
  method: string,
  uri: string,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
) {
  const res = await request(`${fm.url}${uri}`, {
    method,
    headers: { ...CINP, ...opts.headers },
    body: opts.body === undefined ? "" : JSON.stringify(opts.body),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    json: (): unknown => JSON.parse(text),
  };
}

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in 5 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}

function seed(): { deb: number; rpm: number; dev: number } {
  fm.addDistroVersion({ name: "bookworm", distro: "debian", version: "bookworm", fileType: "deb" });
  fm.addDistroVersion({ name: "el9", distro: "rhel", version: "9", fileType: "rpm" });
  fm.addRepo({
    name: "apt",
    filesystemDir: "apt",
    managerType: "apt",
    distroVersions: ["bookworm"],
    tag: "prod",
  });
  fm.addRepo({
    name: "yum",
    filesystemDir: "yum",
    managerType: "yum",
    distroVersions: ["el9"],
    tag: "prod",
  });
  fm.addMirror({ name: "m", repos: ["apt", "yum"] });
  const file = (pkg: string, dv: string, tags: string[]) =>
    fm.addPackageFile({
      package: pkg,
      distroVersion: dv,
      version: "1",
      type: dv === "el9" ? "rpm" : "deb",
      arch: "all",
      filename: `${pkg}.bin`,
      content: Buffer.from(`${pkg} bytes`),
      tags,
    });
  return {
    deb: file("foo", "bookworm", ["prod"]),
    rpm: file("bar", "el9", ["prod"]),
    dev: file("baz", "bookworm", ["dev"]),
  };
}

const listRepo = (repo: string, packageList: string[] | null = null, headers = {}) =>
  cinp("LIST", "/api/v2/Package/PackageFile", {
    headers: { Filter: "repo", ...headers },
    body: { repo: `/api/v2/Repo/Repo:${repo}:`, package_list: packageList },
  });

describe("fake master: CInP", () => {
  beforeEach(async () => {
    fm = await startFakeMaster({ minPollTimeout: 1 });
  });
  afterEach(() => fm.close());

  it("describes the API root with version 2.0", async () => {
    const r = await cinp("DESCRIBE", "/api/v2/");
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ "api-version": "2.0" });
  });

  it("answers unknown paths, bad requests and refused verbs as cinp 0.12 does", async () => {
    seed();
    const path404 = await cinp("GET", "/api/v2/Repo/Nothing:1:");
    expect([path404.status, path404.json()]).toEqual([
      404,
      'path not found "/api/v2/Repo/Nothing:1:"',
    ]);
    const object404 = await cinp("GET", "/api/v2/Repo/Repo:gone:");
    expect([object404.status, object404.json()]).toEqual([
      404,
      { model_path: "/api/v2/Repo/Repo", object_id: "gone" },
    ]);
    const del = await cinp("DELETE", "/api/v2/Repo/Mirror:m:");
    expect([del.status, del.json()]).toEqual([403, { message: "Not Authorized" }]);
    const version = await cinp("GET", "/api/v2/Repo/Mirror:m:", {
      headers: { "CInP-Version": "0.8" },
    });
    expect([version.status, version.json()]).toEqual([
      400,
      { message: "Invalid CInP Protocol Version" },
    ]);
    const tooMany = await cinp(
      "GET",
      `/api/v2/Package/PackageFile:${Array.from({ length: 101 }, (_, i) => i + 1).join(":")}:`,
    );
    expect(tooMany.json()).toEqual({ message: 'id_list longer than supported length of "100"' });
    const noTimeout = await cinp("CALL", "/api/v2/Repo/Repo:apt:(poll)", { body: {} });
    expect([noTimeout.status, noTimeout.json()]).toEqual([400, { timeout: "Required Paramater" }]);
  });

  it("renders packrat's fields as the real master does, single and multi-object", async () => {
    const { deb, dev } = seed();
    const one = await cinp("GET", "/api/v2/Repo/Mirror:m:");
    expect(one.json()).toMatchObject({
      name: "m",
      repo_list: ["/api/v2/Repo/Repo:apt:", "/api/v2/Repo/Repo:yum:"],
      last_heartbeat: null,
    });
    expect([one.headers.verb, one.headers["multi-object"], one.headers["cinp-version"]]).toEqual([
      "GET",
      "False",
      "0.9",
    ]);
    const multiHeader = await cinp("GET", "/api/v2/Repo/Repo:apt:", {
      headers: { "Multi-Object": "True" },
    });
    expect(Object.keys(multiHeader.json() as object)).toEqual(["/api/v2/Repo/Repo:apt:"]);
    const two = (await cinp("GET", "/api/v2/Repo/Repo:apt:yum:")).json() as Record<string, unknown>;
    expect(two["/api/v2/Repo/Repo:yum:"]).toMatchObject({
      filesystem_dir: "yum",
      manager_type: "yum",
      distroversion_list: ["/api/v2/Attrib/DistroVersion:el9:"],
      tag: "/api/v2/Attrib/Tag:prod:",
      show_only_latest: true,
    });
    fm.tag(deb, "dev");
    const file = (await cinp("GET", `/api/v2/Package/PackageFile:${deb}:`)).json();
    expect(file).toMatchObject({
      package: "/api/v2/Package/Package:foo:",
      distroversion: "/api/v2/Attrib/DistroVersion:bookworm:",
      file: "/files/foo.bin",
      sha256: createHash("sha256").update("foo bytes").digest("hex"),
      tags: "dev, prod",
      tag_list: ["/api/v2/Package/PackageFileTag:dev:", "/api/v2/Package/PackageFileTag:prod:"],
      failed_at: null,
      deprocated_at: null,
    });
    expect((file as { created: string }).created).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/,
    );
    fm.untag(dev, "dev");
    expect((await cinp("GET", `/api/v2/Package/PackageFile:${dev}:`)).json()).toMatchObject({
      tags: "",
    });
    expect((await cinp("GET", "/api/v2/Repo/Repo:apt:gone:")).status).toBe(404);
  });

  it("renders tags as an array only when asked to", async () => {
    await fm.close();
    fm = await startFakeMaster({ tagsAs: "array" });
    const { deb } = seed();
    fm.tag(deb, "dev");
    expect((await cinp("GET", `/api/v2/Package/PackageFile:${deb}:`)).json()).toMatchObject({
      tags: ["dev", "prod"],
    });
  });

  it("pages LIST with Position/Count (default 10, no cap) and reports Total", async () => {
    fm.addDistroVersion({ name: "x", distro: "none", version: null, fileType: "json" });
    for (let i = 0; i < 150; i++) {
      fm.addPackageFile({
        package: `p${i}`,
        distroVersion: "x",
        version: "1",
        type: "json",
        arch: "all",
        filename: `p${i}.json`,
        content: Buffer.from("{}"),
      });
    }
    const first = await cinp("LIST", "/api/v2/Package/PackageFile");
    expect(first.json()).toHaveLength(10); // cinp's default Count
    const all = await cinp("LIST", "/api/v2/Package/PackageFile", {
      headers: { Position: "20", Count: "500" },
    });
    expect(all.json()).toHaveLength(130);
    expect((all.json() as string[])[0]).toBe("/api/v2/Package/PackageFile:21:");
    expect([
      all.headers.position,
      all.headers.count,
      all.headers.total,
      all.headers["id-only"],
    ]).toEqual(["20", "130", "150", "False"]);
    const bad = await cinp("LIST", "/api/v2/Package/PackageFile", { headers: { Count: "ten" } });
    expect(bad.json()).toEqual({ message: "Count and Position must be integers if specified" });
  });

  it("caps Count and shuffles pages only when asked to", async () => {
    await fm.close();
    fm = await startFakeMaster({ maxListCount: 7, listOrder: "shuffled" });
    fm.addDistroVersion({ name: "x", distro: "none", version: null, fileType: "json" });
    for (let i = 0; i < 40; i++) {
      fm.addPackageFile({
        package: `p${i}`,
        distroVersion: "x",
        version: "1",
        type: "json",
        arch: "all",
        filename: `p${i}.json`,
        content: Buffer.from("{}"),
      });
    }
    const orders = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const page = await cinp("LIST", "/api/v2/Package/PackageFile", { headers: { Count: "100" } });
      expect(page.json()).toHaveLength(7);
      expect(page.headers.total).toBe("40");
      orders.add(page.text);
    }
    expect(orders.size).toBeGreaterThan(1);
  });

  it("filters a repo's files by distro version and tag, and by package_list", async () => {
    const { deb, rpm } = seed();
    expect((await listRepo("apt")).json()).toEqual([`/api/v2/Package/PackageFile:${deb}:`]);
    expect((await listRepo("yum")).json()).toEqual([`/api/v2/Package/PackageFile:${rpm}:`]);
    expect((await listRepo("apt", ["bar"])).json()).toEqual([]);
    expect((await listRepo("apt", ["foo"])).json()).toHaveLength(1);
    expect((await listRepo("apt", [])).json()).toHaveLength(1); // empty means every package
    // Failed and deprecated files stay listed, under their tags.
    fm.fail(deb);
    expect((await listRepo("apt")).json()).toEqual([`/api/v2/Package/PackageFile:${deb}:`]);
    const nope = await listRepo("nope");
    expect([nope.status, nope.json()]).toEqual([
      400,
      {
        repo: 'Invalid Value "Object "/api/v2/Repo/Repo:nope:" for model "/api/v2/Repo/Repo" NotFound"',
      },
    ]);
    const missing = await cinp("LIST", "/api/v2/Package/PackageFile", {
      headers: { Filter: "repo" },
      body: { repo: "/api/v2/Repo/Repo:apt:" },
    });
    expect(missing.json()).toEqual({ package_list: "Required Paramater" });
    const bad = await cinp("LIST", "/api/v2/Package/PackageFile", {
      headers: { Filter: "x" },
      body: {},
    });
    expect(bad.json()).toEqual({ message: 'Invalid Filter Name "x"' });
  });

  it("records requests and heartbeats", async () => {
    seed();
    const r = await cinp("CALL", "/api/v2/Repo/Mirror:m:(heartbeat)", { body: {} });
    expect([r.status, r.text]).toEqual([200, ""]);
    expect(fm.heartbeats.map((h) => h.mirror)).toEqual(["m"]);
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:")).json()).toMatchObject({
      last_heartbeat: expect.stringMatching(/\+00:00$/) as unknown,
    });
    expect(fm.requests[0]).toMatchObject({
      method: "CALL",
      uri: "/api/v2/Repo/Mirror:m:(heartbeat)",
      body: {},
      headers: { "cinp-version": "0.9" },
    });
  });

  it("rejects an invalid JSON body", async () => {
    seed();
    const res = await request(`${fm.url}/api/v2/Repo/Repo:apt:(poll)`, {
      method: "CALL",
      body: "{nope",
    });
    expect(res.statusCode).toBe(400);
    await res.body.dump();
  });

  it("serves files, reporting an overridden sha256 as given", async () => {
    fm.addDistroVersion({ name: "x", distro: "none", version: null, fileType: "json" });
    const id = fm.addPackageFile({
      package: "p",
      distroVersion: "x",
      version: "1",
      type: "json",
      arch: "all",
      filename: "p.json",
      content: Buffer.from("real"),
      sha256: "f".repeat(64),
    });
    expect(
      ((await cinp("GET", `/api/v2/Package/PackageFile:${id}:`)).json() as { sha256: string })
        .sha256,
    ).toBe("f".repeat(64));
    // packrat's dev server streams /files/ without a Content-Length.
    const res = await request(`${fm.url}${fm.fileUrl(id)}`);
    expect([res.headers["transfer-encoding"], res.headers["content-length"]]).toEqual([
      "chunked",
      undefined,
    ]);
    expect(await res.body.text()).toBe("real");
    const missing = await request(`${fm.url}/files/nope.json`);
    expect([missing.statusCode, await missing.body.text()]).toEqual([
      404,
      'file "nope.json" not found',
    ]);
  });

  it("keeps a connection alive across requests and accepts absolute-form targets", async () => {
    seed();
    const client = new Client(fm.url, { pipelining: 1, connections: 1 } as never);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await client.request({
          path: "/api/v2/",
          method: "DESCRIBE",
          headers: CINP,
          body: "",
        });
        expect(r.statusCode).toBe(200);
        await r.body.dump();
      }
    } finally {
      await client.close();
    }
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(new URL(fm.url).port), "127.0.0.1");
      let data = "";
      s.on("data", (d: Buffer) => (data += d.toString()));
      s.on("end", () => resolve(data));
      s.on("error", reject);
      s.write(
        `GET ${fm.url}/api/v2/Repo/Mirror:m: HTTP/1.1\r\nHost: x\r\nCInP-Version: 0.9\r\nConnection: close\r\n\r\n`,
      );
    });
    expect(raw).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(raw).toContain('"name":"m"');
  });
});

describe("fake master: polls", () => {
  beforeEach(async () => {
    fm = await startFakeMaster({ minPollTimeout: 1 });
  });
  afterEach(() => fm.close());

  const poll = (repo: string, timeout = 5) =>
    cinp("CALL", `/api/v2/Repo/Repo:${repo}:(poll)`, { body: { timeout } });

  it("raises a short timeout to the minimum and answers []", async () => {
    seed();
    const started = Date.now();
    expect((await poll("apt", 0)).json()).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect((await cinp("CALL", "/api/v2/Repo/Repo:apt:(poll)", { body: {} })).status).toBe(400);
  });

  it("wakes the repos that hold a tagged, failed or deprecated file, newest first, repeats kept", async () => {
    const { deb, dev } = seed();
    const apt = poll("apt");
    const yum = poll("yum", 1);
    await until(() => fm.openPolls === 2);
    fm.tag(dev, "prod");
    fm.fail(deb);
    fm.tag(dev, "prod"); // no change: already tagged, no NOTIFY
    expect((await apt).json()).toEqual(["foo", "baz"]);
    expect((await yum).json()).toEqual([]); // el9 files untouched
    const again = poll("apt");
    await until(() => fm.openPolls === 1);
    fm.deprecate(dev);
    fm.deprecate(dev); // already deprecated: nothing
    expect((await again).json()).toEqual(["baz"]);
  });

  it("announces neither an untag, a removal, a tag no repo uses, nor a change while no poll is open", async () => {
    const { deb, rpm } = seed();
    fm.fail(rpm); // nobody polling: lost
    const p = poll("apt", 1);
    await until(() => fm.openPolls === 1);
    fm.untag(deb, "prod"); // no untag action on the master: the ORM notifies nothing
    fm.removePackageFile(deb);
    fm.addPackageFile({
      package: "q",
      distroVersion: "bookworm",
      version: "1",
      type: "deb",
      arch: "all",
      filename: "q.deb",
      content: Buffer.from("q"),
      tags: ["unused"],
    });
    expect((await p).json()).toEqual([]);
  });

  it("sleeps every poll to its timeout and answers [] on a SQLite-like master", async () => {
    await fm.close();
    fm = await startFakeMaster({ minPollTimeout: 1, pollMode: "sleep" });
    const { dev } = seed();
    const started = Date.now();
    const p = poll("apt", 1);
    await until(() => fm.openPolls === 1);
    fm.tag(dev, "prod");
    expect((await p).json()).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it("forgets a poll whose client went away", async () => {
    seed();
    const ac = new AbortController();
    const p = request(`${fm.url}/api/v2/Repo/Repo:apt:(poll)`, {
      method: "CALL",
      headers: CINP,
      body: JSON.stringify({ timeout: 30 }),
      signal: ac.signal,
    });
    await until(() => fm.openPolls === 1);
    ac.abort();
    await expect(p).rejects.toThrow();
    await until(() => fm.openPolls === 0);
  });

  it("close() ends open polls and hung requests", async () => {
    seed();
    fm.faults.add({ kind: "hang", uri: "Mirror" });
    const hung = cinp("GET", "/api/v2/Repo/Mirror:m:");
    const open = poll("apt", 30);
    await until(() => fm.openPolls === 1 && fm.requests.length === 2);
    // Settle handlers first: both reject while close() is still running.
    const outcomes = Promise.allSettled([hung, open]);
    const started = Date.now();
    await fm.close();
    expect((await outcomes).map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("fake master: auth", () => {
  afterEach(() => fm.close());
  const login = (username: string, password: string) =>
    cinp("CALL", "/api/v2/Auth/User(login)", { body: { username, password } });

  it("refuses anonymous reads with 403 when told to, but not DESCRIBE, CALLs or files", async () => {
    fm = await startFakeMaster({ users: { reader: "pw" }, anonymousReads: "refused" });
    seed();
    const anon = await cinp("GET", "/api/v2/Repo/Mirror:m:");
    expect([anon.status, anon.json()]).toEqual([403, { message: "Not Authorized" }]);
    expect((await cinp("LIST", "/api/v2/Attrib/DistroVersion")).status).toBe(403);
    expect((await cinp("DESCRIBE", "/api/v2/")).status).toBe(200);
    expect((await cinp("CALL", "/api/v2/Repo/Mirror:m:(heartbeat)", { body: {} })).status).toBe(
      200,
    );
    expect((await request(`${fm.url}/files/foo.bin`)).statusCode).toBe(200);
    const bad = await login("reader", "x");
    expect([bad.status, bad.json()]).toEqual([400, { message: "Invalid Login" }]);
    const missing = await cinp("CALL", "/api/v2/Auth/User(login)", {
      body: { username: "reader" },
    });
    expect(missing.json()).toEqual({ password: "Required Paramater" });
    const token = (await login("reader", "pw")).json() as string;
    expect(token).toMatch(/^[0-9a-z]{32}$/);
    const auth = { "Auth-Id": "reader", "Auth-Token": token };
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: auth })).status).toBe(200);
    const wrongUser = await cinp("GET", "/api/v2/Repo/Mirror:m:", {
      headers: { ...auth, "Auth-Id": "x" },
    });
    expect([wrongUser.status, wrongUser.json()]).toEqual([401, { message: "Invalid Session" }]);
    fm.expireSessions();
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: auth })).status).toBe(401);
    // A dead session is refused for every verb, login and DESCRIBE included.
    expect((await cinp("DESCRIBE", "/api/v2/", { headers: auth })).status).toBe(401);
    expect((await login("reader", "pw")).status).toBe(200);
  });

  it("lets anonymous reads through by default, as packrat on Django < 2.1 did", async () => {
    fm = await startFakeMaster();
    seed();
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:")).status).toBe(200);
  });

  it("refuses reads to a user without the view permissions, and actions to one without theirs", async () => {
    fm = await startFakeMaster({
      users: {
        mirror: { password: "mm", view: false },
        manager: { password: "mg", actions: true },
      },
      anonymousReads: "refused",
    });
    const { deb } = seed();
    const t1 = (await login("mirror", "mm")).json() as string;
    const asMirror = { "Auth-Id": "mirror", "Auth-Token": t1 };
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: asMirror })).status).toBe(403);
    expect(
      (
        await cinp("CALL", `/api/v2/Package/PackageFile:${deb}:(fail)`, {
          headers: asMirror,
          body: {},
        })
      ).status,
    ).toBe(403);
    const t2 = (await login("manager", "mg")).json() as string;
    const asManager = { "Auth-Id": "manager", "Auth-Token": t2 };
    const failed = await cinp("CALL", `/api/v2/Package/PackageFile:${deb}:(fail)`, {
      headers: asManager,
      body: {},
    });
    expect([failed.status, failed.text]).toEqual([200, ""]);
    const tag = await cinp("CALL", `/api/v2/Package/PackageFile:${deb}:(tag)`, {
      headers: asManager,
      body: { tag: "/api/v2/Attrib/Tag:dev:" },
    });
    expect([tag.status, tag.json()]).toEqual([
      400,
      {
        class: "PackageException",
        error: "DEPROCATED/FAILED",
        message: "Can not tag when deprocated or failed",
      },
    ]);
    expect(
      (await cinp("GET", `/api/v2/Package/PackageFile:${deb}:`, { headers: asManager })).json(),
    ).toMatchObject({
      failed_at: expect.stringMatching(/\+00:00$/) as unknown,
      failed_by: "manager",
    });
    const out = await cinp("CALL", "/api/v2/Auth/User(logout)", { headers: asManager, body: {} });
    expect(out.status).toBe(200);
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: asManager })).status).toBe(401);
  });
});

describe("fake master: faults", () => {
  beforeEach(async () => {
    fm = await startFakeMaster({ minPollTimeout: 1 });
  });
  afterEach(() => fm.close());

  it("applies a status fault to matching requests, the given number of times", async () => {
    seed();
    fm.faults.add({ kind: "status", status: 503, method: "GET", uri: /Mirror:m:$/, times: 2 });
    expect((await cinp("DESCRIBE", "/api/v2/")).status).toBe(200); // method does not match
    expect((await cinp("GET", "/api/v2/Repo/Repo:apt:")).status).toBe(200); // uri does not match
    const r = await cinp("GET", "/api/v2/Repo/Mirror:m:");
    expect(r.status).toBe(503);
    expect(r.json()).toEqual({ message: "injected HTTP 503" });
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:")).status).toBe(503);
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:")).status).toBe(200);
    expect(fm.faults.active).toEqual([]);
  });

  it("set() replaces and clear() removes every fault", async () => {
    fm.faults.add({ kind: "status", status: 500 });
    fm.faults.set({ kind: "api-version", version: "9.9" });
    expect(fm.faults.active).toHaveLength(1);
    const r = await cinp("DESCRIBE", "/api/v2/");
    expect(r.json()).toMatchObject({ "api-version": "9.9" });
    fm.faults.clear();
    expect((await cinp("DESCRIBE", "/api/v2/")).json()).toMatchObject({ "api-version": "2.0" });
  });

  it("answers invalid JSON, or any JSON a test wants", async () => {
    seed();
    fm.faults.add({ kind: "invalid-json", times: 1 });
    const bad = await cinp("GET", "/api/v2/Repo/Mirror:m:");
    expect(() => bad.json()).toThrow(SyntaxError);
    fm.faults.add({ kind: "json", body: { lie: true }, headers: { Total: "7" }, times: 1 });
    const lie = await cinp("LIST", "/api/v2/Repo/Repo");
    expect([lie.json(), lie.headers.total]).toEqual([{ lie: true }, "7"]);
  });

  it("resets a connection", async () => {
    fm.faults.add({ kind: "reset" });
    await expect(cinp("DESCRIBE", "/api/v2/")).rejects.toThrow(
      /other side closed|ECONNRESET|socket/i,
    );
  });

  it("leaves CInP calls alone with file-only faults, and breaks downloads with them", async () => {
    const { deb } = seed();
    fm.faults.add({ kind: "truncate", bytes: 3, times: 1 });
    fm.faults.add({ kind: "wrong-bytes", times: 1 });
    expect((await cinp("DESCRIBE", "/api/v2/")).status).toBe(200);
    const url = `${fm.url}${fm.fileUrl(deb)}`;
    const truncated = await request(url);
    await expect(truncated.body.text()).rejects.toThrow();
    const wrong = Buffer.from(await (await request(url)).body.arrayBuffer());
    expect(wrong).toHaveLength(9);
    expect(wrong.toString()).not.toBe("foo bytes");
    expect(await (await request(url)).body.text()).toBe("foo bytes");
  });

  it("gives chosen files hostile names, percent-encoded like Django, or a raw file field", async () => {
    const { deb, rpm } = seed();
    fm.faults.add({ kind: "hostile-filename", fileId: deb, filename: "../../etc/passwd" });
    fm.faults.add({ kind: "file-field", fileId: rpm, file: "/files/../x" });
    const both = (await cinp("GET", `/api/v2/Package/PackageFile:${deb}:${rpm}:`)).json() as Record<
      string,
      { file: string }
    >;
    expect(both[`/api/v2/Package/PackageFile:${deb}:`]!.file).toBe("/files/..%2F..%2Fetc%2Fpasswd");
    expect(both[`/api/v2/Package/PackageFile:${rpm}:`]!.file).toBe("/files/../x");
  });

  it("renders any field of a chosen file as a test says, or leaves it out", async () => {
    const { deb } = seed();
    fm.faults.add({ kind: "field", fileId: deb, field: "sha256", value: 42 });
    fm.faults.add({ kind: "field", fileId: deb, field: "tags", value: undefined });
    const file = (await cinp("GET", `/api/v2/Package/PackageFile:${deb}:`)).json() as Record<
      string,
      unknown
    >;
    expect(file.sha256).toBe(42);
    expect("tags" in file).toBe(false);
  });

  it("delays an answer", async () => {
    fm.faults.add({ kind: "delay", ms: 200, times: 1 });
    const started = Date.now();
    expect((await cinp("DESCRIBE", "/api/v2/")).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });

  it("fails polls on demand", async () => {
    seed();
    fm.faults.add({ kind: "status", status: 500, uri: "(poll)" });
    const r = await cinp("CALL", "/api/v2/Repo/Repo:apt:(poll)", { body: { timeout: 5 } });
    expect(r.status).toBe(500);
    expect(fm.openPolls).toBe(0);
  });
});
