/**
 * Issue 8 item 6: the hostile input corpus (test/fixtures/make-hostile-corpus.ts) published
 * through the engine beside good packages of every format. Each hostile file must be left out
 * of every index with an error that names it and says why; every good file must publish; the
 * sync must finish; and nothing outside root_dir may appear or change.
 */
import { createHash } from "node:crypto";
import { lstat, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decompressAny } from "../../src/layout/formats/compress.js";
import { createLogger } from "../../src/log.js";
import type { SyncReport } from "../../src/sync/engine.js";
import {
  makeHostileCorpus,
  type CorpusFile,
  type CorpusRepo,
  type HostileCase,
  type HostileCorpus,
} from "../fixtures/make-hostile-corpus.js";
import {
  MIRROR,
  TAG,
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";

/** The master files a repo by tag and distro version: the clash repo has a tag of its own. */
const REPOS: Record<
  CorpusRepo,
  { repo: string; distroVersion: string; type: string; tag?: string }
> = {
  apt: { repo: "prod-apt", distroVersion: "bookworm", type: "deb" },
  yum: { repo: "prod-yum", distroVersion: "el9", type: "rpm" },
  pacman: { repo: "prod-arch", distroVersion: "arch", type: "pacman" },
  pypi: { repo: "prod-pypi", distroVersion: "python", type: "python" },
  "apt-clash": { repo: "prod-apt-clash", distroVersion: "bookworm", type: "deb", tag: "clash" },
};

/**
 * Cases that fail today because of agent bugs (fixes proposed in the issue 8 report). Each stays
 * an `it.fails`, so the suite turns red the day the bug is fixed and the entry must go.
 */
const KNOWN_BUGS: Record<string, string> = {};
/** Repos whose good packages do not publish today, and why. */
const REPO_BUGS: Partial<Record<CorpusRepo, string>> = {};

// Built at collection time so that every case is its own test; the same bytes go to the master.
const corpusDir = await mkdtemp(path.join(tmpdir(), "packrat-corpus-"));
const CORPUS: HostileCorpus = await makeHostileCorpus(corpusDir);

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** Every file and directory under dir (relative path → type, size, mtime), skipping `skip`. */
async function snapshot(dir: string, skip: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(path.join(dir, rel))) {
      const child = rel === "" ? name : `${rel}/${name}`;
      if (skip.includes(child)) continue;
      const st = await lstat(path.join(dir, child));
      out.set(child, `${st.isDirectory() ? "d" : "f"}:${st.size}:${st.mtimeMs}`);
      if (st.isDirectory()) await walk(child);
    }
  };
  await walk("");
  return out;
}

/** A metadata file's text, whatever it is compressed with. */
async function decodeIndex(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await decompressAny(bytes, 1 << 30)).toString("latin1");
}

