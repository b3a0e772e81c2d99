/**
 * The shipped nginx example (etc/nginx/packrat-mirror.conf) in front of a real apt repo:
 * the real nginx serves a tree built with dpkg-deb, dpkg-scanpackages and gpg, and the real
 * apt-get updates and downloads through it. Then the headers the config promises: long cache
 * for content-addressed paths, revalidation for entry points, no Content-Encoding on
 * compressed files, PEP 691 negotiation, and no access to the publisher's dot directories.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAptGet } from "../support/apt-client.js";
import { checkNginxConfig, startNginx, type RunningNginx } from "../support/nginx.js";

const run = promisify(execFile);
const IMMUTABLE = "public, max-age=31536000, immutable";

let work: string;
let root: string;
let keyring: string;
let nginx: RunningNginx;
let packagesGzSha256: string;
let debBytes: Buffer;

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

/** A one-file Architecture: all package, built by the real dpkg-deb. */
async function buildDeb(dest: string): Promise<void> {
  const pkg = path.join(work, "pkg");
  await mkdir(path.join(pkg, "DEBIAN"), { recursive: true });
  await mkdir(path.join(pkg, "usr/share/doc/packrat-hello"), { recursive: true });
  await writeFile(path.join(pkg, "usr/share/doc/packrat-hello/README"), "hello from packrat\n");
  await writeFile(
    path.join(pkg, "DEBIAN/control"),
    [
      "Package: packrat-hello",
      "Version: 1.0-1",
      "Architecture: all",
      "Maintainer: Test <test@example.com>",
      "Description: tiny package for the nginx config test",
      "",
    ].join("\n"),
  );
  await mkdir(path.dirname(dest), { recursive: true });
  await run("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", pkg, dest]);
}

/** Release as apt-ftparchive writes it (that tool is in apt-utils, which CI does not install). */
function renderRelease(files: Record<string, Buffer>): string {
  const lines = [
    "Origin: packrat-test",
    "Label: packrat-test",
    "Suite: stable",
    "Codename: stable",
    `Date: ${new Date().toUTCString().replace("GMT", "UTC")}`,
    "Architectures: amd64",
    "Components: main",
    "Acquire-By-Hash: yes",
    "MD5Sum:",
  ];
  const entries = Object.entries(files);
  for (const [name, b] of entries) lines.push(` ${md5(b)} ${b.length} ${name}`);
  lines.push("SHA256:");
  for (const [name, b] of entries) lines.push(` ${sha256(b)} ${b.length} ${name}`);
  return `${lines.join("\n")}\n`;
}

async function gpg(gnupgHome: string, args: string[]): Promise<void> {
  await run("gpg", ["--homedir", gnupgHome, "--batch", "--yes", "--quiet", ...args]);
}

async function buildAptTree(): Promise<void> {
  const deb = path.join(root, "pool/main/p/packrat-hello/packrat-hello_1.0-1_all.deb");
  await buildDeb(deb);
  debBytes = await readFile(deb);
  const { stdout: packagesText } = await run("dpkg-scanpackages", ["--multiversion", "pool"], {
    cwd: root,
  });
  expect(packagesText).toContain("Package: packrat-hello");
  const packages = Buffer.from(packagesText);
  const packagesGz = gzipSync(packages, { level: 9 });
  packagesGzSha256 = sha256(packagesGz);
  const binDir = path.join(root, "dists/stable/main/binary-amd64");
  await mkdir(path.join(binDir, "by-hash/SHA256"), { recursive: true });
  await writeFile(path.join(binDir, "Packages"), packages);
  await writeFile(path.join(binDir, "Packages.gz"), packagesGz);
  await writeFile(path.join(binDir, "by-hash/SHA256", sha256(packages)), packages);
  await writeFile(path.join(binDir, "by-hash/SHA256", packagesGzSha256), packagesGz);
  const release = renderRelease({
    "main/binary-amd64/Packages": packages,
    "main/binary-amd64/Packages.gz": packagesGz,
  });
  const dists = path.join(root, "dists/stable");
  await writeFile(path.join(dists, "Release"), release);

  // Throwaway signing key; the user's ~/.gnupg is never used.
  const gnupgHome = await mkdtemp(path.join(tmpdir(), "packrat-gpg-"));
  try {
    await gpg(gnupgHome, [
      "--passphrase",
      "",
      "--pinentry-mode",
      "loopback",
      "--quick-gen-key",
      "packrat test <test@example.com>",
      "ed25519",
      "sign",
      "1d",
    ]);
    await gpg(gnupgHome, [
      "--clearsign",
      "-o",
      path.join(dists, "InRelease"),
      path.join(dists, "Release"),
    ]);
    await gpg(gnupgHome, [
      "-abs",
      "-o",
      path.join(dists, "Release.gpg"),
      path.join(dists, "Release"),
    ]);
    await gpg(gnupgHome, ["--export", "-o", keyring]);
  } finally {
    await run("gpgconf", ["--homedir", gnupgHome, "--kill", "gpg-agent"]).catch(() => undefined);
    await rm(gnupgHome, { recursive: true, force: true });
  }
}

