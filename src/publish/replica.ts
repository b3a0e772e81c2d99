/**
 * A replica keeps an object store (a bucket and prefix) holding what root_dir serves, in an
 * order no reader can catch half done. root_dir stays the working tree: every generation is
 * built, checked and switched in on disk first (sync/publish.ts), and then a round here copies
 * it out, reading the state DB's published-file rows:
 *
 * 1. packages and content-addressed metadata (publish order 0), in parallel;
 * 2. then each repo's entry points stage by stage (InRelease after the Packages files it names,
 *    a pacman .sig beside its db), and only when everything of lower order in that repo is up:
 *    a repo with a failed upload keeps serving its previous generation from the bucket;
 * 3. deletions last, and only after a round that left nothing behind: an object nothing names
 *    is marked, and deleted metadata_grace_seconds later (a reader of the bucket's previous
 *    entry points may still fetch what they name), only if this agent put it there, never a
 *    keep_file_list path.
 *
 * What the bucket holds is recorded per object (key, size, SHA-256, ETag), so a round uploads
 * only what changed and a no-change round sends nothing. A reconcile round (each full sync)
 * lists the prefix and forgets records the bucket contradicts (deleted or replaced by someone
 * else), so they are uploaded again. A lock object keeps a second agent off the same prefix.
 */
