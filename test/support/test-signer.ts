/**
 * A throwaway signing key for tests of layouts and the publisher, made with openpgp.js
 * (v4 EdDSA, which gpgv 2.2 and apt on Debian 12 accept). Production code loads keys with
 * src/signing/openpgp-signer.ts; this exists so format tests do not depend on it.
 */
import * as openpgp from "openpgp";
import type { Signer } from "../../src/signing/signer.js";

export interface TestKey {
  signer: Signer;
  armoredSecretKey: string;
}

const signingConfig = { preferredHashAlgorithm: openpgp.enums.hash.sha512 };

export async function makeTestSigner(name = "packrat test"): Promise<TestKey> {
  const { privateKey: armored } = await openpgp.generateKey({
    // Legacy EdDSA (algorithm 22): gpgv 2.2 on Debian 12 does not know RFC 9580 Ed25519.
    type: "ecc",
    curve: "ed25519Legacy",
    userIDs: [{ name, email: "test@packrat.invalid" }],
    format: "armored",
    subkeys: [{ sign: true }],
  });
  const key = await openpgp.readPrivateKey({ armoredKey: armored });
  const subkey = key.subkeys[0];
  if (!subkey) throw new Error("test key has no subkey");
  const signingKeyId = subkey.getKeyID();
  const publicKey = key.toPublic();

  // openpgp's overloads type a detached sign as any; the casts state what format asks for.
  const detachedArmored = async (data: Uint8Array): Promise<string> =>
    (await openpgp.sign({
      message: await openpgp.createMessage({ binary: data }),
      signingKeys: key,
      signingKeyIDs: [signingKeyId],
      detached: true,
      format: "armored",
      config: signingConfig,
    })) as string;
  const detachedBinary = async (data: Uint8Array): Promise<Uint8Array> =>
    (await openpgp.sign({
      message: await openpgp.createMessage({ binary: data }),
      signingKeys: key,
      signingKeyIDs: [signingKeyId],
      detached: true,
      format: "binary",
      config: signingConfig,
    })) as Uint8Array;

  const signer: Signer = {
    fingerprint: subkey.getFingerprint().toUpperCase(),
    keyId: signingKeyId.toHex().toUpperCase(),
    primaryFingerprint: key.getFingerprint().toUpperCase(),
    expiresAt: null,
    signDetachedArmored: detachedArmored,
    signDetachedBinary: detachedBinary,
    signCleartext: async (text) => {
      const message = await openpgp.createCleartextMessage({ text });
      return openpgp.sign({
        message,
        signingKeys: key,
        signingKeyIDs: [signingKeyId],
        config: signingConfig,
      });
    },
    publicKeyArmored: () => publicKey.armor(),
    publicKeyBinary: () => publicKey.write(),
  };
  return { signer, armoredSecretKey: armored };
}
