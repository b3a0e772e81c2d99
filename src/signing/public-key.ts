/**
 * The public key published in root_dir: `<name>` armored (for humans and `apt-key`-less
 * `curl | gpg --dearmor`) and `<name>.gpg` binary (apt's Signed-By). Pure: the publisher writes
 * the files and keeps them out of cleanup.
 */
import * as openpgp from "openpgp";
import type { Signer } from "./signer.js";

export interface PublicKeyFile {
  path: string;
  content: string | Uint8Array;
}

export function publicKeyFiles(signer: Signer, baseName: string): PublicKeyFile[] {
  return [
    { path: baseName, content: signer.publicKeyArmored() },
    { path: `${baseName}.gpg`, content: signer.publicKeyBinary() },
  ];
}

/**
 * null when `existing` (armored or binary) is the signer's primary key and holds its signing
 * subkey; otherwise a message that says what is published and what signs.
 */
export async function checkExportedKey(
  existing: Uint8Array,
  signer: Signer,
  label = "the published public key",
): Promise<string | null> {
  const signing =
    signer.fingerprint === signer.primaryFingerprint
      ? `primary ${signer.primaryFingerprint}`
      : `primary ${signer.primaryFingerprint} with signing subkey ${signer.fingerprint}`;
  let keys: openpgp.Key[];
  try {
    const text = Buffer.from(existing).toString("latin1");
    keys = text.includes("-----BEGIN PGP PUBLIC KEY BLOCK-----")
      ? await openpgp.readKeys({ armoredKeys: text })
      : await openpgp.readKeys({ binaryKeys: existing });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return `${label} is not an OpenPGP public key (${why}); the signing key is ${signing}`;
  }
  const match = keys.find((k) => k.getFingerprint().toUpperCase() === signer.primaryFingerprint);
  const found = keys.map((k) => k.getFingerprint().toUpperCase()).join(", ");
  if (!match) {
    return `${label} does not match the signing key: it holds ${found || "no key"}, the signing key is ${signing}`;
  }
  if (signer.fingerprint === signer.primaryFingerprint) return null;
  const subkeys = match.subkeys.map((s) => s.getFingerprint().toUpperCase());
  if (subkeys.includes(signer.fingerprint)) return null;
  return `${label} does not hold the signing subkey: it holds primary ${signer.primaryFingerprint} with subkeys ${subkeys.join(", ") || "none"}, the signing key is ${signing}`;
}