async function buildOtherFiles(): Promise<void> {
  // PyPI: the pypi layout writes both forms of each simple page.
  // At the root, and under a repo's filesystem_dir as the agent publishes it.
  for (const base of ["simple/foo", "pypi/simple/foo"]) {
    await mkdir(path.join(root, base), { recursive: true });
    await writeFile(path.join(root, base, "index.html"), "<!DOCTYPE html><title>foo</title>\n");
    await writeFile(path.join(root, base, "index.json"), '{"meta":{"api-version":"1.1"}}\n');
  }
  // A publisher staging dir and temp file, as the agent leaves them mid-publish.
  await mkdir(path.join(root, ".staging/gen-2"), { recursive: true });
  await writeFile(path.join(root, ".staging/gen-2/InRelease"), "not yet\n");
  await writeFile(path.join(root, "dists/stable/.tmp-Release"), "half written\n");
  // yum and pacman names, for the Cache-Control rules.
  await mkdir(path.join(root, "el9/repodata"), { recursive: true });
  await writeFile(path.join(root, "el9/repodata/repomd.xml"), "<repomd/>\n");
  const hex = "0123456789abcdef".repeat(4);
  await writeFile(path.join(root, `el9/repodata/${hex}-primary.xml.zst`), "zst");
  await mkdir(path.join(root, "arch/os/x86_64"), { recursive: true });
  await writeFile(path.join(root, "arch/os/x86_64/core.db"), "db");
  await writeFile(path.join(root, "arch/os/x86_64/core.db.sig"), "sig");
  await writeFile(path.join(root, "arch/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst"), "pkg");
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "packrat-nginx-test-"));
  root = path.join(work, "root");
  keyring = path.join(work, "repo-key.gpg");
  await mkdir(root);
  await buildAptTree();
  await buildOtherFiles();
  nginx = await startNginx({ root });
});

