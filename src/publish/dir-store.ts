/**
 * ObjectStore over a plain directory: a second copy of the mirror on another disk or an NFS
 * mount, kept with the same publish order and grace as a bucket; the replica's unit tests use
 * it as a real store with no server. Each put is a temp file renamed into place, so a reader
 * sees the old object or the new one, never a mix, as with S3.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ObjectBody, ObjectStore, PutHeaders, StoredObject } from "./object-store.js";

/** Unfinished puts live here, beside the objects; list() never shows it. */
const UPLOADS_DIR = ".packrat-uploads";
/** A key ending in "/" (a directory alias) is stored as this file inside that directory. */
const DIRECTORY_OBJECT = ".packrat-directory-object";
const PAGE = 1000;

export class DirStore implements ObjectStore {
  readonly target: string;
  readonly description: string;

  constructor(private readonly dir: string) {
    this.target = `dir://${path.resolve(dir)}`;
    this.description = path.resolve(dir);
  }

  private file(key: string): string {
    if (key.split("/").some((part) => part === ".." || part === "."))
      throw new Error(`unsafe key ${key}`);
    return key.endsWith("/") || key === ""
      ? path.join(this.dir, key, DIRECTORY_OBJECT)
      : path.join(this.dir, key);
  }

  async put(key: string, body: ObjectBody, _headers: PutHeaders): Promise<string> {
    const final = this.file(key);
    const tmpDir = path.join(this.dir, UPLOADS_DIR);
    await mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, randomBytes(8).toString("hex"));
    const md5 = createHash("md5");
    const fh = await open(tmp, "wx");
    try {
      for await (const part of body.parts(1024 * 1024)) {
        md5.update(part);
        await fh.write(part);
      }
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    await mkdir(path.dirname(final), { recursive: true });
    await rename(tmp, final);
    return md5.digest("hex");
  }

  async createIfAbsent(key: string, content: Uint8Array): Promise<boolean> {
    const final = this.file(key);
    await mkdir(path.dirname(final), { recursive: true });
    try {
      await writeFile(final, content, { flag: "wx" });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    try {
      return new Uint8Array(await readFile(this.file(key)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async *list(): AsyncIterable<StoredObject[]> {
    let page: StoredObject[] = [];
    const walk = async function* (this: DirStore, rel: string): AsyncGenerator<StoredObject> {
      let entries;
      try {
        entries = await readdir(path.join(this.dir, rel), { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
        throw err;
      }
      for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const child = rel === "" ? e.name : `${rel}/${e.name}`;
        if (child === UPLOADS_DIR) continue;
        if (e.isDirectory()) {
          yield* walk.call(this, child);
          continue;
        }
        const full = path.join(this.dir, child);
        const bytes = await readFile(full);
        const key = e.name === DIRECTORY_OBJECT ? `${rel}/` : child;
        yield {
          key,
          size: (await stat(full)).size,
          etag: createHash("md5").update(bytes).digest("hex"),
        };
      }
    };
    for await (const o of walk.call(this, "")) {
      page.push(o);
      if (page.length === PAGE) {
        yield page;
        page = [];
      }
    }
    yield page;
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const key of keys) await rm(this.file(key), { force: true });
  }

  async abortStaleUploads(before: number): Promise<number> {
    const dir = path.join(this.dir, UPLOADS_DIR);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return 0;
    }
    let aborted = 0;
    for (const name of names) {
      const st = await stat(path.join(dir, name)).catch(() => null);
      if (st && st.mtimeMs < before) {
        await rm(path.join(dir, name), { force: true });
        aborted++;
      }
    }
    return aborted;
  }

  close(): void {}
}
