/**
 * One contract for every registered format (issue 17): whatever a layout is, given the same
 * packages it renders the same bytes; every path it writes is safe, relative, reserved by the
 * layout and apart from every package; content-addressed files come before entry points; its
 * own client-view checker passes the render (every index hash, every signature with the test
 * key) and fails a tampered copy; `describe` (inspect) works on what `parse` returned.
 * A format registered without a sample builder here fails the suite.
 */
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createLayouts, layoutFor, supportedManagerTypes } from "../../src/layout/index.js";
import {
  bufferSource,
  type LayoutOptions,
  type OptionSpec,
  type PublishedPackage,
  type RenderInput,
  type RenderedFile,
  type TreeReader,
} from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { Signer } from "../../src/signing/signer.js";
import { createSignatureVerifier } from "../../src/signing/verify.js";
import { assertSafeRelativePath } from "../../src/sync/filename-guard.js";
import { PathAuthority } from "../../src/sync/path-authority.js";
import type { DistroVersion, Repo } from "../../src/types.js";
import { buildDeb, controlText } from "../support/deb-builder.js";
import { dockerArchive, layerTar, ociArchive } from "../support/docker-builder.js";
import { buildPacmanPackage } from "../support/pacman-builder.js";
import { buildSdist, buildWheel } from "../support/python-builder.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../support/rpm-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

interface SampleFile {
  filename: string;
  bytes: Uint8Array;
  packageName: string;
  version: string;
  arch: string;
}

interface Sample {
  distroVersion: DistroVersion;
  files: SampleFile[];
}

const dv = (name: string, distro: string, version: string | null, fileType: string) => ({
  uri: `/api/v2/Attrib/DistroVersion:${name}:`,
  name,
  distro,
  version,
  fileType,
  releaseNames: "",
});

const deb = (name: string, version: string, arch: string): SampleFile => ({
  filename: `${name}_${version}_${arch}.deb`,
  packageName: name,
  version,
  arch: arch === "all" ? "all" : "x86_64",
  bytes: buildDeb({
    control: controlText({
      Package: name,
      Version: version,
      Architecture: arch,
      Maintainer: "Contract <c@packrat.invalid>",
      Description: `${name}\n made for the layout contract.`,
    }),
    files: { [`usr/share/${name}/README`]: `${name}\n` },
  }),
});

const rpm = (name: string, version: string, arch: string): SampleFile => {
  const input = { name, version, release: "1", arch, files: { [`/usr/share/${name}`]: name } };
  return {
    filename: syntheticRpmFilename(input),
    packageName: name,
    version: `${version}-1`,
    arch: arch === "noarch" ? "all" : arch,
    bytes: buildSyntheticRpm(input),
  };
};

const pacman = (name: string, version: string, arch: string): SampleFile => {
  const built = buildPacmanPackage({ name, version, arch, files: { [`usr/bin/${name}`]: name } });
  return {
    filename: built.filename,
    packageName: name,
    version,
    arch: arch === "any" ? "all" : arch,
    bytes: built.bytes,
  };
};

