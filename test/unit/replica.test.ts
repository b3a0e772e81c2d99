/**
 * The replica's rules (src/publish/replica.ts) against a real store with no server: DirStore over
 * a temp directory, wrapped to record every put and to fail the ones a test names. The real
 * bucket (Ceph RGW) is exercised in test/integration/s3-publish.test.ts.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { DirStore } from "../../src/publish/dir-store.js";
import type { ObjectBody, ObjectStore, PutHeaders } from "../../src/publish/object-store.js";
import { IMMUTABLE_CACHE_CONTROL } from "../../src/publish/object-headers.js";
import { LOCK_KEY, Replica } from "../../src/publish/replica.js";
import { openStateStore } from "../../src/state/db.js";
import type { StateStore } from "../../src/state/state-store.js";

/** A store that records each put (key and headers) and fails keys in `failing`. */
class RecordingStore implements ObjectStore {
  readonly puts: { key: string; headers: PutHeaders }[] = [];
  readonly failing = new Set<string>();
  constructor(readonly inner: DirStore) {}
  get target() {
    return this.inner.target;
  }
  get description() {
    return this.inner.description;
  }
  async put(key: string, body: ObjectBody, headers: PutHeaders) {
    if (this.failing.has(key)) throw new Error(`injected failure for ${key}`);
    this.puts.push({ key, headers });
    return this.inner.put(key, body, headers);
  }
  createIfAbsent(key: string, content: Uint8Array) {
    return this.inner.createIfAbsent(key, content);
  }
  get(key: string) {
    return this.inner.get(key);
  }
  list() {
    return this.inner.list();
  }
  deleteMany(keys: readonly string[]) {
    return this.inner.deleteMany(keys);
  }
  abortStaleUploads(before: number) {
    return this.inner.abortStaleUploads(before);
  }
  close() {}
}

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

let dir: string;
let root: string;
let bucketDir: string;
let state: StateStore;
let clock: number;
const stores: StateStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "packrat-replica-"));
  root = path.join(dir, "root");
  bucketDir = path.join(dir, "bucket");
  mkdirSync(root);
  mkdirSync(bucketDir);
  clock = 1_000_000;
  state = openStateStore(path.join(dir, "state.db"), { now: () => clock });
  stores.push(state);
});

afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function write(rel: string, content: string): string {
  const full = path.join(root, rel);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, content);
  return sha(content);
}

/** Publish a generation of `repo`: files on disk and their rows, as sync/publish.ts records them. */
function publish(
  repo: string,
  generation: number,
  files: { path: string; content: string; order: number; kind?: "package" | "metadata" }[],
) {
  state.recordGeneration(
    {
      repo,
      generation,
      inputsHash: `h${generation}`,
      publishedAt: clock,
      fileCount: files.length,
      packageCount: 0,
    },
    files.map((f) => ({
      repo,
      path: f.path,
      sha256: write(f.path, f.content),
      kind: f.kind ?? (f.order === 0 && f.path.includes("pool/") ? "package" : "metadata"),
      order: f.order,
    })),
    clock,
  );
}

function replica(
  store: ObjectStore,
  over: Partial<{ graceMs: number; keep: string[]; sourcePrefixes: string[] }> = {},
) {
  return new Replica({
    store,
    state,
    root,
    log: silentLogger(),
    now: () => clock,
    graceMs: over.graceMs ?? 0,
    concurrency: 4,
    keep: over.keep ?? [],
    ...(over.sourcePrefixes ? { sourcePrefixes: over.sourcePrefixes } : {}),
  });
}

const aptV1 = [
  { path: "apt/pool/a_1.deb", content: "deb a 1", order: 0 },
  { path: "apt/dists/x/by-hash/SHA256/p1", content: "Packages v1", order: 0 },
  { path: "apt/dists/x/main/Packages", content: "Packages v1", order: 1 },
  { path: "apt/dists/x/InRelease", content: "InRelease v1", order: 2 },
];