afterAll(async () => {
  await nginx?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function get(
  urlPath: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${nginx.url}${urlPath}`, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

describe("etc/nginx/packrat-mirror.conf with the real nginx", () => {
  it("passes nginx -t without warnings", async () => {
    const output = await checkNginxConfig({ root });
    expect(output).toContain("syntax is ok");
    expect(output).not.toMatch(/\[warn\]|\[emerg\]/);
  });

  it("serves a signed apt repo that the real apt-get updates from and downloads through", async () => {
    const result = await runAptGet({
      repoUrl: nginx.url,
      suite: "stable",
      components: ["main"],
      keyringPath: keyring,
      archs: ["amd64"],
      packages: ["packrat-hello"],
    });
    expect(result.fetchedUrls).toContain(`${nginx.url}/dists/stable/InRelease`);
    // Acquire-By-Hash: apt must have used the by-hash name, not fallen back to Packages.gz.
    expect(
      result.fetchedUrls.some((u) => u.includes(`/by-hash/SHA256/`)),
      result.fetchedUrls.join("\n"),
    ).toBe(true);
    expect(result.downloadedFiles).toEqual(["packrat-hello_1.0-1_all.deb"]);
    expect(result.downloadedSha256["packrat-hello_1.0-1_all.deb"]).toBe(sha256(debBytes));
    const log = await nginx.accessLog();
    expect(log).toContain("200 GET /pool/main/p/packrat-hello/packrat-hello_1.0-1_all.deb");
  });

  it("caches content-addressed paths for a year and makes entry points revalidate", async () => {
    const cacheControl = async (p: string): Promise<string | null> => {
      const res = await get(p);
      expect(res.status, p).toBe(200);
      return res.headers.get("cache-control");
    };
    const byHash = `/dists/stable/main/binary-amd64/by-hash/SHA256/${packagesGzSha256}`;
    const hex = "0123456789abcdef".repeat(4);
    for (const p of [
      "/pool/main/p/packrat-hello/packrat-hello_1.0-1_all.deb",
      byHash,
      `/el9/repodata/${hex}-primary.xml.zst`,
      "/arch/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
    ]) {
      expect(await cacheControl(p), p).toBe(IMMUTABLE);
    }
    for (const p of [
      "/dists/stable/InRelease",
      "/dists/stable/Release",
      "/dists/stable/Release.gpg",
      "/el9/repodata/repomd.xml",
      "/arch/os/x86_64/core.db",
      "/arch/os/x86_64/core.db.sig",
      "/simple/foo/",
      "/dists/stable/main/binary-amd64/Packages.gz",
    ]) {
      expect(await cacheControl(p), p).toBe("no-cache");
    }
    // Entry points revalidate cheaply: nginx answers a conditional GET with 304.
    const first = await get("/dists/stable/InRelease");
    const etag = first.headers.get("etag");
    expect(etag).toBeTruthy();
    expect((await get("/dists/stable/InRelease", { "if-none-match": etag! })).status).toBe(304);
    // A 404 is not cached for a year.
    const missing = await get("/pool/main/p/packrat-hello/missing_1.0_all.deb");
    expect(missing.status).toBe(404);
    expect(missing.headers.get("cache-control")).toBeNull();
  });

  it("serves compressed files as stored bytes, never with a Content-Encoding", async () => {
    const gz = await get("/dists/stable/main/binary-amd64/Packages.gz", {
      "accept-encoding": "gzip, deflate, br, zstd",
    });
    expect(gz.status).toBe(200);
    expect(gz.headers.get("content-encoding")).toBeNull();
    expect(gz.headers.get("content-type")).toBe("application/gzip");
    expect(sha256(gz.body)).toBe(packagesGzSha256);
    // gzip_static must not answer the plain name with the .gz sibling.
    const plain = await get("/dists/stable/main/binary-amd64/Packages", {
      "accept-encoding": "gzip",
    });
    expect(plain.headers.get("content-encoding")).toBeNull();
    expect(plain.body.toString()).toContain("Package: packrat-hello");
    const zst = await get("/arch/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst", {
      "accept-encoding": "gzip",
    });
    expect(zst.headers.get("content-encoding")).toBeNull();
    expect(zst.headers.get("content-type")).toBe("application/zstd");
    const deb = await get("/pool/main/p/packrat-hello/packrat-hello_1.0-1_all.deb");
    expect(deb.headers.get("content-type")).toBe("application/vnd.debian.binary-package");
  });

  it.each(["", "/pypi"])(
    "negotiates PEP 691 JSON or HTML for %s/simple/<project>/",
    async (prefix) => {
      const pipAccept =
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
      const json = await get(`${prefix}/simple/foo/`, { accept: pipAccept });
      expect(json.status).toBe(200);
      expect(json.headers.get("content-type")).toBe("application/vnd.pypi.simple.v1+json");
      expect(JSON.parse(json.body.toString())).toEqual({ meta: { "api-version": "1.1" } });
      expect(json.headers.get("vary")).toBe("Accept");
      const html = await get(`${prefix}/simple/foo/`, { accept: "text/html" });
      expect(html.headers.get("content-type")).toMatch(/^text\/html/);
      expect(html.body.toString()).toContain("<title>foo</title>");
      expect(html.headers.get("vary")).toBe("Accept");
      const noAccept = await get(`${prefix}/simple/foo/`);
      expect(noAccept.body.toString()).toContain("<title>foo</title>");
    },
  );

  it("takes extra server and http config for fault injection (startNginx options)", async () => {
    const faulty = await startNginx({
      root,
      serverConfig: "    location = /dists/stable/InRelease { return 503; }",
      extraConfig: "    map $uri $packrat_unused { default 1; }",
    });
    try {
      expect((await fetch(`${faulty.url}/dists/stable/InRelease`)).status).toBe(503);
      expect((await fetch(`${faulty.url}/dists/stable/Release`)).status).toBe(200);
      expect(await faulty.accessLog()).toEqual([
        "503 GET /dists/stable/InRelease",
        "200 GET /dists/stable/Release",
      ]);
    } finally {
      await faulty.stop();
    }
    expect(existsSync(faulty.prefix)).toBe(false);
  });

  it("refuses the publisher's dot directories and temp files, and hides them in listings", async () => {
    for (const p of [
      "/.staging/gen-2/InRelease",
      "/.staging/",
      "/dists/stable/.tmp-Release",
      "/%2estaging/gen-2/InRelease",
    ]) {
      const res = await get(p);
      expect([403, 404], p).toContain(res.status);
    }
    const listing = await get("/");
    expect(listing.status).toBe(200);
    expect(listing.body.toString()).toContain('href="dists/"');
    expect(listing.body.toString()).not.toContain(".staging");
  });
});

const APACHE_CONFIG = path.join(import.meta.dirname, "../../etc/apache2/packrat-mirror.conf");
const APACHE2 = "/usr/sbin/apache2";

describe("etc/apache2/packrat-mirror.conf", () => {
  it("has balanced sections and the same rules as the nginx config", async () => {
    const text = await readFile(APACHE_CONFIG, "utf8");
    const stack: string[] = [];
    for (const [lineNo, line] of text.split("\n").entries()) {
      const open = /^\s*<([A-Za-z]+)[\s>]/.exec(line);
      const close = /^\s*<\/([A-Za-z]+)>/.exec(line);
      if (close) expect(stack.pop(), `line ${lineNo + 1}`).toBe(close[1]);
      else if (open) stack.push(open[1]!);
    }
    expect(stack).toEqual([]);
    // Rules whose absence would break clients or caches (see the nginx tests above).
    expect(text).toMatch(/-MultiViews/);
    expect(text).toMatch(/^\s*RemoveEncoding .*\.gz.*\.xz.*\.zst/m);
    expect(text).toMatch(/^\s*RedirectMatch 404 "\/\\\."/m);
    expect(text).toContain("ForceType application/vnd.pypi.simple.v1+json");
    expect(text).toContain('Header set Cache-Control "public, max-age=31536000, immutable"');
    expect(text).toContain("DocumentRoot /var/www/packrat");
  });

  // apache2 is not in .ci/packages.txt; when it is installed, its own parser checks the file.
  it.skipIf(!existsSync(APACHE2))("passes apache2 -t", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "packrat-apache-"));
    try {
      const conf = path.join(dir, "apache2.conf");
      await copyFile(APACHE_CONFIG, path.join(dir, "packrat-mirror.conf"));
      const modules = ["mpm_event", "authz_core", "mime", "rewrite", "headers", "autoindex", "dir"];
      modules.push("alias", "env", "setenvif");
      await writeFile(
        conf,
        [
          "ServerRoot /usr/lib/apache2",
          `Define APACHE_LOG_DIR ${dir}`,
          `PidFile ${dir}/apache2.pid`,
          `ErrorLog ${dir}/error.log`,
          "Listen 127.0.0.1:8080",
          ...modules.map((m) => `LoadModule ${m}_module modules/mod_${m}.so`),
          `Include ${dir}/packrat-mirror.conf`,
          "",
        ].join("\n"),
      );
      const { stdout, stderr } = await run(APACHE2, ["-t", "-f", conf]);
      expect(stdout + stderr).toContain("Syntax OK");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
