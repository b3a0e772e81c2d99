/**
 * The engine's hooks for repos published in place (src/sync/in-place.ts): a producer's package
 * is never fetched again, cleanup removes only the agent's own expired metadata, and no
 * metadata is written over a file the agent did not write.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PublishedFileRow, StateStore } from "../../src/state/state-store.js";
import { openStateStore } from "../../src/state/db.js";
import { statInfoSync } from "../../src/sync/disk.js";
import {
  expiredInPlace,
  heldFetches,
  inPlaceDirsEver,
  refuseProducerFiles,
} from "../../src/sync/in-place.js";
import type { DesiredFile, Plan } from "../../src/sync/reconcile.js";

let root: string;
let store: StateStore;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "packrat-inplace-"));
  store = openStateStore(path.join(root, ".state.db"));
  await mkdir(path.join(root, "src/dists"), { recursive: true });
});
afterEach(async () => {
  store.close();
  await rm(root, { recursive: true, force: true });
});

/** Write a file as the agent does: with a fingerprint of what it wrote. */
async function agentWrites(rel: string, content: string): Promise<void> {
  await writeFile(path.join(root, rel), content);
  const st = statInfoSync(path.join(root, rel))!;
  store.putFingerprint({ path: rel, sha256: "x", ...st, verifiedAt: 0 });
}

const desired = (repo: string, rel: string): DesiredFile =>
  ({ repo, paths: [rel], expectedSha256: "a", file: { uri: rel } }) as unknown as DesiredFile;

describe("heldFetches", () => {
  it("takes the in-place repos' fetches out of the plan, leaving the others", () => {
    const plan: Plan = {
      fetch: [
        { desired: desired("inplace", "src/a.deb"), reason: "mismatch", linkFrom: null },
        { desired: desired("copied", "c/pool/a.deb"), reason: "missing", linkFrom: null },
      ],
      link: [],
      verified: [],
    };
    const held = heldFetches(plan, (r) => r === "inplace");
    expect(held.map((a) => a.desired.paths[0])).toEqual(["src/a.deb"]);
    expect(plan.fetch.map((a) => a.desired.paths[0])).toEqual(["c/pool/a.deb"]);
  });
});

describe("refuseProducerFiles", () => {
  it("lets the agent rewrite its own files and write new ones", async () => {
    await agentWrites("src/dists/Release", "agent's");
    expect(() =>
      refuseProducerFiles("r", ["src/dists/Release", "src/dists/new"], root, store),
    ).not.toThrow();
  });

  it("refuses a file the agent never wrote, and one the producer replaced", async () => {
    await writeFile(path.join(root, "src/dists/Release"), "producer's");
    await agentWrites("src/dists/InRelease", "agent's");
    await writeFile(path.join(root, "src/dists/InRelease.new"), "producer's copy");
    await rm(path.join(root, "src/dists/InRelease"));
    await writeFile(path.join(root, "src/dists/InRelease"), "producer's, longer than it was");
    expect(() =>
      refuseProducerFiles("r", ["src/dists/Release", "src/dists/InRelease"], root, store),
    ).toThrow(
      /repo r is published in place and 2 file\(s\) the agent did not write lie where its metadata goes \(src\/dists\/Release, src\/dists\/InRelease\)/,
    );
  });
});

describe("expiredInPlace", () => {
  const row = (p: string, kind: PublishedFileRow["kind"] = "metadata") =>
    ({ repo: "r", path: p, sha256: "x", kind, generation: 1, supersededAt: 1 }) as PublishedFileRow;

  it("gives only the agent's own metadata in in-place dirs, still as the agent wrote it", async () => {
    await agentWrites("src/dists/old-index", "agent's");
    await writeFile(path.join(root, "src/dists/producers"), "producer's");
    await writeFile(path.join(root, "src/a.deb"), "a package");
    await mkdir(path.join(root, "other"));
    await agentWrites("other/old-index", "agent's, in a dir not in place");
    const out = expiredInPlace(
      [
        row("src/dists/old-index"),
        row("src/dists/producers"),
        row("src/a.deb", "package"),
        row("other/old-index"),
      ],
      ["src"],
      root,
      store,
    );
    expect(out).toEqual(["src/dists/old-index"]);
  });
});

describe("inPlaceDirsEver", () => {
  it("remembers every directory once published in place", () => {
    expect(inPlaceDirsEver(store, ["a", "b"])).toEqual(["a", "b"]);
    expect(inPlaceDirsEver(store, ["c"])).toEqual(["a", "b", "c"]);
    expect(inPlaceDirsEver(store, [])).toEqual(["a", "b", "c"]);
  });
});