describe("a round", () => {
  it("uploads packages and content-addressed files before any entry point, and each stage after the one before", async () => {
    publish("apt", 1, aptV1);
    publish("pypi", 1, [
      { path: "pypi/pool/x-1.whl", content: "wheel", order: 0 },
      { path: "pypi/simple/x/index.html", content: "<a>x</a>", order: 1 },
    ]);
    const store = new RecordingStore(new DirStore(bucketDir));
    const report = await replica(store).round({
      reconcile: true,
      rootFiles: [{ path: "repo-key", sha256: write("repo-key", "KEY") }],
    });
    expect(report.error).toBeNull();
    expect(report.failed).toEqual([]);
    const order = store.puts.map((p) => p.key);
    expect(order).toHaveLength(8);
    const at = (k: string) => order.indexOf(k);
    for (const first of ["apt/pool/a_1.deb", "apt/dists/x/by-hash/SHA256/p1", "pypi/pool/x-1.whl"])
      expect(at(first)).toBeLessThan(at("apt/dists/x/main/Packages"));
    expect(at("apt/dists/x/main/Packages")).toBeLessThan(at("apt/dists/x/InRelease"));
    // S3 has no index documents: the page is also the object of its directory's key.
    expect(order).toContain("pypi/simple/x/");
    expect(readFileSync(path.join(bucketDir, "apt/dists/x/InRelease"), "utf8")).toBe(
      "InRelease v1",
    );
    expect(store.puts.find((p) => p.key === "apt/pool/a_1.deb")!.headers).toMatchObject({
      contentType: "application/vnd.debian.binary-package",
      cacheControl: IMMUTABLE_CACHE_CONTROL,
    });
    expect(store.puts.find((p) => p.key === "apt/dists/x/InRelease")!.headers.cacheControl).toBe(
      "no-cache",
    );
    expect(state.listReplicaRepos(store.target)).toEqual([
      { repo: "apt", generation: 1, publishedAt: clock },
      { repo: "pypi", generation: 1, publishedAt: clock },
    ]);
  });

  it("puts nothing when nothing changed, and only what changed after one package", async () => {
    publish("apt", 1, aptV1);
    const store = new RecordingStore(new DirStore(bucketDir));
    const r = replica(store);
    await r.round({ reconcile: true });
    store.puts.length = 0;
    expect((await r.round({ reconcile: true })).uploaded).toBe(0);
    expect(store.puts).toEqual([]);

    clock += 1000;
    publish("apt", 2, [
      aptV1[0]!,
      { path: "apt/pool/b_1.deb", content: "deb b 1", order: 0 },
      { path: "apt/dists/x/by-hash/SHA256/p2", content: "Packages v2", order: 0 },
      { path: "apt/dists/x/main/Packages", content: "Packages v2", order: 1 },
      { path: "apt/dists/x/InRelease", content: "InRelease v2", order: 2 },
    ]);
    const report = await r.round({ reconcile: false });
    expect(store.puts.map((p) => p.key).sort()).toEqual([
      "apt/dists/x/InRelease",
      "apt/dists/x/by-hash/SHA256/p2",
      "apt/dists/x/main/Packages",
      "apt/pool/b_1.deb",
    ]);
    expect(report.uploaded).toBe(4);
  });

  it("holds a repo's entry points back when something they name failed, and the other repos go on", async () => {
    publish("apt", 1, aptV1);
    publish("yum", 1, [
      { path: "yum/pool/r.rpm", content: "rpm", order: 0 },
      { path: "yum/repodata/repomd.xml", content: "repomd", order: 1 },
    ]);
    const store = new RecordingStore(new DirStore(bucketDir));
    store.failing.add("apt/pool/a_1.deb");
    const r = replica(store);
    const report = await r.round({ reconcile: false });
    expect(report.failed.map((f) => f.key)).toEqual(["apt/pool/a_1.deb"]);
    expect(report.behind).toEqual(["apt"]);
    const keys = store.puts.map((p) => p.key);
    expect(keys).not.toContain("apt/dists/x/main/Packages");
    expect(keys).not.toContain("apt/dists/x/InRelease");
    expect(keys).toContain("yum/repodata/repomd.xml");
    expect(r.status().lastError).toMatch(/apt\/pool\/a_1\.deb/);

    // Backoff: the next round within it does nothing; after it, the repo catches up.
    store.failing.clear();
    expect((await r.round({ reconcile: false })).skipped).toBe(true);
    clock += 5_000;
    const after = await r.round({ reconcile: false });
    expect(after.failed).toEqual([]);
    expect(after.uploaded).toBe(3);
    expect(r.status()).toMatchObject({ failuresInARow: 0, lastError: null, nextAttemptAt: null });
  });

  it("never uploads a file whose bytes are not what the state DB says, and holds its repo back", async () => {
    publish("apt", 1, aptV1);
    writeFileSync(path.join(root, "apt/pool/a_1.deb"), "tampered");
    const store = new RecordingStore(new DirStore(bucketDir));
    const report = await replica(store).round({ reconcile: false });
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]!.error).toMatch(/SHA-256|bytes long/);
    expect(() => readFileSync(path.join(bucketDir, "apt/pool/a_1.deb"))).toThrow();
    expect(store.puts.map((p) => p.key)).not.toContain("apt/dists/x/InRelease");
  });
});

