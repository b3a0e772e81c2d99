import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import BetterSqlite3 from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PackratError } from "../../src/errors.js";
import { openStateStore, SYNC_RUNS_KEPT, type OpenStateStoreOptions } from "../../src/state/db.js";
import { migrate, MIGRATIONS, SCHEMA_VERSION } from "../../src/state/migrations.js";
import { IMPORT_REPORT_KEY } from "../../src/state/original-agent-import.js";
import { partsFromFilename } from "../../src/state/package-filename.js";
import type { PackageFileRow, StateStore } from "../../src/state/state-store.js";
import type { DistroVersion, Repo } from "../../src/types.js";

const MAKE_ORIGINAL_DB = fileURLToPath(
  new URL("../fixtures/make-original-agent-db.py", import.meta.url),
);

let dir: string;
const open: StateStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "packrat-state-"));
});

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function store(path = join(dir, "state.db"), opts?: OpenStateStoreOptions): StateStore {
  const s = openStateStore(path, opts);
  open.push(s);
  return s;
}

/** Run fn, expect a PackratError with that code; return it for more checks. */
function expectPackratError(fn: () => unknown, code: PackratError["code"]): PackratError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PackratError);
    expect((err as PackratError).code).toBe(code);
    return err as PackratError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

function raw(path: string, readonly = true): BetterSqlite3.Database {
  return new BetterSqlite3(path, { readonly, fileMustExist: true });
}

function repo(name: string, extra: Partial<Repo> = {}): Repo {
  return {
    uri: `/api/v2/Repo/Repo:${name}:`,
    name,
    description: `${name} repo`,
    filesystemDir: `dir/${name}`,
    managerType: "apt",
    distroVersionUris: ["/api/v2/Attrib/DistroVersion:bookworm:"],
    tag: "prod",
    showOnlyLatest: false,
    ...extra,
  };
}

const BOOKWORM: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:bookworm:",
  name: "bookworm",
  distro: "debian",
  version: "bookworm",
  fileType: "deb",
  releaseNames: "",
};

const hex = (n: number) => n.toString(16).padStart(2, "0").repeat(32);

function fileRow(repoName: string, id: number, pkg: string, extra: Partial<PackageFileRow> = {}) {
  const filename = `${pkg}_1.${id}_all.deb`;
  const row: PackageFileRow = {
    repo: repoName,
    file: {
      uri: `/api/v2/Package/PackageFile:${id}:`,
      packageName: pkg,
      distroVersionUri: BOOKWORM.uri,
      version: `1.${id}`,
      type: "deb",
      arch: "all",
      fileUrl: `/files/${filename}`,
      filename,
      sha256: hex(id),
      tags: ["prod"],
      failedAt: null,
      deprecatedAt: null,
    },
    distro: "debian",
    distroVersion: "bookworm",
    diskSha256: null,
    transformKey: null,
    size: null,
    ...extra,
  };
  return row;
}

describe("a new state DB", () => {
  it("is created with its parent directory, at the current schema version, in WAL mode", () => {
    const path = join(dir, "nested", "deeper", "state.db");
    store(path).close();
    const db = raw(path);
    expect(db.prepare("SELECT value FROM control WHERE key = 'version'").get()).toEqual({
      value: String(SCHEMA_VERSION),
    });
    expect(SCHEMA_VERSION).toBe(6);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
        name: string;
      }[]
    ).map((r) => r.name);
    expect(tables).toEqual(
      expect.arrayContaining([
        "control",
        "repos",
        "package_files",
        "fingerprints",
        "package_meta",
        "package_signatures",
        "generations",
        "published_files",
        "download_failures",
        "sync_runs",
        "kv",
      ]),
    );
    expect(tables).not.toContain("legacy_repos_v2");
    db.close();
  });

  it("sets synchronous=NORMAL and foreign keys on its connection (per-connection settings)", () => {
    const pragma = vi.spyOn(BetterSqlite3.prototype, "pragma");
    try {
      store();
      const calls = pragma.mock.calls.map((c) => c[0]);
      expect(calls).toEqual(
        expect.arrayContaining(["foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL"]),
      );
    } finally {
      pragma.mockRestore();
    }
  });

  it("reopens with its data, and migrations are not applied twice", () => {
    const path = join(dir, "state.db");
    const s = store(path);
    s.upsertRepo(repo("a"), [BOOKWORM], 1000);
    s.setValue("full-syncs", "7");
    s.close();

    const again = store(path);
    expect(again.listRepos().map((r) => r.repo.name)).toEqual(["a"]);
    expect(again.getValue("full-syncs")).toBe("7");
    again.close();

    const db = new BetterSqlite3(path);
    expect(migrate(db, () => 0)).toEqual([]);
    expect(db.prepare("SELECT count(*) AS n FROM control").get()).toEqual({ n: 1 });
    db.close();
  });
});

describe("repos", () => {
  it("upserts, lists, touches and deletes", () => {
    const s = store();
    s.upsertRepo(repo("b"), [BOOKWORM], 100);
    s.upsertRepo(repo("a", { managerType: "yum" }), [], null);
    expect(s.listRepos()).toEqual([
      { repo: repo("a", { managerType: "yum" }), distroVersions: [], lastMasterContact: null },
      { repo: repo("b"), distroVersions: [BOOKWORM], lastMasterContact: 100 },
    ]);

    // An update without a contact time keeps the last one.
    s.upsertRepo(repo("b", { description: "changed" }), [], null);
    const b = s.listRepos().find((r) => r.repo.name === "b");
    expect(b).toEqual({
      repo: repo("b", { description: "changed" }),
      distroVersions: [],
      lastMasterContact: 100,
    });

    s.touchMasterContact("b", 250);
    expect(s.listRepos().find((r) => r.repo.name === "b")?.lastMasterContact).toBe(250);

    s.deleteRepo("a");
    expect(s.listRepos().map((r) => r.repo.name)).toEqual(["b"]);
  });

  it("an upsert does not drop the repo's package files (no INSERT OR REPLACE cascade)", () => {
    const s = store();
    s.upsertRepo(repo("a"), [], null);
    s.replacePackageFiles("a", [fileRow("a", 1, "foo")]);
    s.upsertRepo(repo("a", { tag: "other" }), [], 5);
    expect(s.listPackageFiles("a")).toHaveLength(1);
  });

  it("deleting a repo forgets its package files and download failures, not its published files", () => {
    const s = store();
    s.upsertRepo(repo("a"), [], null);
    s.upsertRepo(repo("b"), [], null);
    s.replacePackageFiles("a", [fileRow("a", 1, "foo")]);
    s.replacePackageFiles("b", [fileRow("b", 2, "bar")]);
    s.recordDownloadFailure({ repo: "a", uri: "u1", filename: "f", error: "e", lastAttemptAt: 1 });
    s.recordGeneration(
      { repo: "a", generation: 1, inputsHash: "h", publishedAt: 1, fileCount: 1, packageCount: 1 },
      [{ repo: "a", path: "dir/a/Release", sha256: hex(9), kind: "metadata" }],
      1,
    );
    s.deleteRepo("a");
    expect(s.listPackageFiles().map((r) => r.repo)).toEqual(["b"]);
    expect(s.listDownloadFailures()).toEqual([]);
    expect(s.listPublishedFiles("a")).toHaveLength(1);
    s.deletePublishedFiles("a");
    expect(s.listPublishedFiles()).toEqual([]);
  });
});

