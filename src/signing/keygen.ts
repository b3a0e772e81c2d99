/**
 * A new signing key without gpg: a certify-only primary key and a signing subkey, both v4
 * (what gpgv 2.2 and apt on Debian 12 accept), like `gpg --quick-gen-key NAME ed25519 cert`
 * followed by `gpg --quick-add-key FPR ed25519 sign`. The subkey signs; the primary only
 * certifies, so it can later be moved offline and a new subkey added without clients noticing.
 */
import * as openpgp from "openpgp";
import { PackratError } from "../errors.js";

export interface GenerateSigningKeyOptions {
  /** User ID name, e.g. "Example Mirror"; may already hold "Name <email>". */
  name: string;
  email?: string;
  type: "ed25519" | "rsa";
  /** RSA only: 2048 to 4096, default 3072. */
  rsaBits?: number;
  /** Days until both keys expire; undefined or 0 = never. */
  expiresInDays?: number;
  /** Creation time (tests); default now. */
  date?: Date;
}

export interface GeneratedSigningKey {
  armoredSecretKey: string;
  primaryFingerprint: string;
  signingKeyId: string;
  signingFingerprint: string;
}

const DAY_SECONDS = 24 * 60 * 60;

export async function generateSigningKey(
  opts: GenerateSigningKeyOptions,
): Promise<GeneratedSigningKey> {
  const userId = parseUserId(opts.name, opts.email);
  const rsaBits = opts.rsaBits ?? 3072;
  if (opts.type === "rsa" && (!Number.isInteger(rsaBits) || rsaBits < 2048 || rsaBits > 4096)) {
    throw new PackratError("PACKRAT_USAGE", `RSA key size ${rsaBits} is not supported`, {
      hint: "use 2048, 3072 or 4096 bits",
    });
  }
  const days = opts.expiresInDays ?? 0;
  if (!Number.isInteger(days) || days < 0) {
    throw new PackratError("PACKRAT_USAGE", `expiry of ${days} days is not a whole number`, {
      hint: "give a whole number of days, or 0 for a key that does not expire",
    });
  }
  const config: openpgp.PartialConfig = {
    v6Keys: false,
    preferredHashAlgorithm: openpgp.enums.hash.sha512,
  };
  const typeOptions =
    opts.type === "rsa"
      ? ({ type: "rsa", rsaBits } as const)
      : // Legacy EdDSA (algorithm 22): gpg 2.2 does not know RFC 9580 Ed25519 (algorithm 27).
        ({ type: "ecc", curve: "ed25519Legacy" } as const);
  const { privateKey } = await openpgp.generateKey({
    ...typeOptions,
    userIDs: [userId],
    keyExpirationTime: days * DAY_SECONDS,
    subkeys: [{ sign: true }],
    date: opts.date ?? new Date(),
    format: "object",
    config,
  });
  await makePrimaryCertifyOnly(privateKey);
  await moveBackSignaturesUnhashed(privateKey);

  const subkey = privateKey.subkeys[0];
  if (!subkey) throw new Error("openpgp.generateKey made no subkey");
  // The re-signed key must still be one openpgp.js will sign with.
  await privateKey.getSigningKey(subkey.getKeyID(), opts.date ?? new Date());
  return {
    armoredSecretKey: privateKey.armor(),
    primaryFingerprint: privateKey.getFingerprint().toUpperCase(),
    signingKeyId: subkey.getKeyID().toHex().toUpperCase(),
    signingFingerprint: subkey.getFingerprint().toUpperCase(),
  };
}

function parseUserId(name: string, email: string | undefined): openpgp.UserID {
  const trimmed = name.trim();
  if (trimmed === "") {
    throw new PackratError("PACKRAT_USAGE", "the key needs a name (--name)", {
      hint: 'e.g. --name "Example Mirror <ops@example.com>"',
    });
  }
  const inline = /^(.*?)\s*<([^<>]+)>$/.exec(trimmed);
  if (inline && email === undefined) {
    return { name: inline[1] ?? "", email: inline[2] ?? "" };
  }
  return email === undefined ? { name: trimmed } : { name: trimmed, email };
}

