/**
 * A bucket as the source of repos (listed-source.ts has the rest): the objects under
 * `s3://bucket/prefix/` are listed with pagination (ListObjectsV2), each new or changed one
 * (by ETag and size) is streamed once to a temp file while it is hashed, parsed there and
 * deleted; the engine's copy into root_dir is a second GET, hashed against the first. Changes
 * between full syncs come from bucket notifications (bucket-events.ts) when configured, else
 * from the listing each poll makes when it times out. Nothing in the bucket is ever written.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { PackratError } from "../errors.js";
import type { S3Store } from "../publish/s3-store.js";
import type { BucketEvents } from "./bucket-events.js";
import { openFileSource } from "./disk.js";
import { IN_PROGRESS, type SourceBackend, type SourceObject } from "./listed-source.js";

export interface BucketBackendOptions {
  /** Where notifications arrive, when the server sends them (else: polls list the bucket). */
  events?: BucketEvents | null;
  /** Where objects are spooled while they are hashed and parsed (default: the OS temp dir). */
  spoolDir?: string;
}

export function bucketBackend(store: S3Store, opts: BucketBackendOptions = {}): SourceBackend {
  const { bucket, prefix } = store.location;
  const where = `s3://${bucket}/${prefix}`;
  const gone = (rel: string) =>
    new PackratError("PACKRAT_SOURCE", `${where}${rel} is no longer there`, {
      hint: "it was deleted after the listing; the next pass lists the bucket again",
    });
  return {
    where,
    async list() {
      const out: SourceObject[] = [];
      for await (const page of store.list()) {
        for (const o of page) {
          if (o.key === "" || o.key.endsWith("/")) continue;
          if (IN_PROGRESS.test(path.posix.basename(o.key))) continue;
          out.push({ rel: o.key, size: o.size, stamp: `${o.etag}:${o.size}` });
        }
      }
      return out;
    },
    async open(rel) {
      const object = await store.openStream(rel);
      if (!object) throw gone(rel);
      const dir = await fs.mkdtemp(path.join(opts.spoolDir ?? tmpdir(), "packrat-bucket-src-"));
      const spool = path.join(dir, "object");
      const hash = createHash("sha256");
      try {
        await pipeline(
          object.body,
          new Transform({
            transform(chunk: Buffer, _enc, done) {
              hash.update(chunk);
              done(null, chunk);
            },
          }),
          createWriteStream(spool),
        );
        const source = await openFileSource(spool);
        return {
          sha256: hash.digest("hex"),
          source: {
            size: source.size,
            read: (offset, length) => source.read(offset, length),
            close: async () => {
              await source.close();
              await fs.rm(dir, { recursive: true, force: true });
            },
          },
        };
      } catch (err) {
        await fs.rm(dir, { recursive: true, force: true });
        throw err;
      }
    },
    async read(rel) {
      const object = await store.openStream(rel);
      if (!object) throw gone(rel);
      return object;
    },
    ...(opts.events
      ? {
          watch: (onChange: () => void) => {
            const off = opts.events!.subscribe({
              bucket,
              prefix,
              exists: (rel) => store.exists(rel),
              onChange,
            });
            return { ready: Promise.resolve(), close: () => Promise.resolve(off()) };
          },
        }
      : {}),
  };
}
