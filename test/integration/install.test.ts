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
import { readFile, rm, writeFile, mkdtemp, readdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeMaster, type FakeMaster } from "../support/fake-master.js";
import { addSampleMirror, sampleDeb, MIRROR, TAG } from "../support/mirror-fixture.js";
import {
  bootstrapTarball,
  buildDeb,
  inRoot,
  INSTALL_TESTS_REQUIRED,
  missingForInstallTests,
  removeRoot,
  REPO,
  unpackRoot,
} from "../support/install-roots.js";

const missing = missingForInstallTests(["mmdebstrap", "unshare", "chroot", "dpkg-deb"]);
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

describe.skipIf(missing !== null)("the .deb on stock Debian (mmdebstrap chroots)", () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), "packrat-install-test-"));
    // Both suites bootstrap while the packages build: the network and the CPU overlap.
    const tarballs = Promise.all([bootstrapTarball("bookworm"), bootstrapTarball("trixie")]);
    oldDeb = await buildDeb(path.join(work, "old"), OLD_VERSION);
    newDeb = await buildDeb(path.join(work, "new"), VERSION, {
      stageOut: path.join(work, "stage"),
    });
    await tarballs;
    master = await startFakeMaster({ minPollTimeout: 1 });
    addSampleMirror(master, { description: "chroot mirror" });
    addDeb("hello", "1.0");
    addDeb("tool", "2.1-1");
  }, 600_000);

  afterAll(async () => {
    await master?.close();
    for (const r of roots) await removeRoot(r);
    if (work) await rm(work, { recursive: true, force: true });
  });

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