/** One sample per registered format: a few packages of its kind, two of them one project. */
const SAMPLES: Record<string, () => Sample> = {
  apt: () => ({
    distroVersion: dv("bookworm", "debian", "bookworm", "deb"),
    files: [
      deb("alpha", "1.0-1", "amd64"),
      deb("alpha", "1.1-1", "amd64"),
      deb("beta", "2", "all"),
    ],
  }),
  yum: () => ({
    distroVersion: dv("el9", "rhel", "9", "rpm"),
    files: [
      rpm("alpha", "1.0", "x86_64"),
      rpm("alpha", "1.1", "x86_64"),
      rpm("beta", "2", "noarch"),
    ],
  }),
  pacman: () => ({
    distroVersion: dv("arch", "arch", null, "pkg"),
    files: [
      pacman("alpha", "1.0-1", "x86_64"),
      pacman("alpha", "1.1-1", "x86_64"),
      pacman("beta", "2-1", "any"),
    ],
  }),
  pypi: () => {
    const wheel = buildWheel({ name: "alpha", version: "1.0" });
    const sdist = buildSdist({ name: "alpha", version: "1.1" });
    const other = buildWheel({ name: "beta-pkg", version: "2" });
    return {
      distroVersion: dv("python", "none", null, "python"),
      files: [
        { ...wheel, packageName: "alpha", version: "1.0", arch: "all" },
        { ...sdist, packageName: "alpha", version: "1.1", arch: "all" },
        { ...other, packageName: "beta-pkg", version: "2", arch: "all" },
      ],
    };
  },
  docker: () => {
    const base = layerTar({ "etc/os-release": "ID=contract\n" });
    const image = (filename: string, bytes: Uint8Array): SampleFile => ({
      filename,
      packageName: filename.split("_")[0]!,
      version: filename.split("_")[1]!.replace(/\.tar$/, ""),
      arch: "all",
      bytes,
    });
    return {
      distroVersion: dv("docker", "none", null, "docker"),
      files: [
        image("alpha_1.0.tar", dockerArchive([{ layers: [base, layerTar({ a: "1.0" })] }])),
        image(
          "alpha_1.1.tar",
          ociArchive([{ layers: [base, layerTar({ a: "1.1" })] }], { gzip: true }),
        ),
        image("beta_2.tar", dockerArchive([{ layers: [base] }])),
      ],
    };
  },
  json: () => ({
    distroVersion: dv("none", "none", null, "json"),
    files: ["alpha_1.0.tar.gz", "alpha_1.1.tar.gz", "beta_2.tar.gz"].map((filename) => ({
      filename,
      packageName: filename.split("_")[0]!,
      version: filename.split("_")[1]!.replace(/\.tar\.gz$/, ""),
      arch: "all",
      bytes: new TextEncoder().encode(`${filename}\n`),
    })),
  }),
};

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

let signer: Signer;
beforeAll(async () => {
  ({ signer } = await makeTestSigner("contract"));
});

