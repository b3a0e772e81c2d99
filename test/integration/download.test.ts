import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { sha256Bytes } from "../../src/sync/disk.js";
import { backoffDelay, downloadVerified } from "../../src/sync/download.js";
import { createMasterClient } from "../../src/sync/master-client.js";
import type { MasterClient } from "../../src/sync/master-types.js";
import { startFakeMaster, type FakeMaster } from "../support/fake-master.js";

describe("downloadVerified", () => {
  let master: FakeMaster;
  let client: MasterClient;
  let root: string;
  const content = new TextEncoder().encode("package bytes ".repeat(1000));
  let id: number;
  let sleeps: number[];
  const sleep = (ms: number) => {
    sleeps.push(ms);
    return Promise.resolve();
  };

  beforeEach(async () => {
    master = await startFakeMaster();
    master.addDistroVersion({ name: "dv", distro: "none", version: null, fileType: "tar" });
    id = master.addPackageFile({
      package: "p",
      distroVersion: "dv",
      version: "1",
      type: "tar",
      arch: "all",
      filename: "p_1.tar.gz",
      content,
    });
    client = createMasterClient({
      host: master.url,
      name: "m",
      psk: null,
      proxy: null,
      requestTimeoutMs: 2000,
      log: silentLogger(),
    });
    root = await mkdtemp(path.join(tmpdir(), "packrat-dl-"));
    sleeps = [];
  });
  afterEach(async () => {
    await client.close();
    await master.close();
    await rm(root, { recursive: true, force: true });
  });

  const req = () => ({
    fileUrl: `/files/${id}/p_1.tar.gz`,
    sha256: sha256Bytes(content),
    label: "repo/p_1.tar.gz",
  });
  const deps = () => ({
    client,
    root,
    log: silentLogger(),
    sleep,
    retry: { attempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
  });
  const leftovers = async () =>
    existsSync(path.join(root, ".packrat-tmp")) ? readdir(path.join(root, ".packrat-tmp")) : [];

  it("streams into a temp file under root and returns it only when the hash matches", async () => {
    const { tmp, size } = await downloadVerified(req(), deps());
    expect(tmp.startsWith(path.join(root, ".packrat-tmp") + path.sep)).toBe(true);
    expect(size).toBe(content.length);
    expect(sha256Bytes(await readFile(tmp))).toBe(sha256Bytes(content));
    expect(sleeps).toEqual([]);
  });

  it("retries a truncated body and a reset with backoff, then succeeds", async () => {
    master.faults.set(
      { kind: "truncate", uri: `/files/${id}/`, times: 1 },
      { kind: "reset", uri: `/files/${id}/`, times: 1 },
    );
    const { tmp } = await downloadVerified(req(), deps());
    expect(sha256Bytes(await readFile(tmp))).toBe(sha256Bytes(content));
    expect(sleeps).toHaveLength(2);
  });

  it("gives up on bytes that never match, with an error naming the file, and leaves nothing behind", async () => {
    master.faults.set({ kind: "wrong-bytes", uri: `/files/${id}/` });
    const err = await downloadVerified(req(), deps()).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_HASH_MISMATCH")).toBe(true);
    expect((err as Error).message).toMatch(
      /^repo\/p_1\.tar\.gz: SHA-256 is [0-9a-f]{64}, expected/,
    );
    expect(sleeps).toHaveLength(2);
    expect(await leftovers()).toEqual([]);
  });

  it("backs off exponentially with full jitter, capped", () => {
    const policy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(policy, 0, () => 0.999)).toBe(99);
    expect(backoffDelay(policy, 3, () => 0.999)).toBe(799);
    expect(backoffDelay(policy, 10, () => 0.999)).toBe(999);
    expect(backoffDelay(policy, 10, () => 0)).toBe(0);
  });
});
