import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { zipSync } from "fflate";
import { describe, expect, test } from "vitest";
import { layoutForFilename } from "../../src/layout/index.js";
import { isPackratError } from "../../src/errors.js";
import { writeTar } from "../../src/layout/formats/tar.js";
import {
  normalizeProjectName,
  parseCoreMetadata,
  PYTHON_LIMITS,
  readPythonDist,
} from "../../src/layout/formats/python-dist.js";
import { escapeHtml, pypiLayout } from "../../src/layout/pypi.js";
import type { PublishedPackage, RenderInput } from "../../src/layout/types.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { DistroVersion, PackageFile, Repo } from "../../src/types.js";
import { buildSdist, buildWheel } from "../support/python-builder.js";
import type { BuiltDist } from "../support/python-builder.js";

const repo: Repo = {
  uri: "/api/v2/Repo/Repo:py:",
  name: "py",
  description: "",
  filesystemDir: "py",
  managerType: "pypi",
  distroVersionUris: [],
  tag: "",
  showOnlyLatest: false,
};
const distroVersion: DistroVersion = {
  uri: "/api/v2/Attrib/DistroVersion:python:",
  name: "python",
  distro: "none",
  version: null,
  fileType: "python",
  releaseNames: "",
};

function fileOf(d: { filename: string; bytes: Uint8Array }, packageName: string): PackageFile {
  return {
    uri: `/api/v2/Package/PackageFile:${d.filename}:`,
    packageName,
    distroVersionUri: distroVersion.uri,
    version: "1",
    type: "python",
    arch: "all",
    fileUrl: `/files/${d.filename}`,
    filename: d.filename,
    sha256: createHash("sha256").update(d.bytes).digest("hex"),
    tags: [],
    failedAt: null,
    deprecatedAt: null,
  };
}

async function published(d: BuiltDist): Promise<PublishedPackage> {
  // packrat's package names are safe; the metadata's Name field is free text.
  const file = fileOf(d, d.spec.name.replace(/[^A-Za-z0-9._-]/g, ""));
  return {
    file,
    distroVersion,
    paths: pypiLayout.placePackage({
      repo,
      file,
      distroVersion,
      repoArches: ["all"],
      options: DEFAULT_LAYOUT_OPTIONS,
    }),
    size: d.bytes.length,
    sha256: file.sha256,
    meta: await pypiLayout.parse(bufferSource(d.bytes), d.filename),
  };
}

async function renderOf(dists: BuiltDist[]) {
  const input: RenderInput = {
    repo,
    distroVersions: new Map(),
    packages: await Promise.all(dists.map(published)),
    signer: null,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date(0),
  };
  const result = await pypiLayout.render(input);
  const text = new Map(result.files.map((f) => [f.path, new TextDecoder().decode(f.content)]));
  return { result, text, input };
}

describe("names", () => {
  test.each([
    ["Foo.Bar", "foo-bar"],
    ["foo__bar", "foo-bar"],
    ["foo-._bar", "foo-bar"],
    ["FOO", "foo"],
    ["a.b-c_d", "a-b-c-d"],
  ])("%s → %s", (name, normalized) => {
    expect(normalizeProjectName(name)).toBe(normalized);
  });

  test("normalization is idempotent and leaves no runs of separators", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9._-]{1,30}$/), (name) => {
        const n = normalizeProjectName(name);
        expect(normalizeProjectName(n)).toBe(n);
        expect(n).not.toMatch(/[._]|--|[A-Z]/);
      }),
    );
  });
});