describe("hostile input corpus through the engine", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;
  const corpus = CORPUS;
  let report: SyncReport;
  const logLines: LogLine[] = [];
  let indexText: Map<CorpusRepo, string>;
  let outsideBefore: Map<string, string>;
  let tmpBefore: Set<string>;
  const ids = new Map<string, number>();

  beforeAll(async () => {
    fx = await startMirrorFixture();
    const m = fx.master;
    m.addDistroVersion({ name: "el9", distro: "centos", version: "9", fileType: "rpm" });
    m.addDistroVersion({ name: "arch", distro: "arch", version: null, fileType: "pacman" });
    m.addDistroVersion({ name: "python", distro: "none", version: null, fileType: "python" });
    m.addRepo({
      name: "prod-yum",
      filesystemDir: "yum",
      managerType: "yum",
      distroVersions: ["el9"],
      tag: TAG,
    });
    m.addRepo({
      name: "prod-arch",
      filesystemDir: "arch",
      managerType: "pacman",
      distroVersions: ["arch"],
      tag: TAG,
    });
    m.addRepo({
      name: "prod-pypi",
      filesystemDir: "pypi",
      managerType: "pypi",
      distroVersions: ["python"],
      tag: TAG,
    });
    m.addRepo({
      name: "prod-apt-clash",
      filesystemDir: "apt-clash",
      managerType: "apt",
      distroVersions: ["bookworm"],
      tag: "clash",
    });
    m.setRepoList(MIRROR, ["prod-apt", "prod-yum", "prod-arch", "prod-pypi", "prod-apt-clash"]);
    const add = (f: CorpusFile) => {
      const r = REPOS[f.repo];
      const id = m.addPackageFile({
        package: f.packageName,
        distroVersion: r.distroVersion,
        version: f.version,
        type: r.type,
        arch: f.arch,
        filename: f.filename,
        content: f.content,
        tags: [r.tag ?? TAG],
      });
      ids.set(f.id, id);
      if (f.fileField) m.faults.add({ kind: "file-field", fileId: id, file: f.fileField(id) });
    };
    for (const f of [...corpus.good, ...corpus.hostile]) add(f);

    const log = createLogger({
      level: "info",
      destination: {
        write(s: string) {
          for (const line of s.split("\n")) if (line) logLines.push(JSON.parse(line) as LogLine);
        },
      },
    });
    h = makeEngine(fx, { log });
    outsideBefore = await snapshot(fx.dir, ["root", "state"]);
    tmpBefore = new Set(await readdir(tmpdir()));
    report = await h.engine.fullSync();

    indexText = new Map();
    for (const [key, r] of Object.entries(REPOS) as [CorpusRepo, { repo: string }][]) {
      let text = "";
      for (const row of h.store.listPublishedFiles(r.repo)) {
        if (row.kind !== "metadata" || row.supersededAt !== null) continue;
        text += (await decodeIndex(await readFile(path.join(fx.root, row.path)))) + "\n";
      }
      indexText.set(key, text);
    }
  }, 60_000);

  afterAll(async () => {
    await h?.close();
    await fx?.close();
    await rm(corpusDir, { recursive: true, force: true });
  });

  it("has at least 30 hostile cases", () => {
    expect(corpus.hostile.length).toBeGreaterThanOrEqual(30);
  });

  it("finishes the sync, with the hostile files counted as failures", () => {
    expect(report.kind).toBe("full");
    expect(report.failed.length).toBeGreaterThan(0);
    expect(h.store.lastSyncRun("full")?.result).toBe("failed");
    expect(fx.master.heartbeats).toHaveLength(1);
  });

  for (const repo of Object.keys(REPOS) as CorpusRepo[]) {
    const bug = REPO_BUGS[repo];
    (bug ? it.fails : it)(
      `publishes the ${repo} repo with every good package${bug ? ` (${bug})` : ""}`,
      () => {
        expect(report.published).toContain(REPOS[repo].repo);
        const text = indexText.get(repo) ?? "";
        const good = corpus.good.filter((g) => g.repo === repo);
        expect(good.length).toBeGreaterThan(0);
        for (const g of good) {
          expect(text, `${g.id} in the ${repo} index`).toContain(g.filename);
          const sha = createHash("sha256").update(g.content).digest("hex");
          expect(text, `${g.id}'s sha256 in the ${repo} index`).toContain(sha);
        }
      },
    );
  }

  /** The warn/error lines and failure records that talk about a case. */
  function errorsFor(c: HostileCase): string[] {
    const needle = c.mentions ?? c.filename;
    const texts: string[] = [];
    for (const l of logLines) {
      if (l.level < 40) continue;
      const text = [l.msg, l.file, l.uri].map((v) => (typeof v === "string" ? v : "")).join(" ");
      if (text.includes(needle)) texts.push(text);
    }
    for (const f of report.failed) {
      const text = `${f.file} ${f.error}`;
      if (text.includes(needle)) texts.push(text);
    }
    return texts;
  }

  for (const c of CORPUS.hostile) {
    const bug = KNOWN_BUGS[c.id];
    (bug ? it.fails : it)(`rejects ${c.id}, names it and says why${bug ? ` (${bug})` : ""}`, () => {
      const errors = errorsFor(c);
      expect(errors.length, `an error naming ${c.filename}`).toBeGreaterThan(0);
      expect(errors.join("\n")).toMatch(c.reason);
      const sha = createHash("sha256").update(c.content).digest("hex");
      expect(indexText.get(c.repo), `${c.id} must not be indexed`).not.toContain(sha);
    });
  }

  it("creates and changes nothing outside root_dir", async () => {
    expect(await snapshot(fx.dir, ["root", "state"])).toEqual(outsideBefore);
    const names = corpus.hostile.map((c) => path.basename(c.filename));
    const newInTmp = (await readdir(tmpdir())).filter((n) => !tmpBefore.has(n));
    expect(newInTmp.filter((n) => names.includes(n))).toEqual([]);
    // Nor at the root of the fixture's parent, where "../" names would land.
    const parent = await readdir(path.dirname(fx.dir));
    expect(parent.filter((n) => names.includes(n))).toEqual([]);
  });
});
