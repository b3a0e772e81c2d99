/**
 * Builds the agent's parts from validated Settings: logger, state DB, master client, signer,
 * sync engine. Commands and the daemon share this, so `sync` and `run` behave the same way.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { PackratError } from "../errors.js";
import { createLayouts } from "../layout/index.js";
import type { LayoutOptions, RepoLayout } from "../layout/types.js";
import type { Logger } from "../log.js";
import type { Settings } from "../settings.js";
import { loadSigner } from "../signing/openpgp-signer.js";
import { keyExpiryWarning } from "../signing/expiry.js";
import { checkExportedKey, publicKeyFiles } from "../signing/public-key.js";
import type { Signer } from "../signing/signer.js";
import { openStateStore } from "../state/db.js";
import type { StateStore } from "../state/state-store.js";
import { SyncEngine, type EngineDeps, type RootFile, type ServePolicy } from "../sync/engine.js";
import { startBucketEvents, type BucketEvents } from "../sync/bucket-events.js";
import { bucketBackend } from "../sync/bucket-source.js";
import { directoryBackend } from "../sync/directory-source.js";
import { ListedSource } from "../sync/listed-source.js";
import { createMasterClient } from "../sync/master-client.js";
import type { MasterClient } from "../sync/master-types.js";
import { Replica } from "../publish/replica.js";
import { S3Store } from "../publish/s3-store.js";
import { acquireStateLock, type StateLock } from "./lock.js";

export interface AgentContext {
  settings: Settings;
  log: Logger;
  store: StateStore;
  client: MasterClient;
  signer: Signer | null;
  engine: SyncEngine;
  replicas: Replica[];
  lock: StateLock;
  close(): Promise<void>;
}

export function layoutOptionsFrom(settings: Settings): LayoutOptions {
  return { ...settings.layouts, mirrorDescription: settings.mirror.description };
}

/**
 * Repos published in place (no master; `[repo NAME] publish = in-place`): from a directory
 * (`bucket` false), or from a bucket, in the [s3] bucket (`bucket` true).
 */
export function inPlaceReposOf(settings: Settings, bucket = false): ReadonlySet<string> {
  if (settings.packrat !== null) return new Set();
  return new Set(
    Object.entries(settings.repos)
      .filter(([, r]) => r.publish === "in-place" && r.source?.startsWith("s3://") === bucket)
      .map(([name]) => name),
  );
}

/**
 * Where an in-place repo is served, relative to root_dir (and to the [s3] prefix): a
 * directory's path under root_dir; a bucket source's prefix under the [s3] prefix (the config
 * checked that it is one).
 */
export function inPlaceDirOf(settings: Settings, source: string): string {
  if (!source.startsWith("s3://")) return path.relative(settings.mirror.rootDir, source);
  const key = source.slice("s3://".length).split("/").slice(1).join("/");
  const prefix = settings.s3?.prefix ?? "";
  return key.slice(prefix.length).replace(/\/+$/, "");
}

/** A repo's serve policy: its [repo NAME] section over the [mirror] keys. */
export function servePolicyOf(settings: Settings, repo: string): ServePolicy {
  const own = settings.repos[repo];
  return {
    publishFailed: own?.publishFailed ?? settings.mirror.publishFailed,
    publishDeprecated: own?.publishDeprecated ?? settings.mirror.publishDeprecated,
  };
}

export async function loadConfiguredSigner(
  settings: Settings,
  log: Logger,
): Promise<Signer | null> {
  const m = settings.mirror;
  if (!m.gpgKeyFile) {
    if (m.gpgSignKey) {
      throw new PackratError(
        "PACKRAT_SIGNING_KEY",
        `${settings.source}: gpg_sign_key is set but gpg_key_file is not`,
        {
          hint: "export the key with `gpg --export-secret-subkeys --armor KEYID > FILE` and set gpg_key_file",
        },
      );
    }
    return null;
  }
  const signer = await loadSigner({
    keyFile: m.gpgKeyFile,
    signKeyId: m.gpgSignKey,
    passphraseFile: m.gpgPassphraseFile,
  });
  const warning = keyExpiryWarning(signer, new Date(), m.keyExpiryWarnDays);
  if (warning) log.warn(warning);
  return signer;
}