describe("package files", () => {
  it("round-trips every field and filters by repo", () => {
    const s = store();
    s.upsertRepo(repo("a"), [], null);
    s.upsertRepo(repo("b"), [], null);
    const rowA = fileRow("a", 1, "foo", {
      diskSha256: hex(101),
      transformKey: "ABCDEF0123456789",
      size: 1234,
    });
    rowA.file.tags = ["prod", "stable"];
    s.replacePackageFiles("a", [rowA]);
    s.replacePackageFiles("b", [fileRow("b", 2, "bar", { distro: null, distroVersion: null })]);
    expect(s.listPackageFiles("a")).toEqual([rowA]);
    expect(s.listPackageFiles().map((r) => r.repo)).toEqual(["a", "b"]);
    expect(s.listPackageFiles("b")[0]?.distro).toBeNull();
  });

  it("replacePackageFiles replaces the whole set of one repo", () => {
    const s = store();
    s.upsertRepo(repo("a"), [], null);
    s.upsertRepo(repo("b"), [], null);
    s.replacePackageFiles("a", [fileRow("a", 1, "foo"), fileRow("a", 2, "bar")]);
    s.replacePackageFiles("b", [fileRow("b", 5, "baz")]);
    s.replacePackageFiles("a", [fileRow("a", 2, "bar"), fileRow("a", 3, "qux")]);
    expect(s.listPackageFiles("a").map((r) => r.file.uri)).toEqual([
      "/api/v2/Package/PackageFile:2:",
      "/api/v2/Package/PackageFile:3:",
    ]);
    expect(s.listPackageFiles("b")).toHaveLength(1);
    s.replacePackageFiles("a", []);
    expect(s.listPackageFiles("a")).toEqual([]);
  });

  it("replacePackagesOfRepo touches only the named packages", () => {
    const s = store();
    s.upsertRepo(repo("a"), [], null);
    s.replacePackageFiles("a", [
      fileRow("a", 1, "foo"),
      fileRow("a", 2, "foo"),
      fileRow("a", 3, "bar"),
      fileRow("a", 4, "keep"),
    ]);
    // foo: file 1 untagged, file 5 new; bar: every file gone; keep: not named, untouched.
    s.replacePackagesOfRepo("a", ["foo", "bar"], [fileRow("a", 2, "foo"), fileRow("a", 5, "foo")]);
    expect(s.listPackageFiles("a").map((r) => [r.file.packageName, r.file.uri])).toEqual([
      ["foo", "/api/v2/Package/PackageFile:2:"],
      ["keep", "/api/v2/Package/PackageFile:4:"],
      ["foo", "/api/v2/Package/PackageFile:5:"],
    ]);
  });

  it("setDiskSha256 records the on-disk hash, and a re-read from the master keeps it while sha256 is unchanged", () => {
    const s = store();
    s.upsertRepo(repo("a"), [], null);
    s.replacePackageFiles("a", [fileRow("a", 1, "foo"), fileRow("a", 2, "bar")]);
    s.setDiskSha256("a", "/api/v2/Package/PackageFile:1:", hex(201), "KEYFPR", 42);
    s.setDiskSha256("a", "/api/v2/Package/PackageFile:2:", hex(2), null, 7);
    // A row that is gone is a no-op, not an error.
    s.setDiskSha256("a", "/api/v2/Package/PackageFile:99:", hex(3), null, 1);

    // The master's rows carry no disk data; file 2's bytes changed on the master.
    s.replacePackageFiles("a", [
      fileRow("a", 1, "foo"),
      fileRow("a", 2, "bar", { file: { ...fileRow("a", 2, "bar").file, sha256: hex(77) } }),
    ]);
    const [one, two] = s.listPackageFiles("a");
    expect([one?.diskSha256, one?.transformKey, one?.size]).toEqual([hex(201), "KEYFPR", 42]);
    expect([two?.file.sha256, two?.diskSha256, two?.transformKey, two?.size]).toEqual([
      hex(77),
      null,
      null,
      null,
    ]);
  });

  it("refuses rows of a repo that is not in the DB, or of another repo", () => {
    const s = store();
    expect(() => s.replacePackageFiles("nope", [fileRow("nope", 1, "foo")])).toThrow(
      /repo nope: the repo is not in the state DB/,
    );
    s.upsertRepo(repo("a"), [], null);
    expect(() => s.replacePackageFiles("a", [fileRow("b", 1, "foo")])).toThrow(/belongs to b/);
    expect(s.listPackageFiles()).toEqual([]);
  });
});