describe.each(supportedManagerTypes())("the %s layout", (managerType) => {
  const layout = layoutFor(managerType)!;
  const sample = SAMPLES[managerType];
  const repo: Repo = {
    uri: `/api/v2/Repo/Repo:contract-${managerType}:`,
    name: `contract-${managerType}`,
    description: "layout contract",
    filesystemDir: `contract-${managerType}`,
    managerType,
    distroVersionUris: [],
    tag: "prod",
    showOnlyLatest: false,
  };
  let packages: PublishedPackage[];
  let bytesByPath: Map<string, Uint8Array>;

  const input = (withSigner: Signer | null): RenderInput => ({
    repo,
    distroVersions: new Map([[sample!().distroVersion.uri, sample!().distroVersion]]),
    packages,
    signer: withSigner,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date("2026-01-01T00:00:00Z"),
  });

  const reader = (files: readonly RenderedFile[]): TreeReader => {
    const rendered = new Map(files.filter((f) => !f.extract).map((f) => [f.path, f.content]));
    // A file served from a package's bytes (RenderedFile.extract) is those bytes.
    const extracted = new Map(
      files.flatMap((f) => {
        const x = f.extract;
        const from = x && bytesByPath.get(x.from);
        return from ? [[f.path, from.subarray(x.offset, x.offset + x.length)] as const] : [];
      }),
    );
    return {
      read: (rel) => Promise.resolve(rendered.get(rel) ?? null),
      packageInfo: (rel) => {
        const b = bytesByPath.get(rel) ?? extracted.get(rel);
        return Promise.resolve(b ? { size: b.length, sha256: sha256(b) } : null);
      },
    };
  };

  it("has a sample builder in this suite", () => {
    expect(sample, `add a SAMPLES entry for ${managerType}`).toBeDefined();
  });

  beforeAll(async () => {
    if (!sample) return;
    const s = sample();
    const repoArches = [...new Set(s.files.map((f) => f.arch))].sort();
    packages = [];
    bytesByPath = new Map();
    for (const f of s.files) {
      const file = {
        uri: `/api/v2/Package/PackageFile:${f.filename}:`,
        packageName: f.packageName,
        distroVersionUri: s.distroVersion.uri,
        version: f.version,
        type: s.distroVersion.fileType,
        arch: f.arch,
        fileUrl: `/files/${f.filename}`,
        filename: f.filename,
        sha256: sha256(f.bytes),
        tags: ["prod"],
        failedAt: null,
        deprecatedAt: null,
      };
      const paths = layout.placePackage({
        repo,
        file,
        distroVersion: s.distroVersion,
        repoArches,
        options: DEFAULT_LAYOUT_OPTIONS,
      });
      for (const p of paths) bytesByPath.set(p, f.bytes);
      const meta = await layout.parse(bufferSource(f.bytes), f.filename);
      packages.push({
        file,
        distroVersion: s.distroVersion,
        paths,
        size: f.bytes.length,
        sha256: sha256(f.bytes),
        meta,
        // What sync hands over from the layout's own derive hook (pacman's signatures).
        ...(layout.derive?.wants(DEFAULT_LAYOUT_OPTIONS, signer)?.signature
          ? {
              signature: (
                await layout.derive.run(
                  bufferSource(f.bytes),
                  f.filename,
                  signer,
                  DEFAULT_LAYOUT_OPTIONS,
                )
              ).signature!,
            }
          : {}),
      });
    }
    packages.sort((a, b) => a.file.uri.localeCompare(b.file.uri));
  });

  it("renders the same bytes from the same input, cold or warm", async () => {
    const first = await layout.render(input(null));
    const second = await layout.render(input(null));
    const flat = (r: { files: RenderedFile[] }) =>
      r.files.map((f) => [f.path, sha256(f.content), f.stage, f.contentAddressed]);
    expect(flat(second)).toEqual(flat(first));
    expect(first.files.length).toBeGreaterThan(0);
  });

  it("renders the same bytes whatever the options it does not declare (optionsUsed)", async () => {
    const changed: LayoutOptions = {
      aptArchitectures: ["arm64", "riscv64"],
      aptValidUntilSeconds: 86_400,
      yumCompression: "zstd",
      rpmChangelogLimit: 0,
      signRpmPackages: true,
      pacmanRepoNames: { [repo.filesystemDir]: "renamed" },
      mirrorDescription: "Another description",
    };
    const others = Object.fromEntries(
      (Object.keys(changed) as (keyof LayoutOptions)[])
        .filter((k) => !layout.optionsUsed.includes(k))
        .map((k) => [k, changed[k]]),
    );
    // Fresh instances: a render cache must not hide an option the layout reads.
    const plain = await createLayouts().layoutFor(managerType)!.render(input(null));
    const other = await createLayouts()
      .layoutFor(managerType)!
      .render({ ...input(null), options: { ...DEFAULT_LAYOUT_OPTIONS, ...others } });
    const flat = (r: { files: RenderedFile[] }) => r.files.map((f) => [f.path, sha256(f.content)]);
    expect(flat(other)).toEqual(flat(plain));
  });

  it("declares options it reads, each with a default its parser accepts and a short doc", () => {
    for (const [field, spec] of Object.entries(layout.options) as [
      keyof LayoutOptions,
      OptionSpec<unknown>,
    ][]) {
      expect(layout.optionsUsed, field).toContain(field);
      expect(spec.parse(spec.example), field).not.toHaveProperty("expected");
      expect(spec.doc.length, field).toBeGreaterThan(0);
      for (const line of spec.doc) expect(line.length, line).toBeLessThan(96);
      expect(DEFAULT_LAYOUT_OPTIONS[field], field).toEqual(spec.default);
    }
  });

  it("has cache rules that never mark a file that changes under its name immutable", async () => {
    // The shipped web-server configs hold every layout's rules together (entry points first),
    // so a rendered file is classified by all of them, as nginx's map does.
    const all = createLayouts().all;
    const entry = all.flatMap((l) => l.cacheRules.entryPoints).map((re) => new RegExp(re));
    const immutable = all.flatMap((l) => l.cacheRules.immutable).map((re) => new RegExp(re));
    const cached = (rel: string): boolean => {
      const uri = `/${repo.filesystemDir}/${rel}`;
      return !entry.some((re) => re.test(uri)) && immutable.some((re) => re.test(uri));
    };
    const { files } = await layout.render(input(signer));
    for (const f of files) expect(cached(f.path), f.path).toBe(f.contentAddressed);
    // Packages are served under their own names (docker's archives are not served at all).
    if (layout.cacheRules.immutable.length > 0 && layout.dropsPackageFiles !== true)
      for (const p of packages.flatMap((pkg) => pkg.paths)) expect(cached(p), p).toBe(true);
  });

  it("writes only safe relative paths that it reserves, apart from every package", async () => {
    const { files } = await layout.render(input(signer));
    const packagePaths = packages.flatMap((p) => p.paths);
    for (const f of files) {
      expect(assertSafeRelativePath(f.path, "contract")).toBe(f.path);
      expect(
        layout.reservesPath(f.path, {
          repo,
          repoDir: repo.filesystemDir,
          options: DEFAULT_LAYOUT_OPTIONS,
        }),
        f.path,
      ).toBe(true);
    }
    for (const p of packagePaths) {
      expect(assertSafeRelativePath(p, "contract")).toBe(p);
      expect(
        layout.reservesPath(p, {
          repo,
          repoDir: repo.filesystemDir,
          options: DEFAULT_LAYOUT_OPTIONS,
        }),
        p,
      ).toBe(false);
    }
    expect(() => PathAuthority.assertRenderedApart(repo, files, packagePaths)).not.toThrow();
    expect(new Set(files.map((f) => f.path)).size).toBe(files.length);
  });

  it("puts content-addressed files in stages no later than any entry point", async () => {
    const { files } = await layout.render(input(signer));
    const named = files.filter((f) => f.contentAddressed).map((f) => f.stage);
    const plain = files.filter((f) => !f.contentAddressed).map((f) => f.stage);
    if (named.length > 0 && plain.length > 0)
      expect(Math.max(...named)).toBeLessThanOrEqual(Math.min(...plain));
  });

  it("passes its own client-view check, signatures verified with the test key", async () => {
    const { files } = await layout.render(input(signer));
    const result = await layout.check({
      reader: reader(files),
      metadataPaths: files.map((f) => f.path),
      verifier: await createSignatureVerifier(signer.publicKeyArmored()),
    });
    expect(result.problems).toEqual([]);
    expect(result.entryPoints).toBeGreaterThan(0);
    expect(result.packages).toBeGreaterThan(0);
  });

  it("fails the check when an entry point is missing, or a signed one is changed", async () => {
    const { files } = await layout.render(input(signer));
    const unsigned = await layout.render(input(null));
    // Signed formats render something else with a key (signatures, InRelease).
    const signed =
      JSON.stringify(files.map((f) => f.path)) !==
      JSON.stringify(unsigned.files.map((f) => f.path));
    const checker = layout.check;
    const verifier = await createSignatureVerifier(signer.publicKeyArmored());
    const check = async (tree: RenderedFile[]) =>
      (await checker({ reader: reader(tree), metadataPaths: files.map((f) => f.path), verifier }))
        .problems;
    // The files a client reads first: the highest stage (entry points and their signatures).
    const top = Math.max(...files.map((f) => f.stage));
    const targets = files.filter((f) => f.stage === top);
    expect(targets.length).toBeGreaterThan(0);
    for (const target of targets) {
      expect(await check(files.filter((f) => f !== target)), `without ${target.path}`).not.toEqual(
        [],
      );
      if (!signed) continue;
      const flipped = files.map((f) => {
        if (f !== target) return f;
        const content = Uint8Array.from(f.content);
        content[Math.floor(content.length / 2)]! ^= 0x01;
        return { ...f, content };
      });
      expect(await check(flipped), `a byte changed in ${target.path}`).not.toEqual([]);
    }
  });

  it("fails the check when a package's bytes differ from its index entry", async () => {
    const { files } = await layout.render(input(null));
    const checker = layout.check;
    // The last by URI: every format lists it (pacman lists only a name's newest in a dir).
    const victim = packages[packages.length - 1]!.paths[0]!;
    // Files served as byte ranges of it (docker blobs) are the package as clients see it.
    const victims = [victim, ...files.filter((f) => f.extract?.from === victim).map((f) => f.path)];
    const base = reader(files);
    const result = await checker({
      reader: {
        read: (rel) => base.read(rel),
        packageInfo: async (rel) => {
          const info = await base.packageInfo(rel);
          return victims.includes(rel) && info ? { ...info, sha256: "0".repeat(64) } : info;
        },
      },
      metadataPaths: files.map((f) => f.path),
      verifier: null,
    });
    const named = result.problems.map((p) => p.path).join(" ");
    expect(
      victims.some((v) => named.includes(v.split("/").pop()!)),
      named,
    ).toBe(true);
  });

  it("describes (inspect) every package it parsed", () => {
    for (const p of packages) expect(layout.describe(p.meta, p.file.filename)).not.toBe("");
  });

  it("identifies each package from its own metadata, as a source without a master lists it", () => {
    for (const p of packages) {
      const id = layout.identify(p.meta, p.file.filename);
      expect(id.name, p.file.filename).toBe(p.file.packageName);
      expect(id.arch, p.file.filename).toBe(p.file.arch);
      expect(id.version, p.file.filename).not.toBe("");
    }
  });
});