describe("parse", () => {
  test("a wheel's METADATA", async () => {
    const w = buildWheel({
      name: "My.Pkg",
      version: "1.2.3",
      requiresPython: ">=3.8",
      extraHeaders: [
        "Requires-Dist: a>=1",
        "Requires-Dist: b; extra == 'x'",
        "Classifier: One",
        "Classifier: Two",
      ],
    });
    const meta = await pypiLayout.parse(bufferSource(w.bytes), w.filename);
    expect(meta).toMatchObject({
      format: "python",
      kind: "wheel",
      name: "My.Pkg",
      version: "1.2.3",
      requiresPython: ">=3.8",
      metadataVersion: "2.1",
      metadata: { "requires-dist": ["a>=1", "b; extra == 'x'"], classifier: ["One", "Two"] },
    });
    expect(meta.metadata).not.toHaveProperty("description");
  });

  test.each(["tar.gz", "zip"] as const)("an sdist's PKG-INFO (.%s)", async (format) => {
    const s = buildSdist({ name: "tiny-sdist", version: "0.3", requiresPython: "<4,>=3" }, format);
    const meta = await pypiLayout.parse(bufferSource(s.bytes), s.filename);
    expect(meta).toMatchObject({
      kind: "sdist",
      name: "tiny-sdist",
      version: "0.3",
      requiresPython: "<4,>=3",
    });
  });

  test("PKG-INFO deeper than the top directory is not the sdist's: it has none", async () => {
    const tar = gzipSync(
      writeTar([
        {
          name: "a-1/sub/PKG-INFO",
          content: new TextEncoder().encode("Name: x\nVersion: 1\nRequires-Python: >=3\n"),
          mtime: 0,
        },
      ]),
    );
    const meta = await pypiLayout.parse(bufferSource(tar), "a-1.tar.gz");
    expect(meta).toMatchObject({ name: "a", version: "1", declaredName: null });
    expect(meta.requiresPython).toBeNull();
  });

  test("PKG-INFO is read where it is: another top directory, the root, an .egg-info", async () => {
    const info = (rp: string) =>
      new TextEncoder().encode(
        `Metadata-Version: 2.1\nName: a\nVersion: 1\nRequires-Python: ${rp}\n`,
      );
    const sdist = (...members: [string, string][]) =>
      gzipSync(writeTar(members.map(([name, rp]) => ({ name, content: info(rp), mtime: 0 }))));
    const parse = async (bytes: Uint8Array) =>
      (await pypiLayout.parse(bufferSource(bytes), "a-1.tar.gz")).requiresPython;
    expect(await parse(sdist(["A-1.0.0/PKG-INFO", ">=3.1"]))).toBe(">=3.1");
    expect(await parse(sdist(["PKG-INFO", ">=3.2"]))).toBe(">=3.2");
    expect(await parse(sdist(["a-1/src/a.egg-info/PKG-INFO", ">=3.3"]))).toBe(">=3.3");
    // The top one wins over an .egg-info copy, wherever it comes in the archive.
    expect(
      await parse(sdist(["a-1/a.egg-info/PKG-INFO", ">=3.4"], ["a-1/PKG-INFO", ">=3.5"])),
    ).toBe(">=3.5");
  });

  test("bzip2 and LZMA-alone sdists are cut off at the scan limit, and corrupt ones refused", async () => {
    // 8 MiB of zeros before PKG-INFO: a few hundred bytes compressed.
    const tar = writeTar([
      { name: "a-1/big", content: new Uint8Array(8 << 20), mtime: 0 },
      {
        name: "a-1/PKG-INFO",
        content: new TextEncoder().encode("Name: a\nVersion: 1\n"),
        mtime: 0,
      },
    ]);
    const limits = { ...PYTHON_LIMITS, maxSdistScanBytes: 1 << 20 };
    for (const [file, bytes] of [
      ["a-1.tar.bz2", execFileSync("bzip2", ["-c"], { input: tar })],
      ["a-1.tar.lzma", execFileSync("xz", ["-c", "--format=lzma"], { input: tar })],
    ] as const) {
      expect(bytes.length).toBeLessThan(64 << 10);
      await expect(readPythonDist(bufferSource(bytes), file, limits)).rejects.toThrow(
        /exceeds the limit/,
      );
      // Within the default limit the same file reads.
      expect((await readPythonDist(bufferSource(bytes), file)).declaredName).toBe("a");
      const corrupt = Uint8Array.from(bytes);
      corrupt.fill(0x55, 20, 60);
      await expect(readPythonDist(bufferSource(corrupt), file)).rejects.toMatchObject({
        code: "PACKRAT_PACKAGE_INVALID",
      });
    }
  });

  test("a wheel with no METADATA is invalid; name and version come from the file name", async () => {
    const empty = zipSync({ "x/__init__.py": new Uint8Array(1) });
    await expect(
      pypiLayout.parse(bufferSource(empty), "x-1-py3-none-any.whl"),
    ).rejects.toMatchObject({ code: "PACKRAT_PACKAGE_INVALID" });
    const noVersion = zipSync({ "x-1.dist-info/METADATA": new TextEncoder().encode("Name: X\n") });
    expect(await pypiLayout.parse(bufferSource(noVersion), "x-1-py3-none-any.whl")).toMatchObject({
      name: "X",
      version: "1",
    });
    // pip takes no file whose name has no <name>-<version>, or a space in the name.
    for (const name of ["x.whl", "bad name-1-py3-none-any.whl", "nodash.tar.gz", "x-1.tar.lz"]) {
      await expect(pypiLayout.parse(bufferSource(noVersion), name)).rejects.toThrow(
        /pip reads no project and version from this file name/,
      );
    }
  });

  test("core metadata: folded lines, first value wins for single fields, body dropped", () => {
    expect(
      parseCoreMetadata(
        "Name: a\nSummary: one\n  two\nName: b\nDescription: long\n  more\n\nbody: x\n",
      ),
    ).toEqual({ name: "a", summary: "one\ntwo" });
  });

  test("arbitrary bytes give metadata or PACKRAT_PACKAGE_INVALID, never another error", async () => {
    const wheel = buildWheel({ name: "w", version: "1" });
    const sdist = buildSdist({ name: "s", version: "1" });
    const mutate = (base: Uint8Array) =>
      fc
        .tuple(fc.nat(base.length - 1), fc.uint8Array({ minLength: 1, maxLength: 4 }))
        .map(([i, b]) => {
          const out = Uint8Array.from(base);
          out.set(b.subarray(0, base.length - i), i);
          return out;
        });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 1024 }), mutate(wheel.bytes), mutate(sdist.bytes)),
        fc.constantFrom("w-1-py3-none-any.whl", "s-1.tar.gz", "s-1.zip"),
        async (bytes, filename) => {
          try {
            const meta = await pypiLayout.parse(bufferSource(bytes), filename);
            expect(meta.format).toBe("python");
          } catch (err) {
            expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID"), String(err)).toBe(true);
            expect((err as Error).message).toContain(filename);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe("placement", () => {
  test("packages/<first 6 chars of the packrat package name>/<file>", () => {
    const w = buildWheel({ name: "requests", version: "2.0" });
    const file = fileOf(w, "requests");
    expect(
      pypiLayout.placePackage({
        repo,
        file,
        distroVersion,
        repoArches: [],
        options: DEFAULT_LAYOUT_OPTIONS,
      }),
    ).toEqual(["packages/reques/requests-2.0-py3-none-any.whl"]);
  });

  test("a package name that would escape the directory is refused", () => {
    const w = buildWheel({ name: "x", version: "1" });
    for (const name of ["..", ".", "a/b", "a b"]) {
      expect(() =>
        pypiLayout.placePackage({
          repo,
          file: fileOf(w, name),
          distroVersion,
          repoArches: [],
          options: DEFAULT_LAYOUT_OPTIONS,
        }),
      ).toThrow(expect.objectContaining({ code: "PACKRAT_UNSAFE_FILENAME" }));
    }
  });
});

describe("render", () => {
  const dists = () => [
    buildWheel({ name: "Foo.Bar", version: "1.0", requiresPython: "<4,>=3.8" }),
    buildSdist({ name: "foo_bar", version: "0.9" }),
    buildWheel({ name: "other", version: "10.0" }),
    buildWheel({ name: "other", version: "9.0" }),
  ];

  test("PEP 503 pages: normalized directories, sha256 fragments, escaped data-requires-python", async () => {
    const { text, input } = await renderOf(dists());
    const page = text.get("simple/foo-bar/index.html")!;
    const wheel = input.packages.find((p) => p.file.filename.startsWith("Foo_Bar-1.0"))!;
    expect(page).toContain(
      `<a href="../../packages/Foo.Ba/Foo_Bar-1.0-py3-none-any.whl#sha256=${wheel.sha256}" data-requires-python="&lt;4,&gt;=3.8">Foo_Bar-1.0-py3-none-any.whl</a>`,
    );
    expect(page).toMatch(
      /<a href="\.\.\/\.\.\/packages\/foo_ba\/foo_bar-0\.9\.tar\.gz#sha256=[0-9a-f]{64}">/,
    );
    const root = text.get("simple/index.html")!;
    expect(root).toContain('<a href="foo-bar/">Foo.Bar</a>');
    expect(root).toContain('<a href="other/">other</a>');
  });

  test("PEP 691 JSON alongside, with api-version, hashes, requires-python, size, versions", async () => {
    const { text, input } = await renderOf(dists());
    const project = JSON.parse(text.get("simple/other/index.json")!);
    expect(project.meta).toEqual({ "api-version": "1.1" });
    expect(project.name).toBe("other");
    expect(project.versions).toEqual(["9.0", "10.0"]);
    const nine = input.packages.find((p) => p.file.filename === "other-9.0-py3-none-any.whl")!;
    expect(project.files).toContainEqual({
      filename: "other-9.0-py3-none-any.whl",
      url: "../../packages/other/other-9.0-py3-none-any.whl",
      hashes: { sha256: nine.sha256 },
      size: nine.size,
    });
    const foo = JSON.parse(text.get("simple/foo-bar/index.json")!) as {
      files: { filename: string; "requires-python"?: string }[];
    };
    expect(foo.files.find((f) => f.filename.endsWith(".whl"))?.["requires-python"]).toBe(
      "<4,>=3.8",
    );
    expect(JSON.parse(text.get("simple/index.json")!)).toEqual({
      meta: { "api-version": "1.1" },
      projects: [{ name: "Foo.Bar" }, { name: "other" }],
    });
  });

  test("project pages switch before the root index; nothing is content-addressed", async () => {
    const { result } = await renderOf(dists());
    for (const f of result.files) {
      expect(f.contentAddressed).toBe(false);
      expect(f.stage).toBe(
        f.path === "simple/index.html" || f.path === "simple/index.json" ? 1 : 0,
      );
    }
  });

  test("deterministic, whatever the input order", async () => {
    const d = dists();
    const a = await renderOf(d);
    const b = await renderOf([...d].reverse());
    expect(a.result.files).toEqual(b.result.files);
  });

  test("a project name that is not a path segment is left out with a warning", async () => {
    const bad = buildSdist({ name: "bad!name", version: "1" });
    const { result, text } = await renderOf([bad]);
    expect([...text.keys()].sort()).toEqual(["simple/index.html", "simple/index.json"]);
    expect(result.warnings.join()).toContain("not a valid Python project name");
  });

  test("escapeHtml and describe()", async () => {
    expect(escapeHtml(`<a href="x">&'`)).toBe("&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    const w = buildWheel({ name: "Foo.Bar", version: "1.0", requiresPython: ">=3.8" });
    const meta = await pypiLayout.parse(bufferSource(w.bytes), w.filename);
    expect(pypiLayout.describe(meta, w.filename)).toContain(
      "Normalized-Name: foo-bar\nVersion: 1.0\n",
    );
    expect(pypiLayout.describe(meta, w.filename)).toContain("Requires-Python: >=3.8");
  });
});

test("a package whose cached metadata is not a Python distribution's is left out with a warning", async () => {
  const { input } = await renderOf([buildWheel({ name: "ok", version: "1" })]);
  const broken = {
    ...input.packages[0]!,
    meta: { format: "deb" },
    file: { ...input.packages[0]!.file, filename: "broken.whl" },
  };
  const result = await pypiLayout.render({ ...input, packages: [...input.packages, broken] });
  expect(result.warnings.join()).toContain("broken.whl");
  expect(result.files.map((f) => f.path)).toContain("simple/ok/index.html");
});

test("inspect finds the layout of every sdist archive pip takes, and of udebs and ddebs", () => {
  for (const f of ["a-1.tar.bz2", "a-1.tbz", "a-1.tar.xz", "a-1.txz", "a-1.tar.lzma", "a-1.tlz"])
    expect(layoutForFilename(f)?.managerType, f).toBe("pypi");
  for (const f of ["a_1_amd64.udeb", "a-dbgsym_1_amd64.ddeb", "a_1_all.deb"])
    expect(layoutForFilename(f)?.managerType, f).toBe("apt");
  expect(layoutForFilename("a-1-1-x86_64.pkg.tar.bz2")?.managerType).toBe("pacman");
});
