/**
 * The real pip (`pip download --no-deps --index-url http://127.0.0.1:PORT/simple/`) against a
 * rendered PyPI tree, served two ways: HTML only (a plain static server with index.html for
 * directories) and with PEP 691 content negotiation (index.json when pip asks for JSON), as
 * etc/nginx/packrat-mirror.conf does.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { pypiLayout } from "../../src/layout/pypi.js";
import type { PublishedPackage } from "../../src/layout/types.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { buildSdist, buildWheel } from "../support/python-builder.js";
import type { BuiltDist } from "../support/python-builder.js";
import { writeTree } from "../support/write-tree.js";

const run = promisify(execFile);

interface PypiServer {
  url: string;
  requests: { path: string; type: string }[];
  close(): Promise<void>;
}

/** Directory URLs serve index.html, or index.json when negotiate is on and pip asks for it. */
async function startPypiServer(root: string, negotiate: boolean): Promise<PypiServer> {
  const requests: PypiServer["requests"] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      let full = path.join(root, path.normalize(urlPath));
      let type = "application/octet-stream";
      if (urlPath.endsWith("/")) {
        const wantsJson =
          negotiate && (req.headers.accept ?? "").includes("application/vnd.pypi.simple.v1+json");
        full = path.join(full, wantsJson ? "index.json" : "index.html");
        type = wantsJson ? "application/vnd.pypi.simple.v1+json" : "text/html";
      }
      try {
        const st = await stat(full);
        if (!full.startsWith(root) || !st.isFile()) throw new Error("no");
        requests.push({ path: urlPath, type });
        res.writeHead(200, { "Content-Type": type, "Content-Length": st.size });
        createReadStream(full).pipe(res);
      } catch {
        requests.push({ path: urlPath, type: "404" });
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let work: string;
let root: string;
let dists: BuiltDist[];
let published: PublishedPackage[];

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "packrat-pip-"));
  root = path.join(work, "repo");
  dists = [
    buildWheel({ name: "Tiny.Wheel", version: "1.0", requiresPython: ">=3.7" }),
    // Newer, but for a Python that does not exist: pip must not choose it.
    buildWheel({ name: "Tiny.Wheel", version: "2.0", requiresPython: ">=99" }),
    buildSdist({ name: "tiny-sdist", version: "0.3" }),
    buildSdist({ name: "zip_sdist", version: "1.1" }, "zip"),
    // Every tar compression pip unpacks (LZMA-alone has no magic; pip reads it as xz).
    buildSdist({ name: "xz-sdist", version: "1.0", requiresPython: ">=3.7" }, "tar.xz"),
    buildSdist({ name: "bz2-sdist", version: "1.0", requiresPython: ">=3.7" }, "tar.bz2"),
    buildSdist({ name: "lzma-sdist", version: "1.0", requiresPython: ">=3.7" }, "tar.lzma"),
    // PKG-INFO only in an .egg-info directory, and none at all: pip needs neither.
    buildSdist(
      { name: "egg-sdist", version: "1.0", requiresPython: ">=3.7" },
      "tar.gz",
      "egg-info",
    ),
    buildSdist({ name: "bare-sdist", version: "2.0", requiresPython: ">=3.7" }, "tar.gz", "none"),
    // A wheel whose file name gives another project than its metadata: pip goes by the file.
    buildWheel({ name: "Meta.Named", version: "1.0" }, "File.Named"),
  ];
  published = [];
  for (const d of dists) {
    const meta = await pypiLayout.parse(bufferSource(d.bytes), d.filename);
    const sha256 = createHash("sha256").update(d.bytes).digest("hex");
    const file = {
      uri: `/api/v2/Package/PackageFile:${d.filename}:`,
      packageName: d.spec.name,
      distroVersionUri: "/api/v2/Attrib/DistroVersion:python:",
      version: d.spec.version,
      type: "python",
      arch: "all",
      fileUrl: `/files/${d.filename}`,
      filename: d.filename,
      sha256,
      tags: [],
      failedAt: null,
      deprecatedAt: null,
    };
    const distroVersion = {
      uri: file.distroVersionUri,
      name: "python",
      distro: "none",
      version: null,
      fileType: "python",
      releaseNames: "",
    };
    const repo = {
      uri: "/api/v2/Repo/Repo:py:",
      name: "py",
      description: "",
      filesystemDir: "py",
      managerType: "pypi",
      distroVersionUris: [],
      tag: "",
      showOnlyLatest: false,
    };
    const paths = pypiLayout.placePackage({
      repo,
      file,
      distroVersion,
      repoArches: ["all"],
      options: DEFAULT_LAYOUT_OPTIONS,
    });
    published.push({ file, distroVersion, paths, size: d.bytes.length, sha256, meta });
  }
  const result = await pypiLayout.render({
    repo: {
      uri: "/api/v2/Repo/Repo:py:",
      name: "py",
      description: "",
      filesystemDir: "py",
      managerType: "pypi",
      distroVersionUris: [],
      tag: "",
      showOnlyLatest: false,
    },
    distroVersions: new Map(),
    packages: published,
    signer: null,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date(0),
  });
  await writeTree(
    root,
    result.files,
    published.map((p, i) => ({ paths: p.paths, content: dists[i]!.bytes })),
  );
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function pipDownload(
  server: PypiServer,
  requirement: string,
  command: "download" | "index versions" = "download",
): Promise<{ ok: boolean; output: string; files: string[] }> {
  const dest = await mkdtemp(path.join(work, "dest-"));
  try {
    const { stdout, stderr } = await run(
      "python3",
      [
        "-m",
        "pip",
        ...command.split(" "),
        ...(command === "download" ? ["--no-deps", "--dest", dest] : []),
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--index-url",
        `${server.url}/simple/`,
        requirement,
      ],
      {
        env: { ...process.env, PIP_CONFIG_FILE: "/dev/null", PIP_NO_INPUT: "1" },
        timeout: 120_000,
      },
    );
    return { ok: true, output: stdout + stderr, files: await readdir(dest) };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return {
      ok: false,
      output: `${e.stdout ?? ""}${e.stderr ?? e.message}`,
      files: await readdir(dest),
    };
  }
}