describe("deletion", () => {
  it("deletes what nothing names only after a complete round and the grace, and never what it did not put or keep_file_list names", async () => {
    publish("apt", 1, aptV1);
    const store = new RecordingStore(new DirStore(bucketDir));
    const r = replica(store, { graceMs: 10_000, keep: ["apt/pool/"] });
    await r.round({ reconcile: true });
    writeFileSync(path.join(bucketDir, "someone-elses.txt"), "not ours");

    // Generation 2 drops a package and a by-hash file; the disk keeps them for its own grace.
    clock += 1000;
    publish("apt", 2, [
      { path: "apt/dists/x/by-hash/SHA256/p2", content: "Packages v2", order: 0 },
      { path: "apt/dists/x/main/Packages", content: "Packages v2", order: 1 },
      { path: "apt/dists/x/InRelease", content: "InRelease v2", order: 2 },
    ]);
    await r.round({ reconcile: false });
    // Superseded rows are still in published_files (the disk's grace): the bucket keeps them.
    expect(readFileSync(path.join(bucketDir, "apt/dists/x/by-hash/SHA256/p1"), "utf8")).toBe(
      "Packages v1",
    );
    // The disk's grace passes: the rows go; the bucket starts its own grace now.
    clock += 1000;
    state.expireSuperseded(clock);
    const marked = await r.round({ reconcile: false });
    expect(marked.deleted).toBe(0);
    clock += 10_000;
    const swept = await r.round({ reconcile: false });
    expect(swept.deleted).toBe(1);
    expect(() => readFileSync(path.join(bucketDir, "apt/dists/x/by-hash/SHA256/p1"))).toThrow();
    // keep_file_list and objects the agent never put stay.
    expect(readFileSync(path.join(bucketDir, "apt/pool/a_1.deb"), "utf8")).toBe("deb a 1");
    expect(readFileSync(path.join(bucketDir, "someone-elses.txt"), "utf8")).toBe("not ours");
  });

  it("deletes nothing after a round that left something behind", async () => {
    publish("apt", 1, aptV1);
    const store = new RecordingStore(new DirStore(bucketDir));
    const r = replica(store);
    await r.round({ reconcile: false });
    clock += 1000;
    publish("apt", 2, [
      { path: "apt/pool/b_1.deb", content: "deb b", order: 0 },
      { path: "apt/dists/x/InRelease", content: "InRelease v2", order: 2 },
    ]);
    state.expireSuperseded(clock + 1);
    store.failing.add("apt/pool/b_1.deb");
    const report = await r.round({ reconcile: false });
    expect(report.deleted).toBe(0);
    // The bucket still serves generation 1 whole: its InRelease and what it names.
    expect(readFileSync(path.join(bucketDir, "apt/dists/x/InRelease"), "utf8")).toBe(
      "InRelease v1",
    );
    expect(readFileSync(path.join(bucketDir, "apt/pool/a_1.deb"), "utf8")).toBe("deb a 1");
  });
});

