import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  appendFile,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { layoutFor } from "../../src/layout/index.js";
import { sha256File, walkTree } from "../../src/sync/disk.js";
import {
  makeEngine,
  sampleDeb,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { makeTestSigner } from "../support/test-signer.js";
import { gpgv } from "../support/gpg.js";

describe("sync engine against the fake master", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;

  beforeEach(async () => {
    fx = await startMirrorFixture({
      debs: [
        ["hello", "1.0-1"],
        ["world", "2:0.9-3"],
        ["aaa", "1.0"],
      ],
      json: [["tool", "1.2"]],
    });
    h = makeEngine(fx);
  });
  afterEach(async () => {
    await h.close();
    await fx.close();
  });

  const read = (rel: string) => readFile(path.join(fx.root, rel), "utf8");

  it("puts every file and manifest in place on the first sync, and heartbeats", async () => {
    const report = await h.engine.fullSync();
    expect(report.downloaded).toBe(4);
    expect(report.failed).toEqual([]);
    expect(report.published.sort()).toEqual(["prod-apt", "prod-json"]);
    for (const f of [
      "apt/pool/hello/hello_1.0-1_all.deb",
      "apt/pool/world/world_0.9-3_all.deb",
      "json/tool/tool_1.2.tar.gz",
    ]) {
      expect(existsSync(path.join(fx.root, f)), f).toBe(true);
    }
    const packages = await read("apt/dists/bookworm/main/binary-amd64/Packages");
    expect(packages).toContain("Package: hello\n");
    expect(packages).toContain("Filename: pool/hello/hello_1.0-1_all.deb");
    const manifest = JSON.parse(await read("json/_repo_main/MANIFEST_all.json")) as Record<
      string,
      { path: string }[]
    >;
    expect(manifest.tool?.[0]?.path).toBe("tool/tool_1.2.tar.gz");
    expect(fx.master.heartbeats).toHaveLength(1);
    expect((await walkTree(fx.root)).some((e) => e.rel.startsWith(".packrat-tmp/"))).toBe(false);
  });

  it("writes an index once and links its by-hash name; a later generation leaves the old copy whole", async () => {
    await h.engine.fullSync();
    const dir = "apt/dists/bookworm/main/binary-amd64";
    const first = await read(`${dir}/Packages`);
    const sha = createHash("sha256").update(first).digest("hex");
    const byHash = `${dir}/by-hash/SHA256/${sha}`;
    const [plain, copy] = await Promise.all([
      stat(path.join(fx.root, dir, "Packages")),
      stat(path.join(fx.root, byHash)),
    ]);
    // One write: the two names share an inode (this would fail with two writes).
    expect(copy.ino).toBe(plain.ino);
    expect(plain.nlink).toBe(2);
    fx.addDeb("newpkg", "1.0");
    await h.engine.fullSync();
    const second = await read(`${dir}/Packages`);
    expect(second).toContain("Package: newpkg\n");
    // Packages was replaced by a rename, not written through: the old by-hash copy a client
    // may still fetch keeps the old bytes.
    expect(await read(byHash)).toBe(first);
    expect((await stat(path.join(fx.root, byHash))).nlink).toBe(1);
  });

  it("parses again what an older parser cached once the layout's metaVersion is raised", async () => {
    // An older agent's parser refused hello and cached that (the cache is by sha256, for good).
    const hello = sampleDeb("hello", "1.0-1");
    const helloSha = createHash("sha256").update(hello.content).digest("hex");
    h.store.putPackageMeta(helloSha, "apt", null, "an older parser refused it");
    await h.engine.fullSync();
    const packages = () => read("apt/dists/bookworm/main/binary-amd64/Packages");
    expect(await packages()).not.toContain("Package: hello\n");
    // The same parser version: the cached failure stands.
    await h.engine.fullSync();
    expect(await packages()).not.toContain("Package: hello\n");
    // A new parser version: cached results of the old one are not used, the file is parsed again.
    const bumped = makeEngine(fx, {
      deps: {
        layoutFor: (t) => {
          const layout = layoutFor(t);
          return layout?.managerType === "apt" ? { ...layout, metaVersion: 2 } : layout;
        },
      },
    });
    try {
      await bumped.engine.fullSync();
      expect(await packages()).toContain("Package: hello\n");
      expect(bumped.store.getPackageMeta(helloSha, "apt@2")?.error).toBeNull();
    } finally {
      await bumped.close();
    }
  });

  it("a no-change full sync hashes nothing and rewrites nothing", async () => {
    await h.engine.fullSync();
    const release = path.join(fx.root, "apt/dists/bookworm/Release");
    const before = await stat(release);
    const before2 = fx.master.requests.length;
    const again = await h.engine.fullSync();
    // Each repo is one LIST and one multi-object GET of its files (a file changes in place on
    // the master: failed, deprecated, tags); no file is downloaded again.
    const asked = fx.master.requests.slice(before2);
    const gets = asked.filter((r) => r.method === "GET" && r.uri.includes("PackageFile"));
    expect(gets.map((g) => g.headers["multi-object"])).toEqual(["True", "True"]);
    expect(asked.filter((r) => r.uri.startsWith("/files/"))).toEqual([]);
    expect(again.hashed).toBe(0);
    expect(again.downloaded).toBe(0);
    expect(again.published).toEqual([]);
    expect((await stat(release)).mtimeMs).toBe(before.mtimeMs);
  });

  it("repairs a modified, a deleted and an extra file; keep files are untouched", async () => {
    await h.close();
    h = makeEngine(fx, { settings: { keepFileList: ["index.html", "static/"] } });
    await h.engine.fullSync();
    const hello = path.join(fx.root, "apt/pool/hello/hello_1.0-1_all.deb");
    const good = await sha256File(hello);
    await appendFile(hello, "tampered");
    await rm(path.join(fx.root, "json/tool/tool_1.2.tar.gz"));
    await writeFile(path.join(fx.root, "apt/pool/hello/extra.deb"), "not mine");
    await mkdir(path.join(fx.root, "apt/pool/strays/deeper"), { recursive: true });
    await writeFile(path.join(fx.root, "apt/pool/strays/deeper/stray.deb"), "not mine");
    await writeFile(path.join(fx.root, "index.html"), "<h1>mirror</h1>");
    await mkdir(path.join(fx.root, "static"), { recursive: true });
    await writeFile(path.join(fx.root, "static/logo.png"), "png");
    const report = await h.engine.fullSync();
    expect(report.repaired).toBe(1);
    expect(report.downloaded).toBe(2);
    expect(report.removed).toBe(2);
    expect(await sha256File(hello)).toBe(good);
    expect(existsSync(path.join(fx.root, "json/tool/tool_1.2.tar.gz"))).toBe(true);
    expect(existsSync(path.join(fx.root, "apt/pool/hello/extra.deb"))).toBe(false);
    // Directories left empty by the removals go too; ones that still hold files stay.
    expect(existsSync(path.join(fx.root, "apt/pool/strays"))).toBe(false);
    expect(existsSync(path.join(fx.root, "apt/pool/hello"))).toBe(true);
    expect(await read("index.html")).toBe("<h1>mirror</h1>");
    expect(await read("static/logo.png")).toBe("png");
  });

  it("never publishes bytes that do not match sha256, and names the file", async () => {
    await h.engine.fullSync();
    const id = fx.addDeb("broken", "1.0");
    fx.master.faults.set({ kind: "wrong-bytes", uri: fx.master.fileUrl(id) });
    const report = await h.engine.fullSync();
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]?.file).toBe("apt/pool/broken/broken_1.0_all.deb");
    expect(report.failed[0]?.error).toMatch(/SHA-256 is [0-9a-f]{64}, expected/);
    expect(existsSync(path.join(fx.root, "apt/pool/broken/broken_1.0_all.deb"))).toBe(false);
    expect(await read("apt/dists/bookworm/main/binary-amd64/Packages")).not.toContain("broken");
    expect(h.store.listDownloadFailures().map((f) => f.filename)).toEqual(["broken_1.0_all.deb"]);
    fx.master.faults.clear();
    const healed = await h.engine.fullSync();
    expect(healed.failed).toEqual([]);
    expect(await read("apt/dists/bookworm/main/binary-amd64/Packages")).toContain(
      "Package: broken",
    );
    expect(h.store.listDownloadFailures()).toEqual([]);
  });

  it("keeps the tree as it is while the master is down, and recovers", async () => {
    await h.engine.fullSync();
    const before = (await walkTree(fx.root)).map((e) => e.rel).sort();
    fx.master.faults.set({ kind: "status", status: 502 });
    await expect(h.engine.fullSync()).rejects.toThrow(/502/);
    expect((await walkTree(fx.root)).map((e) => e.rel).sort()).toEqual(before);
    expect(h.store.lastSyncRun("full")?.result).toBe("failed");
    fx.master.faults.clear();
    expect((await h.engine.fullSync()).failed).toEqual([]);
  });

  it("refuses to empty a repo when the master reports no files, unless forced", async () => {
    await h.engine.fullSync();
    for (const id of fx.ids.values()) fx.master.untag(id, "prod");
    const err = await h.engine.fullSync().catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_SAFETY_VALVE")).toBe(true);
    expect(String((err as Error).message)).toMatch(/no files for repo prod-(apt|json)/);
    expect(existsSync(path.join(fx.root, "apt/pool/hello/hello_1.0-1_all.deb"))).toBe(true);
    const forced = await h.engine.fullSync({ force: true });
    expect(forced.published.sort()).toEqual(["prod-apt", "prod-json"]);
    expect(await read("apt/dists/bookworm/main/binary-amd64/Packages")).toBe("");
  });

  it("applies an incremental change and keeps a dropped package for the grace period", async () => {
    await h.engine.fullSync();
    const id = fx.addDeb("newpkg", "0.1");
    const inc = await h.engine.incrementalSync("prod-apt", ["newpkg"]);
    expect(inc.downloaded).toBe(1);
    expect(await read("apt/dists/bookworm/main/binary-amd64/Packages")).toContain(
      "Package: newpkg",
    );
    fx.master.untag(id, "prod");
    await h.engine.incrementalSync("prod-apt", ["newpkg"]);
    expect(await read("apt/dists/bookworm/main/binary-amd64/Packages")).not.toContain("newpkg");
    await h.engine.fullSync();
    // Dropped from the index, but still on disk while the grace period runs.
    expect(existsSync(path.join(fx.root, "apt/pool/newpkg/newpkg_0.1_all.deb"))).toBe(true);
    await h.close();
    h = makeEngine(fx, { settings: { metadataGraceSeconds: 0 } });
    await h.engine.fullSync();
    expect(existsSync(path.join(fx.root, "apt/pool/newpkg/newpkg_0.1_all.deb"))).toBe(false);
  });

  it("never writes through a symlinked directory planted under root_dir", async () => {
    const outside = path.join(fx.dir, "outside");
    await mkdir(outside, { recursive: true });
    await mkdir(path.join(fx.root, "apt"), { recursive: true });
    await symlink(outside, path.join(fx.root, "apt/pool"));
    const report = await h.engine.fullSync();
    expect(report.failed.length).toBe(3);
    expect(report.failed[0]?.error).toMatch(/apt\/pool is a symlink; refusing to write/);
    expect(await readdir(outside)).toEqual([]);
    // The json repo, which has no such link, is published as usual.
    expect(existsSync(path.join(fx.root, "json/tool/tool_1.2.tar.gz"))).toBe(true);
  });

  it("signs apt and json metadata that gpgv accepts", async () => {
    await h.close();
    const key = await makeTestSigner();
    h = makeEngine(fx, { signer: key.signer });
    await h.engine.fullSync();
    const inRelease = await readFile(path.join(fx.root, "apt/dists/bookworm/InRelease"));
    expect((await gpgv(key.signer.publicKeyBinary(), inRelease)).ok).toBe(true);
    const manifest = await readFile(path.join(fx.root, "json/_repo_main/MANIFEST_all.json"));
    const sig = await readFile(path.join(fx.root, "json/_repo_main/MANIFEST_all.json.gpg"));
    expect((await gpgv(key.signer.publicKeyBinary(), sig, manifest)).ok).toBe(true);
  });
});