describe.each([
  ["HTML (PEP 503)", false],
  ["JSON (PEP 691) by content negotiation", true],
])("real pip, %s", (_label, negotiate) => {
  test.concurrent(
    "downloads a wheel; data-requires-python keeps it off the python>=99 release",
    async () => {
      const server = await startPypiServer(root, negotiate);
      try {
        const result = await pipDownload(server, "tiny-wheel");
        expect(result.ok, result.output).toBe(true);
        expect(result.files).toEqual(["Tiny_Wheel-1.0-py3-none-any.whl"]);
        const page = server.requests.find((r) => r.path === "/simple/tiny-wheel/");
        expect(page?.type).toBe(negotiate ? "application/vnd.pypi.simple.v1+json" : "text/html");
        expect(server.requests.some((r) => r.path.includes("2.0"))).toBe(false);
      } finally {
        await server.close();
      }
    },
    120_000,
  );

  test.concurrent(
    "downloads an sdist (.tar.gz) and a zip sdist by exact version",
    async () => {
      const server = await startPypiServer(root, negotiate);
      try {
        const tgz = await pipDownload(server, "tiny-sdist==0.3");
        expect(tgz.ok, tgz.output).toBe(true);
        expect(tgz.files).toEqual(["tiny_sdist-0.3.tar.gz"]);
        const zip = await pipDownload(server, "Zip.Sdist==1.1");
        expect(zip.ok, zip.output).toBe(true);
        expect(zip.files).toEqual(["zip_sdist-1.1.zip"]);
      } finally {
        await server.close();
      }
    },
    120_000,
  );
});

