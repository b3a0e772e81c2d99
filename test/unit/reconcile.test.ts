import { describe, expect, it } from "vitest";
import {
  type DesiredFile,
  type PathObservation,
  checkMasterSanity,
  needsHash,
  planFetches,
  planRemovals,
} from "../../src/sync/reconcile.js";
import type { PackageFile } from "../../src/types.js";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

function file(name: string, sha256 = SHA_A): PackageFile {
  return {
    uri: `/api/v2/Package/PackageFile:${name}:`,
    packageName: name,
    distroVersionUri: "/api/v2/Attrib/DistroVersion:bookworm:",
    version: "1.0",
    type: "deb",
    arch: "all",
    fileUrl: `/files/${name}_1.0_all.deb`,
    filename: `${name}_1.0_all.deb`,
    sha256,
    tags: ["prod"],
    failedAt: null,
    deprecatedAt: null,
  };
}

function desired(name: string, paths: string[], sha = SHA_A): DesiredFile {
  return { repo: "r", file: file(name, sha), paths, expectedSha256: sha };
}

const stat = { size: 10, mtimeNs: "1", ino: "7" };
const fp = (path: string, sha256 = SHA_A) => ({ path, sha256, ...stat, verifiedAt: 0 });

describe("needsHash", () => {
  it("trusts a matching fingerprint: a no-change sync hashes nothing", () => {
    expect(needsHash({ stat, fingerprint: fp("p") }, SHA_A, false)).toBe(false);
  });
  it("hashes when size, mtime or inode moved, when the sha differs, or on a deep check", () => {
    expect(needsHash({ stat: { ...stat, size: 11 }, fingerprint: fp("p") }, SHA_A, false)).toBe(
      true,
    );
    expect(needsHash({ stat: { ...stat, mtimeNs: "2" }, fingerprint: fp("p") }, SHA_A, false)).toBe(
      true,
    );
    expect(needsHash({ stat: { ...stat, ino: "8" }, fingerprint: fp("p") }, SHA_A, false)).toBe(
      true,
    );
    expect(needsHash({ stat, fingerprint: fp("p", SHA_B) }, SHA_A, false)).toBe(true);
    expect(needsHash({ stat, fingerprint: undefined }, SHA_A, false)).toBe(true);
    expect(needsHash({ stat, fingerprint: fp("p") }, SHA_A, true)).toBe(true);
  });
  it("never hashes a missing file", () => {
    expect(needsHash({ stat: null, fingerprint: fp("p") }, SHA_A, true)).toBe(false);
  });
});

describe("planFetches", () => {
  const obs = (entries: [string, PathObservation][]) => new Map(entries);

  it("fetches missing files and leaves good ones", () => {
    const plan = planFetches({
      desired: [desired("foo", ["r/pool/foo/x.deb"]), desired("bar", ["r/pool/bar/y.deb"], SHA_B)],
      observations: obs([
        ["r/pool/foo/x.deb", { stat, fingerprint: fp("r/pool/foo/x.deb") }],
        ["r/pool/bar/y.deb", { stat: null, fingerprint: undefined }],
      ]),
    });
    expect(plan.fetch.map((f) => [f.desired.file.packageName, f.reason, f.linkFrom])).toEqual([
      ["bar", "missing", null],
    ]);
    expect(plan.verified).toEqual([]);
  });

  it("re-fetches a file whose hash is wrong and records verified ones", () => {
    const plan = planFetches({
      desired: [desired("foo", ["a"]), desired("bar", ["b"])],
      observations: obs([
        ["a", { stat, fingerprint: undefined, hashed: SHA_B }],
        ["b", { stat, fingerprint: undefined, hashed: SHA_A }],
      ]),
    });
    expect(plan.fetch.map((f) => [f.desired.paths[0], f.reason])).toEqual([["a", "mismatch"]]);
    expect(plan.verified).toEqual([{ path: "b", sha256: SHA_A }]);
  });

  it("links from a verified copy with the same bytes instead of downloading twice", () => {
    const plan = planFetches({
      desired: [
        desired("foo", ["repo1/x.deb"]),
        { ...desired("foo", ["repo2/x.deb"]), repo: "r2" },
      ],
      observations: obs([
        ["repo1/x.deb", { stat, fingerprint: fp("repo1/x.deb") }],
        ["repo2/x.deb", { stat: null, fingerprint: undefined }],
      ]),
    });
    expect(plan.fetch.map((f) => [f.desired.paths[0], f.linkFrom])).toEqual([
      ["repo2/x.deb", "repo1/x.deb"],
    ]);
  });

  it("recreates a missing extra name from the canonical one", () => {
    const plan = planFetches({
      desired: [desired("p", ["r/x86_64/p.pkg", "r/aarch64/p.pkg"])],
      observations: obs([
        ["r/x86_64/p.pkg", { stat, fingerprint: fp("r/x86_64/p.pkg") }],
        ["r/aarch64/p.pkg", { stat: null, fingerprint: undefined }],
      ]),
    });
    expect(plan.fetch).toEqual([]);
    expect(plan.link).toEqual([{ from: "r/x86_64/p.pkg", to: "r/aarch64/p.pkg" }]);
  });
});

describe("planRemovals", () => {
  const base = { keep: [], maxRemovalRatio: 0.5, force: false };

  it("removes what nothing names, sparing keep-list entries and prefixes", () => {
    const plan = planRemovals({
      ...base,
      diskFiles: ["a", "b", "index.html", "static/logo.png", "c"],
      expected: new Set(["a", "b"]),
      keep: ["index.html", "static/"],
      maxRemovalRatio: 0.9,
    });
    expect(plan).toEqual({ remove: ["c"], refused: null });
  });

  it("refuses to remove more than max_removal_ratio, unless forced", () => {
    const input = { ...base, diskFiles: ["a", "b", "c", "d"], expected: new Set(["a"]) };
    const refused = planRemovals(input);
    expect(refused.remove).toEqual([]);
    expect(refused.refused).toMatch(/would remove 3 of 4 files .* max_removal_ratio 0.5.*--force/);
    expect(planRemovals({ ...input, force: true }).remove).toEqual(["b", "c", "d"]);
  });
});

describe("checkMasterSanity", () => {
  const set = (...xs: string[]) => new Set(xs);

  it("refuses a master that suddenly reports no repos", () => {
    expect(
      checkMasterSanity({
        previous: new Map([["r", set("1")]]),
        current: new Map(),
        maxRemovalRatio: 0.5,
      }),
    ).toMatch(/no repos for this mirror \(it had 1\)/);
  });
  it("refuses a repo that suddenly has no files", () => {
    expect(
      checkMasterSanity({
        previous: new Map([["r", set("1", "2")]]),
        current: new Map([["r", set()]]),
        maxRemovalRatio: 0.5,
      }),
    ).toMatch(/no files for repo r \(it had 2\)/);
  });
  it("refuses dropping more than the ratio of files, accepts ordinary churn and new repos", () => {
    const previous = new Map([["r", set("1", "2", "3", "4")]]);
    expect(
      checkMasterSanity({ previous, current: new Map([["r", set("1")]]), maxRemovalRatio: 0.5 }),
    ).toMatch(/dropped 3 of 4/);
    expect(
      checkMasterSanity({
        previous,
        current: new Map([["r", set("1", "2", "5")]]),
        maxRemovalRatio: 0.5,
      }),
    ).toBeNull();
    expect(
      checkMasterSanity({
        previous: new Map(),
        current: new Map([["new", set()]]),
        maxRemovalRatio: 0.5,
      }),
    ).toBeNull();
  });
});
