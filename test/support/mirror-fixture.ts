/**
 * A fake master with a two-repo mirror (apt + json) and an engine wired to it over a temp
 * root_dir and state DB: the common setup of sync tests, benchmarks and the demo.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLayouts } from "../../src/layout/index.js";
import { type LayoutOptions } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { silentLogger, type Logger } from "../../src/log.js";
import type { Signer } from "../../src/signing/signer.js";
import { openStateStore } from "../../src/state/db.js";
import type { StateStore } from "../../src/state/state-store.js";
import { SyncEngine, type EngineDeps, type EngineSettings } from "../../src/sync/engine.js";
import { createMasterClient } from "../../src/sync/master-client.js";
import type { MasterClient } from "../../src/sync/master-types.js";
import { buildDeb, controlText } from "./deb-builder.js";
import { startFakeMaster, type FakeMaster, type FakeMasterOptions } from "./fake-master.js";

export const MIRROR = "mirror1";
export const TAG = "prod";

export function sampleDeb(
  name: string,
  version: string,
  arch = "all",
): { filename: string; content: Uint8Array } {
  // Debian filenames leave the epoch out (dpkg-name does); the master's names allow no ":".
  const fileVersion = version.replace(/^\d+:/, "");
  const content = buildDeb({
    control: controlText({
      Package: name,
      Version: version,
      Architecture: arch,
      Maintainer: "Packrat Test <test@packrat.invalid>",
      "Installed-Size": "1",
      Section: "misc",
      Priority: "optional",
      Description: `${name} sample package\n a package made for packrat-agent tests.`,
    }),
    files: { [`usr/share/doc/${name}/README`]: `${name} ${version}\n` },
  });
  return { filename: `${name}_${fileVersion}_${arch}.deb`, content };
}

/**
 * The sample mirror on a fake master: repos prod-apt (bookworm) and prod-json, and with
 * `yum` prod-yum (el9), all tagged TAG, under one mirror (MIRROR unless named).
 */
export function addSampleMirror(
  master: FakeMaster,
  opts: { yum?: boolean; name?: string; description: string },
): void {
  master.addDistroVersion({
    name: "bookworm",
    distro: "debian",
    version: "bookworm",
    fileType: "deb",
  });
  master.addDistroVersion({ name: "none", distro: "none", version: null, fileType: "json" });
  master.addRepo({
    name: "prod-apt",
    filesystemDir: "apt",
    managerType: "apt",
    distroVersions: ["bookworm"],
    tag: TAG,
    description: "apt packages",
  });
  master.addRepo({
    name: "prod-json",
    filesystemDir: "json",
    managerType: "json",
    distroVersions: ["none"],
    tag: TAG,
    description: "json files",
  });
  const repos = ["prod-apt", "prod-json"];
  if (opts.yum) {
    master.addDistroVersion({ name: "el9", distro: "rhel", version: "9", fileType: "rpm" });
    master.addRepo({
      name: "prod-yum",
      filesystemDir: "yum",
      managerType: "yum",
      distroVersions: ["el9"],
      tag: TAG,
    });
    repos.push("prod-yum");
  }
  master.addMirror({ name: opts.name ?? MIRROR, repos, description: opts.description });
}

/**
 * A pacman repo prod-arch (distro version arch, directory arch/) on the fixture's master,
 * in the mirror's repo list after `others` (the sample repos by default).
 */
export function addPacmanRepo(
  master: FakeMaster,
  others: readonly string[] = ["prod-apt", "prod-json"],
): void {
  master.addDistroVersion({ name: "arch", distro: "arch", version: null, fileType: "pkg" });
  master.addRepo({
    name: "prod-arch",
    filesystemDir: "arch",
    managerType: "pacman",
    distroVersions: ["arch"],
    tag: TAG,
  });
  master.setRepoList(MIRROR, [...others, "prod-arch"]);
}

export interface MirrorFixture {
  master: FakeMaster;
  root: string;
  stateDb: string;
  dir: string;
  /** Package file ids by filename. */
  ids: Map<string, number>;
  addDeb(name: string, version: string, tags?: string[]): number;
  addJson(name: string, version: string, body: string, tags?: string[]): number;
  close(): Promise<void>;
}

export async function startMirrorFixture(
  opts: { debs?: [string, string][]; json?: [string, string][]; master?: FakeMasterOptions } = {},
): Promise<MirrorFixture> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-mirror-"));
  const master = await startFakeMaster({ minPollTimeout: 1, ...opts.master });
  addSampleMirror(master, { description: "test mirror" });
  const ids = new Map<string, number>();
  const fixture: MirrorFixture = {
    master,
    root: path.join(dir, "root"),
    stateDb: path.join(dir, "state", "state.db"),
    dir,
    ids,
    addDeb(name, version, tags = [TAG]) {
      const deb = sampleDeb(name, version);
      const id = master.addPackageFile({
        package: name,
        distroVersion: "bookworm",
        version,
        type: "deb",
        arch: "all",
        filename: deb.filename,
        content: deb.content,
        tags,
      });
      ids.set(deb.filename, id);
      return id;
    },
    addJson(name, version, body, tags = [TAG]) {
      const filename = `${name}_${version}.tar.gz`;
      const id = master.addPackageFile({
        package: name,
        distroVersion: "none",
        version,
        type: "tar",
        arch: "all",
        filename,
        content: new TextEncoder().encode(body),
        tags,
      });
      ids.set(filename, id);
      return id;
    },
    close: async () => {
      await master.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  for (const [n, v] of opts.debs ?? []) fixture.addDeb(n, v);
  for (const [n, v] of opts.json ?? []) fixture.addJson(n, v, `${n} ${v}\n`);
  return fixture;
}

export interface EngineHarness {
  engine: SyncEngine;
  store: StateStore;
  client: MasterClient;
  close(): Promise<void>;
}

export function makeEngine(
  fixture: MirrorFixture,
  opts: {
    signer?: Signer | null;
    settings?: Partial<EngineSettings>;
    log?: Logger;
    layoutOptions?: Partial<LayoutOptions>;
    deps?: Partial<EngineDeps>;
  } = {},
): EngineHarness {
  const log = opts.log ?? silentLogger();
  const store = openStateStore(fixture.stateDb);
  const client = createMasterClient({
    host: fixture.master.url,
    name: MIRROR,
    psk: null,
    proxy: null,
    requestTimeoutMs: 5000,
    log,
  });
  const layouts = createLayouts();
  const engine = new SyncEngine({
    settings: {
      rootDir: fixture.root,
      keepFileList: [],
      downloadConcurrency: 4,
      deepVerifyEvery: 0,
      maxRemovalRatio: 0.5,
      metadataGraceSeconds: 86400,
      ...opts.settings,
    },
    client,
    store,
    log,
    signer: opts.signer ?? null,
    layoutFor: layouts.layoutFor,
    forgetRepos: layouts.forgetRepos,
    layoutOptions: { ...DEFAULT_LAYOUT_OPTIONS, ...opts.layoutOptions },
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 },
    // Every pass of every in-process engine compares the state model with SQLite.
    checkModel: true,
    ...opts.deps,
  });
  return {
    engine,
    store,
    client,
    close: async () => {
      await client.close();
      store.close();
    },
  };
}