describe("sync engine with a pacman repo", () => {
  it("signs each package once, caches the signature, and publishes a signed db", async () => {
    const { buildPacmanPackage } = await import("../support/pacman-builder.js");
    const fx = await startMirrorFixture();
    fx.master.addDistroVersion({ name: "arch", distro: "arch", version: null, fileType: "pacman" });
    fx.master.addRepo({
      name: "prod-arch",
      filesystemDir: "arch",
      managerType: "pacman",
      distroVersions: ["arch"],
      tag: "prod",
    });
    fx.master.setRepoList("mirror1", ["prod-apt", "prod-json", "prod-arch"]);
    for (const [name, arch] of [
      ["tool", "x86_64"],
      ["docs", "any"],
    ] as const) {
      const pkg = buildPacmanPackage({
        name,
        version: "1.0-1",
        arch,
        files: { [`usr/share/${name}/x`]: name },
      });
      fx.master.addPackageFile({
        package: name,
        distroVersion: "arch",
        version: "1.0-1",
        type: "pacman",
        arch: arch === "any" ? "all" : arch,
        filename: pkg.filename,
        content: pkg.bytes,
        tags: ["prod"],
      });
    }
    const key = await makeTestSigner();
    const h = makeEngine(fx, { signer: key.signer });
    try {
      await h.engine.fullSync();
      const pkgFile = path.join(fx.root, "arch/x86_64/tool-1.0-1-x86_64.pkg.tar.zst");
      const sig = await readFile(`${pkgFile}.sig`);
      expect((await gpgv(key.signer.publicKeyBinary(), sig, await readFile(pkgFile))).ok).toBe(
        true,
      );
      const db = await readFile(path.join(fx.root, "arch/x86_64/arch.db"));
      expect(
        (
          await gpgv(
            key.signer.publicKeyBinary(),
            await readFile(path.join(fx.root, "arch/x86_64/arch.db.sig")),
            db,
          )
        ).ok,
      ).toBe(true);
      // The any package is in the arch dir too.
      expect(existsSync(path.join(fx.root, "arch/x86_64/docs-1.0-1-any.pkg.tar.zst"))).toBe(true);
      const pkgBytes = await readFile(pkgFile);
      const cached = h.store.getPackageSignature(
        createHash("sha256").update(pkgBytes).digest("hex"),
        "pacman",
        key.signer.fingerprint,
      );
      // The signature made once and kept (package_signatures) is the one published beside it.
      expect(cached && Buffer.from(cached)).toEqual(sig);
    } finally {
      await h.close();
      await fx.close();
    }
  });
});

