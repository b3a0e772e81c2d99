/**
 * An ObjectBody over a file of the published tree, checked against the SHA-256 the state DB
 * says it holds. The check runs while the parts are read, and fails after the last part instead
 * of ending the body, so a store commits only bytes that passed it (see ObjectBody.parts): a file
 * replaced by a newer generation, or damaged on disk, is never uploaded under the old digest.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { IntegrityError } from "../errors.js";
import type { ObjectBody } from "./object-store.js";

export function fileBody(full: string, rel: string, size: number, sha256: string): ObjectBody {
  return {
    size,
    async *parts(partSize: number) {
      const fh = await open(full, "r");
      try {
        const hash = createHash("sha256");
        let offset = 0;
        for (;;) {
          const want = Math.min(partSize, size - offset);
          // One buffer per part: the store may still hold the previous one (a retried PUT).
          const buf = Buffer.allocUnsafe(want);
          let filled = 0;
          while (filled < want) {
            const { bytesRead } = await fh.read(buf, filled, want - filled, offset + filled);
            if (bytesRead === 0) break;
            filled += bytesRead;
          }
          offset += filled;
          hash.update(buf.subarray(0, filled));
          if (filled < want || offset === size) {
            // The end (or a short file): a byte past `size` means the file grew.
            const extra = await fh.read(Buffer.alloc(1), 0, 1, offset);
            const actual = hash.digest("hex");
            const resized = filled < want || extra.bytesRead !== 0;
            if (resized || actual !== sha256) {
              throw new IntegrityError(rel, sha256, resized ? `(not ${size} bytes long)` : actual, {
                hint: "the file changed on disk after it was published; the next pass repairs it and uploads it then",
              });
            }
            if (filled > 0 || size === 0) yield buf.subarray(0, filled);
            return;
          }
          yield buf;
        }
      } finally {
        await fh.close();
      }
    },
  };
}

/** An ObjectBody over bytes in memory (the lock object, small generated files). */
export function bytesBody(bytes: Uint8Array): ObjectBody {
  return {
    size: bytes.length,
    // eslint-disable-next-line @typescript-eslint/require-await -- an async generator by contract
    async *parts(partSize: number) {
      if (bytes.length === 0) yield Buffer.alloc(0);
      for (let at = 0; at < bytes.length; at += partSize)
        yield Buffer.from(
          bytes.buffer,
          bytes.byteOffset + at,
          Math.min(partSize, bytes.length - at),
        );
    },
  };
}
