/**
 * The test catalog that goes into the real packrat master (load.py) and, the same, into the
 * fake one, so their answers can be compared: a mirror "e2e" (with a psk, so load.py makes a
 * Django user of that name with the view permissions) of apt, yum, json and pypi repos.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { FakeMaster } from "./fake-master.js";
import { sampleDeb } from "./mirror-fixture.js";
import { buildSdist } from "./python-builder.js";
import type { Catalog, CatalogFile } from "./real-master.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "./rpm-builder.js";

export const E2E_MIRROR = "e2e";
export const E2E_PSK = "e2e-secret";

export interface BuiltCatalog {
  catalog: Catalog;
  /** Catalog file ids by file name. */
  byName: Map<string, number>;
}

/**
 * Writes the package files under `dir` and returns the catalog. The apt files: hello and world
 * (prod), pending (stage only: a test tags it prod), doomed and oldie (prod: tests fail and
 * deprocate them). `bulk` more json files go in repo e2e-bulk under tag "bulk".
 */
export async function buildE2eCatalog(
  dir: string,
  opts: { bulk?: number } = {},
): Promise<BuiltCatalog> {
  await mkdir(dir, { recursive: true });
  const files: CatalogFile[] = [];
  const byName = new Map<string, number>();
  const add = async (f: Omit<CatalogFile, "id" | "path">, name: string, bytes: Uint8Array) => {
    const p = path.join(dir, name);
    await writeFile(p, bytes);
    const id = files.length + 1;
    files.push({ ...f, id, path: p });
    byName.set(name, id);
  };
  const deb = async (name: string, tags: string[]) => {
    const d = sampleDeb(name, "1.0-1");
    await add(
      {
        package: name,
        distroversion: "bookworm",
        version: "1.0-1",
        type: "deb",
        arch: "all",
        tags,
      },
      d.filename,
      d.content,
    );
  };
  await deb("hello", ["prod"]);
  await deb("world", ["prod"]);
  await deb("pending", ["stage"]);
  await deb("doomed", ["prod"]);
  await deb("oldie", ["prod"]);
  // packrat's RPM detection wants the release name (el9) in the version.
  const rpm = {
    name: "tool",
    version: "1.0",
    release: "1.el9",
    files: { "/usr/bin/tool": "tool\n" },
  };
  await add(
    {
      package: "tool",
      distroversion: "el9",
      version: "1.0-1.el9",
      type: "rpm",
      arch: "all",
      tags: ["prod"],
    },
    syntheticRpmFilename(rpm),
    buildSyntheticRpm(rpm),
  );
  await add(
    {
      package: "bundle",
      distroversion: "tar",
      version: "1.2",
      type: "tar",
      arch: "all",
      tags: ["prod"],
    },
    "bundle_1.2.tar",
    new TextEncoder().encode("bundle 1.2\n".repeat(100)),
  );
  const sdist = buildSdist({ name: "e2epkg", version: "1.0", requiresPython: ">=3.8" });
  await add(
    {
      package: "e2epkg",
      distroversion: "pypi",
      version: "1.0",
      type: "python",
      arch: "all",
      tags: ["prod"],
    },
    sdist.filename,
    sdist.bytes,
  );
  for (let i = 0; i < (opts.bulk ?? 0); i++) {
    await add(
      {
        package: `bulk${i}`,
        distroversion: "tar",
        version: "1",
        type: "tar",
        arch: "all",
        tags: ["bulk"],
      },
      `bulk${i}_1.tar`,
      new TextEncoder().encode(`bulk ${i}\n`),
    );
  }
  const repos: Catalog["repos"] = {
    "e2e-apt": {
      filesystem_dir: "e2e-apt",
      manager_type: "apt",
      distroversion_list: ["bookworm"],
      tag: "prod",
    },
    "e2e-yum": {
      filesystem_dir: "e2e-yum",
      manager_type: "yum",
      distroversion_list: ["el9"],
      tag: "prod",
    },
    "e2e-json": {
      filesystem_dir: "e2e-json",
      manager_type: "json",
      distroversion_list: ["tar", "resource"],
      tag: "prod",
    },
    "e2e-pypi": {
      filesystem_dir: "e2e-pypi",
      manager_type: "pypi",
      distroversion_list: ["pypi"],
      tag: "prod",
    },
  };
  if (opts.bulk) {
    repos["e2e-bulk"] = {
      filesystem_dir: "e2e-bulk",
      manager_type: "json",
      distroversion_list: ["tar"],
      tag: "bulk",
    };
  }
  return {
    catalog: {
      tags: ["bulk"],
      distroversions: {
        bookworm: {
          distro: "debian",
          version: "bookworm",
          file_type: "deb",
          release_names: "bookworm",
        },
        el9: { distro: "rhel", version: "9", file_type: "rpm", release_names: "el9" },
      },
      repos,
      mirrors: {
        [E2E_MIRROR]: { description: "e2e mirror", repo_list: Object.keys(repos), psk: E2E_PSK },
      },
      files,
    },
    byName,
  };
}

/**
 * The same catalog in the fake master, with the distro versions packrat's setupHelper makes
 * (tar, pypi, resource) and the tag chain of load.py (a prod file is tagged dev and stage first).
 * Returns the fake's file ids by catalog id.
 */
export async function seedFakeFromCatalog(
  fake: FakeMaster,
  catalog: Catalog,
): Promise<Map<number, number>> {
  const { readFile } = await import("node:fs/promises");
  for (const [name, dv] of Object.entries({
    tar: { distro: "none", version: null, file_type: "tar", release_names: "" },
    resource: { distro: "none", version: null, file_type: "resource", release_names: "" },
    pypi: { distro: "none", version: null, file_type: "python", release_names: "" },
    ...catalog.distroversions,
  })) {
    fake.addDistroVersion({
      name,
      distro: dv.distro,
      version: dv.version,
      fileType: dv.file_type,
      releaseNames: dv.release_names ?? "",
    });
  }
  for (const [name, r] of Object.entries(catalog.repos)) {
    fake.addRepo({
      name,
      filesystemDir: r.filesystem_dir,
      managerType: r.manager_type,
      distroVersions: r.distroversion_list,
      tag: r.tag,
      description: r.description ?? name,
      ...(r.show_only_latest === undefined ? {} : { showOnlyLatest: r.show_only_latest }),
    });
  }
  for (const [name, m] of Object.entries(catalog.mirrors)) {
    fake.addMirror({ name, repos: m.repo_list, description: m.description ?? name });
  }
  const chain: Record<string, string[]> = {
    prod: ["dev", "stage", "prod"],
    stage: ["dev", "stage"],
  };
  const ids = new Map<number, number>();
  for (const f of catalog.files) {
    const id = fake.addPackageFile({
      package: f.package,
      distroVersion: f.distroversion,
      version: f.version,
      type: f.type,
      arch: f.arch,
      filename: path.basename(f.path),
      content: await readFile(f.path),
      tags: f.tags.flatMap((t) => chain[t] ?? [t]),
    });
    ids.set(f.id, id);
  }
  return ids;
}