describe("reconcile and verify", () => {
  it("finds objects deleted or replaced behind its back, uploads them again, and verify agrees", async () => {
    publish("apt", 1, aptV1);
    const store = new RecordingStore(new DirStore(bucketDir));
    const r = replica(store);
    await r.round({ reconcile: true });
    expect(await r.verify()).toEqual([]);

    rmSync(path.join(bucketDir, "apt/pool/a_1.deb"));
    writeFileSync(path.join(bucketDir, "apt/dists/x/InRelease"), "forged");
    const problems = await r.verify();
    expect(problems.map((p) => p.key).sort()).toEqual([
      "apt/dists/x/InRelease",
      "apt/pool/a_1.deb",
    ]);
    expect(problems.find((p) => p.key === "apt/pool/a_1.deb")!.problem).toMatch(/missing/);

    store.puts.length = 0;
    // Without a listing the records still claim both: nothing is sent.
    expect((await r.round({ reconcile: false })).uploaded).toBe(0);
    const report = await r.round({ reconcile: true });
    expect(report.drift).toBe(2);
    expect(store.puts.map((p) => p.key).sort()).toEqual([
      "apt/dists/x/InRelease",
      "apt/pool/a_1.deb",
    ]);
    expect(await r.verify()).toEqual([]);
  });
});

describe("the lock object", () => {
  it("refuses a second agent on the same prefix, and lets the same state DB in again", async () => {
    publish("apt", 1, aptV1);
    const store = new RecordingStore(new DirStore(bucketDir));
    expect((await replica(store).round({ reconcile: false })).error).toBeNull();
    expect(readFileSync(path.join(bucketDir, LOCK_KEY), "utf8")).toMatch(/"agent"/);
    // A restart of the same agent (same state DB): its own lock.
    expect((await replica(store).round({ reconcile: false, force: true })).error).toBeNull();

    const otherState = openStateStore(path.join(dir, "other.db"));
    stores.push(otherState);
    const other = new Replica({
      store: new DirStore(bucketDir),
      state: otherState,
      root,
      log: silentLogger(),
      now: () => clock,
      graceMs: 0,
      concurrency: 1,
      keep: [],
    });
    const refused = await other.round({ reconcile: false });
    expect(refused.error).toMatch(/another agent publishes here/);
    expect(refused.uploaded).toBe(0);
  });
});

describe("a repo published in place in the bucket (sourcePrefixes)", () => {
  it("never uploads its packages (they are the source objects) nor writes over an object the agent did not put", async () => {
    // The producer's object, already in the bucket.
    mkdirSync(path.join(bucketDir, "pool"), { recursive: true });
    writeFileSync(path.join(bucketDir, "pool/a_1.deb"), "deb a 1");
    const pkg = { path: "pool/a_1.deb", content: "deb a 1", order: 0, kind: "package" as const };
    publish("apt", 1, [pkg, { path: "pool/dists/x/InRelease", content: "InRelease v1", order: 2 }]);
    const store = new RecordingStore(new DirStore(bucketDir));
    const r = replica(store, { sourcePrefixes: ["pool/"] });
    const first = await r.round({ reconcile: false, force: true });
    expect(first.failed).toEqual([]);
    expect(store.puts.map((p) => p.key)).toEqual(["pool/dists/x/InRelease"]);

    // Between full syncs (no reconcile) the producer replaces the agent's InRelease: the next
    // generation's is not written over it, and the repo is held back.
    writeFileSync(path.join(bucketDir, "pool/dists/x/InRelease"), "the producer's");
    clock += 1000;
    publish("apt", 2, [pkg, { path: "pool/dists/x/InRelease", content: "InRelease v2", order: 2 }]);
    const second = await r.round({ reconcile: false, force: true });
    expect(second.failed).toEqual([
      {
        key: "pool/dists/x/InRelease",
        error: expect.stringContaining("holds an object the agent did not put") as string,
      },
    ]);
    expect(second.behind).toEqual(["apt"]);
    expect(readFileSync(path.join(bucketDir, "pool/dists/x/InRelease"), "utf8")).toBe(
      "the producer's",
    );
    expect(readFileSync(path.join(bucketDir, "pool/a_1.deb"), "utf8")).toBe("deb a 1");
    expect(store.puts.map((p) => p.key)).toEqual(["pool/dists/x/InRelease"]);
  });
});
