/**
 * A directory as a repo's source (src/sync/directory-source.ts): what it lists, when a file is
 * complete enough to take, what it reports and skips, what a poll answers, and that it never
 * writes to the directory.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { samplePackages } from "../../src/demo/sample-mirror.js";
import { createLayouts } from "../../src/layout/index.js";
import { silentLogger } from "../../src/log.js";
import {
  DirectorySource,
  SOURCE_TAG,
  type DirectoryRepo,
} from "../../src/sync/directory-source.js";

const FORMAT_OF_TYPE: Record<string, string> = {
  deb: "apt",
  rpm: "yum",
  pacman: "pacman",
  python: "pypi",
  tar: "json",
};

let dir: string;
let clock: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "packrat-dirsource-"));
  clock = Date.now() + 60_000; // every file written now is a minute old: settled
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function source(repos: DirectoryRepo[], opts: { settleMs?: number; quietMs?: number } = {}) {
  return new DirectorySource({
    repos,
    description: "test",
    layoutFor: createLayouts().layoutFor,
    log: silentLogger(),
    now: () => clock,
    ...opts,
  });
}

const uriOf = (name: string) => `/local/Repo:${name}:`;
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("DirectorySource", () => {
  it("lists each format's packages as the package itself names them", async () => {
    const repos: DirectoryRepo[] = [];
    const expected = new Map<string, { name: string; arch: string; sha: string; file: string }[]>();
    for (const pkg of samplePackages(3)) {
      const format = FORMAT_OF_TYPE[pkg.type]!;
      const sub = join(dir, format);
      await writeFile(join(await mkdirp(sub), pkg.filename), pkg.content);
      if (!repos.some((r) => r.name === format))
        repos.push({
          name: format,
          format,
          source: sub,
          ...(format === "apt" ? { version: "bookworm" } : {}),
        });
      const list = expected.get(format) ?? [];
      list.push({
        name: pkg.package,
        arch: pkg.arch,
        sha: sha256(pkg.content),
        file: pkg.filename,
      });
      expected.set(format, list);
    }
    const src = source(repos);
    const mirror = await src.getMirror();
    const listed = await src.getRepos(mirror.repoUris);
    expect(listed.map((r) => [r.name, r.managerType, r.filesystemDir, r.tag])).toEqual(
      repos.map((r) => [r.name, r.format, r.name, SOURCE_TAG]),
    );
    const dvs = await src.getDistroVersions();
    expect(dvs.find((d) => d.name === "apt")).toMatchObject({
      distro: "debian",
      version: "bookworm",
    });
    expect(dvs.find((d) => d.name === "yum")).toMatchObject({ distro: "el", version: "9" });
    for (const repo of repos) {
      const { files, skipped } = await src.listPackageFiles(uriOf(repo.name));
      expect(skipped).toEqual([]);
      const got = files.map((f) => ({
        name: f.packageName,
        arch: f.arch,
        sha: f.sha256,
        file: f.filename,
      }));
      const sort = (a: { file: string }, b: { file: string }) => a.file.localeCompare(b.file);
      expect(got.sort(sort), repo.name).toEqual(expected.get(repo.name)!.sort(sort));
      for (const f of files) {
        expect(f.tags).toEqual([SOURCE_TAG]);
        expect(f.distroVersionUri).toBe(dvs.find((d) => d.name === repo.name)!.uri);
        // The copy the engine downloads is the listed file's bytes.
        const copy = await buffer((await src.download(f.fileUrl)).body);
        expect(sha256(copy)).toBe(f.sha256);
      }
    }
    await src.close();
  });

  it("takes a file only once it is complete, and never a temp or dot name", async () => {
    const [deb] = samplePackages(1).filter((p) => p.type === "deb");
    const src = source([{ name: "apt", format: "apt", source: dir }], { settleMs: 2000 });
    await writeFile(join(dir, `${deb!.filename}.part`), deb!.content);
    await writeFile(join(dir, `.${deb!.filename}`), deb!.content);
    // Written "just now" by the source's clock: still being written.
    await writeFile(join(dir, deb!.filename), deb!.content.subarray(0, 100));
    clock = (await stat(join(dir, deb!.filename))).mtimeMs + 500;
    expect((await src.listPackageFiles(uriOf("apt"))).files).toEqual([]);
    // The writer finishes; the file then rests for the settle time.
    await writeFile(join(dir, deb!.filename), deb!.content);
    clock = (await stat(join(dir, deb!.filename))).mtimeMs + 500;
    expect((await src.listPackageFiles(uriOf("apt"))).files).toEqual([]);
    clock += 2000;
    const { files, skipped } = await src.listPackageFiles(uriOf("apt"));
    expect(skipped).toEqual([]);
    expect(files.map((f) => f.filename)).toEqual([deb!.filename]);
    expect(files[0]!.sha256).toBe(sha256(deb!.content));
    await src.close();
  });

  it("reports a file that is not a package and lists the others", async () => {
    const [good] = samplePackages(1).filter((p) => p.type === "rpm");
    await writeFile(join(dir, good!.filename), good!.content);
    await writeFile(join(dir, "broken-1.0-1.noarch.rpm"), "not an rpm at all");
    const src = source([{ name: "yum", format: "yum", source: dir }]);
    const { files, skipped } = await src.listPackageFiles(uriOf("yum"));
    expect(files.map((f) => f.filename)).toEqual([good!.filename]);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({
      code: "PACKRAT_PACKAGE_INVALID",
      fileUrl: "broken-1.0-1.noarch.rpm",
    });
    expect(skipped[0]!.reason).toContain("broken-1.0-1.noarch.rpm");
    await src.close();
  });

  it("answers a poll with the names that changed, once the burst is quiet", async () => {
    const debs = samplePackages(1).filter((p) => p.type === "deb");
    await writeFile(join(dir, debs[0]!.filename), debs[0]!.content);
    clock = Date.now() + 60_000;
    const src = source([{ name: "apt", format: "apt", source: dir }], {
      settleMs: 0,
      quietMs: 100,
    });
    // The full listing publishes what is there: polls report changes from then on.
    await src.listPackageFiles(uriOf("apt"));
    const answer = src.poll(uriOf("apt"), 20);
    await src.whenWatching(uriOf("apt"));
    const tmp = join(dir, `${debs[1]!.filename}.tmp`);
    await writeFile(tmp, debs[1]!.content);
    await rename(tmp, join(dir, debs[1]!.filename));
    await rm(join(dir, debs[0]!.filename));
    expect((await answer).sort()).toEqual([debs[0]!.package, debs[1]!.package].sort());
    const { files } = await src.listPackageFiles(uriOf("apt"), [debs[1]!.package]);
    expect(files.map((f) => f.filename)).toEqual([debs[1]!.filename]);
    await src.close();
  });

  it("times out a poll with [] when nothing changes, and writes nothing to the source", async () => {
    const [deb] = samplePackages(1).filter((p) => p.type === "deb");
    await writeFile(join(dir, deb!.filename), deb!.content);
    await utimes(join(dir, deb!.filename), 1_000_000, 1_000_000);
    const before = await readdir(dir);
    const src = source([{ name: "apt", format: "apt", source: dir }], { quietMs: 50 });
    clock = Date.now();
    await src.listPackageFiles(uriOf("apt"));
    const realNow = Date.now;
    const polled = new DirectorySource({
      repos: [{ name: "apt", format: "apt", source: dir }],
      description: "test",
      layoutFor: createLayouts().layoutFor,
      log: silentLogger(),
      now: realNow,
    });
    await polled.listPackageFiles(uriOf("apt"));
    expect(await polled.poll(uriOf("apt"), 0.3)).toEqual([]);
    expect(await readdir(dir)).toEqual(before);
    const copy = await buffer((await polled.download(`local://apt/${deb!.filename}`)).body);
    expect(sha256(copy)).toBe(sha256(deb!.content));
    await polled.close();
    await src.close();
  });

  it("reports at the next poll a file that a listing for other names took", async () => {
    const debs = samplePackages(1).filter((p) => p.type === "deb");
    const src = source([{ name: "apt", format: "apt", source: dir }]);
    await src.listPackageFiles(uriOf("apt"));
    await writeFile(join(dir, debs[0]!.filename), debs[0]!.content);
    // An incremental pass for another package lists (and so takes) the new file, unreported.
    expect((await src.listPackageFiles(uriOf("apt"), ["something-else"])).files).toEqual([]);
    expect(await src.poll(uriOf("apt"), 5)).toEqual([debs[0]!.package]);
    await src.close();
  });

  it("refuses to copy a path it did not list", async () => {
    const src = source([{ name: "apt", format: "apt", source: dir }]);
    await src.listPackageFiles(uriOf("apt"));
    await expect(src.download("local://apt/../../etc/passwd")).rejects.toMatchObject({
      code: "PACKRAT_SOURCE",
    });
    await src.close();
  });
});

describe("DirectorySource, a repo published in place", () => {
  it("names each package at its path in the source and never lists the agent's metadata back", async () => {
    const [deb] = samplePackages(0).filter((p) => p.type === "deb");
    await writeFile(join(await mkdirp(join(dir, "builds/2026")), deb!.filename), deb!.content);
    // The agent's own apt metadata beside it: never a package, never reported.
    await writeFile(
      join(await mkdirp(join(dir, "dists/stable/main/binary-amd64")), "Packages"),
      "",
    );
    // A real package where the metadata goes: reported as skipped, not indexed.
    await writeFile(join(dir, "dists", deb!.filename), deb!.content);
    const src = source([
      { name: "apt", format: "apt", source: dir, inPlace: true, publishDir: "incoming/apt" },
    ]);
    const [repo] = await src.getRepos([uriOf("apt")]);
    expect(repo!.filesystemDir).toBe("incoming/apt");
    const { files, skipped } = await src.listPackageFiles(uriOf("apt"));
    expect(files.map((f) => f.fileUrl)).toEqual([`local://apt/builds/2026/${deb!.filename}`]);
    expect(skipped).toEqual([
      expect.objectContaining({
        code: "PACKRAT_UNSAFE_FILENAME",
        fileUrl: `dists/${deb!.filename}`,
        reason: expect.stringContaining(
          "where the apt layout writes the repo's metadata",
        ) as string,
      }),
    ]);
    await src.close();
  });

  it("gives a yum repo in place its repodata at the top (no distro directories)", async () => {
    const src = source([{ name: "yum", format: "yum", source: dir, inPlace: true }]);
    const [dv] = await src.getDistroVersions();
    expect(dv).toMatchObject({ distro: "", version: null });
    const root = source([{ name: "yum", format: "yum", source: dir }]);
    expect((await root.getDistroVersions())[0]).toMatchObject({ distro: "el", version: "9" });
    await src.close();
    await root.close();
  });
});

async function mkdirp(path: string): Promise<string> {
  const { mkdir } = await import("node:fs/promises");
  await mkdir(path, { recursive: true });
  return path;
}
