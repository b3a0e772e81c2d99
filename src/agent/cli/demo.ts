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

// The fake master and the sample mirror live in src/demo/ (the tests use them too); this module
// loads only for `demo` (commands load lazily), so the daemon never pulls them in.
import { DEMO_MIRROR, startDemoMaster } from "../../demo/sample-mirror.js";
import { startStaticServer } from "../../demo/static-server.js";
import { startRegistryServer } from "../../demo/registry-server.js";

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

  const demo = await startDemoMaster({ docker: true });
  const { master } = demo;

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
      `name: ${DEMO_MIRROR}`,
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
  // A registry's API is at /v2/ of its host: the docker repo gets a port of its own.
  const registry = await startRegistryServer(path.join(root, "docker"));
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
    `  docker           podman pull --tls-verify=false ${registry.host}/hello-demo:latest`,
    `                   skopeo inspect --tls-verify=false docker://${registry.host}/hello-demo:latest`,
    `  status           node bin/packrat-agent status --config ${confPath}`,
    `  verify           node bin/packrat-agent verify --config ${confPath}`,
    "",
  ];
  process.stdout.write(lines.join("\n"));
  if (values.once) {
    await server.close();
    await registry.close();
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
    demo.tagRound(round);
    log.info({ version: `1.${round}` }, "demo: the master tagged new versions; watch them appear");
  }, 20_000);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  clearInterval(timer);
  await daemon.stop(10_000);
  await server.close();
  await registry.close();
  await ctx.close();
  await master.close();
  return 0;
}
