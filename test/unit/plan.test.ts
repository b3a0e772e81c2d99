/**
 * The pass planner (src/sync/plan.ts) with plain objects: every kind of action a pass can take,
 * without a disk, a network or a state DB (issue 25).
 */
import { describe, expect, it } from "vitest";
import { createLayouts, DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { RepoLayout } from "../../src/layout/types.js";
import {
  DEFAULT_SERVE_POLICY,
  PENDING_TRANSFORM,
  listedFiles,
  planPass,
  rowChange,
  rowsFor,
  sanityRefusal,
  type PlanInput,
  type RepoPlan,
  type ServePolicy,
} from "../../src/sync/plan.js";
import type { PackageFileRow } from "../../src/state/state-store.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";

const layouts = createLayouts();

const BOOKWORM: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:bookworm:",
  name: "bookworm",
  distro: "debian",
  version: "bookworm",
  fileType: "deb",
  releaseNames: "",
};
const EL9: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:el9:",
  name: "el9",
  distro: "el",
  version: "9",
  fileType: "rpm",
  releaseNames: "",
};

function repo(name: string, extra: Partial<Repo> = {}): Repo {
  return {
    uri: `/api/v2/Repo/Repo:${name}:`,
    name,
    description: name,
    filesystemDir: name,
    managerType: "apt",
    distroVersionUris: [BOOKWORM.uri],
    tag: "prod",
    showOnlyLatest: false,
    ...extra,
  };
}

const hex = (n: number) => n.toString(16).padStart(2, "0").repeat(32);

function file(id: number, pkg: string, extra: Partial<PackageFile> = {}): PackageFile {
  const filename = `${pkg}_1.${id}_all.deb`;
  return {
    uri: `/api/v2/Package/PackageFile:${id}:`,
    packageName: pkg,
    distroVersionUri: BOOKWORM.uri,
    version: `1.${id}`,
    type: "deb",
    arch: "all",
    fileUrl: `/files/${filename}`,
    filename,
    sha256: hex(id),
    tags: ["prod"],
    failedAt: null,
    deprecatedAt: null,
    ...extra,
  };
}

function row(repoName: string, f: PackageFile, extra: Partial<PackageFileRow> = {}) {
  return {
    repo: repoName,
    file: f,
    distro: "debian",
    distroVersion: "bookworm",
    diskSha256: null,
    transformKey: null,
    size: null,
    ...extra,
  } satisfies PackageFileRow;
}

function input(
  repos: Repo[],
  files: Record<string, PackageFile[]>,
  previous: Record<string, PackageFileRow[]> = {},
  extra: Partial<PlanInput> = {},
): PlanInput {
  return {
    repos,
    distroVersions: new Map([BOOKWORM, EL9].map((d) => [d.uri, d])),
    filesByRepo: new Map(Object.entries(files)),
    previousByRepo: new Map(
      Object.entries(previous).map(([r, rows]) => [r, new Map(rows.map((x) => [x.file.uri, x]))]),
    ),
    layoutFor: layouts.layoutFor,
    layoutOptions: DEFAULT_LAYOUT_OPTIONS,
    servePolicy: () => DEFAULT_SERVE_POLICY,
    paths: { rootFiles: ["repo-key", "repo-key.gpg"], keep: [] },
    transformKey: () => null,
    ...extra,
  };
}

/** The one plan of a one-repo pass. */
function only(i: PlanInput): RepoPlan {
  const pass = planPass(i);
  expect(pass.plans).toHaveLength(1);
  return pass.plans[0]!;
}