/** Sign a self-signature packet (certification or binding) with the primary key. */
async function signWithPrimary(
  sig: openpgp.SignaturePacket,
  primary: openpgp.PrivateKey["keyPacket"],
  data: object,
  created: Date | null,
): Promise<void> {
  // SignaturePacket.sign reads the config (5th argument) that its type declaration omits.
  const sign = sig.sign.bind(sig) as (
    key: openpgp.SecretKeyPacket,
    data: object,
    date: Date | null,
    detached: boolean,
    config: openpgp.Config,
  ) => Promise<void>;
  await sign(primary as openpgp.SecretKeyPacket, data, created, false, openpgp.config);
}

/**
 * openpgp.js always gives a generated primary key the flags certify+sign. Re-issue each user ID
 * self-certification with certify only, keeping every other property of the original.
 */
async function makePrimaryCertifyOnly(key: openpgp.PrivateKey): Promise<void> {
  const primary = key.keyPacket;
  for (const user of key.users) {
    const old = user.selfCertifications[0];
    if (!user.userID || !old) continue;
    const sig = new openpgp.SignaturePacket();
    sig.signatureType = old.signatureType;
    sig.publicKeyAlgorithm = primary.algorithm;
    sig.hashAlgorithm = openpgp.enums.hash.sha512;
    sig.keyFlags = new Uint8Array([openpgp.enums.keyFlags.certifyKeys]);
    sig.preferredSymmetricAlgorithms = old.preferredSymmetricAlgorithms;
    sig.preferredHashAlgorithms = old.preferredHashAlgorithms;
    sig.preferredCompressionAlgorithms = old.preferredCompressionAlgorithms;
    sig.features = old.features;
    sig.keyExpirationTime = old.keyExpirationTime;
    sig.keyNeverExpires = old.keyNeverExpires;
    sig.isPrimaryUserID = old.isPrimaryUserID;
    await signWithPrimary(sig, primary, { userID: user.userID, key: primary }, old.created);
    user.selfCertifications = [sig];
  }
}

/**
 * openpgp.js puts a signing subkey's back-signature (the embedded primary key binding
 * signature, RFC 4880 5.2.3.26) in the hashed area marked critical, and rpm 4.18's OpenPGP
 * parser refuses a key with a critical subpacket it does not know: `rpmkeys --import` fails and
 * no RPM signed with the key verifies. Re-issue each subkey binding with the back-signature in
 * the unhashed area, not critical, as GnuPG writes it; gpg, gpgv, openpgp.js (which reads an
 * embedded signature from either area) and rpm all accept that. The back-signature itself is
 * the subkey's own signature and is kept as it is.
 */
async function moveBackSignaturesUnhashed(key: openpgp.PrivateKey): Promise<void> {
  const primary = key.keyPacket;
  for (const subkey of key.subkeys) {
    const old = subkey.bindingSignatures[0];
    const back = old?.embeddedSignature;
    if (!old || !back) continue;
    const sig = new openpgp.SignaturePacket();
    sig.signatureType = old.signatureType;
    sig.publicKeyAlgorithm = primary.algorithm;
    sig.hashAlgorithm = openpgp.enums.hash.sha512;
    sig.keyFlags = old.keyFlags;
    sig.keyExpirationTime = old.keyExpirationTime;
    sig.keyNeverExpires = old.keyNeverExpires;
    await signWithPrimary(sig, primary, { key: primary, bind: subkey.keyPacket }, old.created);
    // sign() clears the unhashed area; the back-signature goes there afterwards.
    (
      sig as unknown as {
        unhashedSubpackets: { type: number; critical: boolean; body: Uint8Array }[];
      }
    ).unhashedSubpackets.push({
      type: 32, // Embedded Signature (RFC 4880 5.2.3.26); enums.signatureSubpacket is untyped
      critical: false,
      body: back.write(),
    });
    sig.embeddedSignature = back;
    subkey.bindingSignatures = [sig];
  }
}
