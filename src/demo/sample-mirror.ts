/**
 * The demo's sample mirror on the bundled fake master: one repo per format (apt, yum, pacman,
 * PyPI, JSON; docker when asked) in mirror "demo", tagged "prod", each with a package or two; `tagRound(n)` tags
 * version 1.n of every package, as a CI pipeline would. `packrat-agent demo` serves it; the
 * bucket tests publish it to S3 and read it back with every real client.
 */
import { startFakeMaster, type FakeMaster, type NewPackageFile } from "./fake-master.js";
import { buildDeb, controlText } from "./packages/deb.js";
import { buildDockerArchive } from "./packages/docker.js";
import { buildPacmanPackage } from "./packages/pacman.js";
import { buildSdist, buildWheel } from "./packages/python.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "./packages/rpm.js";

export const DEMO_MIRROR = "demo";

export interface DemoOptions {
  /** A docker repo too (demo-docker, directory docker/): one small image per round. */
  docker?: boolean;
}

export function samplePackages(round: number, options: DemoOptions = {}): NewPackageFile[] {
  const out: NewPackageFile[] = [];
  const v = `1.${round}`;
  if (options.docker) {
    // Two layers; the first is the same every round (a shared base layer).
    out.push({
      package: "hello-demo",
      distroVersion: "docker",
      version: v,
      type: "docker",
      arch: "all",
      filename: `hello-demo_${v}.tar`,
      content: buildDockerArchive(
        {
          layers: [
            { "etc/os-release": 'NAME="packrat demo"\nID=packrat-demo\n' },
            { "usr/share/hello-demo/VERSION": `${v}\n` },
          ],
          labels: { "org.opencontainers.image.version": v },
        },
        `hello-demo:${v}`,
      ),
    });
  }
  for (const [name, arch] of [
    ["hello-demo", "all"],
    ["packrat-tools", "amd64"],
  ] as const) {
    const content = buildDeb({
      control: controlText({
        Package: name,
        Version: `${v}-1`,
        Architecture: arch,
        Maintainer: "Packrat Demo <demo@packrat.invalid>",
        "Installed-Size": "4",
        Section: "utils",
        Priority: "optional",
        Description: `${name}, a demo package\n Published by packrat-agent's demo from the bundled fake master.`,
      }),
      files: { [`usr/share/doc/${name}/README`]: `${name} ${v}\n` },
    });
    out.push({
      package: name,
      distroVersion: "bookworm",
      version: `${v}-1`,
      type: "deb",
      arch: arch === "all" ? "all" : "x86_64",
      filename: `${name}_${v}-1_${arch}.deb`,
      content,
    });
  }
  const rpmInput = {
    name: "hello-demo",
    version: v,
    release: "1.el9",
    arch: "noarch",
    summary: "A demo package",
    description: "Published by packrat-agent's demo.",
    files: { "/usr/share/doc/hello-demo/README": `hello ${v}\n` },
  };
  out.push({
    package: "hello-demo",
    distroVersion: "el9",
    version: `${v}-1.el9`,
    type: "rpm",
    arch: "all",
    filename: syntheticRpmFilename(rpmInput),
    content: buildSyntheticRpm(rpmInput),
  });
  for (const arch of ["x86_64", "any"]) {
    const pkg = buildPacmanPackage({
      name: arch === "any" ? "hello-demo-doc" : "hello-demo",
      version: `${v}-1`,
      arch,
      desc: "A demo package",
      files: { "usr/share/doc/hello-demo/README": `hello ${v}\n` },
    });
    out.push({
      package: pkg.spec.name,
      distroVersion: "arch",
      version: `${v}-1`,
      type: "pacman",
      arch: arch === "any" ? "all" : arch,
      filename: pkg.filename,
      content: pkg.bytes,
    });
  }
  const wheel = buildWheel({
    name: "hello-demo",
    version: v,
    requiresPython: ">=3.8",
    summary: "A demo package",
  });
  const sdist = buildSdist({
    name: "hello-demo",
    version: v,
    requiresPython: ">=3.8",
    summary: "A demo package",
  });
  for (const d of [wheel, sdist]) {
    out.push({
      package: "hello-demo",
      distroVersion: "python",
      version: v,
      type: "python",
      arch: "all",
      filename: d.filename,
      content: d.bytes,
    });
  }
  out.push({
    package: "demo-image",
    distroVersion: "none",
    version: v,
    type: "tar",
    arch: "all",
    filename: `demo-image_${v}.tar.gz`,
    content: new TextEncoder().encode(`demo image ${v}\n`),
  });
  return out;
}

export interface DemoMaster {
  master: FakeMaster;
  /** Tag version 1.`round` of every sample package on the master. */
  tagRound(round: number): void;
  close(): Promise<void>;
}

/** Start the fake master with the sample mirror, version 1.0 of everything tagged. */
export async function startDemoMaster(options: DemoOptions = {}): Promise<DemoMaster> {
  const master = await startFakeMaster({ minPollTimeout: 1 });
  master.addDistroVersion({
    name: "bookworm",
    distro: "debian",
    version: "bookworm",
    fileType: "deb",
  });
  master.addDistroVersion({ name: "el9", distro: "rhel", version: "9", fileType: "rpm" });
  master.addDistroVersion({ name: "arch", distro: "arch", version: null, fileType: "pacman" });
  master.addDistroVersion({ name: "python", distro: "none", version: null, fileType: "python" });
  master.addDistroVersion({ name: "none", distro: "none", version: null, fileType: "tar" });
  master.addRepo({
    name: "demo-apt",
    filesystemDir: "apt",
    managerType: "apt",
    distroVersions: ["bookworm"],
    tag: "prod",
    description: "Demo apt repository",
  });
  master.addRepo({
    name: "demo-yum",
    filesystemDir: "yum",
    managerType: "yum",
    distroVersions: ["el9"],
    tag: "prod",
    description: "Demo yum repository",
  });
  master.addRepo({
    name: "demo-arch",
    filesystemDir: "arch",
    managerType: "pacman",
    distroVersions: ["arch"],
    tag: "prod",
    description: "Demo pacman repository",
  });
  master.addRepo({
    name: "demo-pypi",
    filesystemDir: "pypi",
    managerType: "pypi",
    distroVersions: ["python"],
    tag: "prod",
    description: "Demo PyPI index",
  });
  master.addRepo({
    name: "demo-json",
    filesystemDir: "json",
    managerType: "json",
    distroVersions: ["none"],
    tag: "prod",
    description: "Demo JSON repository",
  });
  const repos = ["demo-apt", "demo-yum", "demo-arch", "demo-pypi", "demo-json"];
  if (options.docker) {
    master.addDistroVersion({ name: "docker", distro: "none", version: null, fileType: "docker" });
    master.addRepo({
      name: "demo-docker",
      filesystemDir: "docker",
      managerType: "docker",
      distroVersions: ["docker"],
      tag: "prod",
      description: "Demo docker registry",
    });
    repos.push("demo-docker");
  }
  master.addMirror({
    name: DEMO_MIRROR,
    repos,
    description: "packrat-agent demo",
  });
  const tagRound = (round: number) => {
    for (const p of samplePackages(round, options)) master.addPackageFile({ ...p, tags: ["prod"] });
  };
  tagRound(0);
  return { master, tagRound, close: () => master.close() };
}
