/**
 * The port every replica target implements: an object store seen through a prefix (an S3
 * bucket and prefix in s3-store.ts, a plain directory in dir-store.ts). Keys are relative to
 * the prefix, with forward slashes. The replica (replica.ts) decides what to upload, in which
 * order and when to delete; a store only moves bytes and says what it holds, so another
 * cloud's object store is one more file implementing this, as aptly's PublishedStorage.
 */

/** An object as a listing shows it. */
export interface StoredObject {
  key: string;
  size: number;
  /** The store's digest of the object (S3's ETag, unquoted). */
  etag: string;
}

/** The bytes of one object, read in parts so a large file is never held whole. */
export interface ObjectBody {
  size: number;
  /**
   * The body in parts of `partSize` bytes (the last may be shorter). It throws instead of
   * yielding after the last part when the bytes turn out not to be what was expected, so a
   * store that consumes every part before it commits (a single PUT, a multipart
   * CompleteMultipartUpload) never stores bytes that failed their check.
   */
  parts(partSize: number): AsyncIterable<Buffer>;
}

export interface PutHeaders {
  contentType: string;
  cacheControl: string;
  /** Hex SHA-256 of the whole body, stored beside it (S3 user metadata) for `verify`. */
  sha256: string;
}

export interface ObjectStore {
  /** Stable identity for the state DB (`s3://bucket/prefix @ endpoint`); a new one starts afresh. */
  readonly target: string;
  /** How messages name it. */
  readonly description: string;
  /** Store `body` at `key`, replacing what is there; resolves to the store's ETag. */
  put(key: string, body: ObjectBody, headers: PutHeaders): Promise<string>;
  /** Create `key` only if nothing is there (atomic): false when something already is. */
  createIfAbsent(key: string, content: Uint8Array): Promise<boolean>;
  /** The object's bytes, or null if there is none. */
  get(key: string): Promise<Uint8Array | null>;
  /** Every object under the prefix, page by page. */
  list(): AsyncIterable<StoredObject[]>;
  /** Delete the keys (as many per request as the store takes); a missing key is no error. */
  deleteMany(keys: readonly string[]): Promise<void>;
  /** Abandon unfinished multipart uploads started before `before` (ms); returns how many. */
  abortStaleUploads(before: number): Promise<number>;
  close(): void;
}
