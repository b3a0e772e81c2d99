/**
 * Install anywhere (issue 21): the .deb, which carries its own Node runtime, installs with apt
 * on stock Debian 12 (bookworm) and 13 (trixie) made by mmdebstrap with nothing added, syncs
 * from a fake master on 127.0.0.1 and verifies what it published; it upgrades from a previous
 * build keeping the conffile, the state and the user; purge removes the user, state and
 * config but keeps the published tree unless told otherwise.
 *
 * Slow (bootstraps, two package builds): CI sets PACKRAT_REQUIRE_INSTALL_TESTS=1 and there
 * they must run; elsewhere they skip without root, mmdebstrap or unshare.
 */
import { chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { startFakeMaster, type FakeMaster } from "../support/fake-master.js";
import { addSampleMirror, sampleDeb, MIRROR, TAG } from "../support/mirror-fixture.js";
import {
  bootstrapTarball,
  buildDeb,
  inRoot,
  INSTALL_TESTS_REQUIRED,
  missingForInstallTests,
  removeRoot,
  repackAs,
  REPO,
  type Run,
  sh,
  unpackRoot,
} from "../support/install-roots.js";

const missing = missingForInstallTests([
  "mmdebstrap",
  "unshare",
  "chroot",
  "dpkg-deb",
  "rpmbuild",
  "rpmlint",
  "rpm",
  "buildah",
  "podman",
  "runc",
  "systemd-nspawn",
  "nsenter",
]);
if (missing && INSTALL_TESTS_REQUIRED) {
  throw new Error(
    `install tests are required here (PACKRAT_REQUIRE_INSTALL_TESTS) but: ${missing}`,
  );
}

const VERSION = (
  JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")) as { version: string }
).version;
/** "The previous build": the same tree under an older version, as an upgrade sees it. */
const OLD_VERSION = `${VERSION}~prev1`;

let work: string;
let oldDeb: string;
let newDeb: string;
let master: FakeMaster;
const roots: string[] = [];
let rpmBuild: Promise<{ value?: Run; error?: unknown }>;
let imageBuild: Promise<{ value?: Run; error?: unknown }>;

/** A build started now and awaited later, never an unhandled rejection meanwhile. */
function settled(p: Promise<Run>): Promise<{ value?: Run; error?: unknown }> {
  return p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

/** The path a build script printed last, or its error. */
function lastLine(r: { value?: Run; error?: unknown }): string {
  if (!r.value) throw r.error;
  return r.value.stdout.trim().split("\n").pop()!;
}

function addDeb(name: string, version: string): void {
  const deb = sampleDeb(name, version);
  master.addPackageFile({
    package: name,
    distroVersion: "bookworm",
    version,
    type: "deb",
    arch: "all",
    filename: deb.filename,
    content: deb.content,
    tags: [TAG],
  });
}

/** Point the installed mirror.conf (the conffile) at the fake master, as an operator would. */
async function configure(root: string, signing: { keyId: string; keyFile: string }) {
  const conf = path.join(root, "etc/packrat/mirror.conf");
  const text = (await readFile(conf, "utf8"))
    .replace(/^host:.*$/m, `host: ${master.url}`)
    .replace(/^name:.*$/m, `name: ${MIRROR}`)
    .replace(/^psk:.*$/m, "psk:")
    .replace(/^gpg_sign_key:.*$/m, `gpg_sign_key: ${signing.keyId}`)
    .replace(/^#? *gpg_key_file:.*$/m, `gpg_key_file: ${signing.keyFile}`);
  expect(text).toContain(`gpg_key_file: ${signing.keyFile}`);
  // writeFile keeps the file's owner and mode (root:packrat 0640, set by postinst).
  await writeFile(conf, text);
}

/** `packrat-agent keygen` with the bundled runtime (it writes the key with mode 0600). */
async function keygen(root: string): Promise<{ keyId: string; keyFile: string }> {
  const keyFile = "/etc/packrat/signing-key.asc";
  const { stdout } = await inRoot(root, [
    "packrat-agent",
    "keygen",
    "--name",
    "Chroot Mirror",
    "--email",
    "mirror@packrat.invalid",
    "--out",
    keyFile,
  ]);
  // The agent refuses a key file others could read: the service user's alone.
  await inRoot(root, ["chown", "packrat:packrat", keyFile]);
  const keyId = /^gpg_sign_key: (\S+)$/m.exec(stdout)?.[1];
  expect(keyId, stdout).toMatch(/^[0-9A-F]{16}$/i);
  return { keyId: keyId!, keyFile };
}

/** As the service would: the packrat user, the shipped config path. */
function asService(root: string, args: string[]) {
  return inRoot(root, [
    "runuser",
    "-u",
    "packrat",
    "--",
    "packrat-agent",
    ...args,
    "--config",
    "/etc/packrat/mirror.conf",
  ]);
}

async function aptInstall(root: string, deb: string, env: Record<string, string> = {}) {
  const inside = `/tmp/${path.basename(deb)}`;
  await inRoot(root, ["mkdir", "-p", "/tmp"]);
  await writeFile(path.join(root, inside), await readFile(deb));
  const r = await inRoot(
    root,
    ["apt-get", "install", "-y", "--no-install-recommends", "-o", "Dpkg::Use-Pty=0", inside],
    { env },
  );
  await rm(path.join(root, inside));
  return r;
}

async function passwdEntry(root: string, user: string): Promise<string | undefined> {
  const passwd = await readFile(path.join(root, "etc/passwd"), "utf8");
  return passwd.split("\n").find((l) => l.startsWith(`${user}:`));
}

async function publishedFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

describe.skipIf(missing !== null)("install anywhere", () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), "packrat-install-test-"));
    // Both suites bootstrap while the packages build: the network and the CPU overlap.
    const tarballs = Promise.all([bootstrapTarball("bookworm"), bootstrapTarball("trixie")]);
    newDeb = await buildDeb(path.join(work, "new"), VERSION, {
      stageOut: path.join(work, "stage"),
    });
    oldDeb = await repackAs(newDeb, path.join(work, "stage"), OLD_VERSION, path.join(work, "old"));
    const [bookwormTar] = await tarballs;
    // The .rpm and the image build while the chroot tests run (their beforeAll waits).
    rpmBuild = settled(
      sh(
        path.join(REPO, "packaging/build-rpm.sh"),
        [path.join(work, "stage"), VERSION, path.join(work, "rpm")],
        { env: { ...process.env, PACKRAT_RPM_PAYLOAD: "w1.gzdio" } },
      ),
    );
    imageBuild = settled(
      sh(path.join(REPO, "packaging/build-image.sh"), [newDeb, path.join(work, "image")], {
        env: { ...process.env, PACKRAT_IMAGE_BASE_TAR: bookwormTar, PACKRAT_IMAGE_COMPRESS: "0" },
        timeout: 300_000,
      }),
    );
    master = await startFakeMaster({ minPollTimeout: 1 });
    addSampleMirror(master, { description: "chroot mirror" });
    addDeb("hello", "1.0");
    addDeb("tool", "2.1-1");
  }, 600_000);

  afterAll(async () => {
    // Background builds write into work/: let them end before it goes.
    await Promise.all([rpmBuild, imageBuild]);
    await master?.close();
    for (const r of roots) await removeRoot(r);
    if (work) await rm(work, { recursive: true, force: true });
  });

  describe("the .deb on stock Debian (mmdebstrap chroots)", () => {
    it("bookworm: installs with apt, syncs, verifies; upgrades keeping conffile, state and user; purge keeps the tree", async () => {
      const root = await unpackRoot(await bootstrapTarball("bookworm"), "bookworm");
      roots.push(root);
      // Stock: no Node at all, so the agent can only be running its own.
      expect(existsSync(path.join(root, "usr/bin/node"))).toBe(false);

      await aptInstall(root, oldDeb);
      expect((await inRoot(root, ["packrat-agent", "--version"])).stdout.trim()).toBe(
        `packrat-agent ${OLD_VERSION}`,
      );
      const user = await passwdEntry(root, "packrat");
      expect(user).toMatch(/^packrat:x:\d+:\d+:.*:\/var\/lib\/packratAgent:\/usr\/sbin\/nologin$/);

      const signing = await keygen(root);
      await configure(root, signing);
      const first = await asService(root, ["sync"]);
      expect(first.stdout).toMatch(/^synced 2 repo\(s\), 2 file\(s\): 2 downloaded,.* 0 failed$/m);
      const www = path.join(root, "var/www/packrat");
      expect(await publishedFiles(www)).toEqual(
        expect.arrayContaining([
          "apt/dists/bookworm/InRelease",
          "apt/pool/hello/hello_1.0_all.deb",
          "repo-key",
        ]),
      );
      const verify = await asService(root, ["verify"]);
      expect(verify.stdout).toMatch(/^verify: ok/m);

      // ---- upgrade to the new build ----
      const confBefore = await readFile(path.join(root, "etc/packrat/mirror.conf"), "utf8");
      addDeb("hello", "1.1");
      await aptInstall(root, newDeb);
      expect((await inRoot(root, ["packrat-agent", "--version"])).stdout.trim()).toBe(
        `packrat-agent ${VERSION}`,
      );
      // The operator's conffile is kept as edited, the user keeps its uid and gid.
      expect(await readFile(path.join(root, "etc/packrat/mirror.conf"), "utf8")).toBe(confBefore);
      expect(await passwdEntry(root, "packrat")).toBe(user);
      // The state DB is the old build's, opened (and migrated) by the new one: only the new
      // file is downloaded, the rest is known.
      const second = await asService(root, ["sync"]);
      expect(second.stdout).toMatch(/^synced 2 repo\(s\), 3 file\(s\): 1 downloaded,.* 0 failed$/m);
      const status = JSON.parse((await asService(root, ["status", "--json"])).stdout) as {
        repos?: unknown[];
      };
      expect(status.repos?.length).toBe(2);
      expect((await asService(root, ["verify"])).stdout).toMatch(/^verify: ok/m);

      // ---- purge: the user, state and config go, the published tree stays ----
      const published = await publishedFiles(www);
      await inRoot(root, ["apt-get", "purge", "-y", "-o", "Dpkg::Use-Pty=0", "packrat-agent"]);
      expect(await passwdEntry(root, "packrat")).toBeUndefined();
      expect(await readFile(path.join(root, "etc/group"), "utf8")).not.toMatch(/^packrat:/m);
      expect(existsSync(path.join(root, "var/lib/packratAgent"))).toBe(false);
      expect(existsSync(path.join(root, "etc/packrat/mirror.conf"))).toBe(false);
      expect(existsSync(path.join(root, "usr/lib/packrat-agent"))).toBe(false);
      expect(await publishedFiles(www)).toEqual(published);
    }, 300_000);

    it("trixie: installs with apt, syncs, verifies; purge with PACKRAT_PURGE_PUBLISHED=yes removes the tree", async () => {
      const root = await unpackRoot(await bootstrapTarball("trixie"), "trixie");
      roots.push(root);
      expect(existsSync(path.join(root, "usr/bin/node"))).toBe(false);
      await aptInstall(root, newDeb);
      expect((await inRoot(root, ["packrat-agent", "--version"])).stdout.trim()).toBe(
        `packrat-agent ${VERSION}`,
      );
      await configure(root, await keygen(root));
      const sync = await asService(root, ["sync"]);
      expect(sync.stdout).toMatch(
        /^synced 2 repo\(s\), (\d+) file\(s\): \1 downloaded,.* 0 failed$/m,
      );
      expect((await asService(root, ["verify"])).stdout).toMatch(/^verify: ok/m);
      expect(await publishedFiles(path.join(root, "var/www/packrat"))).toContain(
        "apt/pool/hello/hello_1.0_all.deb",
      );
      await inRoot(root, ["apt-get", "purge", "-y", "-o", "Dpkg::Use-Pty=0", "packrat-agent"], {
        env: { PACKRAT_PURGE_PUBLISHED: "yes" },
      });
      expect(existsSync(path.join(root, "var/www/packrat"))).toBe(false);
      expect(await passwdEntry(root, "packrat")).toBeUndefined();
      expect(existsSync(path.join(root, "var/lib/packratAgent"))).toBe(false);
    }, 300_000);
  });

  describe("under systemd (systemd-nspawn --boot)", () => {
    it("the shipped unit starts the agent as packrat; it publishes and `status` answers", async (ctx) => {
      const root = await unpackRoot(await bootstrapTarball("bookworm"), "nspawn");
      roots.push(root);
      // A booted system needs an init: the one addition to the stock tree.
      await inRoot(root, [
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "Dpkg::Use-Pty=0",
        "systemd",
        "systemd-sysv",
      ]);
      await aptInstall(root, newDeb);
      await configure(root, await keygen(root));
      // The operator's step (postinst enables nothing).
      await inRoot(root, ["systemctl", "enable", "packrat-agent.service"]);

      const machine = `packrat-test-${process.pid}`;
      const nspawn = spawn(
        "systemd-nspawn",
        [
          "--boot",
          "--quiet",
          `--directory=${root}`,
          `--machine=${machine}`,
          "--register=no",
          "--keep-unit",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let output = "";
      nspawn.stdout.on("data", (d: Buffer) => (output += d.toString()));
      nspawn.stderr.on("data", (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => nspawn.on("close", resolve));
      let gone = false;
      void exited.then(() => (gone = true));
      try {
        // The container's init: nspawn's child once it has booted.
        let leader: string | undefined;
        const inRelease = path.join(root, "var/www/packrat/apt/dists/bookworm/InRelease");
        const deadline = Date.now() + 90_000;
        while (!gone && Date.now() < deadline && !(leader && existsSync(inRelease))) {
          leader ??= (
            await readFile(`/proc/${nspawn.pid}/task/${nspawn.pid}/children`, "utf8").catch(
              () => "",
            )
          )
            .trim()
            .split(/\s+/)
            .find((p) => p !== "");
          await new Promise((r) => setTimeout(r, 250));
        }
        if (gone && !existsSync(inRelease)) {
          // Not the agent's failure: this machine cannot boot a systemd container
          // (packaging.test.ts still checks the unit with systemd-analyze verify).
          if (INSTALL_TESTS_REQUIRED && process.env.PACKRAT_REQUIRE_NSPAWN === "1") {
            throw new Error(`systemd-nspawn --boot failed:\n${output}`);
          }
          console.warn(`systemd-nspawn --boot cannot run here, skipped:\n${output.slice(-2000)}`);
          ctx.skip();
        }
        expect(existsSync(inRelease), output.slice(-3000)).toBe(true);
        const inside = (args: string[]) =>
          sh("nsenter", ["--target", leader!, "--all", "--root", "--wd", ...args]);
        expect((await inside(["systemctl", "is-active", "packrat-agent"])).stdout.trim()).toBe(
          "active",
        );
        expect(
          (await inside(["systemctl", "show", "--property=User,NRestarts", "packrat-agent"]))
            .stdout,
        ).toMatch(/^User=packrat\nNRestarts=0\n$|^NRestarts=0\nUser=packrat\n$/);
        const status = await inside([
          "runuser",
          "-u",
          "packrat",
          "--",
          "packrat-agent",
          "status",
          "--config",
          "/etc/packrat/mirror.conf",
        ]);
        expect(status.stdout).toMatch(/^last full sync: ok at /m);
        expect(status.stdout).toMatch(
          /^repo prod-apt \(apt, apt\): [1-9]\d* files, .*generation 1,/m,
        );
        const journal = await inside([
          "journalctl",
          "-u",
          "packrat-agent",
          "-o",
          "cat",
          "--no-pager",
        ]);
        expect(journal.stdout).toMatch(/"msg":"published"/);
      } finally {
        // SIGTERM: nspawn asks the container's systemd to halt.
        if (!gone) nspawn.kill("SIGTERM");
        await exited;
        await rm(`/run/systemd/nspawn/propagate/${machine}`, { recursive: true, force: true });
      }
    }, 240_000);
  });

  describe("the .rpm, from the same staged tree", () => {
    let rpmPath: string;

    beforeAll(async () => {
      rpmPath = lastLine(await rpmBuild);
    }, 300_000);

    it("lists the files and configs the .deb has, and needs no nodejs", async () => {
      const files = (await sh("rpm", ["-qlp", rpmPath])).stdout.split("\n");
      for (const f of [
        "/usr/bin/packrat-agent",
        "/usr/lib/packrat-agent/node",
        "/usr/lib/packrat-agent/dist/src/agent/main.js",
        "/usr/lib/packrat-agent/node_modules/better-sqlite3/build/Release/better_sqlite3.node",
        "/usr/lib/systemd/system/packrat-agent.service",
        "/etc/packrat/mirror.conf",
        "/var/lib/packratAgent",
      ]) {
        expect(files, f).toContain(f);
      }
      expect((await sh("rpm", ["-qcp", rpmPath])).stdout.trim()).toBe("/etc/packrat/mirror.conf");
      const requires = (await sh("rpm", ["-qp", "--requires", rpmPath])).stdout;
      expect(requires).toMatch(/^libstdc\+\+\.so\.6\(\)\(64bit\)$/m);
      expect(requires).not.toMatch(/nodejs|python|perl/);
    });

    it("passes rpmlint but for third-party node_modules content and deliberate choices", async () => {
      const out = await sh("rpmlint", [rpmPath]).then(
        (r) => r.stdout,
        (e: Error & { cause?: { stdout?: string } }) => e.cause?.stdout ?? String(e),
      );
      // Deliberate: the config may hold the psk, the state dir is the service's; release
      // signing happens outside the build; node_modules is shipped as npm installed it.
      const allowed = [
        /: E: no-signature$/,
        /: E: non-readable \/etc\/packrat\/mirror\.conf 640$/,
        /: E: non-standard-dir-perm \/var\/lib\/packratAgent 750$/,
        /: E: files-duplicated-waste \d+$/,
        /: E: \S+ \/usr\/lib\/packrat-agent\/node_modules\//,
      ];
      const errors = out
        .split("\n")
        .filter((l) => / E: /.test(l) && !allowed.some((re) => re.test(l)));
      expect(errors, out).toEqual([]);
    }, 120_000);

    it("installs with rpm --root --nodeps into a throwaway root, where the bundled runtime runs", async () => {
      // A root with a libc (the bookworm bootstrap), and an empty rpm database in it.
      const root = await unpackRoot(await bootstrapTarball("bookworm"), "rpmroot");
      roots.push(root);
      await sh("rpm", ["--root", root, "-i", "--nodeps", rpmPath]);
      expect((await sh("rpm", ["--root", root, "-q", "packrat-agent"])).stdout.trim()).toBe(
        `packrat-agent-${VERSION.replace(/-/g, "_")}-1.${process.arch === "x64" ? "x86_64" : "aarch64"}`,
      );
      expect((await inRoot(root, ["packrat-agent", "--version"])).stdout.trim()).toBe(
        `packrat-agent ${VERSION}`,
      );
      // %pre made the service user, %files gave it its state dir.
      expect(await passwdEntry(root, "packrat")).toMatch(
        /:\/var\/lib\/packratAgent:\/sbin\/nologin$/,
      );
      expect(
        (await inRoot(root, ["stat", "-c", "%U %a", "/var/lib/packratAgent"])).stdout.trim(),
      ).toBe("packrat 750");
    }, 120_000);
  });

  describe("the OCI image (buildah, run with podman)", () => {
    let imageTar: string;
    let podmanDir: string;
    /**
     * podman with its storage, run state and temp files in a throwaway directory. runc and the
     * cgroupfs manager, not crun and systemd: crun refuses hosts whose cgroup v2 hierarchy has
     * controllers while v1 is mounted too (hybrid, as in the sandbox the tests were written in),
     * and there is no systemd to ask for a scope. The ulimits are set because podman otherwise
     * raises RLIMIT_NOFILE and RLIMIT_NPROC above the current hard limits, which needs
     * CAP_SYS_RESOURCE, and a container sandbox (CI's may be one) has not got it.
     */
    const podman = (args: string[], timeout = 120_000) =>
      sh(
        "podman",
        [
          "--root",
          path.join(podmanDir, "storage"),
          "--runroot",
          path.join(podmanDir, "run"),
          "--tmpdir",
          path.join(podmanDir, "tmp"),
          "--storage-driver",
          "vfs",
          "--cgroup-manager",
          "cgroupfs",
          "--runtime",
          "runc",
          "--events-backend",
          "none",
          ...args,
        ],
        { timeout },
      );

    beforeAll(async () => {
      podmanDir = await mkdtemp(path.join(tmpdir(), "packrat-podman-"));
      imageTar = lastLine(await imageBuild);
    }, 300_000);

    afterAll(async () => {
      if (!podmanDir) return;
      await podman(["rm", "--all", "--force"]).catch(() => undefined);
      await rm(podmanDir, { recursive: true, force: true });
    });

    it("runs `packrat-agent run` as packrat and publishes into the mounted root_dir", async () => {
      const loaded = (await podman(["load", "--quiet", "--input", imageTar])).stdout;
      const image = /Loaded image: (\S+)/.exec(loaded)?.[1];
      expect(image, loaded).toBe(`localhost/packrat-agent:${VERSION.replace(/[~+:]/g, "_")}`);
      const inspect = (
        JSON.parse((await podman(["image", "inspect", image!])).stdout) as {
          Config: {
            Entrypoint: string[];
            Cmd: string[];
            User: string;
            Volumes: Record<string, unknown>;
            Labels: Record<string, string>;
          };
        }[]
      )[0]!.Config;
      expect(inspect.Entrypoint).toEqual(["/usr/bin/packrat-agent", "run"]);
      expect(inspect.Cmd).toEqual(["--config", "/etc/packrat/mirror.conf"]);
      expect(Object.keys(inspect.Volumes).sort()).toEqual([
        "/etc/packrat",
        "/var/lib/packratAgent",
        "/var/www/packrat",
      ]);
      const uid = Number(inspect.Labels["io.packrat.agent.uid"]);
      const gid = Number(inspect.Labels["io.packrat.agent.gid"]);
      expect(inspect.User).toBe(`${uid}:${gid}`);
      expect(uid).toBeGreaterThan(0);

      // The operator's side: a config dir, an empty root_dir and state dir owned by the image's
      // packrat user.
      const host = path.join(podmanDir, "volumes");
      const conf = path.join(host, "etc");
      const www = path.join(host, "www");
      const state = path.join(host, "state");
      for (const d of [conf, www, state]) await mkdir(d, { recursive: true });
      const key = await generateSigningKey({
        name: "Image Mirror",
        email: "image@packrat.invalid",
        type: "ed25519",
      });
      await writeFile(path.join(conf, "signing-key.asc"), key.armoredSecretKey, { mode: 0o600 });
      await writeFile(
        path.join(conf, "mirror.conf"),
        [
          "[packrat]",
          `host: ${master.url}`,
          `name: ${MIRROR}`,
          "",
          "[mirror]",
          "description: image mirror",
          "root_dir: /var/www/packrat",
          "state_db: /var/lib/packratAgent/state.db",
          `gpg_sign_key: ${key.signingKeyId}`,
          "gpg_key_file: /etc/packrat/signing-key.asc",
          "",
        ].join("\n"),
        { mode: 0o640 },
      );
      for (const p of [conf, www, state, path.join(conf, "signing-key.asc")]) {
        await chown(p, uid, gid);
      }
      await chown(path.join(conf, "mirror.conf"), 0, gid);

      const name = `packrat-agent-test-${process.pid}`;
      await podman([
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--volume",
        `${conf}:/etc/packrat:ro`,
        "--volume",
        `${www}:/var/www/packrat`,
        "--volume",
        `${state}:/var/lib/packratAgent`,
        image!,
      ]);
      const inRelease = path.join(www, "apt/dists/bookworm/InRelease");
      const deadline = Date.now() + 90_000;
      while (!existsSync(inRelease) && Date.now() < deadline) {
        const running = (await podman(["inspect", "--format", "{{.State.Running}}", name])).stdout;
        if (running.trim() !== "true") break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const logs = async () => {
        const l = await podman(["logs", name]);
        return l.stdout + l.stderr;
      };
      expect(existsSync(inRelease), await logs()).toBe(true);
      expect(await publishedFiles(www)).toEqual(
        expect.arrayContaining([
          "apt/pool/hello/hello_1.0_all.deb",
          "json/_repo_main/MANIFEST_all.json",
        ]),
      );
      // Published by the packrat user, not root.
      expect((await stat(inRelease)).uid).toBe(uid);
      // SIGTERM stops the daemon cleanly.
      await podman(["stop", "--time", "20", name]);
      expect(
        (await podman(["inspect", "--format", "{{.State.ExitCode}}", name])).stdout.trim(),
      ).toBe("0");
      // JSON lines when not on a terminal.
      expect((await logs()).split("\n").find((l) => l.startsWith("{"))).toMatch(/"level":30/);
    }, 240_000);
  });
});
