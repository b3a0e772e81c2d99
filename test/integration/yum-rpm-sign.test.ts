/**
 * RPM header signatures made with openpgp.js, checked by the real `rpmkeys --checksig` with the
 * public key imported into a throwaway rpm database.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as openpgp from "openpgp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRpm } from "../../src/layout/formats/rpm-meta.js";
import { signRpm } from "../../src/layout/formats/rpm-sign.js";
import { DEFAULT_LAYOUT_OPTIONS, bufferSource } from "../../src/layout/types.js";
import type { Signer } from "../../src/signing/signer.js";
import { yumLayout } from "../../src/layout/yum.js";
import {
  buildRpmsWithRpmbuild,
  buildSyntheticRpm,
  STANDARD_SPECS,
} from "../support/rpm-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

const run = promisify(execFile);

let dir: string;
let built: Uint8Array[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-rpmsign-"));
  const paths = await buildRpmsWithRpmbuild(dir, STANDARD_SPECS);
  built = [
    ...(await Promise.all(paths.map((p) => readFile(p)))),
    buildSyntheticRpm({ name: "syn", version: "1", release: "1", files: { "/usr/bin/s": "s" } }),
  ];
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** rpmkeys --checksig with only `publicKey` trusted; returns [exit ok, output]. */
async function checksig(publicKey: string, rpm: Uint8Array): Promise<[boolean, string]> {
  const work = await mkdtemp(path.join(dir, "db-"));
  const keyFile = path.join(work, "key.asc");
  const rpmFile = path.join(work, "p.rpm");
  await writeFile(keyFile, publicKey);
  await writeFile(rpmFile, rpm);
  const db = ["--dbpath", path.join(work, "rpmdb")];
  await run("rpmdb", [...db, "--initdb"]);
  await run("rpmkeys", [...db, "--import", keyFile]);
  const check = async (...flags: string[]): Promise<[boolean, string]> => {
    try {
      const { stdout, stderr } = await run("rpmkeys", [...db, "--checksig", ...flags, rpmFile]);
      return [true, stdout + stderr];
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return [false, `${e.stdout ?? ""}${e.stderr ?? ""}`];
    }
  };
  // The plain line is what the tests assert on; the -v lines say which check failed.
  const [ok, out] = await check();
  const [, details] = await check("-v");
  return [ok, `${out}${details}`];
}

/** A Signer over an openpgp.js private key, signing with `signingKeyId` (a subkey or the primary). */
function signerFromKey(key: openpgp.PrivateKey, signingKeyId = key.getKeyID()): Signer {
  const sign = async (data: Uint8Array) =>
    (await openpgp.sign({
      message: await openpgp.createMessage({ binary: data }),
      signingKeys: key,
      signingKeyIDs: [signingKeyId],
      detached: true,
      format: "binary",
    })) as Uint8Array;
  const pub = key.toPublic();
  return {
    fingerprint: key.getFingerprint().toUpperCase(),
    keyId: signingKeyId.toHex().toUpperCase(),
    primaryFingerprint: key.getFingerprint().toUpperCase(),
    expiresAt: null,
    signDetachedArmored: () => Promise.reject(new Error("unused")),
    signDetachedBinary: sign,
    signCleartext: () => Promise.reject(new Error("unused")),
    publicKeyArmored: () => pub.armor(),
    publicKeyBinary: () => pub.write(),
  };
}

async function rsaSigner(): Promise<Signer> {
  const { privateKey } = await openpgp.generateKey({
    type: "rsa",
    rsaBits: 2048,
    userIDs: [{ name: "rsa test", email: "rsa@packrat.invalid" }],
    format: "object",
  });
  return signerFromKey(privateKey);
}

/**
 * An ed25519 key made by gpg (certify-only primary + signing subkey, the layout users have),
 * loaded into openpgp.js. openpgp.js's own subkey keys cannot be used here: it marks the
 * subkey binding's embedded back-signature critical, and rpm 4.18 refuses to import a key
 * with a critical subpacket it does not parse ("key 1 import failed").
 */
