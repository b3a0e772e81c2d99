/**
 * Signing keys for RPM tests. rpm 4.18 must be able to import the public key, which rules
 * out keys openpgp.js generates with a signing subkey: openpgp.js marks the subkey binding's
 * embedded back-signature critical, and rpm 4.18's OpenPGP parser refuses any key with a
 * critical subpacket it does not handle ("key 1 import failed"). gpg writes it non-critical,
 * so these keys are made by gpg (in a throwaway homedir) and then loaded into openpgp.js, the
 * way a user's own key reaches the agent.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as openpgp from "openpgp";
import type { Signer } from "../../src/signing/signer.js";

const run = promisify(execFile);

/** A Signer over an openpgp.js private key, signing with `signingKeyId` (subkey or primary). */
export function signerFromKey(key: openpgp.PrivateKey, signingKeyId = key.getKeyID()): Signer {
  const base = { signingKeys: key, signingKeyIDs: [signingKeyId] };
  const pub = key.toPublic();
  const signing = signingKeyId.equals(key.getKeyID())
    ? key
    : key.subkeys.find((s) => s.getKeyID().equals(signingKeyId));
  return {
    fingerprint: (signing?.getFingerprint() ?? key.getFingerprint()).toUpperCase(),
    keyId: signingKeyId.toHex().toUpperCase(),
    primaryFingerprint: key.getFingerprint().toUpperCase(),
    expiresAt: null,
    signDetachedArmored: async (data) =>
      (await openpgp.sign({
        ...base,
        message: await openpgp.createMessage({ binary: data }),
        detached: true,
        format: "armored",
      })) as string,
    signDetachedBinary: async (data) =>
      (await openpgp.sign({
        ...base,
        message: await openpgp.createMessage({ binary: data }),
        detached: true,
        format: "binary",
      })) as Uint8Array,
    signCleartext: async (text) =>
      openpgp.sign({ ...base, message: await openpgp.createCleartextMessage({ text }) }),
    publicKeyArmored: () => pub.armor(),
    publicKeyBinary: () => pub.write(),
  };
}

/** An RSA-2048 key made by openpgp.js (no subkey: the primary signs). */
export async function rsaTestSigner(): Promise<Signer> {
  const { privateKey } = await openpgp.generateKey({
    type: "rsa",
    rsaBits: 2048,
    userIDs: [{ name: "rsa test", email: "rsa@packrat.invalid" }],
    format: "object",
  });
  return signerFromKey(privateKey);
}

/** An ed25519 key made by gpg: certify-only primary and a signing subkey, which signs. */
export async function gpgEd25519TestSigner(): Promise<Signer> {
  const home = await mkdtemp(path.join(tmpdir(), "packrat-gpgkey-"));
  try {
    const gpg = (...args: string[]) =>
      run("gpg", [
        "--homedir",
        home,
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        ...args,
      ]);
    await gpg("--quick-gen-key", "rpm test <rpm@packrat.invalid>", "ed25519", "cert", "never");
    const { stdout: listing } = await gpg("--list-keys", "--with-colons");
    const fpr = /^fpr:+([0-9A-F]+):/m.exec(listing)?.[1];
    if (!fpr) throw new Error("gpg made no key");
    await gpg("--quick-add-key", fpr, "ed25519", "sign", "never");
    const { stdout: armored } = await gpg("--armor", "--export-secret-keys", fpr);
    const key = await openpgp.readPrivateKey({ armoredKey: armored });
    const subkey = key.subkeys[0];
    if (!subkey) throw new Error("gpg key has no subkey");
    return signerFromKey(key, subkey.getKeyID());
  } finally {
    // gpg-agent may still hold the socket dir; stop it before removing.
    await run("gpgconf", ["--homedir", home, "--kill", "gpg-agent"]).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  }
}
