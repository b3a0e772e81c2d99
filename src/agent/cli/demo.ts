/**
 * `packrat-agent demo`: the whole agent on an embedded default. Starts the bundled fake master
 * (src/demo/, a faithful double of the real packrat master) with sample apt, yum, pacman, PyPI and JSON packages,
 * makes a signing key, writes a mirror.conf, runs a full sync, serves the tree over HTTP, and
 * keeps running the daemon while the fake master tags a new version now and then, so the
 * published tree can be watched changing. `--once` syncs, verifies and exits.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { generateSigningKey } from "../../signing/keygen.js";
import { MirrorDaemon } from "../../sync/daemon.js";
import { loadConfig } from "../config.js";
import { createContext } from "../context.js";
import { makeLogger, parseCommandArgs } from "./common.js";

// The fake master and the sample package builders live in src/demo/ (the tests use them too);
// this module loads only for `demo` (commands load lazily), so the daemon never pulls them in.
import { startFakeMaster } from "../../demo/fake-master.js";
import { buildDeb, controlText } from "../../demo/packages/deb.js";
import { buildPacmanPackage } from "../../demo/packages/pacman.js";
import { buildSdist, buildWheel } from "../../demo/packages/python.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../../demo/packages/rpm.js";
import { startStaticServer } from "../../demo/static-server.js";

interface DemoPackage {
  package: string;
  distroVersion: string;
  version: string;
  type: string;
  arch: string;
  filename: string;
  content: Uint8Array;
}

function samplePackages(round: number): DemoPackage[] {
  const out: DemoPackage[] = [];
  const v = `1.${round}`;
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

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("demo", argv, {
    dir: { type: "string" },
    port: { type: "string" },
    once: { type: "boolean" },
  });
  const log = makeLogger(values["log-level"], "info", values["log-format"]);
  const dir = path.resolve(values.dir ?? ".demo");
  const root = path.join(dir, "root");
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

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
  master.addMirror({
    name: "demo",
    repos: ["demo-apt", "demo-yum", "demo-arch", "demo-pypi", "demo-json"],
    description: "packrat-agent demo",
  });
  for (const p of samplePackages(0)) master.addPackageFile({ ...p, tags: ["prod"] });

  const key = await generateSigningKey({
    name: "packrat-agent demo",
    email: "demo@packrat.invalid",
    type: "ed25519",
  });
  const keyFile = path.join(dir, "signing-key.asc");
  await writeFile(keyFile, key.armoredSecretKey, { mode: 0o600 });
  const confPath = path.join(dir, "mirror.conf");
  await writeFile(
    confPath,
    [
      "[packrat]",
      `host: ${master.url}`,
      "name: demo",
      "",
      "[mirror]",
      "description: packrat-agent demo",
      `root_dir: ${root}`,
      `state_db: ${path.join(dir, "state", "state.db")}`,
      `gpg_sign_key: ${key.signingKeyId}`,
      `gpg_key_file: ${keyFile}`,
      "full_sync_interval: 300",
      "",
    ].join("\n"),
  );
  const settings = await loadConfig(confPath, { onWarning: (w) => log.warn(w) });
  const ctx = await createContext(settings, log);
  const report = await ctx.engine.fullSync();
  const server = await startStaticServer(root, values.port ? Number(values.port) : 0);
  const lines = [
    "",
    `packrat-agent demo: synced ${report.packageFiles} package files into ${root}`,
    `  served at        ${server.url}/`,
    `  config           ${confPath}`,
    `  public key       ${server.url}/repo-key (and repo-key.gpg for apt's Signed-By)`,
    `  apt              deb [signed-by=${root}/repo-key.gpg] ${server.url}/apt bookworm main`,
    `  dnf              baseurl=${server.url}/yum/rhel/main/9  repo_gpgcheck=1 gpgkey=${server.url}/repo-key`,
    `  pacman           Server = ${server.url}/arch/$arch   (repo [arch])`,
    `  pip              pip download --index-url ${server.url}/pypi/simple/ hello-demo`,
    `  json             ${server.url}/json/_repo_main/MANIFEST_all.json`,
    `  status           node bin/packrat-agent status --config ${confPath}`,
    `  verify           node bin/packrat-agent verify --config ${confPath}`,
    "",
  ];
  process.stdout.write(lines.join("\n"));
  if (values.once) {
    await server.close();
    await ctx.close();
    await master.close();
    if (report.failed.length > 0) return 1;
    // The demo's promise is a served, signed, *verified* mirror: read it back as clients do.
    const { verifyCommand } = await import("./verify.js");
    return verifyCommand(["--config", confPath, "--deep"]);
  }

  const daemon = new MirrorDaemon({
    engine: ctx.engine,
    client: ctx.client,
    store: ctx.store,
    log,
    settings: settings.mirror,
  });
  daemon.start();
  process.stdout.write("running: the fake master tags a new version every 20 s; Ctrl-C stops\n");
  let round = 0;
  const timer = setInterval(() => {
    round++;
    for (const p of samplePackages(round)) master.addPackageFile({ ...p, tags: ["prod"] });
    log.info({ version: `1.${round}` }, "demo: the master tagged new versions; watch them appear");
  }, 20_000);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  clearInterval(timer);
  await daemon.stop(10_000);
  await server.close();
  await ctx.close();
  await master.close();
  return 0;
}