describe("sync engine with a pacman repo whose signing fails", () => {
  it("fails the repo's publish, keeps the parses, and the next pass publishes", async () => {
    const { buildPacmanPackage } = await import("../support/pacman-builder.js");
    const { PackratError } = await import("../../src/errors.js");
    const { metaCacheKey } = await import("../../src/layout/types.js");
    const fx = await startMirrorFixture();
    fx.master.addDistroVersion({ name: "arch", distro: "arch", version: null, fileType: "pacman" });
    fx.master.addRepo({
      name: "prod-arch",
      filesystemDir: "arch",
      managerType: "pacman",
      distroVersions: ["arch"],
      tag: "prod",
    });
    fx.master.setRepoList("mirror1", ["prod-apt", "prod-json", "prod-arch"]);
    const shas: string[] = [];
    for (const name of ["one", "two"]) {
      const pkg = buildPacmanPackage({ name, version: "1.0-1", arch: "x86_64", files: {} });
      shas.push(createHash("sha256").update(pkg.bytes).digest("hex"));
      fx.master.addPackageFile({
        package: name,
        distroVersion: "arch",
        version: "1.0-1",
        type: "pacman",
        arch: "x86_64",
        filename: pkg.filename,
        content: pkg.bytes,
        tags: ["prod"],
      });
    }
    const key = await makeTestSigner();
    let failing = true;
    // The key's own methods, but package signatures fail while `failing`.
    const signer = new Proxy(key.signer, {
      get(target, prop) {
        if (prop === "signDetachedBinary" && failing)
          return () => Promise.reject(new PackratError("PACKRAT_SIGNING_KEY", "the key is away"));
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as () => unknown).bind(target) : value;
      },
    });
    const h = makeEngine(fx, { signer });
    try {
      const first = await h.engine.fullSync();
      expect(first.published).not.toContain("prod-arch");
      expect(first.failed.map((f) => f.repo)).toContain("prod-arch");
      expect(first.failed.find((f) => f.repo === "prod-arch")?.error).toContain("the key is away");
      expect(existsSync(path.join(fx.root, "arch/x86_64/arch.db"))).toBe(false);
      // A signing failure is not the package's: both parses are cached as good ones.
      const status = h.store.packageMetaStatus(metaCacheKey(layoutFor("pacman")!));
      expect(shas.map((sha) => status.get(sha))).toEqual([true, true]);

      failing = false;
      const second = await h.engine.fullSync();
      expect(second.failed).toEqual([]);
      expect(second.published).toContain("prod-arch");
      for (const name of ["one", "two"]) {
        const pkgFile = path.join(fx.root, `arch/x86_64/${name}-1.0-1-x86_64.pkg.tar.zst`);
        const sig = await readFile(`${pkgFile}.sig`);
        const ok = await gpgv(key.signer.publicKeyBinary(), sig, await readFile(pkgFile));
        expect(ok.ok).toBe(true);
      }
    } finally {
      await h.close();
      await fx.close();
    }
  });
});

