/**
 * .udeb and .ddeb files where Debian's tools put them: udebs in
 * `dists/<codename>/main/debian-installer/binary-<arch>/Packages` (as `dpkg-scanpackages -t udeb`
 * indexes them), debug packages in a `<codename>-debug` dist of their own (as
 * `dpkg-scanpackages -t ddeb` indexes them), and neither among the .debs. Packages are built by
 * the real dpkg-deb; the real apt-get reads the indexes with signatures on.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aptLayout } from "../../src/layout/apt.js";
import { checkAptRepo } from "../../src/layout/checks/apt.js";
import { parseControlStanza } from "../../src/layout/formats/deb-control.js";
import type { RenderedFile } from "../../src/layout/types.js";
import { AptGetError, runAptGet } from "../support/apt-client.js";
import {
  buildDebWithDpkg,
  controlText,
  publishDeb,
  renderInput,
  testDistroVersion,
  testRepo,
} from "../support/deb-builder.js";
import type { StaticServer } from "../support/static-server.js";
import { startStaticServer } from "../support/static-server.js";
import { makeTestSigner } from "../support/test-signer.js";
import { writeTree } from "../support/write-tree.js";

const run = promisify(execFile);

const PACKAGES = [
  { file: "hello_1.0-1_amd64.deb", name: "hello", arch: "amd64", extra: {} },
  {
    file: "hello-udeb_1.0-1_amd64.udeb",
    name: "hello-udeb",
    arch: "amd64",
    extra: { Section: "debian-installer", "Package-Type": "udeb" },
  },
  {
    file: "di-data_2.0_all.udeb",
    name: "di-data",
    arch: "all",
    extra: { Section: "debian-installer", "Package-Type": "udeb" },
  },
  {
    file: "hello-dbgsym_1.0-1_amd64.ddeb",
    name: "hello-dbgsym",
    arch: "amd64",
    // What debhelper's dh_strip writes into a ddeb.
    extra: {
      Section: "debug",
      "Package-Type": "ddeb",
      "Auto-Built-Package": "debug-symbols",
      "Build-Ids": "0123456789abcdef0123456789abcdef01234567",
    },
  },
] as const;

let dir: string;
let repoDir: string;
let files: RenderedFile[];
let warnings: string[];
let server: StaticServer;
let keyring: string;

const text = (p: string) =>
  new TextDecoder().decode(files.find((f) => f.path === p)?.content ?? new Uint8Array());

/** Stanzas keyed by Filename. */
function byFilename(packages: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const stanza of packages.split(/\n\n+/).filter((s) => s.trim() !== "")) {
    map.set(/^Filename: (.*)$/m.exec(stanza)?.[1] ?? "?", `${stanza.trimEnd()}\n`);
  }
  return map;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-udeb-"));
  const build = path.join(dir, "build");
  await mkdir(build);
  const { signer } = await makeTestSigner();
  const repo = testRepo("prod-apt");
  const dv = testDistroVersion("deb12", "bookworm");
  const published = [];
  for (const p of PACKAGES) {
    const control = controlText({
      Package: p.name,
      Version: p.file.split("_")[1]!,
      Architecture: p.arch,
      Maintainer: "Packrat Tests <tests@example.invalid>",
      ...p.extra,
      Description: `${p.name} for the udeb and ddeb tests`,
    });
    const bytes = await buildDebWithDpkg(build, p.file, {
      control,
      files: { [`usr/share/${p.name}/README`]: `${p.name}\n` },
    });
    published.push(await publishDeb(bytes, p.file, dv, repo));
  }
  const result = await aptLayout.render(
    renderInput(published, [dv], {
      repo,
      signer,
      options: { ...renderInput([], []).options, aptArchitectures: ["amd64", "arm64"] },
    }),
  );
  files = result.files;
  warnings = result.warnings;
  repoDir = path.join(dir, "prod-apt");
  await writeTree(repoDir, files, published);
  keyring = path.join(dir, "prod-apt.gpg");
  await writeFile(keyring, signer.publicKeyBinary());
  server = await startStaticServer(dir);
}, 120_000);

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("udebs and ddebs", () => {
  it("indexes udebs as dpkg-scanpackages -t udeb does, in debian-installer, and only there", async () => {
    expect(warnings).toEqual([]);
    const { stdout } = await run(
      "dpkg-scanpackages",
      ["--multiversion", "--type", "udeb", "pool", "/dev/null"],
      { cwd: repoDir },
    );
    const theirs = byFilename(stdout);
    expect(theirs.size).toBe(2);
    const amd64 = byFilename(text("dists/bookworm/main/debian-installer/binary-amd64/Packages"));
    expect([...amd64.keys()].sort()).toEqual([...theirs.keys()].sort());
    for (const [filename, stanza] of theirs) {
      const mine = amd64.get(filename)!;
      expect(new Map(parseControlStanza(mine))).toEqual(new Map(parseControlStanza(stanza)));
      expect(mine).toBe(stanza);
    }
    // The Architecture: all udeb in every architecture's installer index, as for debs.
    expect([
      ...byFilename(text("dists/bookworm/main/debian-installer/binary-arm64/Packages")).keys(),
    ]).toEqual(["pool/di-dat/di-data_2.0_all.udeb"]);
    // Not among the debs.
    expect([...byFilename(text("dists/bookworm/main/binary-amd64/Packages")).keys()]).toEqual([
      "pool/hello/hello_1.0-1_amd64.deb",
    ]);
    // The Release names the installer indexes (apt trusts nothing it does not list).
    const release = text("dists/bookworm/Release");
    for (const arch of ["amd64", "arm64"]) {
      for (const ext of ["", ".gz", ".xz"]) {
        expect(release).toMatch(
          new RegExp(` [0-9a-f]{64} +\\d+ main/debian-installer/binary-${arch}/Packages${ext}\n`),
        );
      }
    }
  });

  it("puts ddebs in the <codename>-debug dist, as dpkg-scanpackages -t ddeb indexes them", async () => {
    const { stdout } = await run(
      "dpkg-scanpackages",
      ["--multiversion", "--type", "ddeb", "pool", "/dev/null"],
      { cwd: repoDir },
    );
    const theirs = byFilename(stdout);
    const mine = byFilename(text("dists/bookworm-debug/main/binary-amd64/Packages"));
    expect([...mine.keys()]).toEqual(["pool/hello-/hello-dbgsym_1.0-1_amd64.ddeb"]);
    expect(mine).toEqual(theirs);
    expect(text("dists/bookworm-debug/Release")).toMatch(/^Suite: bookworm-debug$/m);
    expect(text("dists/bookworm-debug/Release")).toMatch(/^Codename: bookworm-debug$/m);
    expect(text("dists/bookworm/main/binary-amd64/Packages")).not.toContain("dbgsym");
    // A dist without udebs has no installer index.
    expect(files.some((f) => f.path.startsWith("dists/bookworm-debug/main/debian-installer"))).toBe(
      false,
    );
  });

  it("passes the agent's own client-view check (every index the Releases list, every file)", async () => {
    const read = async (rel: string) => readFile(path.join(repoDir, rel)).catch(() => null);
    const result = await checkAptRepo({
      reader: {
        read,
        packageInfo: async (rel) => {
          const bytes = await read(rel);
          return bytes === null
            ? null
            : { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
        },
      },
      metadataPaths: files.map((f) => f.path),
      verifier: null,
    });
    expect(result.problems).toEqual([]);
    expect(result.entryPoints).toBe(2);
    // hello (amd64), hello-udeb (amd64), di-data (amd64 and arm64), hello-dbgsym.
    expect(result.packages).toBe(5);
  });

  const apt = (suite: string, components: string[], packages: string[]) =>
    runAptGet({
      repoUrl: `${server.url}/prod-apt`,
      suite,
      components,
      keyringPath: keyring,
      archs: ["amd64"],
      packages,
    });

  it("real apt-get reads the debian-installer index, signatures on, and fetches a udeb", async () => {
    const r = await apt("bookworm", ["main/debian-installer"], ["hello-udeb", "di-data"]);
    expect(r.updateOutput).toMatch(/Get:\d+ \S+ bookworm InRelease/);
    expect(r.fetchedUrls.some((u) => u.includes("/main/debian-installer/binary-amd64/"))).toBe(
      true,
    );
    expect(r.downloadedFiles).toEqual(["di-data_2.0_all.udeb", "hello-udeb_1.0-1_amd64.udeb"]);
    // ...and a plain `main` line does not see udebs.
    await expect(apt("bookworm", ["main"], ["hello-udeb"])).rejects.toThrow(AptGetError);
    const debs = await apt("bookworm", ["main"], ["hello"]);
    expect(debs.downloadedFiles).toEqual(["hello_1.0-1_amd64.deb"]);
  }, 120_000);

  it("real apt-get reads the -debug dist and fetches the ddeb", async () => {
    const r = await apt("bookworm-debug", ["main"], ["hello-dbgsym"]);
    expect(r.updateOutput).toMatch(/Get:\d+ \S+ bookworm-debug InRelease/);
    expect(r.downloadedFiles).toEqual(["hello-dbgsym_1.0-1_amd64.ddeb"]);
    await expect(apt("bookworm", ["main"], ["hello-dbgsym"])).rejects.toThrow(AptGetError);
  }, 120_000);
});