import { createHash, randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import PQueue from "p-queue";
import { describeError, PackratError } from "../errors.js";
import { isKept } from "../keep-list.js";
import type { Logger } from "../log.js";
import type { PublishedFileRow, ReplicaObjectRow, StateStore } from "../state/state-store.js";
import { fileBody } from "./file-body.js";
import { cacheControlFor, contentTypeFor, directoryAliasOf } from "./object-headers.js";
import type { ObjectStore } from "./object-store.js";

/** The lock object, under the prefix. path-authority reserves the name at root_dir. */
export const LOCK_KEY = ".packrat-agent.lock";
/** kv key of this state DB's agent id (the lock object names it). */
const AGENT_ID_KEY = "replica_agent_id";
/** A failed round is retried after this, doubling per failure in a row, at most 10 minutes. */
const BACKOFF_BASE_MS = 5_000;
const BACKOFF_MAX_MS = 600_000;
/** Unfinished multipart uploads older than this are debris from a crash: reconcile aborts them. */
const STALE_UPLOAD_MS = 3_600_000;

export interface ReplicaDeps {
  store: ObjectStore;
  state: StateStore;
  /** root_dir: where the bytes are read from. */
  root: string;
  log: Logger;
  now: () => number;
  graceMs: number;
  /** Uploads at once. */
  concurrency: number;
  keep: readonly string[];
  /**
   * Key prefixes (relative to the store's prefix, ending in "/") of repos published in place in
   * this bucket: their packages are the producer's source objects, never uploaded (nor deleted:
   * only what this agent put is); a metadata key there that this agent did not put is never
   * overwritten (the upload is refused and the repo stays behind).
   */
  sourcePrefixes?: readonly string[];
}

/** A file the agent writes at root_dir itself (the public key), by path. */
export interface ReplicaRootFile {
  path: string;
  sha256: string;
}

export interface RoundOptions {
  /** List the bucket and repair drift (the full sync does). */
  reconcile: boolean;
  /** Ignore the backoff after failures (a one-shot `sync`). */
  force?: boolean;
  rootFiles?: readonly ReplicaRootFile[];
}

export interface RoundReport {
  target: string;
  /** Not run: a failed round's backoff has not passed. */
  skipped: boolean;
  uploaded: number;
  uploadedBytes: number;
  deleted: number;
  /** Records the bucket contradicted (reconcile), now to be uploaded again. */
  drift: number;
  failed: { key: string; error: string }[];
  /** Repos whose entry points were held back this round (something they name failed). */
  behind: string[];
  /** The round could not run at all (lock, listing, credentials). */
  error: string | null;
  /** When the next round may run (ms), after a failure; null when it may run at once. */
  nextAttemptAt: number | null;
  durationMs: number;
}

export interface ReplicaStatus {
  target: string;
  description: string;
  lastAttemptAt: number | null;
  lastSuccessAt: number | null;
  lastError: string | null;
  failuresInARow: number;
  nextAttemptAt: number | null;
  repos: { repo: string; diskGeneration: number; bucketGeneration: number | null }[];
}

interface Wanted {
  key: string;
  /** The file under root_dir holding the bytes. */
  rel: string;
  sha256: string;
  order: number;
  /** "" for root_dir's own files. */
  repo: string;
}

export interface BucketProblem {
  key: string;
  problem: string;
}

type StoredStatus = Omit<ReplicaStatus, "target" | "description" | "repos">;

/** What a sync pass needs of a replica. */
export interface ReplicaPort {
  round(opts: RoundOptions): Promise<RoundReport>;
}

export class Replica implements ReplicaPort {
  private locked = false;

  constructor(private readonly deps: ReplicaDeps) {}

  get target(): string {
    return this.deps.store.target;
  }

  private get statusKey(): string {
    return `replica_status ${this.target}`;
  }

  private readStatus(): StoredStatus {
    const raw = this.deps.state.getValue(this.statusKey);
    const empty: StoredStatus = {
      lastAttemptAt: null,
      lastSuccessAt: null,
      lastError: null,
      failuresInARow: 0,
      nextAttemptAt: null,
    };
    if (!raw) return empty;
    try {
      return { ...empty, ...(JSON.parse(raw) as Partial<StoredStatus>) };
    } catch {
      return empty;
    }
  }

  status(): ReplicaStatus {
    const { state } = this.deps;
    const bucket = new Map(state.listReplicaRepos(this.target).map((r) => [r.repo, r.generation]));
    const repos = state.listRepos().map((r) => ({
      repo: r.repo.name,
      diskGeneration: state.latestGeneration(r.repo.name)?.generation ?? 0,
      bucketGeneration: bucket.get(r.repo.name) ?? null,
    }));
    return {
      target: this.target,
      description: this.deps.store.description,
      ...this.readStatus(),
      repos,
    };
  }

  /** This state DB's id, made once: the lock object names it, so a restart keeps the lock. */
  private agentId(): string {
    let id = this.deps.state.getValue(AGENT_ID_KEY);
    if (!id) {
      id = randomBytes(16).toString("hex");
      this.deps.state.setValue(AGENT_ID_KEY, id);
    }
    return id;
  }

  /**
   * Take the prefix: create the lock object if there is none (atomically: If-None-Match), or
   * find our own there. Someone else's is refused with what it says about its holder.
   */
  private async lock(): Promise<void> {
    if (this.locked) return;
    const id = this.agentId();
    const body = JSON.stringify({
      agent: id,
      host: hostname(),
      root: this.deps.root,
      since: new Date(this.deps.now()).toISOString(),
    });
    const { store } = this.deps;
    if (!(await store.createIfAbsent(LOCK_KEY, new TextEncoder().encode(body)))) {
      const held = await store.get(LOCK_KEY);
      let holder: { agent?: string; host?: string; root?: string; since?: string } = {};
      try {
        holder = JSON.parse(new TextDecoder().decode(held ?? new Uint8Array())) as typeof holder;
      } catch {
        // not ours, not JSON: refused below
      }
      if (holder.agent !== id) {
        throw new PackratError(
          "PACKRAT_BUCKET_LOCKED",
          `${store.description}: another agent publishes here (lock object ${LOCK_KEY}: host ${holder.host ?? "?"}, root_dir ${holder.root ?? "?"}, since ${holder.since ?? "?"})`,
          {
            hint: `give each agent its own [s3] prefix; if that agent is gone for good, delete ${store.description}${LOCK_KEY}`,
          },
        );
      }
    }
    this.locked = true;
  }

  /** Everything the bucket should serve now, by key. */
  private wanted(
    rows: readonly PublishedFileRow[],
    rootFiles: readonly ReplicaRootFile[],
  ): Map<string, Wanted> {
    const want = new Map<string, Wanted>();
    const add = (w: Wanted) => {
      want.set(w.key, w);
      const alias = directoryAliasOf(w.key);
      if (alias !== null) want.set(alias, { ...w, key: alias });
    };
    for (const row of rows) {
      if (row.supersededAt !== null) continue;
      // In place: the package is the source object itself, already at this key.
      if (row.kind === "package" && this.inSource(row.path)) continue;
      add({ key: row.path, rel: row.path, sha256: row.sha256, order: row.order, repo: row.repo });
    }
    // The public key: not content-addressed, and named by no index.
    for (const f of rootFiles)
      add({ key: f.path, rel: f.path, sha256: f.sha256, order: 1, repo: "" });
    return want;
  }

  /** Keys the bucket keeps: current and superseded rows (within their grace), root files. */
  private retained(
    rows: readonly PublishedFileRow[],
    want: ReadonlyMap<string, Wanted>,
  ): Set<string> {
    const keep = new Set<string>(want.keys());
    for (const { path: p } of rows) {
      keep.add(p);
      const alias = directoryAliasOf(p);
      if (alias !== null) keep.add(alias);
    }
    keep.add(LOCK_KEY);
    return keep;
  }

  /** Is the object at `key` absent, or the bytes this agent put there (`rec`)? */
  private async stillOurs(key: string, rec: ReplicaObjectRow | undefined): Promise<boolean> {
    const bytes = await this.deps.store.get(key);
    if (bytes === null) return true;
    return rec !== undefined && createHash("sha256").update(bytes).digest("hex") === rec.sha256;
  }

  private inSource(key: string): boolean {
    return (this.deps.sourcePrefixes ?? []).some((p) => key.startsWith(p));
  }

  private recordedByKey(): Map<string, ReplicaObjectRow> {
    return new Map(this.deps.state.listReplicaObjects(this.target).map((r) => [r.key, r]));
  }

  /** List the bucket and forget records it contradicts; returns how many. */
  private async reconcile(): Promise<number> {
    const { store, state, log } = this.deps;
    const recorded = this.recordedByKey();
    const seen = new Set<string>();
    const forget: string[] = [];
    for await (const page of store.list()) {
      for (const o of page) {
        seen.add(o.key);
        const r = recorded.get(o.key);
        if (r && (r.size !== o.size || r.etag !== o.etag)) forget.push(o.key);
      }
    }
    for (const key of recorded.keys()) if (!seen.has(key)) forget.push(key);
    if (forget.length > 0) {
      log.warn(
        { target: store.description, objects: forget.length, example: forget[0] },
        "the bucket differs from what the agent put there (deleted or replaced by someone else); uploading again",
      );
      state.deleteReplicaObjects(this.target, forget);
    }
    const aborted = await store.abortStaleUploads(this.deps.now() - STALE_UPLOAD_MS);
    if (aborted > 0) log.info({ aborted }, "aborted unfinished multipart uploads left by a crash");
    return forget.length;
  }

  private async upload(
    w: Wanted,
    recorded: ReadonlyMap<string, ReplicaObjectRow>,
  ): Promise<number> {
    const { store, state, root } = this.deps;
    // In a source prefix, an object this agent did not put (or that was replaced since it put
    // it) is the producer's: never replace it. A GET of each such key (a 404 for a new one).
    if (this.inSource(w.key) && !(await this.stillOurs(w.key, recorded.get(w.key)))) {
      throw new PackratError(
        "PACKRAT_UNSAFE_FILENAME",
        `${store.description}: ${w.key} holds an object the agent did not put, in the source of a repo published in place: not overwritten, and the repo's new generation is held back; move the object elsewhere`,
      );
    }
    const full = path.join(root, ...w.rel.split("/"));
    const size = statSync(full).size;
    const etag = await store.put(w.key, fileBody(full, w.rel, size, w.sha256), {
      contentType: contentTypeFor(w.key),
      cacheControl: cacheControlFor(w.order),
      sha256: w.sha256,
    });
    state.putReplicaObject(this.target, {
      key: w.key,
      size,
      sha256: w.sha256,
      etag,
      uploadedAt: this.deps.now(),
      unwantedSince: null,
    });
    return size;
  }

  /**
   * One round: bring the bucket up to what root_dir serves. Never throws for a bucket that
   * fails (the report says so, and the next round is held back by a growing backoff).
   */
  async round(opts: RoundOptions): Promise<RoundReport> {
    const { now, log, store } = this.deps;
    const started = now();
    const report: RoundReport = {
      target: store.description,
      skipped: false,
      uploaded: 0,
      uploadedBytes: 0,
      deleted: 0,
      drift: 0,
      failed: [],
      behind: [],
      error: null,
      nextAttemptAt: null,
      durationMs: 0,
    };
    const before = this.readStatus();
    if (opts.force !== true && before.nextAttemptAt !== null && started < before.nextAttemptAt) {
      report.skipped = true;
      report.nextAttemptAt = before.nextAttemptAt;
      return report;
    }
    try {
      await this.lock();
      if (opts.reconcile) report.drift = await this.reconcile();
      await this.copyOut(opts.rootFiles ?? [], report);
    } catch (err) {
      report.error = describeError(err);
    }
    report.durationMs = now() - started;
    const ok = report.error === null && report.failed.length === 0;
    const failures = ok ? 0 : before.failuresInARow + 1;
    const status: StoredStatus = {
      lastAttemptAt: started,
      lastSuccessAt: ok ? now() : before.lastSuccessAt,
      lastError: ok
        ? null
        : (report.error ??
          `${report.failed.length} upload(s) failed, e.g. ${report.failed[0]!.key}: ${report.failed[0]!.error}`),
      failuresInARow: failures,
      nextAttemptAt: ok
        ? null
        : now() + Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures - 1, 20)),
    };
    this.deps.state.setValue(this.statusKey, JSON.stringify(status));
    report.nextAttemptAt = status.nextAttemptAt;
    if (ok) {
      if (report.uploaded > 0 || report.deleted > 0)
        log.info(
          {
            target: store.description,
            uploaded: report.uploaded,
            bytes: report.uploadedBytes,
            deleted: report.deleted,
            ms: report.durationMs,
          },
          "bucket updated",
        );
    } else {
      log.error(
        {
          target: store.description,
          behind: report.behind,
          retryInMs: status.nextAttemptAt! - now(),
        },
        `bucket not brought up to date: ${status.lastError}`,
      );
    }
    return report;
  }

  private async copyOut(rootFiles: readonly ReplicaRootFile[], report: RoundReport): Promise<void> {
    const { state, log } = this.deps;
    // One read of the published files serves both what to upload and what to keep.
    const rows = state.listPublishedFiles();
    const want = this.wanted(rows, rootFiles);
    const recorded = this.recordedByKey();
    const todo = [...want.values()].filter((w) => recorded.get(w.key)?.sha256 !== w.sha256);
    const failedRepos = new Set<string>();
    const queue = new PQueue({ concurrency: this.deps.concurrency });
    const run = (batch: readonly Wanted[]) =>
      Promise.all(
        batch.map((w) =>
          queue.add(async () => {
            if (failedRepos.has(w.repo) && w.order > 0) return;
            try {
              const bytes = await this.upload(w, recorded);
              report.uploadedBytes += bytes;
              report.uploaded++;
            } catch (err) {
              failedRepos.add(w.repo);
              report.failed.push({ key: w.key, error: describeError(err) });
            }
          }),
        ),
      );
    // Order 0 of every repo first; then stage after stage, each only where all before it is up.
    const orders = [...new Set(todo.map((w) => w.order))].sort((a, b) => a - b);
    for (const order of orders) await run(todo.filter((w) => w.order === order));
    report.behind = [...failedRepos].filter((r) => r !== "").sort();
    if (report.failed.length > 0) {
      log.warn(
        { failed: report.failed.length, behind: report.behind },
        `bucket uploads failed, e.g. ${report.failed[0]!.key}: ${report.failed[0]!.error}`,
      );
    }

    const at = this.deps.now();
    const repos = new Set([...want.values()].map((w) => w.repo));
    for (const repo of repos) {
      if (repo === "" || failedRepos.has(repo)) continue;
      const latest = state.latestGeneration(repo);
      if (latest)
        state.setReplicaRepo(this.target, { repo, generation: latest.generation, publishedAt: at });
    }
    if (report.failed.length > 0) return;
    await this.expire(this.retained(rows, want), report);
  }

  /** After a complete round: mark what nothing names, delete what has been unnamed past the grace. */
  private async expire(retained: ReadonlySet<string>, report: RoundReport): Promise<void> {
    const { state, store, keep, graceMs } = this.deps;
    const at = this.deps.now();
    const unwanted: string[] = [];
    const wantedAgain: string[] = [];
    const expired: string[] = [];
    for (const r of state.listReplicaObjects(this.target)) {
      if (retained.has(r.key) || isKept(r.key, keep)) {
        if (r.unwantedSince !== null) wantedAgain.push(r.key);
        continue;
      }
      if (r.unwantedSince === null) unwanted.push(r.key);
      if (at - (r.unwantedSince ?? at) >= graceMs) expired.push(r.key);
    }
    state.setReplicaUnwanted(this.target, wantedAgain, null);
    state.setReplicaUnwanted(this.target, unwanted, at);
    if (expired.length === 0) return;
    await store.deleteMany(expired);
    state.deleteReplicaObjects(this.target, expired);
    report.deleted += expired.length;
  }

  /**
   * `verify --s3`: every object the bucket should serve is there, with the size and ETag it was
   * uploaded with and the SHA-256 root_dir serves now. Lists the prefix; reads no object.
   */
  async verify(rootFiles: readonly ReplicaRootFile[] = []): Promise<BucketProblem[]> {
    const want = this.wanted(this.deps.state.listPublishedFiles(), rootFiles);
    const recorded = this.recordedByKey();
    const listed = new Map<string, { size: number; etag: string }>();
    for await (const page of this.deps.store.list()) for (const o of page) listed.set(o.key, o);
    const problems: BucketProblem[] = [];
    for (const w of [...want.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
      const r = recorded.get(w.key);
      const o = listed.get(w.key);
      if (!o) problems.push({ key: w.key, problem: "missing from the bucket" });
      else if (!r) problems.push({ key: w.key, problem: "not uploaded by this agent yet" });
      else if (r.sha256 !== w.sha256)
        problems.push({
          key: w.key,
          problem: "the bucket holds an older version (not uploaded yet)",
        });
      else if (o.size !== r.size || o.etag !== r.etag)
        problems.push({
          key: w.key,
          problem: `changed in the bucket: ${o.size} bytes, ETag ${o.etag}; uploaded ${r.size} bytes, ETag ${r.etag}`,
        });
    }
    return problems;
  }

  close(): void {
    this.deps.store.close();
  }
}