describe("fingerprints and the metadata cache", () => {
  it("puts, gets, lists and deletes fingerprints with exact ns mtimes", () => {
    const s = store();
    const fp = {
      path: "dir/a/pool/foo/foo_1.0_all.deb",
      sha256: hex(1),
      size: 5_000_000_000,
      mtimeNs: "1763712000123456789",
      ino: "18446744073709551615",
      verifiedAt: 1000,
    };
    s.putFingerprint(fp);
    s.putFingerprint({ ...fp, path: "b", size: 1 });
    expect(s.getFingerprint(fp.path)).toEqual(fp);
    expect(s.listFingerprints().map((f) => f.path)).toEqual(["b", fp.path]);
    s.putFingerprint({ ...fp, sha256: hex(2) });
    expect(s.getFingerprint(fp.path)?.sha256).toBe(hex(2));
    s.deleteFingerprint(fp.path);
    expect(s.getFingerprint(fp.path)).toBeUndefined();
  });

  describe("fingerprints recorded outside a transaction are written together", () => {
    const fp = (path: string, n = 1) => ({
      path,
      sha256: hex(n),
      size: n,
      mtimeNs: "1763712000123456789",
      ino: String(n),
      verifiedAt: 1000,
    });
    /** What another connection sees committed. */
    const onDisk = (path: string) => {
      const db = raw(join(dir, "state.db"));
      try {
        return db.prepare("SELECT 1 FROM fingerprints WHERE path = ?").get(path) !== undefined;
      } finally {
        db.close();
      }
    };
    const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

    it("in the next turn of the event loop, and before any other operation of the store", async () => {
      const s = store();
      s.putFingerprint(fp("a"));
      s.putFingerprint(fp("b"));
      expect(onDisk("a")).toBe(false); // not yet: written together with what follows
      await nextTurn();
      expect(onDisk("a") && onDisk("b")).toBe(true);
      s.putFingerprint(fp("c"));
      s.setValue("k", "v"); // any operation writes them first
      expect(onDisk("c")).toBe(true);
    });

    it("keeps the order of puts and deletes, and the last put of a path wins", () => {
      const s = store();
      s.putFingerprint(fp("a", 1));
      s.putFingerprint(fp("a", 2));
      expect(s.getFingerprint("a")?.sha256).toBe(hex(2));
      s.putFingerprint(fp("b", 1));
      s.deleteFingerprint("b");
      expect(s.listFingerprints().map((f) => f.path)).toEqual(["a"]);
      expect(onDisk("b")).toBe(false);
    });

    it("on close", () => {
      const s = store();
      s.putFingerprint(fp("a"));
      s.close();
      expect(onDisk("a")).toBe(true);
    });

    it("inside a transaction, with it: committed or rolled back together", () => {
      const s = store();
      s.transaction(() => {
        s.putFingerprint(fp("kept"));
        expect(onDisk("kept")).toBe(false); // the other connection sees only committed rows
      });
      expect(onDisk("kept")).toBe(true);
      expect(() =>
        s.transaction(() => {
          s.putFingerprint(fp("gone"));
          throw new Error("roll back");
        }),
      ).toThrow("roll back");
      expect(s.getFingerprint("gone")).toBeUndefined();
    });

    it("a write that fails in the background is thrown by the next operation", async () => {
      const s = store(undefined, { busyTimeoutMs: 0 });
      s.setValue("k", "v");
      const other = raw(join(dir, "state.db"), false);
      other.exec("BEGIN IMMEDIATE"); // holds the write lock
      s.putFingerprint(fp("a"));
      await nextTurn();
      other.exec("ROLLBACK");
      other.close();
      expectPackratError(() => s.getValue("k"), "PACKRAT_STATE_LOCKED");
      expect(s.getValue("k")).toBe("v"); // once
      expect(s.getFingerprint("a")).toBeUndefined(); // dropped: it is hashed again next time
    });
  });

  it("caches parsed metadata and parse errors by sha256 and layout", () => {
    const s = store(undefined, { now: () => 5 });
    expect(s.getPackageMeta(hex(1), "apt")).toBeUndefined();
    s.putPackageMeta(hex(1), "apt", { Package: "foo", Depends: ["libc6"] }, null);
    s.putPackageMeta(hex(2), "apt", null, "truncated control.tar");
    expect(s.getPackageMeta(hex(1), "apt")).toEqual({
      meta: { Package: "foo", Depends: ["libc6"] },
      error: null,
    });
    expect(s.getPackageMeta(hex(2), "apt")).toEqual({ meta: null, error: "truncated control.tar" });
    expect(s.getPackageMeta(hex(1), "yum")).toBeUndefined();
  });
});

describe("generations and published files", () => {
  const gen = (generation: number, publishedAt: number) => ({
    repo: "a",
    generation,
    inputsHash: `inputs-${generation}`,
    publishedAt,
    fileCount: 0,
    packageCount: 0,
  });
  const pf = (path: string, n: number, kind: "metadata" | "package" = "metadata") => ({
    repo: "a",
    path,
    sha256: hex(n),
    kind,
  });

  it("supersedes files a new generation no longer names, and expires them after the cutoff", () => {
    const s = store();
    expect(s.latestGeneration("a")).toBeUndefined();
    s.recordGeneration(
      gen(1, 100),
      [pf("Release", 1), pf("by-hash/1", 1), pf("pool/x.deb", 9, "package")],
      100,
    );
    s.recordGeneration(
      gen(2, 200),
      [pf("Release", 2), pf("by-hash/2", 2), pf("pool/x.deb", 9, "package")],
      200,
    );
    expect(s.latestGeneration("a")).toEqual(gen(2, 200));

    const byPath = () => Object.fromEntries(s.listPublishedFiles("a").map((r) => [r.path, r]));
    expect(byPath()).toEqual({
      Release: {
        repo: "a",
        path: "Release",
        sha256: hex(2),
        kind: "metadata",
        generation: 2,
        supersededAt: null,
        order: 1000,
      },
      "by-hash/1": {
        repo: "a",
        path: "by-hash/1",
        sha256: hex(1),
        kind: "metadata",
        generation: 1,
        supersededAt: 200,
        order: 1000,
      },
      "by-hash/2": {
        repo: "a",
        path: "by-hash/2",
        sha256: hex(2),
        kind: "metadata",
        generation: 2,
        supersededAt: null,
        order: 1000,
      },
      // Named again with the same bytes: the row is not rewritten, and keeps the generation
      // that first named it (a +1 generation writes only what changed).
      "pool/x.deb": {
        repo: "a",
        path: "pool/x.deb",
        sha256: hex(9),
        kind: "package",
        generation: 1,
        supersededAt: null,
        order: 0,
      },
    });

    // The latest generation's metadata, and every path named (cleanup keeps them all).
    expect(s.listCurrentMetadata("a").map((r) => r.path)).toEqual(["Release", "by-hash/2"]);
    expect(s.listPublishedPaths().sort()).toEqual([
      "Release",
      "by-hash/1",
      "by-hash/2",
      "pool/x.deb",
    ]);

    // Generation 3 drops by-hash/2 and the package; by-hash/1 keeps its earlier time.
    s.recordGeneration(gen(3, 300), [pf("Release", 3), pf("by-hash/3", 3)], 300);
    expect(byPath()["by-hash/1"]?.supersededAt).toBe(200);
    expect(byPath()["by-hash/2"]?.supersededAt).toBe(300);
    expect(byPath()["pool/x.deb"]?.supersededAt).toBe(300);

    // A generation that names a superseded path again brings it back.
    s.recordGeneration(
      gen(4, 400),
      [pf("Release", 4), pf("by-hash/3", 3), pf("pool/x.deb", 9, "package")],
      400,
    );
    expect(byPath()["pool/x.deb"]).toMatchObject({ generation: 4, supersededAt: null });

    expect(s.expireSuperseded(200)).toEqual([]);
    expect(s.expireSuperseded(250).map((r) => r.path)).toEqual(["by-hash/1"]);
    expect(s.expireSuperseded(10_000).map((r) => r.path)).toEqual(["by-hash/2"]);
    expect(s.listPublishedFiles("a").map((r) => r.path)).toEqual([
      "Release",
      "by-hash/3",
      "pool/x.deb",
    ]);
    expect(s.expireSuperseded(10_000)).toEqual([]);
  });

  it("refuses a generation number twice and files of another repo", () => {
    const s = store();
    s.recordGeneration(gen(1, 1), [], 1);
    expect(() => s.recordGeneration(gen(1, 2), [], 2)).toThrow();
    expect(() => s.recordGeneration(gen(2, 2), [{ ...pf("x", 1), repo: "b" }], 2)).toThrow(
      /names x of b/,
    );
    expect(s.latestGeneration("a")?.generation).toBe(1);
  });
});

