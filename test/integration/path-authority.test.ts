/**
 * Issue 18, items 1–3 and "no failure of one repo fails the pass": every path the agent writes
 * is decided in one place (src/sync/path-authority.ts). Each case here failed on the code
 * before it: a package named like a metadata file replaced the metadata on the second sync, a
 * repo dir named after the public key made every pass fail, a repo in `.packrat-tmp` was
 * deleted by every full sync, and a symlinked temp dir let downloads land outside root_dir.
 */
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../src/log.js";
import { TMP_DIR, tempDir, writeTempFile } from "../../src/sync/disk.js";
import {
  TAG,
  addPacmanRepo,
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { buildPacmanPackage } from "../support/pacman-builder.js";

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function capturingLogger(lines: LogLine[]): Logger {
  return createLogger({
    level: "debug",
    destination: {
      write(chunk: string) {
        for (const line of chunk.split("\n")) if (line) lines.push(JSON.parse(line) as LogLine);
      },
    },
  });
}

describe("one place decides every path under root_dir", () => {
  let fx: MirrorFixture;
  let h: EngineHarness | undefined;
  const lines: LogLine[] = [];

  beforeEach(async () => {
    lines.length = 0;
    fx = await startMirrorFixture({ debs: [["hello", "1.0-1"]], json: [["tool", "1.0"]] });
  });
  afterEach(async () => {
    await h?.close();
    h = undefined;
    await fx.close();
  });

  it("refuses a json package placed at the manifest's path, keeps the manifest, syncs the rest", async () => {
    // package `_repo_main` + file `MANIFEST_all.json` lands exactly on the json entry point.
    const hostile = fx.master.addPackageFile({
      package: "_repo_main",
      distroVersion: "none",
      version: "1",
      type: "tar",
      arch: "all",
      filename: "MANIFEST_all.json",
      content: new TextEncoder().encode('{"pwned": true}\n'),
      tags: [TAG],
    });
    h = makeEngine(fx, { log: capturingLogger(lines) });
    for (let pass = 0; pass < 2; pass++) {
      const report = await h.engine.fullSync();
      expect(report.skipped.map((s) => s.uri)).toEqual([expect.stringContaining(`:${hostile}:`)]);
      expect(report.skipped[0]?.error).toMatch(/MANIFEST_all\.json.*repository metadata/);
      const manifest = JSON.parse(
        await readFile(path.join(fx.root, "json/_repo_main/MANIFEST_all.json"), "utf8"),
      ) as Record<string, unknown>;
      expect(manifest).not.toHaveProperty("pwned");
      expect(Object.keys(manifest)).toEqual(["tool"]);
      expect(report.published.length + (pass === 1 ? 2 : 0)).toBeGreaterThanOrEqual(2);
    }
    // status reads the skipped rows: the refusal is recorded with its code.
    expect(h.store.listSkippedFiles()).toEqual([
      expect.objectContaining({ repo: "prod-json", code: "PACKRAT_UNSAFE_FILENAME" }),
    ]);
    await expect(readFile(path.join(fx.root, "apt/dists/bookworm/InRelease"))).rejects.toThrow(); // unsigned
    expect(await readFile(path.join(fx.root, "apt/dists/bookworm/Release"), "utf8")).toMatch(
      /Packages/,
    );
  });

  it("refuses a pacman package named like the database or a signature", async () => {
    addPacmanRepo(fx.master);
    const good = buildPacmanPackage({ name: "good", version: "1.0-1", arch: "x86_64" });
    fx.master.addPackageFile({
      package: "good",
      distroVersion: "arch",
      version: "1.0-1",
      type: "pkg",
      arch: "x86_64",
      filename: good.filename,
      content: good.bytes,
      tags: [TAG],
    });
    const ids = ["arch.db", "arch.files.tar.gz", `${good.filename}.sig`].map((filename) =>
      fx.master.addPackageFile({
        package: "evil",
        distroVersion: "arch",
        version: "1",
        type: "pkg",
        arch: "x86_64",
        filename,
        content: new TextEncoder().encode(`not a ${filename}\n`),
        tags: [TAG],
      }),
    );
    h = makeEngine(fx, { log: capturingLogger(lines) });
    for (let pass = 0; pass < 2; pass++) {
      const report = await h.engine.fullSync();
      expect(report.skipped.map((s) => s.uri).sort()).toEqual(
        ids.map((id) => expect.stringContaining(`:${id}:`) as unknown).sort(),
      );
      const db = await readFile(path.join(fx.root, "arch/x86_64/arch.db"));
      expect(db[0]).toBe(0x1f); // still the gzip database, not the master's bytes
      expect(await readdir(path.join(fx.root, "arch/x86_64"))).toContain(good.filename);
    }
  });

  it("skips a repo whose directory is the public key's name or the temp dir; the others sync and heartbeat", async () => {
    fx.master.addRepo({
      name: "evil-key",
      filesystemDir: "repo-key",
      managerType: "json",
      distroVersions: ["none"],
      tag: TAG,
    });
    fx.master.addRepo({
      name: "evil-tmp",
      filesystemDir: TMP_DIR,
      managerType: "json",
      distroVersions: ["none"],
      tag: TAG,
    });
    fx.master.addRepo({
      name: "evil-dot",
      filesystemDir: "a/.hidden",
      managerType: "json",
      distroVersions: ["none"],
      tag: TAG,
    });
    fx.master.setRepoList("mirror1", ["evil-key", "prod-apt", "evil-tmp", "prod-json", "evil-dot"]);
    h = makeEngine(fx, {
      log: capturingLogger(lines),
      deps: { rootFiles: [{ path: "repo-key", content: new TextEncoder().encode("KEY\n") }] },
    });
    const heartbeats = fx.master.heartbeats.length;
    for (let pass = 0; pass < 2; pass++) {
      const report = await h.engine.fullSync();
      expect(report.failed.map((f) => f.repo).sort()).toEqual(["evil-dot", "evil-key", "evil-tmp"]);
      for (const f of report.failed) expect(f.error).toMatch(/filesystem_dir/);
      expect(await readFile(path.join(fx.root, "repo-key"), "utf8")).toBe("KEY\n");
      expect(await readdir(path.join(fx.root, "json/tool"))).toEqual(["tool_1.0.tar.gz"]);
      expect(await readdir(path.join(fx.root, "apt/pool"))).not.toHaveLength(0);
    }
    expect(fx.master.heartbeats.length).toBe(heartbeats + 2);
    expect(lines.filter((l) => l.code === "PACKRAT_UNSAFE_REPO_DIR")).toHaveLength(6);
  });

  it("a repo whose publish fails with an I/O error is reported by name; the others publish", async () => {
    h = makeEngine(fx, { log: capturingLogger(lines) });
    // A directory where the json manifest goes: rename(2) fails with EISDIR for that repo only.
    await mkdir(path.join(fx.root, "json/_repo_main/MANIFEST_all.json"), { recursive: true });
    await mkdir(path.join(fx.root, "json/_repo_main/MANIFEST_all.json/x"));
    const heartbeats = fx.master.heartbeats.length;
    const report = await h.engine.fullSync();
    expect(report.failed).toEqual([
      expect.objectContaining({ repo: "prod-json", file: "json (metadata)" }),
    ]);
    expect(report.published).toEqual(["prod-apt"]);
    expect(fx.master.heartbeats.length).toBe(heartbeats + 1);
  });

  it("never writes through a temp dir replaced by a symlink between passes", async () => {
    const outside = await mkdtemp(path.join(tmpdir(), "packrat-outside-"));
    try {
      h = makeEngine(fx, { log: capturingLogger(lines) });
      await h.engine.fullSync();
      await rm(path.join(fx.root, TMP_DIR), { recursive: true, force: true });
      await symlink(outside, path.join(fx.root, TMP_DIR));
      fx.addDeb("world", "2.0-1");
      const report = await h.engine.incrementalSync("prod-apt", ["world"]);
      expect(report.failed).toEqual([]);
      expect(report.downloaded).toBe(1);
      expect(await readdir(outside)).toEqual([]);
      expect(
        await readFile(path.join(fx.root, "apt/dists/bookworm/main/binary-amd64/Packages"), "utf8"),
      ).toMatch(/^Package: world$/m);
      expect(lines.some((l) => l.level === 40 && /packrat-tmp was a symlink/.test(l.msg))).toBe(
        true,
      );
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe("tempDir", () => {
  it("keeps writing into the directory it opened when the path is swapped for a symlink", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "packrat-tempdir-"));
    const root = path.join(dir, "root");
    const outside = path.join(dir, "outside");
    await mkdir(root);
    await mkdir(outside);
    try {
      const opened = tempDir(root);
      // Swap: the agent's directory moves away and a link to `outside` takes its name. A name
      // resolved through what tempDir handed out still lands in the directory the agent made.
      const { rename } = await import("node:fs/promises");
      await rename(path.join(root, TMP_DIR), path.join(root, "moved"));
      await symlink(outside, path.join(root, TMP_DIR));
      const { writeFile } = await import("node:fs/promises");
      await writeFile(path.join(opened, "x"), "bytes");
      expect(await readdir(outside)).toEqual([]);
      expect(await readdir(path.join(root, "moved"))).toEqual(["x"]);
      // The next temp file sees the link, removes it and makes a real directory again.
      const tmp = await writeTempFile(root, "y", new TextEncoder().encode("y"));
      expect(await readdir(outside)).toEqual([]);
      expect((await lstat(path.join(root, TMP_DIR))).isDirectory()).toBe(true);
      expect(path.basename(tmp)).toMatch(/-y$/);
      expect((await lstat(path.join(root, TMP_DIR))).mode & 0o777).toBe(0o700);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
