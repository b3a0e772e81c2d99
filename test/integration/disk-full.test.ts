/**
 * Issue 8 item 7: disk full. root_dir is a small tmpfs (the state DB stays outside it), so
 * writes fail with a real ENOSPC: once in the middle of a download, once while the publisher
 * writes a new generation's metadata. Either way nothing may be half-published: no partial file
 * at a final path, the previous generation's entry points intact and naming files that exist
 * with the right hashes (the verify engine reads the tree as clients do). When space returns,
 * the next full sync recovers and the tree verifies.
 *
 * Needs root to mount (CI runs as root). Without it the test fails with a message saying so:
 * a silently skipped disk-full test would pass for the wrong reason.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../src/log.js";
import { createSignatureVerifier } from "../../src/signing/verify.js";
import { TMP_DIR, sha256File, walkTree } from "../../src/sync/disk.js";
import { verifyTree } from "../../src/sync/verify-tree.js";
import { buildDeb, controlText } from "../support/deb-builder.js";
import {
  TAG,
  makeEngine,
  sampleDeb,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { makeTestSigner, type TestKey } from "../support/test-signer.js";

const run = promisify(execFile);

async function mountTmpfs(dir: string, size: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(
      `disk-full test: cannot mount a tmpfs at ${dir} (${e.stderr?.trim() || e.message}). ` +
        "This test needs root (CI runs as root); it does not skip, because a disk-full test " +
        "that never fills a disk proves nothing.",
    );
  }
}

async function remount(dir: string, size: string): Promise<void> {
  await run("mount", ["-o", `remount,size=${size}`, dir]);
}

async function unmount(dir: string): Promise<void> {
  try {
    await run("umount", [dir]);
  } catch {
    // Busy (an open handle from a failed test): detach it so the next run starts clean.
    await run("umount", ["-l", dir]).catch(() => undefined);
  }
}

/** A deb whose data is incompressible, so its size on the master is about `bytes`. */
function bigDeb(name: string, bytes: number): { filename: string; content: Uint8Array } {
  const content = buildDeb({
    control: controlText({
      Package: name,
      Version: "1.0",
      Architecture: "all",
      Maintainer: "Packrat Test <test@packrat.invalid>",
      Description: `${name} big package\n it fills the disk.`,
    }),
    files: { [`usr/share/${name}/blob`]: randomBytes(bytes) },
  });
  return { filename: `${name}_1.0_all.deb`, content };
}

function collectingLogger(lines: string[]): Logger {
  return createLogger({ level: "info", destination: { write: (s: string) => lines.push(s) } });
}

const IN_RELEASE = "apt/dists/bookworm/InRelease";
const PACKAGES = "apt/dists/bookworm/main/binary-amd64/Packages";

