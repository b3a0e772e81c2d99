import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTreeWatcher, type TreeWatcher } from "../../src/agent/watcher.js";
import { silentLogger } from "../../src/log.js";
import { openStateStore } from "../../src/state/db.js";
import type { StateStore } from "../../src/state/state-store.js";
import { sha256File, statInfo } from "../../src/sync/disk.js";

describe("tree watcher", () => {
  let dir: string;
  let store: StateStore;
  let watcher: TreeWatcher | null = null;
  const tampered: string[][] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "packrat-watch-"));
    store = openStateStore(path.join(dir, "state.db"));
    await mkdir(path.join(dir, "root/apt/pool/a"), { recursive: true });
    tampered.length = 0;
  });
  afterEach(async () => {
    await watcher?.close();
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function managedFile(rel: string, content: string): Promise<void> {
    const full = path.join(dir, "root", rel);
    await writeFile(full, content);
    const st = await statInfo(full);
    if (!st) throw new Error("no stat");
    store.putFingerprint({
      path: rel,
      sha256: await sha256File(full),
      ...st,
      verifiedAt: Date.now(),
    });
  }

  const waitFor = async (cond: () => boolean, ms: number) => {
    const start = Date.now();
    while (!cond() && Date.now() - start < ms) await new Promise((r) => setTimeout(r, 20));
    return cond();
  };

  it("reports a managed file deleted or modified by hand, not the agent's own writes or unknown files", async () => {
    await managedFile("apt/pool/a/a.deb", "one");
    await managedFile("apt/pool/a/b.deb", "two");
    watcher = startTreeWatcher({
      root: path.join(dir, "root"),
      store,
      log: silentLogger(),
      onTamper: (p) => tampered.push(p),
      debounceMs: 100,
    });
    await watcher.ready;
    // The agent's own write (a new fingerprint is recorded right after it) and a file it does
    // not manage, then a deletion by hand. The watcher sees the events in that order, so once
    // the deletion is reported, anything it wrongly took the first two for is reported too.
    await managedFile("apt/pool/a/b.deb", "two, rewritten by the agent");
    await writeFile(path.join(dir, "root/apt/pool/a/unknown.txt"), "x");
    await rm(path.join(dir, "root/apt/pool/a/a.deb"));
    expect(await waitFor(() => tampered.length > 0, 10_000)).toBe(true);
    expect(tampered.flat()).toEqual(["apt/pool/a/a.deb"]);
  });
});
