/**
 * The real dnf against a rendered yum tree: two distro versions (two repodata dirs), signed
 * repomd.xml (repo_gpgcheck=1) and signed RPMs (gpgcheck=1), served over HTTP on 127.0.0.1.
 * dnf runs with a private config, reposdir, cachedir and installroot; nothing of the host's
 * dnf or rpm configuration is read or written.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bufferSource,
  type LayoutOptions,
  type PublishedPackage,
  type RenderedFile,
} from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { yumLayout } from "../../src/layout/yum.js";
import type { Signer } from "../../src/signing/signer.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";
import {
  buildRpmsWithRpmbuild,
  buildSyntheticRpm,
  STANDARD_SPECS,
  syntheticRpmFilename,
} from "../support/rpm-builder.js";
import { gpgEd25519TestSigner } from "../support/rpm-test-key.js";
import { makeTestSigner } from "../support/test-signer.js";
import { startStaticServer, type StaticServer } from "../support/static-server.js";
import { runDnf, writeDnfConfig, type DnfRun } from "../support/dnf-client.js";
import { writeTree } from "../support/write-tree.js";

const run = promisify(execFile);

const rhel9: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:rhel9:",
  name: "rhel9",
  distro: "rhel",
  version: "9",
  fileType: "rpm",
  releaseNames: "",
};
const rhel8: DistroVersion = {
  ...rhel9,
  uri: "/api/v2/Attrib/DistroVersion:rhel8:",
  name: "rhel8",
  version: "8",
};
const repo: Repo = {
  uri: "/api/v2/Repo/Repo:prod-yum:",
  name: "prod-yum",
  description: "",
  filesystemDir: "yum",
  managerType: "yum",
  distroVersionUris: [rhel9.uri, rhel8.uri],
  tag: "prod",
  showOnlyLatest: false,
};
/** A package that needs nothing but rpmlib, so an empty installroot resolves it. */
const eightOnly = {
  name: "eight-only",
  version: "8.1",
  release: "2",
  arch: "x86_64",
  files: { "/usr/bin/eight": "8" },
  compress: "gzip" as const,
};
const options: LayoutOptions = { ...DEFAULT_LAYOUT_OPTIONS, signRpmPackages: true };

let dir: string;
let signer: Signer;
let server: StaticServer;
let files: RenderedFile[];
let published: { pkg: PublishedPackage; bytes: Uint8Array }[];
let keyFile: string;

/** Parse, sign (derive) and place one RPM as the sync engine would. */
async function publish(filename: string, original: Uint8Array, dv: DistroVersion) {
  const rewrite = yumLayout.derive!.wants(options, signer)?.rewrite === true;
  const derived = rewrite
    ? await yumLayout.derive!.run(bufferSource(original), filename, signer, options)
    : {};
  const bytes = derived.bytes ?? original;
  // Parse the bytes as published: the signature header moved the header range.
  const meta = await yumLayout.parse(bufferSource(bytes), filename);
  const arch = meta.arch as string;
  const file: PackageFile = {
    uri: `/api/v2/Package/PackageFile:${dv.name}-${filename}:`,
    packageName: meta.name as string,
    distroVersionUri: dv.uri,
    version: `${meta.version as string}-${meta.release as string}`,
    type: "rpm",
    arch: arch === "noarch" ? "all" : arch,
    fileUrl: `/files/${filename}`,
    filename,
    sha256: createHash("sha256").update(original).digest("hex"),
    tags: ["prod"],
    failedAt: null,
    deprecatedAt: null,
  };
  const paths = yumLayout.placePackage({ repo, file, distroVersion: dv, repoArches: [], options });
  const pkg: PublishedPackage = {
    file,
    distroVersion: dv,
    paths,
    size: bytes.length,
    sha256: meta.sha256 as string,
    meta,
  };
  return { pkg, bytes };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-dnf-"));
  signer = await gpgEd25519TestSigner();
  const built = await buildRpmsWithRpmbuild(path.join(dir, "build"), STANDARD_SPECS);
  published = [];
  for (const p of built) published.push(await publish(path.basename(p), await readFile(p), rhel9));
  published.push(
    await publish(syntheticRpmFilename(eightOnly), buildSyntheticRpm(eightOnly), rhel8),
  );

  const result = await yumLayout.render({
    repo,
    distroVersions: new Map([
      [rhel9.uri, rhel9],
      [rhel8.uri, rhel8],
    ]),
    packages: published.map((p) => p.pkg),
    signer,
    options,
    now: new Date(),
  });
  expect(result.warnings).toEqual([]);
  files = result.files;
  await writeTree(
    path.join(dir, "www", "yum"),
    files,
    published.map((p) => ({ paths: p.pkg.paths, content: p.bytes })),
  );
  keyFile = path.join(dir, "repo-key.asc");
  await writeFile(keyFile, signer.publicKeyArmored());
  server = await startStaticServer(path.join(dir, "www"));
}, 120_000);

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** dnf with a private everything; `root` names a fresh set of dirs per scenario. */
async function dnf(
  root: string,
  baseUrl: string,
  args: string[],
  repoKey = keyFile,
  packageGpgcheck = true,
): Promise<DnfRun> {
  const setup = {
    base: path.join(dir, "dnf", root),
    repos: ["9", "8"].map((v) => ({
      id: `packrat-rhel${v}`,
      baseUrl: `${baseUrl}/yum/rhel/main/${v}/`,
    })),
    keyFile: repoKey,
    packageGpgcheck,
  };
  await writeDnfConfig(setup);
  return runDnf(setup, args);
}

