/**
 * The state DB's package file rows, fingerprints, parse results and each repo's current
 * published-file rows kept in memory (issue 25):
 * each is read from SQLite once, then updated by every write the store makes, so a pass does not
 * re-read and re-decode 10,000 rows it already holds. The store writes SQLite first and the
 * model after; where SQLite merges a write with what it had (an upsert that keeps a known
 * on-disk hash), the model re-reads the merged row instead of repeating the rule.
 *
 * Anything that may leave the model behind SQLite (a transaction that rolled back, a reopened
 * file) drops it whole; the next read loads it again. `drift` compares it with fresh reads, for
 * the tests and for `PACKRAT_CHECK_MODEL`.
 */
import type { Fingerprint, PackageFileRow, PublishedFileRow } from "./state-store.js";

/** What the model is loaded from and checked against: fresh SQLite reads. */
export interface ModelSource {
  repoFiles(repo: string): PackageFileRow[];
  fingerprints(): Fingerprint[];
  metaStatus(layout: string): Map<string, boolean>;
  /** A repo's published-file rows no generation has superseded. */
  currentPublished(repo: string): PublishedFileRow[];
}

export class StateModel {
  private readonly files = new Map<string, Map<string, PackageFileRow>>();
  private fingerprintMap: Map<string, Fingerprint> | null = null;
  private readonly metaStatusByLayout = new Map<string, Map<string, boolean>>();
  private readonly published = new Map<string, Map<string, PublishedFileRow>>();

  constructor(private readonly source: () => ModelSource) {}

  /** Forget everything (a rollback, a reopen): the next read loads from SQLite again. */
  drop(): void {
    this.files.clear();
    this.fingerprintMap = null;
    this.metaStatusByLayout.clear();
    this.published.clear();
  }

  // package files

  /** A repo's rows by URI: loaded on first use, then kept. */
  repoFiles(repo: string): ReadonlyMap<string, PackageFileRow> {
    let rows = this.files.get(repo);
    if (rows === undefined) {
      rows = new Map(
        this.source()
          .repoFiles(repo)
          .map((r) => [r.file.uri, r]),
      );
      this.files.set(repo, rows);
    }
    return rows;
  }

  /** The repo's rows changed wholesale: load them again when next asked. */
  dropRepo(repo: string): void {
    this.files.delete(repo);
  }

  /** A row as SQLite now has it (undefined: deleted). A repo not loaded stays unloaded. */
  setFile(repo: string, uri: string, row: PackageFileRow | undefined): void {
    const rows = this.files.get(repo);
    if (rows === undefined) return;
    if (row === undefined) rows.delete(uri);
    else rows.set(uri, row);
  }

  // fingerprints

  fingerprints(): ReadonlyMap<string, Fingerprint> {
    this.fingerprintMap ??= new Map(
      this.source()
        .fingerprints()
        .map((f) => [f.path, f]),
    );
    return this.fingerprintMap;
  }

  putFingerprint(fp: Fingerprint): void {
    const { path, sha256, size, mtimeNs, ino, verifiedAt } = fp;
    this.fingerprintMap?.set(path, { path, sha256, size, mtimeNs, ino, verifiedAt });
  }

  deleteFingerprint(path: string): void {
    this.fingerprintMap?.delete(path);
  }

  // parse results

  /** Which SHA-256s have a cached parse for a layout key (true: parsed; false: failed). */
  metaStatus(layout: string): ReadonlyMap<string, boolean> {
    let status = this.metaStatusByLayout.get(layout);
    if (status === undefined) {
      status = this.source().metaStatus(layout);
      this.metaStatusByLayout.set(layout, status);
    }
    return status;
  }

  putMeta(sha256: string, layout: string, parsed: boolean): void {
    this.metaStatusByLayout.get(layout)?.set(sha256, parsed);
  }

  // published files

  /** A repo's current (not superseded) published-file rows by path: loaded once, then kept. */
  currentPublished(repo: string): ReadonlyMap<string, PublishedFileRow> {
    let rows = this.published.get(repo);
    if (rows === undefined) {
      rows = new Map(
        this.source()
          .currentPublished(repo)
          .map((r) => [r.path, r]),
      );
      this.published.set(repo, rows);
    }
    return rows;
  }

  /** A generation was recorded: these rows were written as they are, these paths superseded. */
  applyGeneration(
    repo: string,
    written: readonly PublishedFileRow[],
    superseded: Iterable<string>,
  ) {
    const rows = this.published.get(repo);
    if (rows === undefined) return;
    for (const path of superseded) rows.delete(path);
    for (const row of written) rows.set(row.path, row);
  }

  /** The repo's published rows changed wholesale (forgotten): load them again when next asked. */
  dropPublished(repo: string): void {
    this.published.delete(repo);
  }

  // the check

  /**
   * How what the model holds differs from SQLite now (empty: it does not). Only what is loaded
   * is compared: an unloaded part is read from SQLite when next used, so it cannot be stale.
   */
  drift(): string[] {
    const fresh = this.source();
    const out: string[] = [];
    for (const [repo, rows] of this.files) {
      const db = new Map(fresh.repoFiles(repo).map((r) => [r.file.uri, r]));
      out.push(...diffMaps(`package file of ${repo}`, rows, db));
    }
    if (this.fingerprintMap !== null) {
      const db = new Map(fresh.fingerprints().map((f) => [f.path, f]));
      out.push(...diffMaps("fingerprint", this.fingerprintMap, db));
    }
    for (const [layout, status] of this.metaStatusByLayout)
      out.push(...diffMaps(`parse result (${layout})`, status, fresh.metaStatus(layout)));
    for (const [repo, rows] of this.published) {
      const db = new Map(fresh.currentPublished(repo).map((r) => [r.path, r]));
      out.push(...diffMaps(`published file of ${repo}`, rows, db));
    }
    return out;
  }
}

function diffMaps<T>(what: string, model: ReadonlyMap<string, T>, db: ReadonlyMap<string, T>) {
  const out: string[] = [];
  for (const [key, value] of model) {
    const stored = db.get(key);
    if (stored === undefined) out.push(`${what} ${key}: in memory, not in the state DB`);
    else if (JSON.stringify(stored) !== JSON.stringify(value))
      out.push(
        `${what} ${key}: in memory ${JSON.stringify(value)}, state DB ${JSON.stringify(stored)}`,
      );
  }
  for (const key of db.keys())
    if (!model.has(key)) out.push(`${what} ${key}: in the state DB, not in memory`);
  return out;
}
