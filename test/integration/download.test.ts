import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs, { type FileHandle, mkdtemp, readdir, readFile, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { sha256Bytes } from "../../src/sync/disk.js";
import { backoffDelay } from "../../src/sync/backoff.js";
import { downloadVerified } from "../../src/sync/download.js";
import { createMasterClient } from "../../src/sync/master-client.js";
import type { FileDownload, MasterClient } from "../../src/sync/master-types.js";
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
    vi.restoreAllMocks();
    await client.close();
    await master.close();
    await rm(root, { recursive: true, force: true });
  });

  const req = () => ({
    fileUrl: master.fileUrl(id),
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

  it("abandons a trickling download below download_min_rate over the window, without retrying it now", async () => {
    // 40 bytes every 100 ms (400 B/s), each piece far within request_timeout (2 s).
    master.faults.set({ kind: "trickle", uri: master.fileUrl(id), bytes: 40, everyMs: 100 });
    const started = Date.now();
    const err: unknown = await downloadVerified(req(), {
      ...deps(),
      limits: { minRate: 2000, windowMs: 1000, deadlineBaseMs: 60_000 },
    }).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_DOWNLOAD_STALLED")).toBe(true);
    expect((err as Error).message).toMatch(
      /^repo\/p_1\.tar\.gz: abandoned, \d+ bytes in the last 1 s, below download_min_rate of 2000 bytes\/s$/,
    );
    // Not retried within the call, and well before the file would have ended (35 s).
    expect(master.requests.filter((r) => r.uri === master.fileUrl(id))).toHaveLength(1);
    expect(sleeps).toEqual([]);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await leftovers()).toEqual([]);
  });

  it("abandons a download past its deadline, base + size / min rate, before a window ends", async () => {
    // 400 B/s against a floor of 1000 B/s, but a window of a minute: the deadline ends it. No
    // Content-Length (the real master's /files/ are chunked), so the size is what has arrived:
    // the file must average the floor after the base allowance (1 s + 0.4 t < t at t ~ 1.7 s).
    master.faults.set({ kind: "trickle", uri: master.fileUrl(id), bytes: 40, everyMs: 100 });
    const started = Date.now();
    const err: unknown = await downloadVerified(req(), {
      ...deps(),
      limits: { minRate: 1000, windowMs: 60_000, deadlineBaseMs: 1000 },
    }).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_DOWNLOAD_STALLED")).toBe(true);
    expect((err as Error).message).toMatch(/past its deadline of \d+ s/);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await leftovers()).toEqual([]);
  });

  it("lets a slow download that keeps the rate and the deadline complete", async () => {
    master.faults.set({ kind: "trickle", uri: master.fileUrl(id), bytes: 7000, everyMs: 100 });
    const { tmp } = await downloadVerified(req(), {
      ...deps(),
      limits: { minRate: 1000, windowMs: 500, deadlineBaseMs: 5000 },
    });
    expect(sha256Bytes(await readFile(tmp))).toBe(sha256Bytes(content));
  });

  it("streams into a temp file under root and returns it only when the hash matches", async () => {
    const { tmp, size } = await downloadVerified(req(), deps());
    // The temp file is named through the temp directory's descriptor (src/sync/disk.ts
    // tempDir); what it resolves to is root/.packrat-tmp.
    expect(await realpath(path.dirname(tmp))).toBe(await realpath(path.join(root, ".packrat-tmp")));
    expect(size).toBe(content.length);
    expect(sha256Bytes(await readFile(tmp))).toBe(sha256Bytes(content));
    expect(sleeps).toEqual([]);
  });

  it("takes a body sent with a Content-Length too (a web server in front of the master)", async () => {
    await master.close();
    master = await startFakeMaster({ fileContentLength: true });
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
    await client.close();
    client = createMasterClient({
      host: master.url,
      name: "m",
      psk: null,
      proxy: null,
      requestTimeoutMs: 2000,
      log: silentLogger(),
    });
    master.faults.set({ kind: "truncate", uri: master.fileUrl(id), times: 1 });
    const { tmp, size } = await downloadVerified(req(), deps());
    expect(size).toBe(content.length);
    expect(sha256Bytes(await readFile(tmp))).toBe(sha256Bytes(content));
    expect(sleeps).toHaveLength(1);
  });

  it("retries a truncated body and a reset with backoff, then succeeds", async () => {
    master.faults.set(
      { kind: "truncate", uri: master.fileUrl(id), times: 1 },
      { kind: "reset", uri: master.fileUrl(id), times: 1 },
    );
    const { tmp } = await downloadVerified(req(), deps());
    expect(sha256Bytes(await readFile(tmp))).toBe(sha256Bytes(content));
    expect(sleeps).toHaveLength(2);
  });

  it("gives up on bytes that never match, with an error naming the file, and leaves nothing behind", async () => {
    master.faults.set({ kind: "wrong-bytes", uri: master.fileUrl(id) });
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

  it("writes a large body exactly, across write batches, pieces and background flushes", async () => {
    // 33 MiB and an odd tail: more than one early flush interval, batches and 32 KiB pieces that
    // do not line up with the socket's chunks.
    const big = randomBytes(33 * 1024 * 1024 + 12_345);
    const bigId = master.addPackageFile({
      package: "big",
      distroVersion: "dv",
      version: "1",
      type: "tar",
      arch: "all",
      filename: "big_1.tar",
      content: big,
    });
    let reported = 0;
    const { tmp, size } = await downloadVerified(
      { fileUrl: master.fileUrl(bigId), sha256: sha256Bytes(big), label: "repo/big_1.tar" },
      { ...deps(), onBytes: (n) => (reported += n) },
    );
    expect(size).toBe(big.length);
    expect(reported).toBe(big.length);
    expect((await readFile(tmp)).equals(big)).toBe(true);
  });

  it("stops on abort in the middle of a body, without retrying, and leaves no partial file", async () => {
    const controller = new AbortController();
    const reason = new Error("shutting down");
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(3 * 1024 * 1024, 1)); // more than a write batch: a write is in flight
    const err = await downloadVerified(req(), {
      ...deps(),
      client: clientServing(() => ({ size: 10 * 1024 * 1024, body })),
      signal: controller.signal,
      onBytes: () => controller.abort(reason),
    }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(sleeps).toEqual([]);
    expect(body.destroyed).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it("refuses a body shorter than the size the master announced, naming both", async () => {
    const err = await downloadVerified(req(), {
      ...deps(),
      client: clientServing(() => ({ size: content.length + 5, body: Readable.from([content]) })),
    }).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_DOWNLOAD_FAILED")).toBe(true);
    expect((err as Error).message).toBe(
      `repo/p_1.tar.gz: got ${content.length} bytes from /files/p_1.tar.gz, the master announced ${content.length + 5} (truncated)`,
    );
    expect(await leftovers()).toEqual([]);
  });

  it("fails on a full disk with the disk's error and leaves no temp file", async () => {
    const open = fs.open.bind(fs);
    let writes = 0;
    vi.spyOn(fs, "open").mockImplementation(async (...args: Parameters<typeof fs.open>) => {
      const handle: FileHandle = await open(...args);
      const writev = handle.writev.bind(handle);
      // The first pieces land, then the disk fills up: later writes of the same batch still run.
      handle.writev = (buffers, position) => {
        writes++;
        if (writes <= 3) return writev(buffers, position);
        const full = Object.assign(new Error("ENOSPC: no space left on device, write"), {
          code: "ENOSPC",
        });
        return Promise.reject(full);
      };
      return handle;
    });
    const big = randomBytes(2 * 1024 * 1024);
    const err = await downloadVerified(
      { fileUrl: "/files/x/big.bin", sha256: sha256Bytes(big), label: "repo/big.bin" },
      {
        ...deps(),
        client: clientServing(() => ({ size: big.length, body: Readable.from([big]) })),
      },
    ).catch((e: unknown) => e);
    // Retried like any failure, then reported with the disk's error as the cause.
    expect(isPackratError(err, "PACKRAT_DOWNLOAD_FAILED")).toBe(true);
    expect((err as Error).message).toMatch(/^repo\/big\.bin: .*no space left on device/);
    expect(((err as Error).cause as { code?: unknown }).code).toBe("ENOSPC");
    expect(sleeps).toHaveLength(2);
    expect(writes).toBeGreaterThan(3);
    expect(await leftovers()).toEqual([]);
  });
});

/** A MasterClient that only serves downloads, each a fresh answer from `answer`. */
function clientServing(answer: () => FileDownload): MasterClient {
  const unused = () => Promise.reject(new Error("not used by downloads"));
  return {
    checkVersion: unused,
    getMirror: unused,
    getRepos: unused,
    getDistroVersions: unused,
    listPackageFiles: unused,
    poll: unused,
    heartbeat: unused,
    download: () => Promise.resolve(answer()),
    close: () => Promise.resolve(),
  };
}