async function gpgEd25519Signer(): Promise<Signer> {
  const home = await mkdtemp(path.join(dir, "gpg-"));
  const gpg = (...args: string[]) =>
    run("gpg", ["--homedir", home, "--batch", "--passphrase", "", ...args]);
  await gpg("--quick-gen-key", "rpm test <rpm@packrat.invalid>", "ed25519", "cert", "never");
  const { stdout: listing } = await gpg("--list-keys", "--with-colons");
  const fpr = /^fpr:+([0-9A-F]+):/m.exec(listing)?.[1];
  if (!fpr) throw new Error("gpg made no key");
  await gpg("--quick-add-key", fpr, "ed25519", "sign", "never");
  const { stdout: armored } = await gpg(
    "--armor",
    "--pinentry-mode",
    "loopback",
    "--export-secret-keys",
    fpr,
  );
  const key = await openpgp.readPrivateKey({ armoredKey: armored });
  const subkey = key.subkeys[0];
  if (!subkey) throw new Error("gpg key has no subkey");
  return signerFromKey(key, subkey.getKeyID());
}

describe("RPM header signing", () => {
  it("EdDSA (gpg-made key, signing subkey): rpmkeys says digests signatures OK", async () => {
    const signer = await gpgEd25519Signer();
    for (const rpm of built) {
      const signed = await signRpm(bufferSource(rpm), "p.rpm", signer);
      const [ok, out] = await checksig(signer.publicKeyArmored(), signed);
      expect(out).toContain("digests signatures OK");
      expect(ok).toBe(true);
    }
  });

  it("RSA key: rpmkeys says digests signatures OK", async () => {
    const signer = await rsaSigner();
    const signed = await signRpm(bufferSource(built[0]!), "p.rpm", signer);
    const [ok, out] = await checksig(signer.publicKeyArmored(), signed);
    expect(out).toContain("digests signatures OK");
    expect(ok).toBe(true);
  });

  it("re-signing with another key replaces the old signature", async () => {
    const first = await gpgEd25519Signer();
    const second = await rsaSigner();
    const once = await signRpm(bufferSource(built[0]!), "p.rpm", first);
    const twice = await signRpm(bufferSource(once), "p.rpm", second);
    expect((await checksig(second.publicKeyArmored(), twice))[0]).toBe(true);
    const [okOld, outOld] = await checksig(first.publicKeyArmored(), twice);
    expect(okOld).toBe(false);
    expect(outOld).toMatch(/NOKEY|NOT OK/);
  });

  it("a tampered signed RPM fails the check", async () => {
    const signer = await gpgEd25519Signer();
    const signed = Buffer.from(await signRpm(bufferSource(built[0]!), "p.rpm", signer));
    const meta = await parseRpm(bufferSource(signed), "p.rpm");
    // Flip a byte inside the main header's store (the summary lives there).
    const tampered = Buffer.from(signed);
    const at = meta.headerEnd - 40;
    tampered[at] = (tampered[at] ?? 0) ^ 0x20;
    const [ok, out] = await checksig(signer.publicKeyArmored(), tampered);
    expect(ok).toBe(false);
    expect(out).toMatch(/NOT OK|BAD/);
  });

  it("the signed RPM parses to the same package, with the header range moved", async () => {
    const { signer } = await makeTestSigner();
    const before = await parseRpm(bufferSource(built[0]!), "p.rpm");
    const signed = await signRpm(bufferSource(built[0]!), "p.rpm", signer);
    const after = await parseRpm(bufferSource(signed), "p.rpm");
    expect(after.headerEnd - after.headerStart).toBe(before.headerEnd - before.headerStart);
    expect({ ...after, sha256: "", packageSize: 0, headerStart: 0, headerEnd: 0 }).toEqual({
      ...before,
      sha256: "",
      packageSize: 0,
      headerStart: 0,
      headerEnd: 0,
    });
  });

  it("transform is null unless sign_rpm_packages is on and a signer exists", async () => {
    const signer = await gpgEd25519Signer();
    const src = bufferSource(built[0]!);
    expect(await yumLayout.transform!(src, "p.rpm", signer, DEFAULT_LAYOUT_OPTIONS)).toBeNull();
    const on = { ...DEFAULT_LAYOUT_OPTIONS, signRpmPackages: true };
    expect(await yumLayout.transform!(src, "p.rpm", null, on)).toBeNull();
    const signed = await yumLayout.transform!(src, "p.rpm", signer, on);
    expect(signed).not.toBeNull();
    expect((await checksig(signer.publicKeyArmored(), signed!))[0]).toBe(true);
  });
});