describe("planPass: where each listed file goes", () => {
  it("a new file: served at the layout's pool path, its row written, announced", () => {
    const f = file(1, "hello");
    const plan = only(input([repo("main")], { main: [f] }));
    expect(plan.desired).toEqual([
      {
        repo: "main",
        file: f,
        paths: ["main/pool/hello/hello_1.1_all.deb"],
        expectedSha256: f.sha256,
      },
    ]);
    expect(rowChange(plan)).toEqual({
      kind: "all",
      rows: [row("main", f)],
      announced: true,
    });
  });

  it("nothing changed: no rows written", () => {
    const files = [file(1, "a"), file(2, "b"), file(3, "c")];
    const plan = only(
      input([repo("main")], { main: files }, { main: files.map((f) => row("main", f)) }),
    );
    expect(plan.desired).toHaveLength(3);
    expect(rowChange(plan)).toEqual({ kind: "none" });
  });

  it("a changed tag list rewrites that package's rows only, and is not announced", () => {
    const files = [file(1, "a"), file(2, "b"), file(3, "c")];
    const retagged = { ...files[1]!, tags: ["prod", "qa"] };
    const plan = only(
      input(
        [repo("main")],
        { main: [files[0]!, retagged, files[2]!] },
        { main: files.map((f) => row("main", f)) },
      ),
    );
    expect(rowChange(plan)).toEqual({
      kind: "packages",
      packages: ["b"],
      rows: [row("main", retagged)],
      announced: false,
    });
  });

  it("a file gone from the listing: its package's rows go (all rows when most changed)", () => {
    const files = [file(1, "a"), file(2, "b"), file(3, "c")];
    const previous = { main: files.map((f) => row("main", f)) };
    const plan = only(input([repo("main")], { main: files.slice(0, 2) }, previous));
    expect(rowChange(plan)).toEqual({
      kind: "packages",
      packages: ["c"],
      rows: [],
      announced: false,
    });
    const emptied = only(input([repo("main")], { main: [] }, previous));
    expect(rowChange(emptied)).toEqual({ kind: "all", rows: [], announced: false });
  });

  it("a file newly failed keeps its row, leaves the index, and is announced", () => {
    const files = [file(1, "a"), file(2, "b"), file(3, "c")];
    const failed = { ...files[0]!, failedAt: "2026-12-01T00:00:00Z" };
    const i = input(
      [repo("main")],
      { main: [failed, files[1]!, files[2]!] },
      { main: files.map((f) => row("main", f)) },
    );
    const plan = only(i);
    expect(plan.listed.map((f) => f.packageName)).toEqual(["a", "b", "c"]);
    expect(plan.desired.map((d) => d.file.packageName)).toEqual(["b", "c"]);
    expect(rowChange(plan)).toMatchObject({ kind: "packages", packages: ["a"], announced: true });
    const served: ServePolicy = { publishFailed: true, publishDeprecated: true };
    expect(only({ ...i, servePolicy: () => served }).desired).toHaveLength(3);
  });

  it("a deprecated file is served unless the repo's policy says otherwise", () => {
    const f = file(1, "a", { deprecatedAt: "2026-12-01T00:00:00Z" });
    const i = input([repo("main")], { main: [f] });
    expect(only(i).desired).toHaveLength(1);
    const policy: ServePolicy = { publishFailed: false, publishDeprecated: false };
    const plan = only({ ...i, servePolicy: () => policy });
    expect(plan.desired).toEqual([]);
    expect(plan.listed).toEqual([f]);
  });

  it("a file of another type, or of a distro version the repo lacks, is skipped with a note", () => {
    const rpm = file(1, "r", { type: "rpm", filename: "r-1-1.el9.noarch.rpm" });
    const other = file(2, "o", { distroVersionUri: EL9.uri });
    const pass = planPass(input([repo("main")], { main: [rpm, other, file(3, "ok")] }));
    expect(pass.plans[0]!.listed.map((f) => f.packageName)).toEqual(["ok"]);
    expect(pass.notes.map((n) => [n.level, n.msg])).toEqual([
      ["warn", "a rpm file does not belong in a apt repo; skipped"],
      ["warn", "file's distro version is not one of the repo's; skipped"],
    ]);
  });

  it("a file the layout would put on its own metadata is refused by name, the rest served", () => {
    const jsonRepo = repo("tools", { managerType: "json" });
    const hostile = file(1, "_repo_main", { type: "json", filename: "MANIFEST_all.json" });
    const fine = file(2, "tool", { type: "json", filename: "tool_1.0.json" });
    const pass = planPass(input([jsonRepo], { tools: [hostile, fine] }));
    const plan = pass.plans[0]!;
    expect(plan.desired.map((d) => d.paths)).toEqual([["tools/tool/tool_1.0.json"]]);
    expect(plan.refused).toHaveLength(1);
    expect(plan.refused[0]).toMatchObject({ file: hostile, code: "PACKRAT_UNSAFE_FILENAME" });
    expect(pass.notes.some((n) => n.level === "error" && n.msg.startsWith("not published"))).toBe(
      true,
    );
  });

  it("two files with different bytes at one path: neither is served", () => {
    const a = file(1, "dup");
    const b = { ...file(2, "dup"), filename: a.filename, fileUrl: a.fileUrl };
    const pass = planPass(input([repo("main")], { main: [a, b, file(3, "other")] }));
    expect(pass.plans[0]!.desired.map((d) => d.file.packageName)).toEqual(["other"]);
    expect(pass.notes.filter((n) => n.msg.includes("both belong at"))).toHaveLength(2);
  });
});