describe("disk full on root_dir (a small tmpfs)", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;
  let key: TestKey;
  let mounted = false;
  const logs: string[] = [];

  beforeEach(async () => {
    logs.length = 0;
    fx = await startMirrorFixture({
      debs: [
        ["hello", "1.0-1"],
        ["world", "2.0"],
      ],
      json: [["tool", "1.2"]],
    });
    await mountTmpfs(fx.root, "1m");
    mounted = true;
    key ??= await makeTestSigner();
    h = makeEngine(fx, { signer: key.signer, log: collectingLogger(logs) });
  });

  afterEach(async () => {
    await h?.close();
    if (mounted) await unmount(fx.root);
    mounted = false;
    await fx?.close();
  });

  /** The tree as a client would read it, deep: every hash, no stray files, DB and disk agree. */
  async function verify() {
    return verifyTree({
      root: fx.root,
      store: h.store,
      keepFileList: [],
      deep: true,
      verifier: await createSignatureVerifier(key.signer.publicKeyArmored()),
    });
  }

  /** Files under root_dir's temp dir (never a final path; a full sync clears it first). */
  async function tempFiles(): Promise<string[]> {
    return (await walkTree(fx.root))
      .filter((e) => e.kind !== "dir" && e.rel.startsWith(`${TMP_DIR}/`))
      .map((e) => e.rel);
  }

  /** Every file at a final path under root_dir is one the state DB knows. */
  async function expectNoStrayFinalFiles() {
    const files = (await walkTree(fx.root))
      .filter((e) => e.kind !== "dir" && !e.rel.startsWith(`${TMP_DIR}/`))
      .map((e) => e.rel);
    const known = new Set([
      ...h.store.listPublishedFiles().map((r) => r.path),
      ...h.store.listPackageFiles().map((r) => `apt/pool/${r.file.packageName}/${r.file.filename}`),
      "json/tool/tool_1.2.tar.gz",
    ]);
    expect(files.filter((f) => !known.has(f))).toEqual([]);
  }

  async function expectNothingHalfWritten() {
    expect(await tempFiles()).toEqual([]);
    await expectNoStrayFinalFiles();
  }

  /**
   * A first generation, then one new small package with room left for its download only:
   * its new generation needs many pages (Packages, .gz, .xz, by-hash copies, Release,
   * InRelease). Returns the failed pass's error text and the filler's path.
   */
  async function publishIntoFullDisk(): Promise<{ problem: string; filler: string }> {
    expect((await h.engine.fullSync()).failed).toEqual([]);
    fx.addDeb("newpkg", "0.1");
    const { bavail, bsize } = await statfs(fx.root);
    const filler = path.join(fx.root, "filler");
    await writeFile(filler, new Uint8Array(Number(bavail) * bsize - 2 * bsize));
    // Whether the pass throws or reports the repo as failed, the error must say ENOSPC.
    const problem = await h.engine.fullSync().then(
      (report) => JSON.stringify(report.failed),
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    return { problem, filler };
  }

  it("a download that does not fit fails cleanly, and the next sync recovers", async () => {
    expect((await h.engine.fullSync()).failed).toEqual([]);
    const inRelease = await readFile(path.join(fx.root, IN_RELEASE));
    expect((await verify()).problems).toEqual([]);

    // 2 MiB of incompressible data on a 1 MiB tmpfs: the write fails mid-stream.
    const big = bigDeb("bigpkg", 2 * 1024 * 1024);
    fx.master.addPackageFile({
      package: "bigpkg",
      distroVersion: "bookworm",
      version: "1.0",
      type: "deb",
      arch: "all",
      filename: big.filename,
      content: big.content,
      tags: [TAG],
    });
    const report = await h.engine.fullSync();
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]?.file).toBe("apt/pool/bigpkg/bigpkg_1.0_all.deb");
    expect(report.failed[0]?.error).toMatch(/ENOSPC/);
    expect(logs.join("")).toMatch(/bigpkg_1\.0_all\.deb.*ENOSPC|ENOSPC.*bigpkg_1\.0_all\.deb/);

    // Nothing half-published: no partial pool file, the old entry points as they were.
    expect(existsSync(path.join(fx.root, "apt/pool/bigpkg/bigpkg_1.0_all.deb"))).toBe(false);
    expect(await readFile(path.join(fx.root, IN_RELEASE))).toEqual(inRelease);
    expect(await readFile(path.join(fx.root, PACKAGES), "utf8")).not.toContain("bigpkg");
    await expectNothingHalfWritten();
    // verify reads the tree as consistent; its one report is the file that could not be fetched.
    expect((await verify()).problems).toEqual([
      expect.objectContaining({
        path: "bigpkg_1.0_all.deb",
        problem: expect.stringMatching(/ENOSPC/),
      }),
    ]);

    // Space returns: the next full sync fetches the file and publishes it.
    await remount(fx.root, "16m");
    const healed = await h.engine.fullSync();
    expect(healed.failed).toEqual([]);
    expect(healed.published).toContain("prod-apt");
    expect(await readFile(path.join(fx.root, PACKAGES), "utf8")).toContain("Package: bigpkg");
    expect(await sha256File(path.join(fx.root, "apt/pool/bigpkg/bigpkg_1.0_all.deb"))).toBe(
      createHash("sha256").update(big.content).digest("hex"),
    );
    await expectNothingHalfWritten();
    const v = await verify();
    expect(v.problems).toEqual([]);
    expect(v.ok).toBe(true);
  });

  it("a generation whose metadata does not fit is not switched in, and the next sync recovers", async () => {
    await h.engine.fullSync();
    const inRelease = await readFile(path.join(fx.root, IN_RELEASE));
    const release = await readFile(path.join(fx.root, "apt/dists/bookworm/Release"));
    const { problem, filler } = await publishIntoFullDisk();
    expect(problem).toMatch(/ENOSPC/);
    expect(logs.join("")).toMatch(
      /"repo":"prod-apt".*publish failed; the previous generation stays served.*ENOSPC/,
    );

    // The previous generation is untouched and still consistent.
    expect(await readFile(path.join(fx.root, IN_RELEASE))).toEqual(inRelease);
    expect(await readFile(path.join(fx.root, "apt/dists/bookworm/Release"))).toEqual(release);
    expect(await readFile(path.join(fx.root, PACKAGES), "utf8")).not.toContain("newpkg");
    // A repo whose publish fails no longer stops the pass, so its cleanup may already have
    // removed the filler (a file nothing names); either way the space comes back here.
    await rm(filler, { force: true });
    await expectNoStrayFinalFiles();
    // The one thing verify sees: the new package file, whole and with its hash, that no index
    // names yet (the publish that would have named it is what failed).
    expect((await verify()).problems).toEqual([
      expect.objectContaining({
        path: "apt/pool/newpkg/newpkg_0.1_all.deb",
        problem: expect.stringMatching(/unexpected file/),
      }),
    ]);
    expect(await sha256File(path.join(fx.root, "apt/pool/newpkg/newpkg_0.1_all.deb"))).toBe(
      createHash("sha256").update(sampleDeb("newpkg", "0.1").content).digest("hex"),
    );

    // Space returns (the filler is gone): the next full sync publishes the new generation.
    const healed = await h.engine.fullSync();
    expect(healed.failed).toEqual([]);
    expect(healed.published).toContain("prod-apt");
    expect(await readFile(path.join(fx.root, PACKAGES), "utf8")).toContain("Package: newpkg");
    expect(await readFile(path.join(fx.root, IN_RELEASE))).not.toEqual(inRelease);
    await expectNothingHalfWritten();
    const v = await verify();
    expect(v.problems).toEqual([]);
    expect(v.ok).toBe(true);
  });

  // A write that fails (ENOSPC) must not leave its partial temp file holding the space.
  it("a failed metadata write leaves no temp file behind", async () => {
    const { problem } = await publishIntoFullDisk();
    expect(problem).toMatch(/ENOSPC/);
    expect(await tempFiles()).toEqual([]);
  });

  // Node's bare "ENOSPC: no space left on device, write" names no file: the agent's must.
  it("the ENOSPC error names the file being written", async () => {
    const { problem } = await publishIntoFullDisk();
    expect(problem).toMatch(/ENOSPC/);
    expect(problem).toMatch(/Packages|Release|by-hash|\.packrat-tmp/);
  });
});
