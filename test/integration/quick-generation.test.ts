/**
 * Quick generations (issue 9): an incremental pass publishes a large apt index without its
 * Packages.xz and with a Packages.gz made of reused gzip members; the real apt-get must read
 * it; settle() (and the daemon, after a quiet moment) then publishes the complete generation.
 */
import { readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { describeError } from "../../src/errors.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { QUICK_XZ_MAX_BYTES } from "../../src/layout/apt.js";
import { layoutFor } from "../../src/layout/index.js";
import type { Signer } from "../../src/signing/signer.js";
import { MirrorDaemon } from "../../src/sync/daemon.js";
import type { SyncReport } from "../../src/sync/engine.js";
import { runAptGet } from "../support/apt-client.js";
import { buildDeb, controlText } from "../support/deb-builder.js";
import {
  TAG,
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { startStaticServer, type StaticServer } from "../support/static-server.js";
import { makeTestSigner } from "../support/test-signer.js";

const DIST = "apt/dists/bookworm";
const REPO = "prod-apt";

let fx: MirrorFixture;
let h: EngineHarness;
let server: StaticServer;
let keyring: string;
let signer: Signer;

const release = () => readFile(path.join(fx.root, DIST, "Release"), "utf8");

/**
 * A package with a Description of 0.6 times the quick xz limit: two make the Packages index
 * larger than that limit on their own (a control file may be 1 MiB at most).
 */
function addBigDeb(name: string): void {
  const line = ` ${"documentation ".repeat(6)}\n`;
  const description = `a package with a long description\n${line.repeat(Math.ceil((QUICK_XZ_MAX_BYTES * 0.6) / line.length))}`;
  const content = buildDeb({
    control: controlText({
      Package: name,
      Version: "1.0",
      Architecture: "all",
      Maintainer: "Packrat Test <test@packrat.invalid>",
      Description: description.trimEnd(),
    }),
  });
  fx.master.addPackageFile({
    package: name,
    distroVersion: "bookworm",
    version: "1.0",
    type: "deb",
    arch: "all",
    filename: `${name}_1.0_all.deb`,
    content,
    tags: [TAG],
  });
}

const apt = (packages: string[]) =>
  runAptGet({
    repoUrl: `${server.url}/apt`,
    suite: "bookworm",
    components: ["main"],
    keyringPath: keyring,
    archs: ["amd64"],
    packages,
  });

beforeAll(async () => {
  // Enough packages for several gzip members (a chunk ends on average every 64 stanzas).
  fx = await startMirrorFixture({
    debs: Array.from({ length: 300 }, (_, i): [string, string] => [`p${i}`, "1.0"]),
  });
  addBigDeb("bigdoc");
  addBigDeb("moredoc");
  ({ signer } = await makeTestSigner());
  keyring = path.join(fx.dir, "key.gpg");
  await writeFile(keyring, signer.publicKeyBinary());
  h = makeEngine(fx, { signer });
  const first = await h.engine.fullSync();
  expect(first.failed).toEqual([]);
  server = await startStaticServer(fx.root);
});

afterAll(async () => {
  await server?.close();
  await h?.close();
  await fx?.close();
});

describe("quick generations of a large apt index", () => {
  it("a full sync publishes Packages.xz", async () => {
    const packages = await readFile(path.join(fx.root, DIST, "main/binary-amd64/Packages"));
    expect(packages.length).toBeGreaterThan(QUICK_XZ_MAX_BYTES);
    expect(await release()).toMatch(/ main\/binary-amd64\/Packages\.xz\n/);
  });

  it("an incremental pass leaves Packages.xz out, and apt-get reads the multi-member Packages.gz", async () => {
    fx.addDeb("newpkg", "1.0");
    const report = await h.engine.incrementalSync(REPO, ["newpkg"]);
    expect(report.failed).toEqual([]);
    expect(report.published).toEqual([REPO]);
    expect(report.deferred).toEqual([REPO]);
    const text = await release();
    expect(text).not.toMatch(/Packages\.xz/);
    expect(text).toMatch(/ main\/binary-amd64\/Packages\.gz\n/);

    // More than one gzip member: the unchanged chunks were reused, not recompressed whole.
    const gz = await readFile(path.join(fx.root, DIST, "main/binary-amd64/Packages.gz"));
    let members = 0;
    for (let i = 0; i + 2 < gz.length; i++)
      if (gz[i] === 0x1f && gz[i + 1] === 0x8b && gz[i + 2] === 8) members++;
    expect(members).toBeGreaterThan(1);

    const r = await apt(["newpkg", "bigdoc"]);
    expect(r.downloadedFiles).toEqual(["bigdoc_1.0_all.deb", "newpkg_1.0_all.deb"]);
    expect(r.fetchedUrls.some((u) => u.includes("/by-hash/SHA256/"))).toBe(true);
  });

  it("settle() publishes the complete generation from the state DB alone", async () => {
    const requests = fx.master.requests.length;
    const report = await h.engine.settle(REPO);
    expect(report.published).toEqual([REPO]);
    expect(report.deferred).toEqual([]);
    expect(fx.master.requests.length).toBe(requests);
    expect(await release()).toMatch(/ main\/binary-amd64\/Packages\.xz\n/);
    await apt(["newpkg"]);
    // Nothing left to do: a second settle or a full sync publishes nothing.
    expect((await h.engine.settle(REPO)).published).toEqual([]);
    expect((await h.engine.fullSync()).published).toEqual([]);
  });

  it("a full sync completes a quick generation too", async () => {
    fx.addDeb("another", "1.0");
    expect((await h.engine.incrementalSync(REPO, ["another"])).deferred).toEqual([REPO]);
    const full = await h.engine.fullSync();
    expect(full.published).toContain(REPO);
    expect(full.deferred).toEqual([]);
    expect(await release()).toMatch(/Packages\.xz/);
  });

  it("warm() renders the repo to fill the caches and publishes nothing", async () => {
    const renders: boolean[] = [];
    const spy = makeEngine(fx, {
      signer,
      deps: {
        layoutFor: (type) => {
          const layout = layoutFor(type);
          if (!layout) return layout;
          return {
            ...layout,
            render: (input) => {
              renders.push(input.quick === true);
              return layout.render(input);
            },
          };
        },
      },
    });
    try {
      const before = await stat(path.join(fx.root, DIST, "InRelease"));
      const generations = spy.store.latestGeneration(REPO)?.generation;
      await spy.engine.warm(REPO);
      expect(renders).toEqual([true]);
      expect(spy.store.latestGeneration(REPO)?.generation).toBe(generations);
      expect((await stat(path.join(fx.root, DIST, "InRelease"))).mtimeMs).toBe(before.mtimeMs);
    } finally {
      await spy.close();
    }
  });

  it("the daemon settles a repo once it has been quiet", async () => {
    const reports: SyncReport[] = [];
    /** Passes that failed: named in the assertion messages below. */
    const errors: string[] = [];
    // The trigger is handed to the daemon's poll by the test: this test is about settling,
    // and a poll of the fake master can miss a change made in the moment no poll waits
    // (packrat's poll has no cursor; two loaded CI runs saw no trigger at all). The poll's own
    // behaviour is tested against the fake and the real master elsewhere.
    // One waiting poll per repo (the sample mirror has several): the change is announced to
    // the poll of the repo it is in. (Waiting for "some poll open" let the change fall
    // between two polls of prod-apt while another repo's poll was the open one.)
    const waiting = new Map<string, (names: string[]) => void>();
    const client = new Proxy(h.client, {
      get(target, key) {
        if (key === "poll")
          return (uri: string, _timeout: number, signal?: AbortSignal) =>
            new Promise<string[]>((resolve, reject) => {
              waiting.set(uri, resolve);
              signal?.addEventListener("abort", () => reject(signal.reason as Error));
            });
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === "function" ? (value as () => unknown).bind(target) : value;
      },
    });
    const repoUri = h.store.listRepos().find((r) => r.repo.name === REPO)?.repo.uri ?? "";
    const daemon = new MirrorDaemon({
      engine: h.engine,
      client,
      store: h.store,
      log: silentLogger(),
      settings: {
        fullSyncInterval: 3600,
        pollTimeout: 30,
        triggerDebounceMs: 10,
        settleDelayMs: 200,
      },
      onSync: (report, err) => {
        if (report) reports.push(report);
        else errors.push(describeError(err));
      },
    });
    daemon.start();
    try {
      // Generous bounds: on a loaded 2-core machine the first full sync and warm-up are slow.
      // The change is made once the daemon's first full sync is done and a poll waits, and
      // announced through that poll.
      const until = (ms: number) => Date.now() + ms;
      for (const end = until(120_000); Date.now() < end;) {
        if (reports.some((r) => r.kind === "full") && waiting.has(repoUri)) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(reports.some((r) => r.kind === "full")).toBe(true);
      fx.addDeb("daemonpkg", "1.0");
      expect(waiting.has(repoUri)).toBe(true);
      waiting.get(repoUri)!(["daemonpkg"]);
      const settled = () =>
        reports.findIndex(
          (r) => r.kind === "incremental" && r.deferred.length === 0 && r.published.length > 0,
        );
      for (const end = until(60_000); settled() < 0 && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 10));
      // First a quick generation (deferred), then the complete one; a loaded machine may add
      // a pass in between (a download finished in the background joins a later one).
      const incremental = reports.filter((r) => r.kind === "incremental");
      const quick = incremental.findIndex(
        (r) => r.published.includes(REPO) && r.deferred.includes(REPO),
      );
      const complete = incremental.findIndex(
        (r) => r.published.includes(REPO) && r.deferred.length === 0,
      );
      expect(
        quick,
        JSON.stringify({
          passes: incremental.map((r) => [r.published, r.deferred, r.failed, r.pending]),
          errors,
        }),
      ).toBeGreaterThanOrEqual(0);
      expect(complete).toBeGreaterThan(quick);
      expect(await release()).toMatch(/Packages\.xz/);
      expect(
        await readFile(path.join(fx.root, DIST, "main/binary-amd64/Packages"), "utf8"),
      ).toMatch(/^Package: daemonpkg$/m);
    } finally {
      await daemon.stop(5000);
    }
  }, 240_000);
});