/** The exported public key files at root_dir, after checking what is already there. */
async function rootFilesFor(
  settings: Settings,
  signer: Signer | null,
  log: Logger,
): Promise<RootFile[]> {
  if (!signer) return [];
  const files = publicKeyFiles(signer, settings.mirror.publicKeyName);
  for (const f of files) {
    try {
      const existing = await fs.readFile(path.join(settings.mirror.rootDir, f.path));
      const problem = await checkExportedKey(existing, signer);
      if (problem)
        log.warn(`${f.path}: ${problem}; replacing it with the signing key's public key`);
    } catch {
      // not exported yet
    }
  }
  return files.map((f) => ({
    path: f.path,
    content: typeof f.content === "string" ? new TextEncoder().encode(f.content) : f.content,
  }));
}

export interface ContextOptions {
  /** Hooks for the engine (progress bars, test sleeps). */
  engine?: Partial<Pick<EngineDeps, "progress" | "sleep" | "retry" | "now">>;
}

export interface EngineParts {
  client: MasterClient;
  signer: Signer | null;
  engine: SyncEngine;
  /** The bucket of [s3], when configured. */
  replicas: Replica[];
}

/** Close what buildEngineParts opened (before parts are replaced, and at exit). */
export async function closeEngineParts(parts: EngineParts): Promise<void> {
  await parts.client.close();
  for (const r of parts.replicas) r.close();
}

/**
 * The object store of [s3], or null without that section; with `at`, the same connection to
 * another bucket and prefix (an s3:// source, read only).
 */
export function s3StoreFrom(
  settings: Settings,
  at?: { bucket: string; prefix: string },
): S3Store | null {
  const s3 = settings.s3;
  if (!s3) return null;
  return new S3Store({
    bucket: at?.bucket ?? s3.bucket,
    prefix: at?.prefix ?? s3.prefix,
    endpoint: s3.endpoint,
    region: s3.region,
    pathStyle: s3.pathStyle,
    credentials:
      s3.accessKeyId !== null && s3.secretAccessKey !== null
        ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }
        : null,
    acl: s3.acl === "private" ? null : s3.acl,
  });
}

/** The replicas of the settings: one for [s3], none without it. */
export function replicasFrom(settings: Settings, store: StateStore, log: Logger): Replica[] {
  const bucket = s3StoreFrom(settings);
  if (!bucket) return [];
  return [
    new Replica({
      store: bucket,
      state: store,
      root: settings.mirror.rootDir,
      log: log.child({ bucket: bucket.description }),
      now: Date.now,
      graceMs: settings.mirror.metadataGraceSeconds * 1000,
      concurrency: settings.s3?.uploadConcurrency ?? 8,
      keep: settings.mirror.keepFileList,
      sourcePrefixes: [...inPlaceReposOf(settings, true)].map(
        (name) => `${inPlaceDirOf(settings, settings.repos[name]!.source!)}/`,
      ),
    }),
  ];
}

/**
 * Where the repos come from: the [packrat] master, or (without one) the directories the
 * [repo NAME] sections name. Both are the same port to the engine.
 */