describe("download failures, sync runs and values", () => {
  it("counts the attempts of a failing download", () => {
    const s = store();
    const f = { repo: "a", uri: "u1", filename: "foo.deb", error: "HTTP 500", lastAttemptAt: 10 };
    s.recordDownloadFailure(f);
    s.recordDownloadFailure({ ...f, error: "reset", lastAttemptAt: 20 });
    s.recordDownloadFailure({ ...f, uri: "u2", lastAttemptAt: 15 });
    expect(s.listDownloadFailures()).toEqual([
      { ...f, error: "reset", lastAttemptAt: 20, attempts: 2 },
      { ...f, uri: "u2", lastAttemptAt: 15, attempts: 1 },
    ]);
    s.clearDownloadFailure("a", "u1");
    s.recordDownloadFailure(f);
    expect(s.listDownloadFailures().map((r) => [r.uri, r.attempts])).toEqual([
      ["u1", 1],
      ["u2", 1],
    ]);
  });

  it("records sync runs and finds the last (successful) one of each kind", () => {
    const s = store();
    expect(s.lastSyncRun()).toBeUndefined();
    const full = s.startSyncRun("full", 100);
    expect(s.lastSyncRun()).toMatchObject({
      id: full,
      kind: "full",
      result: "running",
      finishedAt: null,
      stats: {},
    });
    s.finishSyncRun(full, "ok", null, { downloaded: 3, removed: 1 }, 150);
    const inc = s.startSyncRun("incremental", 200);
    s.finishSyncRun(inc, "failed", "master unreachable", {}, 210);

    expect(s.lastSyncRun()).toEqual({
      id: inc,
      kind: "incremental",
      startedAt: 200,
      finishedAt: 210,
      result: "failed",
      message: "master unreachable",
      stats: {},
    });
    expect(s.lastSyncRun("full")?.id).toBe(full);
    expect(s.lastSuccessfulSyncRun()).toMatchObject({
      id: full,
      stats: { downloaded: 3, removed: 1 },
    });
    expect(s.lastSuccessfulSyncRun("incremental")).toBeUndefined();
  });

  it("keeps a bounded history, but always the last successful run of each kind", () => {
    const s = store();
    const full = s.startSyncRun("full", 1);
    s.finishSyncRun(full, "ok", null, {}, 2);
    s.transaction(() => {
      for (let i = 0; i < SYNC_RUNS_KEPT + 20; i++) {
        s.finishSyncRun(s.startSyncRun("incremental", 10 + i), "failed", "x", {}, 10 + i);
      }
    });
    expect(s.lastSuccessfulSyncRun("full")?.id).toBe(full);
    const db = raw(s.path);
    const { n } = db.prepare("SELECT count(*) AS n FROM sync_runs").get() as { n: number };
    db.close();
    expect(n).toBeLessThanOrEqual(SYNC_RUNS_KEPT + 1);
    expect(n).toBeGreaterThanOrEqual(SYNC_RUNS_KEPT);
  });

  it("stores small values", () => {
    const s = store();
    expect(s.getValue("k")).toBeUndefined();
    s.setValue("k", "1");
    s.setValue("k", "2");
    expect(s.getValue("k")).toBe("2");
  });

  it("transaction() commits together, rolls back on a throw, and refuses async functions", () => {
    const s = store();
    s.transaction(() => {
      s.setValue("a", "1");
      s.setValue("b", "1");
    });
    expect(() =>
      s.transaction(() => {
        s.setValue("a", "2");
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(s.getValue("a")).toBe("1");
    expect(() => s.transaction(() => Promise.resolve(s.setValue("a", "3")))).toThrow(/synchronous/);
    expect(s.getValue("a")).toBe("1");
  });
});

// ---------------------------------------------------------------------------------------------

interface OriginalFixture {
  variant: "plain" | "signed";
  repos: {
    name: string;
    uri: string;
    manager: string;
    description: string;
    distroMap: Record<string, string[]>;
    filesystemDir: string | null;
  }[];
  files: {
    repo: string;
    uri: string;
    fileUrl: string;
    type: string;
    filename: string;
    distro: string;
    distroVersion: string;
    arch: string;
    sha256: string;
    signed256: string | null;
  }[];
}

function makeOriginalDb(path: string, variant: "plain" | "signed"): OriginalFixture {
  const out = execFileSync("python3", [MAKE_ORIGINAL_DB, path, "--variant", variant], {
    encoding: "utf8",
  });
  return JSON.parse(out) as OriginalFixture;
}

describe.each(["plain", "signed"] as const)("a database of the original agent (%s)", (variant) => {
  it("is migrated in place, keeping every repo, file and sha256", () => {
    const path = join(dir, "packrat-agent.db");
    const fx = makeOriginalDb(path, variant);
    const s = store(path, { now: () => 1234 });

    const repos = s.listRepos();
    expect(repos.map((r) => r.repo.name)).toEqual(fx.repos.map((r) => r.name).sort());
    for (const want of fx.repos) {
      const got = repos.find((r) => r.repo.name === want.name);
      expect(got?.repo).toEqual({
        uri: want.uri,
        name: want.name,
        description: want.description,
        filesystemDir: want.filesystemDir ?? want.name,
        managerType: want.manager,
        distroVersionUris: [],
        tag: "",
        showOnlyLatest: false,
      });
      expect(got?.lastMasterContact).toBeNull();
      const dvs = Object.entries(want.distroMap).flatMap(([distro, versions]) =>
        versions.map((v) => [distro, v, v]),
      );
      expect(got?.distroVersions.map((d) => [d.distro, d.version, d.name])).toEqual(dvs);
    }

    const known = new Set(fx.repos.map((r) => r.name));
    const wantFiles = fx.files.filter((f) => known.has(f.repo));
    expect(wantFiles.length).toBeLessThan(fx.files.length); // the fixture has an orphan row
    const files = s.listPackageFiles();
    expect(files).toHaveLength(wantFiles.length);
    for (const want of wantFiles) {
      const got = files.find((f) => f.repo === want.repo && f.file.uri === want.uri);
      expect(got).toBeDefined();
      expect(got?.file).toMatchObject({
        uri: want.uri,
        fileUrl: want.fileUrl,
        filename: want.filename,
        type: want.type,
        arch: want.arch,
        sha256: want.sha256,
        tags: [],
        failedAt: null,
        deprecatedAt: null,
      });
      expect(got?.file.packageName).toBe(partsFromFilename(want.filename).packageName);
      expect([got?.distro, got?.distroVersion]).toEqual([want.distro, want.distroVersion]);
      expect(got?.diskSha256).toBe(want.signed256 ?? want.sha256);
      expect(got?.size).toBeNull();
    }
    const names = Object.fromEntries(files.map((f) => [f.file.filename, f.file.packageName]));
    expect(names).toMatchObject({
      "hello_2.10-3_amd64.deb": "hello",
      "libfoo-dev_1.0_all.deb": "libfoo-dev",
      "hello-2.10-3.el9.x86_64.rpm": "hello",
      "python3-foo-bar-1.2-1.el8.noarch.rpm": "python3-foo-bar",
      "mytool_0.3.json": "mytool",
    });

    expect(JSON.parse(s.getValue(IMPORT_REPORT_KEY) ?? "null")).toEqual({
      importedAt: 1234,
      repos: fx.repos.length,
      files: wantFiles.length,
      skippedOrphanFiles: fx.files.length - wantFiles.length,
      signedFiles:
        variant === "signed" ? fx.files.filter((f) => f.signed256 && known.has(f.repo)).length : 0,
    });
    s.close();

    // The original tables are kept under new names, every row intact.
    const db = raw(path);
    expect(db.prepare("SELECT value FROM control WHERE key = 'version'").get()).toEqual({
      value: String(SCHEMA_VERSION),
    });
    expect(db.prepare("SELECT count(*) AS n FROM legacy_repos_v2").get()).toEqual({
      n: fx.repos.length,
    });
    expect(db.prepare("SELECT count(*) AS n FROM legacy_files_v2").get()).toEqual({
      n: fx.files.length,
    });
    expect(db.pragma("foreign_key_check")).toEqual([
      // Only the orphan row the original left behind, now in the legacy table.
      expect.objectContaining({ table: "legacy_files_v2", parent: "legacy_repos_v2" }),
    ]);
    db.close();

    // Reopening does not import again.
    const again = store(path, { now: () => 9999 });
    expect(again.listPackageFiles()).toHaveLength(wantFiles.length);
    expect(again.getValue(IMPORT_REPORT_KEY)).toContain('"importedAt":1234');
  });

  it("keeps the on-disk hashes when the first full sync re-reads the master", () => {
    const path = join(dir, "packrat-agent.db");
    makeOriginalDb(path, variant);
    const s = store(path);
    const before = s.listPackageFiles("prod-yum");
    // What a full sync writes: the master's view, without disk data.
    s.replacePackageFiles(
      "prod-yum",
      before.map((r) => ({ ...r, diskSha256: null, transformKey: null })),
    );
    expect(s.listPackageFiles("prod-yum").map((r) => r.diskSha256)).toEqual(
      before.map((r) => r.diskSha256),
    );
  });
});

describe("the original agent's tables, renamed", () => {
  it("never replace an existing legacy table of the same name", () => {
    const path = join(dir, "packrat-agent.db");
    const fx = makeOriginalDb(path, "plain");
    const db = new BetterSqlite3(path);
    db.exec(
      "CREATE TABLE legacy_files_v2 (note TEXT); INSERT INTO legacy_files_v2 VALUES ('mine')",
    );
    db.close();
    const s = store(path);
    expect(s.listPackageFiles().length).toBeGreaterThan(0);
    s.close();
    const check = raw(path);
    expect(check.prepare("SELECT note FROM legacy_files_v2").all()).toEqual([{ note: "mine" }]);
    expect(check.prepare("SELECT count(*) AS n FROM legacy_files_v2_2").get()).toEqual({
      n: fx.files.length,
    });
    check.close();
  });

  it("a migration that fails leaves the original database as it was", () => {
    const path = join(dir, "packrat-agent.db");
    makeOriginalDb(path, "plain");
    const db = new BetterSqlite3(path);
    // Something the new schema cannot create over: its CREATE TABLE kv fails half-way.
    db.exec("CREATE VIEW kv AS SELECT 1 AS key");
    db.close();

    const err = expectPackratError(() => store(path), "PACKRAT_STATE_DB");
    expect(err.message).toMatch(/from schema version 2 to 6 failed .*kv.*rolled back/);
    expect(err.message).toContain(path);

    const check = raw(path);
    expect(check.prepare("SELECT value FROM control").get()).toEqual({ value: "2" });
    const tables = check
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all();
    expect(tables).toEqual([{ name: "control" }, { name: "files" }, { name: "repos" }]);
    expect(check.pragma("journal_mode", { simple: true })).toBe("delete");
    check.close();
  });
});

describe("databases this agent must not open", () => {
  it("refuses, without touching it, a database of a newer schema", () => {
    const path = join(dir, "newer.db");
    const db = new BetterSqlite3(path);
    db.exec(
      "CREATE TABLE control (key text, value text); INSERT INTO control VALUES ('version', '99');",
    );
    db.exec("CREATE TABLE future (x)");
    db.close();
    const hash = () => createHash("sha256").update(readFileSync(path)).digest("hex");
    const before = hash();

    const err = expectPackratError(() => store(path), "PACKRAT_STATE_DB");
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/schema version 99 is newer than this agent understands \(6\)/);
    expect(err.hint).toMatch(/newer packrat-agent/);
    expectPackratError(() => store(path, { readonly: true }), "PACKRAT_STATE_DB");

    expect(hash()).toBe(before);
    const check = raw(path);
    expect(check.pragma("journal_mode", { simple: true })).toBe("delete");
    check.close();
  });

  it("gives a clear error for a file that is not a database", () => {
    const path = join(dir, "state.db");
    writeFileSync(path, "[packrat]\nhost: http://master\n".repeat(200));
    const err = expectPackratError(() => store(path), "PACKRAT_STATE_DB");
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/not an SQLite database/);
    expect(err.hint).toMatch(/state_db/);
    expect(readFileSync(path, "utf8")).toMatch(/^\[packrat\]/);
  });

  it("refuses another program's database and a control.version that is not a number", () => {
    const other = join(dir, "other.db");
    const db = new BetterSqlite3(other);
    db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY)");
    db.close();
    expect(expectPackratError(() => store(other), "PACKRAT_STATE_DB").message).toMatch(
      /users.*not a packrat-agent state DB/,
    );

    const odd = join(dir, "odd.db");
    const db2 = new BetterSqlite3(odd);
    db2.exec(
      "CREATE TABLE control (key text, value text); INSERT INTO control VALUES ('version', 'two');",
    );
    db2.close();
    expect(expectPackratError(() => store(odd), "PACKRAT_STATE_DB").message).toMatch(/"two"/);
  });

  it("gives a clear error when the path is a directory", () => {
    const path = join(dir, "a-directory");
    mkdirSync(path);
    const err = expectPackratError(() => store(path), "PACKRAT_STATE_DB");
    expect(err.message).toContain(path);
    expect(err.hint).toMatch(/not a directory/);
  });

  it("read-only: opens a closed database and reads it", () => {
    const path = join(dir, "state.db");
    const w = store(path);
    w.setValue("k", "v");
    w.close();
    const r = store(path, { readonly: true });
    expect(r.getValue("k")).toBe("v");
    expect(r.listRepos()).toEqual([]);
  });

  it("read-only: a missing file, an empty one, and one that still needs migrating are errors", () => {
    expect(
      expectPackratError(
        () => store(join(dir, "missing.db"), { readonly: true }),
        "PACKRAT_STATE_DB",
      ).message,
    ).toMatch(/does not exist/);

    const empty = join(dir, "empty.db");
    new BetterSqlite3(empty).close();
    expect(
      expectPackratError(() => store(empty, { readonly: true }), "PACKRAT_STATE_DB").message,
    ).toMatch(/empty/);

    const old = join(dir, "old.db");
    makeOriginalDb(old, "plain");
    const err = expectPackratError(() => store(old, { readonly: true }), "PACKRAT_STATE_DB");
    expect(err.message).toMatch(/schema version 2 and needs migrating to 6/);
    expect(err.hint).toMatch(/Start the agent once/);
    const check = raw(old);
    expect(check.prepare("SELECT value FROM control").get()).toEqual({ value: "2" });
    check.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Another process holding the write lock: a Python sqlite3 client, as a second agent would be.

const HOLD_WRITE_LOCK = `
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('k', 'uncommitted')")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
`;

async function holdWriteLock(
  path: string,
): Promise<{ child: ChildProcessWithoutNullStreams; release: () => Promise<void> }> {
  const child = spawn("python3", ["-c", HOLD_WRITE_LOCK, path]);
  let out = "";
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const waitFor = (word: string) =>
    new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes(word)) {
          child.stdout.off("data", onData);
          resolve();
        }
      };
      child.stdout.on("data", onData);
      child.once("exit", (code) => reject(new Error(`lock holder exited ${code}: ${err}`)));
    });
  await waitFor("locked");
  return {
    child,
    release: async () => {
      const done = waitFor("released");
      child.stdin.write("\n");
      await done;
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

describe("two processes on one state DB", () => {
  it("a read-only open works while another process writes, and sees only committed data", async () => {
    const path = join(dir, "state.db");
    const writer = store(path);
    writer.setValue("k", "committed");
    writer.upsertRepo(repo("a"), [], 1);

    const holder = await holdWriteLock(path);
    try {
      const reader = store(path, { readonly: true });
      expect(reader.getValue("k")).toBe("committed");
      expect(reader.listRepos()).toHaveLength(1);
      // A read-only store refuses writes with a state DB error, not a crash or a silent no-op.
      expect(
        expectPackratError(() => reader.setValue("x", "y"), "PACKRAT_STATE_DB").message,
      ).toContain(path);
    } finally {
      await holder.release();
    }
    expect(writer.getValue("k")).toBe("uncommitted");
  });

  it("a second writer gets PACKRAT_STATE_LOCKED after busy_timeout, and the DB stays whole", async () => {
    const path = join(dir, "state.db");
    store(path).close();
    const second = store(path, { busyTimeoutMs: 100 });

    const holder = await holdWriteLock(path);
    try {
      const started = Date.now();
      const err = expectPackratError(() => second.setValue("k", "mine"), "PACKRAT_STATE_LOCKED");
      expect(Date.now() - started).toBeGreaterThanOrEqual(90);
      expect(err.message).toContain(path);
      expect(err.hint).toMatch(/Another packrat-agent/);
      expectPackratError(
        () => second.transaction(() => second.setValue("k2", "mine")),
        "PACKRAT_STATE_LOCKED",
      );
    } finally {
      await holder.release();
    }
    expect(second.getValue("k")).toBe("uncommitted");
    second.setValue("k", "mine");
    expect(second.getValue("k")).toBe("mine");
    const db = raw(path);
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
  });
});

describe("package names from filenames (imported rows)", () => {
  it.each([
    ["hello_2.10-3_amd64.deb", "hello", "2.10-3"],
    ["libfoo-dev_1:1.0~rc1_all.deb", "libfoo-dev", "1:1.0~rc1"],
    ["hello-2.10-3.el9.x86_64.rpm", "hello", "2.10-3.el9"],
    ["python3-foo-bar-1.2-1.el8.noarch.rpm", "python3-foo-bar", "1.2-1.el8"],
    ["zstd-1.5.5-1-x86_64.pkg.tar.zst", "zstd", "1.5.5-1"],
    ["lib32-glibc-2.38-7-x86_64.pkg.tar.xz", "lib32-glibc", "2.38-7"],
    ["requests-2.31.0-py3-none-any.whl", "requests", "2.31.0"],
    ["python-dateutil-2.8.2.tar.gz", "python-dateutil", "2.8.2"],
    ["mytool_0.3.json", "mytool", "0.3"],
    ["README", "README", ""],
  ])("%s → %s %s", (filename, packageName, version) => {
    expect(partsFromFilename(filename)).toEqual({ packageName, version });
  });
});

describe("file modes and identity", () => {
  const modeOf = (p: string) => statSync(p).mode & 0o777;

  it("creates state.db and its -wal/-shm 0600 whatever the umask", () => {
    const old = process.umask(0o002);
    try {
      const path = join(dir, "fresh.db");
      const s = store(path);
      s.setValue("k", "v");
      expect(modeOf(path)).toBe(0o600);
      expect(modeOf(`${path}-wal`)).toBe(0o600);
      expect(modeOf(`${path}-shm`)).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });

  it("tightens a state DB and -wal/-shm an older agent left 0644", () => {
    const path = join(dir, "old.db");
    const first = store(path);
    first.setValue("k", "v");
    // An older agent's files: wide open, and the WAL still there (as after a crash).
    for (const p of [path, `${path}-wal`, `${path}-shm`]) chmodSync(p, 0o644);
    const second = store(path);
    expect(second.getValue("k")).toBe("v");
    for (const p of [path, `${path}-wal`, `${path}-shm`]) expect(modeOf(p)).toBe(0o600);
    // A read-only open (status, verify) changes nothing.
    chmodSync(path, 0o644);
    store(path, { readonly: true }).close();
    expect(modeOf(path)).toBe(0o644);
  });

  it("replacedOnDisk names a deleted or replaced file; reopen opens what the path names now", () => {
    const path = join(dir, "watched.db");
    const s = store(path);
    s.setValue("k", "before");
    expect(s.replacedOnDisk()).toBeNull();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
    expect(s.replacedOnDisk()).toBe(`${path} was deleted`);
    s.reopen();
    expect(s.replacedOnDisk()).toBeNull();
    expect(s.getValue("k")).toBeUndefined();
    expect(modeOf(path)).toBe(0o600);
    s.setValue("k", "after");

    // Replaced by another database (a restore from backup, renamed over it).
    const other = join(dir, "backup.db");
    const b = store(other);
    b.setValue("k", "restored");
    b.close();
    renameSync(other, path);
    expect(s.replacedOnDisk()).toBe(`${path} was replaced by another file`);
    s.reopen();
    expect(s.getValue("k")).toBe("restored");
  });
});

describe("schema 5: publish order and replicas", () => {
  it("marks generations published before it, so the next pass republishes them with their order", () => {
    const path = join(dir, "v4.db");
    const db = new BetterSqlite3(path);
    db.exec('CREATE TABLE "control" ( "key" text, "value" text )');
    for (const m of MIGRATIONS.filter((m) => m.version <= 4)) m.up(db, 1);
    db.prepare("INSERT INTO control (key, value) VALUES ('version', '4')").run();
    db.prepare(
      "INSERT INTO generations VALUES ('a', 1, 'old', 1, 2, 1), ('a', 2, 'cur', 2, 2, 1), ('b', 1, 'only', 1, 1, 0)",
    ).run();
    db.prepare(
      "INSERT INTO published_files (repo, path, sha256, kind, generation) VALUES ('a', 'a/InRelease', 'x', 'metadata', 2), ('a', 'a/pool/p.deb', 'y', 'package', 2)",
    ).run();
    db.close();

    const s = store(path);
    expect(s.latestGeneration("a")?.inputsHash).toBe("before-schema-5");
    expect(s.latestGeneration("b")?.inputsHash).toBe("before-schema-5");
    const rows = Object.fromEntries(s.listPublishedFiles("a").map((r) => [r.path, r.order]));
    // Metadata of unknown stage goes last; packages first.
    expect(rows).toEqual({ "a/InRelease": 1000, "a/pool/p.deb": 0 });
  });

  it("keeps what each replica holds, per target", () => {
    const s = store();
    const row = { key: "k", size: 1, sha256: "s", etag: "e", uploadedAt: 5, unwantedSince: null };
    s.putReplicaObject("t1", row);
    s.putReplicaObject("t2", { ...row, key: "other" });
    s.setReplicaUnwanted("t1", ["k"], 7);
    s.setReplicaUnwanted("t1", ["k"], 9); // keeps the first time
    expect(s.listReplicaObjects("t1")).toEqual([{ ...row, unwantedSince: 7 }]);
    s.setReplicaUnwanted("t1", ["k"], null);
    expect(s.listReplicaObjects("t1")[0]!.unwantedSince).toBeNull();
    s.deleteReplicaObjects("t1", ["k"]);
    expect(s.listReplicaObjects("t1")).toEqual([]);
    expect(s.listReplicaObjects("t2").map((r) => r.key)).toEqual(["other"]);
    s.setReplicaRepo("t1", { repo: "a", generation: 3, publishedAt: 4 });
    s.setReplicaRepo("t1", { repo: "a", generation: 4, publishedAt: 6 });
    expect(s.listReplicaRepos("t1")).toEqual([{ repo: "a", generation: 4, publishedAt: 6 }]);
  });
});

describe("the in-memory state model (issue 25)", () => {
  const fp = (p: string, sha: string) => ({
    path: p,
    sha256: sha,
    size: 3,
    mtimeNs: "1",
    ino: "2",
    verifiedAt: 5,
  });

  it("follows every write and equals SQLite after each, through rollbacks and a reopen", () => {
    const s = store();
    s.upsertRepo(repo("a"), [BOOKWORM], 1);
    s.upsertRepo(repo("b"), [BOOKWORM], 1);
    // Load everything first, so each write below must update the model, not a later read.
    expect(s.packageFileRows("a").size).toBe(0);
    expect(s.fingerprintMap().size).toBe(0);
    expect(s.packageMetaStatus("apt").size).toBe(0);
    expect(s.listCurrentMetadata("a")).toEqual([]);
    const generation = (n: number, files: [string, number, "metadata" | "package"][]) =>
      s.recordGeneration(
        {
          repo: "a",
          generation: n,
          inputsHash: `h${n}`,
          publishedAt: n,
          fileCount: files.length,
          packageCount: 0,
        },
        files.map(([path, h, kind]) => ({ repo: "a", path, sha256: hex(h), kind })),
        n * 10,
      );
    const steps: [string, () => void][] = [
      [
        "replace all",
        () =>
          s.replacePackageFiles(
            "a",
            [1, 2, 3].map((i) => fileRow("a", i, `p${i}`)),
          ),
      ],
      ["reload", () => s.packageFileRows("a")],
      [
        "replace one package, keeping the disk hash SQLite merges",
        () => s.replacePackagesOfRepo("a", ["p2"], [fileRow("a", 2, "p2", { size: null })]),
      ],
      ["disk hash", () => s.setDiskSha256("a", "/api/v2/Package/PackageFile:1:", hex(9), "k", 7)],
      ["remove a package", () => s.replacePackagesOfRepo("a", ["p3"], [])],
      ["other repo", () => s.replacePackagesOfRepo("b", ["q"], [fileRow("b", 4, "q")])],
      ["fingerprint", () => s.putFingerprint(fp("x", hex(1)))],
      ["fingerprint again", () => s.putFingerprint(fp("x", hex(2)))],
      ["forget fingerprint", () => s.deleteFingerprint("x")],
      ["parsed", () => s.putPackageMeta(hex(1), "apt", { a: 1 }, null)],
      ["failed parse", () => s.putPackageMeta(hex(2), "apt", null, "bad")],
      [
        "a rolled-back transaction",
        () =>
          expect(() =>
            s.transaction(() => {
              s.putFingerprint(fp("y", hex(3)));
              s.replacePackagesOfRepo("a", ["p1"], []);
              throw new Error("boom");
            }),
          ).toThrow("boom"),
      ],
      [
        "a generation",
        () =>
          generation(1, [
            ["a/Release", 1, "metadata"],
            ["a/by-hash/1", 1, "metadata"],
            ["a/p.deb", 5, "package"],
          ]),
      ],
      [
        "a generation that keeps, changes and drops rows",
        () =>
          generation(2, [
            ["a/Release", 2, "metadata"],
            ["a/by-hash/2", 2, "metadata"],
            ["a/p.deb", 5, "package"],
          ]),
      ],
      [
        "a generation rolled back",
        () =>
          expect(() =>
            s.transaction(() => {
              generation(3, [["a/Release", 3, "metadata"]]);
              throw new Error("boom");
            }),
          ).toThrow("boom"),
      ],
      ["published files forgotten", () => s.deletePublishedFiles("a")],
      ["a generation after", () => generation(4, [["a/Release", 4, "metadata"]])],
      ["repo deleted", () => s.deleteRepo("b")],
      ["reopened", () => s.reopen()],
    ];
    for (const [label, step] of steps) {
      step();
      // Touch every part so the comparison covers loaded state.
      s.packageFileRows("a");
      s.fingerprintMap();
      s.packageMetaStatus("apt");
      s.listCurrentMetadata("a");
      expect(s.modelDrift(), label).toEqual([]);
    }
    expect([...s.packageFileRows("a").keys()]).toEqual([
      "/api/v2/Package/PackageFile:1:",
      "/api/v2/Package/PackageFile:2:",
    ]);
    expect(s.packageFileRows("a").get("/api/v2/Package/PackageFile:1:")?.diskSha256).toBe(hex(9));
    expect(s.fingerprintMap().has("y")).toBe(false);
    expect(s.listCurrentMetadata("a").map((r) => [r.path, r.generation])).toEqual([
      ["a/Release", 4],
    ]);
    expect(s.packageMetaStatus("apt")).toEqual(
      new Map([
        [hex(1), true],
        [hex(2), false],
      ]),
    );
  });

  it("reports a change made behind its back (the check can fail)", () => {
    const path = join(dir, "state.db");
    const s = store(path);
    s.upsertRepo(repo("a"), [BOOKWORM], 1);
    s.replacePackageFiles("a", [fileRow("a", 1, "p1")]);
    s.putFingerprint(fp("x", hex(1)));
    s.recordGeneration(
      { repo: "a", generation: 1, inputsHash: "h", publishedAt: 1, fileCount: 1, packageCount: 0 },
      [{ repo: "a", path: "a/Release", sha256: hex(1), kind: "metadata" }],
      1,
    );
    s.packageFileRows("a");
    s.fingerprintMap();
    s.listCurrentMetadata("a");
    const other = raw(path, false);
    other.prepare("UPDATE package_files SET version = '9.9'").run();
    other.prepare("DELETE FROM fingerprints").run();
    other.prepare("UPDATE published_files SET superseded_at = 5").run();
    other.close();
    const drift = s.modelDrift();
    expect(drift).toHaveLength(3);
    expect(drift[2]).toBe("published file of a a/Release: in memory, not in the state DB");
    expect(drift[0]).toMatch(
      /^package file of a \/api\/v2\/Package\/PackageFile:1:: in memory .*"1.1".*state DB .*"9.9"/,
    );
    expect(drift[1]).toBe("fingerprint x: in memory, not in the state DB");
  });
});

describe("schema 6: package signatures in a table of their own", () => {
  it("a schema-5 database loses its package_meta signature rows and gains package_signatures", () => {
    const path = join(dir, "state.db");
    const s = store(path);
    s.putPackageMeta(hex(1), "apt", { a: 1 }, null);
    s.close();
    // Back to what schema 5 had: a signature cached in package_meta, no package_signatures.
    const db = raw(path, false);
    db.exec("DROP TABLE package_signatures");
    db.prepare("UPDATE control SET value = '5' WHERE key = 'version'").run();
    db.prepare(
      "INSERT INTO package_meta (sha256, layout, meta_json, error, cached_at) VALUES (?, 'signature:ABC', '{}', NULL, 1)",
    ).run(hex(2));
    db.close();
    const migrated = store(path);
    expect(migrated.getPackageMeta(hex(2), "signature:ABC")).toBeUndefined();
    expect(migrated.getPackageMeta(hex(1), "apt")?.meta).toEqual({ a: 1 });
    expect(migrated.getPackageSignature(hex(2), "pacman", "ABC")).toBeUndefined();
    migrated.putPackageSignature(hex(2), "pacman", "ABC", new Uint8Array([1, 2, 3]));
    expect(migrated.getPackageSignature(hex(2), "pacman", "ABC")).toEqual(
      new Uint8Array([1, 2, 3]),
    );
    // All of one layout and key at once, and only those.
    migrated.putPackageSignature(hex(3), "pacman", "ABC", new Uint8Array([4]));
    migrated.putPackageSignature(hex(4), "pacman", "OTHER", new Uint8Array([5]));
    migrated.putPackageSignature(hex(5), "yum", "ABC", new Uint8Array([6]));
    expect(migrated.listPackageSignatures("pacman", "ABC")).toEqual(
      new Map([
        [hex(2), new Uint8Array([1, 2, 3])],
        [hex(3), new Uint8Array([4])],
      ]),
    );
  });
});
