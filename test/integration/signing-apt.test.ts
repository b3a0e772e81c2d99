/**
 * apt itself (2.6, which checks with gpgv 2.2) accepts what the Signer makes: a cleartext
 * InRelease, and Release + Release.gpg, against the binary public key as Signed-By. A minimal
 * repo with one empty Packages file, read over file:, with every apt directory private.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { loadSigner, type OpenPgpSigner } from "../../src/signing/openpgp-signer.js";

const run = promisify(execFile);
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "packrat-apt-sign-"));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function releaseText(packages: Buffer): string {
  const sha256 = createHash("sha256").update(packages).digest("hex");
  return [
    "Origin: packrat",
    "Label: packrat test",
    "Suite: stable",
    "Codename: stable",
    `Date: ${new Date(Date.now() - 60_000).toUTCString()}`,
    "Architectures: amd64",
    "Components: main",
    "Description: signing test",
    "SHA256:",
    ` ${sha256} ${packages.length} main/binary-amd64/Packages`,
    "",
  ].join("\n");
}

/** apt-get update against `repo`; returns the output, throwing on a non-zero exit. */
async function aptUpdate(repo: string, keyring: string): Promise<string> {
  const root = await mkdtemp(path.join(tmp, "apt-"));
  for (const d of [
    "state/lists/partial",
    "cache/archives/partial",
    "etc/sources.list.d",
    "etc/trusted.gpg.d",
    "etc/preferences.d",
    "etc/apt.conf.d",
  ]) {
    await mkdir(path.join(root, d), { recursive: true });
  }
  await writeFile(path.join(root, "status"), "");
  await writeFile(
    path.join(root, "etc/sources.list"),
    `deb [signed-by=${keyring}] file:${repo} stable main\n`,
  );
  const { stdout, stderr } = await run("apt-get", [
    "update",
    "-o",
    `Dir::Etc=${path.join(root, "etc")}`,
    "-o",
    `Dir::Etc::SourceList=${path.join(root, "etc/sources.list")}`,
    "-o",
    `Dir::Etc::SourceParts=${path.join(root, "etc/sources.list.d")}`,
    "-o",
    `Dir::Etc::TrustedParts=${path.join(root, "etc/trusted.gpg.d")}`,
    "-o",
    `Dir::Etc::Parts=${path.join(root, "etc/apt.conf.d")}`,
    "-o",
    `Dir::State=${path.join(root, "state")}`,
    "-o",
    `Dir::State::status=${path.join(root, "status")}`,
    "-o",
    `Dir::Cache=${path.join(root, "cache")}`,
    "-o",
    "Debug::NoLocking=1",
    // The private dirs are mode 0700; apt's _apt sandbox user could not read them.
    "-o",
    "APT::Sandbox::User=root",
  ]);
  return stdout + stderr;
}

async function makeRepo(
  name: string,
  signer: OpenPgpSigner,
  mode: "InRelease" | "Release.gpg",
): Promise<{ repo: string; keyring: string }> {
  const repo = path.join(tmp, name);
  const dist = path.join(repo, "dists/stable");
  await mkdir(path.join(dist, "main/binary-amd64"), { recursive: true });
  const packages = Buffer.alloc(0);
  await writeFile(path.join(dist, "main/binary-amd64/Packages"), packages);
  const release = releaseText(packages);
  if (mode === "InRelease") {
    await writeFile(path.join(dist, "InRelease"), await signer.signCleartext(release));
  } else {
    await writeFile(path.join(dist, "Release"), release);
    await writeFile(
      path.join(dist, "Release.gpg"),
      await signer.signDetachedArmored(new TextEncoder().encode(release)),
    );
  }
  const keyring = path.join(tmp, `${name}-key.gpg`);
  await writeFile(keyring, signer.publicKeyBinary());
  return { repo, keyring };
}

function problems(output: string): string[] {
  return output.split("\n").filter((l) => /^(W|E|Err):/.test(l));
}

describe.each(["ed25519", "rsa"] as const)("apt accepts signatures of a %s key", (type) => {
  let signer: OpenPgpSigner;

  beforeAll(async () => {
    const key = await generateSigningKey({
      name: `apt ${type}`,
      type,
      ...(type === "rsa" ? { rsaBits: 2048 } : {}),
    });
    const file = path.join(tmp, `${type}.asc`);
    await writeFile(file, key.armoredSecretKey, { mode: 0o600 });
    signer = await loadSigner({ keyFile: file, signKeyId: key.signingKeyId, passphraseFile: null });
  });

  it("InRelease", async () => {
    const { repo, keyring } = await makeRepo(`${type}-inrelease`, signer, "InRelease");
    const out = await aptUpdate(repo, keyring);
    expect(problems(out)).toEqual([]);
    expect(out).toMatch(/Get:\d+ file:\S+ stable InRelease/);
  });

  it("Release + Release.gpg", async () => {
    const { repo, keyring } = await makeRepo(`${type}-release`, signer, "Release.gpg");
    const out = await aptUpdate(repo, keyring);
    expect(problems(out)).toEqual([]);
    expect(out).toMatch(/Get:\d+ file:\S+ stable Release\b/);
  });

  it("and refuses a tampered InRelease (so the checks above can fail)", async () => {
    const { repo, keyring } = await makeRepo(`${type}-tampered`, signer, "InRelease");
    const file = path.join(repo, "dists/stable/InRelease");
    const text = await readFile(file, "utf8");
    await writeFile(file, text.replace("Label: packrat test", "Label: packrat evil"));
    const out = await aptUpdate(repo, keyring).catch(
      (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ""}${e.stderr ?? ""}`,
    );
    expect(out).toMatch(/BADSIG/);
    expect(out).toMatch(/^E: The repository .* is not signed/m);
  });
});