describe("planPass: repos", () => {
  it("a repo of a manager type without a layout: its directory is claimed and left alone", () => {
    const pass = planPass(
      input([repo("main"), repo("docs", { managerType: "sphinx", filesystemDir: "docs" })], {
        main: [file(1, "a")],
      }),
    );
    expect(pass.plans.map((p) => p.repo.name)).toEqual(["main"]);
    expect(pass.skippedDirs).toEqual(["docs"]);
    expect(pass.notes[0]).toMatchObject({ level: "warn", fields: { managerType: "sphinx" } });
  });

  it("a repo whose directory is unsafe or taken is refused as a whole; the others plan", () => {
    const pass = planPass(
      input(
        [
          repo("main"),
          repo("evil", { filesystemDir: "../etc" }),
          repo("key", { filesystemDir: "repo-key" }),
          repo("twin", { filesystemDir: "main" }),
        ],
        { main: [file(1, "a")] },
      ),
    );
    expect(pass.plans.map((p) => p.repo.name)).toEqual(["main"]);
    expect(pass.refusedRepos.map((r) => r.repo.name)).toEqual(["evil", "key", "twin"]);
    for (const r of pass.refusedRepos) expect(r.error).not.toBe("");
  });
});

describe("planPass: files a layout transforms (RPM signing)", () => {
  const yum = repo("el", { managerType: "yum", distroVersionUris: [EL9.uri] });
  const rpm = (id: number) =>
    file(id, `p${id}`, {
      type: "rpm",
      distroVersionUri: EL9.uri,
      filename: `p${id}-1-1.el9.noarch.rpm`,
      arch: "noarch",
    });
  const signing = (l: RepoLayout) => (l.managerType === "yum" ? "KEY1" : null);

  it("a file not yet signed with this key is expected as pending, so it is fetched and signed", () => {
    const f = rpm(1);
    const plan = only(input([yum], { el: [f] }, {}, { transformKey: signing }));
    expect(plan.desired[0]!.expectedSha256).toBe(`${PENDING_TRANSFORM}${f.sha256}`);
  });

  it("a file signed with this key is expected with the signed bytes' hash", () => {
    const f = rpm(1);
    const signed = row("el", f, { diskSha256: hex(200), transformKey: "KEY1", size: 9 });
    const i = input([yum], { el: [f] }, { el: [signed] }, { transformKey: signing });
    expect(only(i).desired[0]!.expectedSha256).toBe(hex(200));
    // Another key, or new bytes from the master: signed again.
    const rekeyed = { ...i, transformKey: () => "KEY2" };
    expect(only(rekeyed).desired[0]!.expectedSha256).toBe(`${PENDING_TRANSFORM}${f.sha256}`);
    // The row keeps what is known of the disk while the master's bytes are the same.
    expect(rowsFor(only(i))[0]).toMatchObject({ diskSha256: hex(200), size: 9 });
    const changed = { ...f, sha256: hex(7) };
    const next = input([yum], { el: [changed] }, { el: [signed] }, { transformKey: signing });
    expect(rowsFor(only(next))[0]).toMatchObject({ diskSha256: null, size: null });
  });
});

describe("listedFiles", () => {
  it("leaves out a file not tagged with the repo's tag, and keeps a skipped one it served", () => {
    const kept = file(1, "kept");
    const untagged = file(2, "gone", { tags: ["qa"] });
    const out = listedFiles(
      repo("main"),
      {
        files: [untagged, file(3, "ok")],
        skipped: [
          { uri: kept.uri, fileUrl: kept.fileUrl, code: "PACKRAT_UNSAFE_FILENAME", reason: "bad" },
          { uri: "/new", fileUrl: "/files/new", code: "PACKRAT_UNSAFE_FILENAME", reason: "worse" },
        ],
      },
      new Map([[kept.uri, row("main", kept)]]),
    );
    expect(out.files.map((f) => f.packageName)).toEqual(["ok", "kept"]);
    expect(out.skipped).toEqual([
      { repo: "main", uri: kept.uri, error: "bad" },
      { repo: "main", uri: "/new", error: "worse" },
    ]);
    expect(out.notes.map((n) => n.level)).toEqual(["debug", "warn"]);
  });
});

describe("sanityRefusal (the safety valve)", () => {
  const files = [1, 2, 3, 4].map((i) => file(i, `p${i}`));
  const previous = new Map([["main", new Map(files.map((f) => [f.uri, row("main", f)] as const))]]);

  it("refuses a listing that drops more than max_removal_ratio of a repo", () => {
    const pass = planPass(input([repo("main")], { main: files.slice(0, 1) }));
    expect(sanityRefusal(pass.plans, previous, 0.5)).toMatch(/dropped 3 of 4 package files/);
  });

  it("lets a listing within the ratio through", () => {
    const pass = planPass(input([repo("main")], { main: files.slice(0, 3) }));
    expect(sanityRefusal(pass.plans, previous, 0.5)).toBeNull();
  });
});