describe.each([
  ["HTML (PEP 503)", false],
  ["JSON (PEP 691) by content negotiation", true],
])("real pip and the sdists and wheels pip names by their file, %s", (_label, negotiate) => {
  test.concurrent(
    "downloads sdists compressed with xz, bzip2 and LZMA-alone",
    async () => {
      const server = await startPypiServer(root, negotiate);
      try {
        for (const [req, file] of [
          ["xz-sdist==1.0", "xz_sdist-1.0.tar.xz"],
          ["bz2-sdist==1.0", "bz2_sdist-1.0.tar.bz2"],
          ["lzma-sdist==1.0", "lzma_sdist-1.0.tar.lzma"],
        ] as const) {
          const result = await pipDownload(server, req);
          expect(result.ok, result.output).toBe(true);
          expect(result.files).toEqual([file]);
        }
      } finally {
        await server.close();
      }
    },
    180_000,
  );

  test.concurrent(
    "downloads sdists whose PKG-INFO is in an .egg-info directory or missing",
    async () => {
      const server = await startPypiServer(root, negotiate);
      try {
        for (const [req, file] of [
          ["egg-sdist==1.0", "egg_sdist-1.0.tar.gz"],
          ["bare-sdist==2.0", "bare_sdist-2.0.tar.gz"],
        ] as const) {
          const result = await pipDownload(server, req);
          expect(result.ok, result.output).toBe(true);
          expect(result.files).toEqual([file]);
        }
      } finally {
        await server.close();
      }
    },
    180_000,
  );

  test.concurrent(
    "finds a wheel under the project its file name gives, not its metadata's",
    async () => {
      const server = await startPypiServer(root, negotiate);
      try {
        // pip's finder alone (no metadata check): the file is where pip looks for it.
        const found = await pipDownload(server, "file-named", "index versions");
        expect(found.ok, found.output).toBe(true);
        expect(found.output).toContain("file-named (1.0)");
        const other = await pipDownload(server, "meta-named", "index versions");
        expect(other.ok).toBe(false);
        const download = await pipDownload(server, "file-named==1.0");
        expect(download.ok, download.output).toBe(true);
        expect(download.files).toEqual(["File_Named-1.0-py3-none-any.whl"]);
      } finally {
        await server.close();
      }
    },
    180_000,
  );
});

test("the index lists data-requires-python from PKG-INFO wherever it is, and leaves it out without one", async () => {
  const { readFile } = await import("node:fs/promises");
  const page = (p: string) => readFile(path.join(root, "simple", p, "index.html"), "utf8");
  expect(await page("egg-sdist")).toContain('data-requires-python="&gt;=3.7"');
  expect(await page("lzma-sdist")).toContain('data-requires-python="&gt;=3.7"');
  expect(await page("bare-sdist")).toMatch(/bare_sdist-2\.0\.tar\.gz#sha256=[0-9a-f]{64}">/);
  expect(await page("bare-sdist")).not.toContain("data-requires-python");
  const json = JSON.parse(
    await readFile(path.join(root, "simple", "file-named", "index.json"), "utf8"),
  ) as { name: string; versions: string[] };
  expect(json).toMatchObject({ name: "file-named", versions: ["1.0"] });
});

test("pip refuses a package whose bytes do not match the index's sha256", async () => {
  const tampered = await mkdtemp(path.join(work, "tampered-"));
  await run("cp", ["-a", `${root}/.`, tampered]);
  const wheel = published[0]!;
  const bytes = Uint8Array.from(dists[0]!.bytes);
  const at = bytes.length - 30;
  bytes[at] = bytes[at]! ^ 0xff;
  await writeFile(path.join(tampered, wheel.paths[0]!), bytes);
  const server = await startPypiServer(tampered, false);
  try {
    const result = await pipDownload(server, "tiny-wheel==1.0");
    expect(result.ok).toBe(false);
    expect(result.output).toContain("DO NOT MATCH THE HASHES");
  } finally {
    await server.close();
  }
}, 120_000);
