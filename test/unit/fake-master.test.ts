/**
 * The fake master itself, spoken to with plain undici requests: if it drifts from the CInP
 * contract, every test that leans on it proves less.
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

  it("answers unknown URIs and verbs with CInP errors", async () => {
    expect((await cinp("GET", "/nothing")).json()).toMatchObject({ class: "NotFound" });
    expect((await cinp("GET", "/nothing")).status).toBe(404);
    const r = await cinp("DELETE", "/api/v2/Repo/Mirror:m:");
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ class: "InvalidRequest" });
  });

  it("renders packrat's fields, single and multi-object", async () => {
    const { deb } = seed();
    const one = await cinp("GET", "/api/v2/Repo/Mirror:m:");
    expect(one.json()).toMatchObject({
      name: "m",
      repo_list: ["/api/v2/Repo/Repo:apt:", "/api/v2/Repo/Repo:yum:"],
      last_heartbeat: null,
    });
    const multiHeader = await cinp("GET", "/api/v2/Repo/Repo:apt:", {
      headers: { "Multi-Object": "True" },
    });
    expect(Object.keys(multiHeader.json() as object)).toEqual(["/api/v2/Repo/Repo:apt:"]);
    const two = (await cinp("GET", "/api/v2/Repo/Repo:apt:yum:")).json() as Record<string, unknown>;
    expect(two["/api/v2/Repo/Repo:yum:"]).toMatchObject({
      filesystem_dir: "yum",
      manager_type: "yum",
      distroversion_list: ["/api/v2/Attrib/DistroVersion:el9:"],
      tag: "prod",
      show_only_latest: false,
    });
    const file = (await cinp("GET", `/api/v2/Package/PackageFile:${deb}:`)).json();
    expect(file).toMatchObject({
      package: "/api/v2/Package/Package:foo:",
      distroversion: "/api/v2/Attrib/DistroVersion:bookworm:",
      file: `/files/${deb}/foo.bin`,
      sha256: createHash("sha256").update("foo bytes").digest("hex"),
      tags: ["prod"],
    });
    expect((await cinp("GET", "/api/v2/Repo/Repo:apt:gone:")).status).toBe(404);
  });

  it("pages LIST with Position/Count and reports Total", async () => {
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
    expect(first.json()).toHaveLength(10); // CInP's default count
    const capped = await cinp("LIST", "/api/v2/Package/PackageFile", {
      headers: { Position: "20", Count: "500" },
    });
    expect(capped.json()).toHaveLength(100);
    expect((capped.json() as string[])[0]).toBe("/api/v2/Package/PackageFile:21:");
    expect([capped.headers.position, capped.headers.count, capped.headers.total]).toEqual([
      "20",
      "100",
      "150",
    ]);
    const tail = await cinp("LIST", "/api/v2/Package/PackageFile", {
      headers: { Position: "140", Count: "100" },
    });
    expect(tail.json()).toHaveLength(10);
    expect(tail.headers.count).toBe("10");
  });

  it("filters a repo's files by distro version and tag, and by package_list", async () => {
    const { deb, rpm } = seed();
    expect((await listRepo("apt")).json()).toEqual([`/api/v2/Package/PackageFile:${deb}:`]);
    expect((await listRepo("yum")).json()).toEqual([`/api/v2/Package/PackageFile:${rpm}:`]);
    expect((await listRepo("apt", ["bar"])).json()).toEqual([]);
    expect((await listRepo("apt", ["foo"])).json()).toHaveLength(1);
    expect((await listRepo("nope")).status).toBe(400);
    const bad = await cinp("LIST", "/api/v2/Package/PackageFile", {
      headers: { Filter: "repo" },
      body: { repo: "/api/v2/Repo/Repo:apt:", package_list: "foo" },
    });
    expect(bad.status).toBe(400);
    expect(
      (await cinp("LIST", "/api/v2/Package/PackageFile", { headers: { Filter: "x" } })).status,
    ).toBe(400);
  });

  it("records requests and heartbeats", async () => {
    seed();
    const r = await cinp("CALL", "/api/v2/Repo/Mirror:m:(heartbeat)", { body: {} });
    expect(r.status).toBe(200);
    expect(fm.heartbeats.map((h) => h.mirror)).toEqual(["m"]);
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
    const res = await request(`${fm.url}/files/${id}/p.json`);
    expect(await res.body.text()).toBe("real");
    expect((await request(`${fm.url}/files/999/p.json`)).statusCode).toBe(404);
  });

  it("keeps a connection alive across requests and accepts absolute-form targets", async () => {
    seed();
    const client = new Client(fm.url, { pipelining: 1, connections: 1 } as never);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await client.request({ path: "/api/v2/", method: "DESCRIBE", body: "" });
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
        `GET ${fm.url}/api/v2/Repo/Mirror:m: HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
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

  it("wakes only the repos whose file set changed, batching one tick's changes", async () => {
    const { deb, dev } = seed();
    const apt = poll("apt");
    const yum = poll("yum", 1);
    await until(() => fm.openPolls === 2);
    fm.tag(dev, "prod");
    fm.untag(deb, "prod");
    fm.tag(dev, "prod"); // no change: already tagged
    expect((await apt).json()).toEqual(["baz", "foo"]);
    expect((await yum).json()).toEqual([]); // el9 files untouched
  });

  it("does not wake on a tag no repo uses, nor remember changes made while no poll is open", async () => {
    const { deb } = seed();
    fm.removePackageFile(deb); // nobody polling: forgotten
    const p = poll("apt", 1);
    await until(() => fm.openPolls === 1);
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

  it("forgets a poll whose client went away", async () => {
    seed();
    const ac = new AbortController();
    const p = request(`${fm.url}/api/v2/Repo/Repo:apt:(poll)`, {
      method: "CALL",
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
  beforeEach(async () => {
    fm = await startFakeMaster({ auth: { name: "m", psk: "pw" } });
    seed();
  });
  afterEach(() => fm.close());

  it("requires a session for CInP calls but not for DESCRIBE or files", async () => {
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:")).status).toBe(401);
    expect((await cinp("DESCRIBE", "/api/v2/")).status).toBe(200);
    expect((await request(`${fm.url}/files/1/foo.bin`)).statusCode).toBe(200);
    const bad = await cinp("CALL", "/api/v2/Auth/User(login)", {
      body: { username: "m", password: "x" },
    });
    expect(bad.status).toBe(400);
    const login = await cinp("CALL", "/api/v2/Auth/User(login)", {
      body: { username: "m", password: "pw" },
    });
    const token = login.json() as string;
    expect(token).toMatch(/^[0-9a-f]{40}$/);
    const auth = { "Auth-Id": "m", "Auth-Token": token };
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: auth })).status).toBe(200);
    expect(
      (await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: { ...auth, "Auth-Id": "x" } }))
        .status,
    ).toBe(401);
    fm.expireSessions();
    expect((await cinp("GET", "/api/v2/Repo/Mirror:m:", { headers: auth })).status).toBe(401);
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
    expect(r.json()).toEqual({ class: "FaultInjected", message: "injected HTTP 503" });
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
    const truncated = await request(`${fm.url}/files/${deb}/foo.bin`);
    expect(truncated.headers["content-length"]).toBe("9");
    await expect(truncated.body.text()).rejects.toThrow();
    const wrong = Buffer.from(
      await (await request(`${fm.url}/files/${deb}/foo.bin`)).body.arrayBuffer(),
    );
    expect(wrong).toHaveLength(9);
    expect(wrong.toString()).not.toBe("foo bytes");
    expect(await (await request(`${fm.url}/files/${deb}/foo.bin`)).body.text()).toBe("foo bytes");
  });

  it("gives chosen files hostile names, percent-encoded like Django, or a raw file field", async () => {
    const { deb, rpm } = seed();
    fm.faults.add({ kind: "hostile-filename", fileId: deb, filename: "../../etc/passwd" });
    fm.faults.add({ kind: "file-field", fileId: rpm, file: "/files/../x" });
    const both = (await cinp("GET", `/api/v2/Package/PackageFile:${deb}:${rpm}:`)).json() as Record<
      string,
      { file: string }
    >;
    expect(both[`/api/v2/Package/PackageFile:${deb}:`]!.file).toBe(
      `/files/${deb}/..%2F..%2Fetc%2Fpasswd`,
    );
    expect(both[`/api/v2/Package/PackageFile:${rpm}:`]!.file).toBe("/files/../x");
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