describe("dnf against the yum layout", () => {
  it("renders one repodata per distro version, entry points after content", () => {
    const repomds = files.filter((f) => f.path.endsWith("/repomd.xml")).map((f) => f.path);
    expect(repomds.sort()).toEqual([
      "rhel/main/8/repodata/repomd.xml",
      "rhel/main/9/repodata/repomd.xml",
    ]);
    for (const f of files) {
      if (f.contentAddressed) expect(f.stage).toBe(0);
      else expect(f.stage).toBeGreaterThan(0);
    }
  });

  it("makecache with repo_gpgcheck=1 succeeds and fetches the signature", async () => {
    const r = await dnf("good", server.url, ["makecache"]);
    expect(r.output).not.toMatch(/Error|Failed/);
    expect(r.ok).toBe(true);
    const fetched = server.requests.map((q) => q.path);
    expect(fetched).toContain("/yum/rhel/main/9/repodata/repomd.xml.asc");
    expect(fetched).toContain("/yum/rhel/main/8/repodata/repomd.xml.asc");
    expect(
      fetched.some((p) =>
        /^\/yum\/rhel\/main\/9\/repodata\/[0-9a-f]{64}-primary\.xml\.gz$/.test(p),
      ),
    ).toBe(true);
  });

  it("dnf download fetches every package with the published bytes, and rpmkeys accepts them", async () => {
    const dest = path.join(dir, "downloads");
    const names = [...new Set(published.map((p) => p.pkg.meta.name as string))];
    const r = await dnf("good", server.url, ["download", `--destdir=${dest}`, ...names]);
    expect(r.ok, r.output).toBe(true);
    const got = (await readdir(dest)).sort();
    expect(got).toEqual(published.map((p) => p.pkg.file.filename).sort());
    const db = ["--dbpath", path.join(dir, "rpmdb")];
    await run("rpmdb", [...db, "--initdb"]);
    await run("rpmkeys", [...db, "--import", keyFile]);
    for (const p of published) {
      const bytes = await readFile(path.join(dest, p.pkg.file.filename));
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(p.pkg.sha256);
      const { stdout } = await run("rpmkeys", [
        ...db,
        "--checksig",
        path.join(dest, p.pkg.file.filename),
      ]);
      expect(stdout).toContain("digests signatures OK");
    }
  });

  it("rejects a tampered repomd.xml", async () => {
    const www = path.join(dir, "www-tampered-repomd");
    await writeTree(
      path.join(www, "yum"),
      files,
      published.map((p) => ({ paths: p.pkg.paths, content: p.bytes })),
    );
    const repomd = path.join(www, "yum/rhel/main/9/repodata/repomd.xml");
    const text = await readFile(repomd, "utf8");
    await writeFile(
      repomd,
      text.replace(
        /<revision>(\d+)<\/revision>/,
        (_, n: string) => `<revision>${Number(n) + 1}</revision>`,
      ),
    );
    const tampered = await startStaticServer(www);
    try {
      const r = await dnf("tampered-repomd", tampered.url, ["makecache"]);
      expect(r.ok).toBe(false);
      expect(r.output).toContain("repomd.xml GPG signature verification error: Bad GPG signature");
    } finally {
      await tampered.close();
    }
  });

  it("rejects a corrupted primary.xml.gz", async () => {
    const www = path.join(dir, "www-corrupt-primary");
    const corrupted = files.map((f) =>
      /rhel\/main\/9\/repodata\/.*-primary\.xml\.gz$/.test(f.path)
        ? {
            ...f,
            content: Buffer.concat([f.content.subarray(0, f.content.length - 8), Buffer.alloc(8)]),
          }
        : f,
    );
    await writeTree(
      path.join(www, "yum"),
      corrupted,
      published.map((p) => ({ paths: p.pkg.paths, content: p.bytes })),
    );
    const bad = await startStaticServer(www);
    try {
      const r = await dnf("corrupt-primary", bad.url, ["makecache"]);
      expect(r.ok).toBe(false);
      expect(r.output).toContain("checksum doesn't match");
    } finally {
      await bad.close();
    }
  });

  it("accepts repomd.xml signed by an openpgp.js key with a signing subkey (what keygen makes)", async () => {
    // dnf checks repomd.xml.asc with gpgme, which reads these keys; only rpm's own key
    // import refuses them (see yum-rpm-sign.test.ts), so packages stay unsigned here.
    const { signer: jsSigner } = await makeTestSigner();
    const unsigned = { ...options, signRpmPackages: false };
    const result = await yumLayout.render({
      repo,
      distroVersions: new Map([[rhel8.uri, rhel8]]),
      packages: [],
      signer: jsSigner,
      options: unsigned,
      now: new Date(),
    });
    const www = path.join(dir, "www-openpgpjs");
    await writeTree(path.join(www, "yum"), result.files);
    const jsKey = path.join(dir, "openpgpjs-key.asc");
    await writeFile(jsKey, jsSigner.publicKeyArmored());
    const srv = await startStaticServer(www);
    try {
      // Only the rhel8 repo exists in this tree; rhel9 is skipped for this run.
      const r = await dnf(
        "openpgpjs",
        srv.url,
        ["--disablerepo=packrat-rhel9", "makecache"],
        jsKey,
        false,
      );
      expect(r.output).not.toMatch(/Error/);
      expect(r.ok).toBe(true);
      expect(srv.requests.map((q) => q.path)).toContain("/yum/rhel/main/8/repodata/repomd.xml.asc");
    } finally {
      await srv.close();
    }
  });

  it("reads zstd-compressed metadata (yum_compression = zstd)", async () => {
    const zstd = { ...options, yumCompression: "zstd" as const };
    const rhel8Packages = published.filter((p) => p.pkg.distroVersion === rhel8);
    const result = await yumLayout.render({
      repo,
      distroVersions: new Map([[rhel8.uri, rhel8]]),
      packages: rhel8Packages.map((p) => p.pkg),
      signer,
      options: zstd,
      now: new Date(),
    });
    expect(result.files.some((f) => f.path.endsWith("-primary.xml.zst"))).toBe(true);
    const www = path.join(dir, "www-zstd");
    await writeTree(
      path.join(www, "yum"),
      result.files,
      rhel8Packages.map((p) => ({ paths: p.pkg.paths, content: p.bytes })),
    );
    const srv = await startStaticServer(www);
    try {
      const dest = path.join(dir, "downloads-zstd");
      const r = await dnf("zstd", srv.url, [
        "--disablerepo=packrat-rhel9",
        "download",
        `--destdir=${dest}`,
        "eight-only",
      ]);
      expect(r.ok, r.output).toBe(true);
      expect(await readdir(dest)).toEqual(rhel8Packages.map((p) => p.pkg.file.filename));
    } finally {
      await srv.close();
    }
  });

  it("dnf install --downloadonly checks the RPM signature (gpgcheck=1)", async () => {
    const r = await dnf("downloadonly", server.url, [
      "--disablerepo=packrat-rhel9",
      "install",
      "--downloadonly",
      "eight-only",
    ]);
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain("Key imported successfully");
  });

  it("dnf install --downloadonly refuses the same package unsigned", async () => {
    const bytes = buildSyntheticRpm(eightOnly);
    const meta = await yumLayout.parse(bufferSource(bytes), syntheticRpmFilename(eightOnly));
    const signedPkg = published.find((p) => p.pkg.meta.name === "eight-only")!.pkg;
    const pkg: PublishedPackage = {
      ...signedPkg,
      meta,
      size: bytes.length,
      sha256: meta.sha256 as string,
    };
    const result = await yumLayout.render({
      repo,
      distroVersions: new Map([[rhel8.uri, rhel8]]),
      packages: [pkg],
      signer,
      options: { ...options, signRpmPackages: false },
      now: new Date(),
    });
    const www = path.join(dir, "www-unsigned-rpm");
    await writeTree(path.join(www, "yum"), result.files, [{ paths: pkg.paths, content: bytes }]);
    const srv = await startStaticServer(www);
    try {
      const r = await dnf("unsigned-rpm", srv.url, [
        "--disablerepo=packrat-rhel9",
        "install",
        "--downloadonly",
        "eight-only",
      ]);
      expect(r.ok).toBe(false);
      expect(r.output).toMatch(/not signed/);
    } finally {
      await srv.close();
    }
  });
});