export function sourceFrom(
  settings: Settings,
  log: Logger,
  layoutFor: (managerType: string) => RepoLayout | undefined,
  bucketEvents: BucketEvents | null = null,
): MasterClient {
  const master = settings.packrat;
  if (master) {
    return createMasterClient({
      host: master.host,
      name: master.name,
      username: master.username,
      psk: master.psk,
      proxy: master.proxy,
      requestTimeoutMs: settings.mirror.requestTimeout * 1000,
      log,
    });
  }
  const sourceLog = log.child({ source: "repos" });
  const repos = Object.entries(settings.repos).flatMap(([name, r]) => {
    if (r.format === undefined || r.source === undefined) return [];
    const inPlace = r.publish === "in-place";
    const repo = {
      name,
      format: r.format,
      version: r.version,
      distro: r.distro,
      inPlace,
      // In place: served where it lies, at its path under root_dir (the config checked it is).
      publishDir: inPlace ? inPlaceDirOf(settings, r.source) : undefined,
    };
    if (!r.source.startsWith("s3://")) {
      return [{ repo, backend: directoryBackend(r.source, { log: sourceLog, repoName: name }) }];
    }
    const [bucket = "", ...rest] = r.source.slice("s3://".length).split("/");
    const store = s3StoreFrom(settings, { bucket, prefix: rest.join("/") });
    if (!store) throw new Error(`[repo ${name}]: an s3:// source needs the [s3] section`);
    return [{ repo, backend: bucketBackend(store, { events: bucketEvents }) }];
  });
  return new ListedSource({
    repos,
    description: settings.mirror.description,
    layoutFor,
    layoutOptions: layoutOptionsFrom(settings),
    log: sourceLog,
    onClose: () => bucketEvents?.close(),
  });
}

/** The listener of source_events_listen, when some repo reads a bucket; else null. */
async function bucketEventsFrom(settings: Settings, log: Logger): Promise<BucketEvents | null> {
  const listen = settings.mirror.sourceEventsListen;
  const fromBucket = Object.values(settings.repos).some((r) => r.source?.startsWith("s3://"));
  if (listen === null || settings.packrat !== null || !fromBucket) return null;
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  const events = await startBucketEvents({
    host: m?.[1] ?? "127.0.0.1",
    port: Number(m?.[2] ?? 0),
    log: log.child({ source: "bucket events" }),
  });
  log.info({ url: events.url }, "listening for bucket notifications");
  return events;
}

/** Everything that depends on the config but not on the state DB: rebuilt on SIGHUP. */
export async function buildEngineParts(
  settings: Settings,
  log: Logger,
  store: StateStore,
  options: ContextOptions = {},
): Promise<EngineParts> {
  const signer = await loadConfiguredSigner(settings, log);
  // Layouts of this engine's own: their render caches live as long as it does.
  const layouts = createLayouts();
  const client = sourceFrom(
    settings,
    log,
    layouts.layoutFor,
    await bucketEventsFrom(settings, log),
  );
  const replicas = replicasFrom(settings, store, log);
  const engine = new SyncEngine({
    settings: settings.mirror,
    client,
    store,
    log,
    // A debugging and test aid (issue 25): fail a pass whose in-memory state model drifted from
    // SQLite. Every CLI run of the test suite sets it.
    checkModel: process.env.PACKRAT_CHECK_MODEL === "1",
    signer,
    layoutFor: layouts.layoutFor,
    forgetRepos: layouts.forgetRepos,
    servePolicy: (repo) => servePolicyOf(settings, repo),
    inPlaceRepos: inPlaceReposOf(settings),
    bucketInPlaceRepos: inPlaceReposOf(settings, true),
    layoutOptions: layoutOptionsFrom(settings),
    rootFiles: await rootFilesFor(settings, signer, log),
    replicas,
    ...options.engine,
  });
  return { client, signer, engine, replicas };
}

export async function createContext(
  settings: Settings,
  log: Logger,
  options: ContextOptions = {},
): Promise<AgentContext> {
  await fs.mkdir(path.dirname(settings.mirror.stateDb), { recursive: true });
  const lock = acquireStateLock(settings.mirror.stateDb);
  let store: StateStore | null = null;
  try {
    store = openStateStore(settings.mirror.stateDb);
    const parts = await buildEngineParts(settings, log, store, options);
    const opened = store;
    const ctx: AgentContext = {
      settings,
      log,
      store: opened,
      ...parts,
      lock,
      close: async () => {
        await closeEngineParts(ctx);
        opened.close();
        // ctx.lock, not `lock`: `run` takes a new one when the state directory is recreated.
        ctx.lock.release();
      },
    };
    return ctx;
  } catch (err) {
    store?.close();
    lock.release();
    throw err;
  }
}