describe("a stalled download and its backoff", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;
  let clock: number;

  beforeEach(async () => {
    fx = await startMirrorFixture({ debs: [["hello", "1.0-1"]] });
    clock = Date.now();
    h = makeEngine(fx, {
      settings: { downloadMinRate: 1000, downloadMinRateWindow: 1, downloadDeadlineBase: 1 },
      deps: { now: () => clock },
    });
  });
  afterEach(async () => {
    await h.close();
    await fx.close();
  });

  it("is not tried again before the backoff (1 min, then 2 min), then is, and publishes", async () => {
    const id = fx.addDeb("slow", "1.0");
    const url = fx.master.fileUrl(id);
    const slow = "apt/pool/slow/slow_1.0_all.deb";
    const tries = () => fx.master.requests.filter((r) => r.uri === url).length;
    fx.master.faults.set({ kind: "trickle", uri: url, bytes: 1, everyMs: 200 });

    const first = await h.engine.fullSync();
    expect(first.failed.map((f) => f.file)).toEqual([slow]);
    expect(first.failed[0]!.error).toMatch(/abandoned/);
    expect(first.published).toContain("prod-apt");
    expect(tries()).toBe(1);

    clock += 59_000;
    const waiting = await h.engine.fullSync();
    expect(waiting.failed[0]!.error).toMatch(/^not tried again for \d+ s \(backoff after 1/);
    expect(tries()).toBe(1);

    clock += 2_000; // past 1 min: tried, stalls again; the next wait is 2 min
    await h.engine.fullSync();
    expect(tries()).toBe(2);
    clock += 100_000;
    await h.engine.fullSync();
    expect(tries()).toBe(2);

    fx.master.faults.clear();
    clock += 30_000;
    const healed = await h.engine.fullSync();
    expect(tries()).toBe(3);
    expect(healed.failed).toEqual([]);
    expect(healed.downloaded).toBe(1);
    expect(
      await readFile(path.join(fx.root, "apt/dists/bookworm/main/binary-amd64/Packages"), "utf8"),
    ).toContain("Package: slow");
    expect(h.store.listDownloadFailures()).toEqual([]);
  }, 60_000);
});
