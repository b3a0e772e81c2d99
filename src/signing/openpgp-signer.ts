/**
 * The Signer, with openpgp.js: no gpg binary at run time.
 *
 * The key file is an ASCII-armored secret key export. The usual one is
 * `gpg --export-secret-subkeys --armor`, where the primary key's secret part is a gnu-dummy
 * stub and only the signing subkey's secret is present; a full secret key works too.
 * Which (sub)key signs follows gpg: gpg_sign_key may name a subkey (that one signs) or a primary
 * key (its newest valid signing subkey signs, else the primary if it may sign).
 */
import * as openpgp from "openpgp";
import { PackratError } from "../errors.js";
import { keySpecMatches, parseKeySpec, type KeySpec } from "./key-spec.js";
import { readSecretFile } from "./secret-file.js";
import { createDetachedSigner, type DetachedSigner } from "./ed25519-detached.js";
import type { Signer } from "./signer.js";

export interface LoadSignerOptions {
  keyFile: string;
  /** gpg_sign_key; null = the key's signing key as gpg would pick it. */
  signKeyId: string | null;
  passphraseFile: string | null;
  /** The time validity is judged at (tests); default: now. Signatures are dated by it too. */
  now?: Date;
}

/**
 * SHA-512 like gpg's default for these keys; openpgp.js never goes below SHA-256 (its
 * mandatory default), and Ed25519 needs at least SHA-256.
 */
const SIGNING_CONFIG: openpgp.PartialConfig = {
  preferredHashAlgorithm: openpgp.enums.hash.sha512,
};

/** openpgp.js's own floor (minRSABits 2047) rounded to the sizes keys are made in. */
const MIN_RSA_BITS = 2048;

type AnyKeyPacket = openpgp.Key["keyPacket"] | openpgp.Subkey["keyPacket"];

/** One primary key or subkey of the file, with what we learned about it at `now`. */
interface KeyComponent {
  key: openpgp.PrivateKey;
  subkey: openpgp.Subkey | null;
  fingerprint: string;
  keyId: string;
  algorithm: string;
  created: Date;
  /** An RSA key under 2048 bits: openpgp.js refuses to sign with it, and so do we. */
  weak: boolean;
  /** Key flags of its newest self-signature or binding signature; null when absent. */
  flags: number | null;
  hasSecret: boolean;
  revoked: boolean;
  /** Its own expiry; null = never. */
  expiresAt: Date | null;
  expired: boolean;
  /** Why openpgp.js considers it unusable when no other reason applies. */
  invalid: string | null;
}

export class OpenPgpSigner implements Signer {
  readonly fingerprint: string;
  readonly keyId: string;
  readonly primaryFingerprint: string;
  readonly expiresAt: Date | null;
  /** When the primary key expires (null = never); it ends the subkey's validity too. */
  readonly primaryExpiresAt: Date | null;
  /** When the signing (sub)key itself expires (null = never). */
  readonly signingKeyExpiresAt: Date | null;
  /** The user IDs of the key, for messages and status. */
  readonly userIds: readonly string[];

  readonly #key: openpgp.PrivateKey;
  readonly #signingKeyId: openpgp.KeyID;
  readonly #publicKey: openpgp.PublicKey;
  readonly #clock: () => Date;
  readonly #signingPacket: AnyKeyPacket;
  /** node:crypto signatures for the hot path (ed25519-detached.ts), from `#fastFrom` on. */
  #fast: DetachedSigner | null = null;
  #fastFrom = 0;

  constructor(
    key: openpgp.PrivateKey,
    signing: KeyComponent,
    primary: KeyComponent,
    clock: () => Date,
  ) {
    this.#key = key;
    this.#signingKeyId = (signing.subkey ?? key).getKeyID();
    this.#signingPacket = (signing.subkey ?? key).keyPacket;
    this.#clock = clock;
    this.fingerprint = signing.fingerprint;
    this.keyId = signing.keyId;
    this.primaryFingerprint = primary.fingerprint;
    this.primaryExpiresAt = primary.expiresAt;
    this.signingKeyExpiresAt = signing.expiresAt;
    this.expiresAt = earliest(primary.expiresAt, signing.expiresAt);
    this.userIds = key.getUserIDs();
    this.#publicKey = publicKeyWithOnly(key, signing.subkey);
  }

  async signDetachedArmored(data: Uint8Array): Promise<string> {
    return this.#sign(async (date) => {
      // openpgp.js types the result through its stream types, which resolve to any here.
      const signature: unknown = await openpgp.sign({
        message: await openpgp.createMessage({ binary: data }),
        signingKeys: this.#key,
        signingKeyIDs: [this.#signingKeyId],
        detached: true,
        format: "armored",
        date,
        config: SIGNING_CONFIG,
      });
      if (typeof signature !== "string") throw new Error("openpgp.sign returned no text");
      return signature;
    });
  }

  async signDetachedBinary(data: Uint8Array): Promise<Uint8Array> {
    return this.#sign(async (date) => {
      const fast = this.#fast;
      // The key was usable at #fastFrom (openpgp.js signed the probe then) and nothing about it
      // changes in memory but time: before its expiry it is usable still. Past it, openpgp.js
      // refuses with its own error.
      if (
        fast !== null &&
        date.getTime() >= this.#fastFrom &&
        (this.expiresAt === null || date < this.expiresAt)
      )
        return fast.sign(data, date);
      return this.#signBinaryOpenpgp(data, date);
    });
  }

  async #signBinaryOpenpgp(data: Uint8Array, date: Date): Promise<Uint8Array> {
    const signature: unknown = await openpgp.sign({
      message: await openpgp.createMessage({ binary: data }),
      signingKeys: this.#key,
      signingKeyIDs: [this.#signingKeyId],
      detached: true,
      format: "binary",
      date,
      config: SIGNING_CONFIG,
    });
    if (!(signature instanceof Uint8Array)) throw new Error("openpgp.sign returned no bytes");
    return signature;
  }

  /** Binary detached signatures are made with node:crypto (prepareFastSigning found it safe). */
  get signsWithNodeCrypto(): boolean {
    return this.#fast !== null;
  }

  /**
   * Make binary detached signatures with node:crypto where the key allows it (an Ed25519 key;
   * see ed25519-detached.ts, which checks its output against openpgp.js's first).
   */
  async prepareFastSigning(): Promise<void> {
    const date = this.#clock();
    this.#fast = await createDetachedSigner(
      this.#signingPacket as unknown as Parameters<typeof createDetachedSigner>[0],
      this.#publicKey,
      date,
      (data, at) => this.#signBinaryOpenpgp(data, at),
    );
    this.#fastFrom = Math.floor(date.getTime() / 1000) * 1000;
  }

  /**
   * RFC 4880 7.1: the line ending before `-----BEGIN PGP SIGNATURE-----` belongs to the armor,
   * not to the text. gpg --clearsign of a file that ends in a newline therefore signs the text
   * without it and puts the armor line right after the last line; we do the same, so InRelease
   * looks like Debian's (no blank line before the signature). openpgp.js dash-escapes lines
   * starting with "-", writes `Hash: SHA512` (v4 signatures), and, as the RFC requires, the
   * signed text has no trailing spaces on its lines.
   */
  async signCleartext(text: string): Promise<string> {
    const body = text.endsWith("\n") ? text.slice(0, -1) : text;
    const signed = await this.#sign(async (date) =>
      openpgp.sign({
        message: await openpgp.createCleartextMessage({ text: body }),
        signingKeys: this.#key,
        signingKeyIDs: [this.#signingKeyId],
        date,
        config: SIGNING_CONFIG,
      }),
    );
    // openpgp.js writes the text in its canonical CRLF form; apt reads the fields of InRelease
    // itself and would keep the CRs. The signature is over the canonical form either way, and
    // the armor (base64) holds no CR, so LF throughout verifies the same.
    return signed.replace(/\r\n/g, "\n");
  }

  publicKeyArmored(): string {
    return this.#publicKey.armor();
  }

  publicKeyBinary(): Uint8Array {
    return this.#publicKey.write();
  }

  async #sign<T>(make: (date: Date) => Promise<T>): Promise<T> {
    try {
      return await make(this.#clock());
    } catch (err) {
      throw new PackratError(
        "PACKRAT_SIGNING_KEY",
        `signing with key ${this.keyId} failed: ${errorMessage(err)}`,
        {
          hint: "the key may have expired or been revoked since it was loaded: check it with `gpg --list-keys` and reload the agent",
          cause: err,
        },
      );
    }
  }
}

export async function loadSigner(opts: LoadSignerOptions): Promise<OpenPgpSigner> {
  const now = opts.now ?? new Date();
  const clock = opts.now ? () => now : () => new Date();
  const spec = opts.signKeyId === null ? null : parseKeySpec(opts.signKeyId);
  const bytes = await readSecretFile(opts.keyFile, "gpg_key_file");
  const keys = await parseSecretKeys(bytes, opts.keyFile);
  const components = (await Promise.all(keys.map((key) => describeKey(key, now)))).flat();
  const signing = chooseSigningKey(components, spec, opts.keyFile);
  const primary = components.find((c) => c.key === signing.key && c.subkey === null);
  if (!primary) throw new Error("signing key without its primary key");

  const version = (signing.subkey ?? signing.key).keyPacket.version;
  if (version !== 4) {
    // A v5/v6 key makes v5/v6 signatures, and gpgv 2.2 (apt on Debian 12) rejects those.
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `key ${signing.keyId} in ${opts.keyFile} is a v${version} OpenPGP key; apt on Debian 12 (gpgv 2.2) cannot check v${version} signatures`,
      {
        hint: "make a v4 key with `packrat-agent keygen` or with gpg 2.2/2.4 (`gpg --quick-gen-key`)",
      },
    );
  }
  await unlock(signing, opts.passphraseFile, opts.keyFile);

  // What openpgp.js itself will use when signing; catches what our checks do not model
  // (a missing back-signature on the subkey, a curve openpgp.js rejects).
  try {
    await signing.key.getSigningKey((signing.subkey ?? signing.key).getKeyID(), now, undefined, {
      ...openpgp.config,
      ...SIGNING_CONFIG,
    });
  } catch (err) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `${opts.keyFile}: key ${signing.keyId} cannot be used for signing: ${errorMessage(err)}`,
      {
        hint: "pick another key with gpg_sign_key, or make one with `packrat-agent keygen`",
        cause: err,
      },
    );
  }
  const signer = new OpenPgpSigner(signing.key, signing, primary, clock);
  await signer.prepareFastSigning();
  return signer;
}

async function parseSecretKeys(bytes: Buffer, keyFile: string): Promise<openpgp.PrivateKey[]> {
  const text = bytes.toString("utf8");
  if (!text.includes("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
    if (text.includes("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
      throw new PackratError(
        "PACKRAT_SIGNING_KEY",
        `gpg_key_file ${keyFile} holds a public key, not a secret key`,
        {
          hint: "export the secret signing subkey: `gpg --export-secret-subkeys --armor <ID>! > FILE`",
        },
      );
    }
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `gpg_key_file ${keyFile} is not an ASCII-armored OpenPGP secret key (no "-----BEGIN PGP PRIVATE KEY BLOCK-----" line)`,
      { hint: "export it with --armor: `gpg --export-secret-subkeys --armor <ID>! > FILE`" },
    );
  }
  try {
    return await openpgp.readPrivateKeys({ armoredKeys: text });
  } catch (err) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `gpg_key_file ${keyFile} cannot be parsed as an OpenPGP secret key: ${errorMessage(err)}`,
      {
        hint: "export it again with `gpg --export-secret-subkeys --armor <ID>! > FILE`",
        cause: err,
      },
    );
  }
}

async function describeKey(key: openpgp.PrivateKey, now: Date): Promise<KeyComponent[]> {
  const selfSignatures = key.users.flatMap((user) => user.selfCertifications);
  const primaryExpiry = await key.getExpirationTime().catch(() => null);
  let invalid: string | null = null;
  try {
    await key.verifyPrimaryKey(now);
  } catch (err) {
    invalid = errorMessage(err);
  }
  const primary: KeyComponent = {
    key,
    subkey: null,
    ...identity(key.keyPacket, key.getFingerprint(), key.getKeyID()),
    flags: flagsOf(newest(selfSignatures)),
    hasSecret: hasSecret(key.keyPacket),
    revoked: await key.isRevoked(undefined, undefined, now),
    expiresAt: finiteDate(primaryExpiry),
    expired: isPast(primaryExpiry, now),
    invalid,
  };
  const subkeys = await Promise.all(
    key.subkeys.map(async (subkey): Promise<KeyComponent> => {
      const binding = newest(subkey.bindingSignatures);
      const expiry = await subkey.getExpirationTime(now).catch(() => null);
      let subInvalid: string | null = null;
      try {
        await subkey.verify(now);
      } catch (err) {
        subInvalid = errorMessage(err);
      }
      return {
        key,
        subkey,
        ...identity(subkey.keyPacket, subkey.getFingerprint(), subkey.getKeyID()),
        flags: flagsOf(binding),
        hasSecret: hasSecret(subkey.keyPacket),
        revoked:
          binding !== undefined &&
          (await subkey.isRevoked(binding, key.keyPacket, now).catch(() => false)),
        expiresAt: finiteDate(expiry),
        expired: isPast(expiry, now),
        invalid: subInvalid,
      };
    }),
  );
  return [primary, ...subkeys];
}

function identity(
  packet: AnyKeyPacket,
  fingerprint: string,
  keyId: openpgp.KeyID,
): Pick<KeyComponent, "fingerprint" | "keyId" | "algorithm" | "created" | "weak"> {
  const info = packet.getAlgorithmInfo();
  return {
    fingerprint: fingerprint.toUpperCase(),
    keyId: keyId.toHex().toUpperCase(),
    algorithm: algorithmName(info),
    created: packet.getCreationTime(),
    weak: info.algorithm.startsWith("rsa") && (info.bits ?? 0) < MIN_RSA_BITS,
  };
}

/** gpg's names where it has one (rsa3072, ed25519, cv25519), else openpgp.js's. */
function algorithmName(info: openpgp.AlgorithmInfo): string {
  if (info.algorithm.startsWith("rsa")) return `rsa${info.bits ?? ""}`;
  if (info.curve === "ed25519Legacy") return "ed25519";
  if (info.curve === "curve25519Legacy") return "cv25519";
  return info.curve === undefined ? info.algorithm : `${info.algorithm}/${info.curve}`;
}

const SIGNING_ALGORITHMS = new Set<openpgp.enums.publicKey>([
  openpgp.enums.publicKey.rsaEncryptSign,
  openpgp.enums.publicKey.rsaSign,
  openpgp.enums.publicKey.dsa,
  openpgp.enums.publicKey.ecdsa,
  openpgp.enums.publicKey.eddsaLegacy,
  openpgp.enums.publicKey.ed25519,
  openpgp.enums.publicKey.ed448,
]);

function canSign(c: KeyComponent): boolean {
  const packet = (c.subkey ?? c.key).keyPacket;
  if (!SIGNING_ALGORITHMS.has(packet.algorithm)) return false;
  return c.flags === null || (c.flags & openpgp.enums.keyFlags.signData) !== 0;
}

function usable(c: KeyComponent, primary: KeyComponent): boolean {
  return (
    canSign(c) &&
    !c.weak &&
    c.hasSecret &&
    !c.revoked &&
    !c.expired &&
    c.invalid === null &&
    !primary.revoked &&
    !primary.expired
  );
}

/** gpg's choice: the named subkey, or for a primary key its newest usable signing subkey. */
function chooseSigningKey(
  components: KeyComponent[],
  spec: KeySpec | null,
  keyFile: string,
): KeyComponent {
  const primaryOf = (c: KeyComponent): KeyComponent =>
    components.find((p) => p.key === c.key && p.subkey === null) ?? c;

  if (spec === null) {
    const primaries = components.filter((c) => c.subkey === null);
    for (const primary of primaries) {
      const found = bestOfPrimary(components, primary);
      if (found) return found;
    }
    const first = primaries[0];
    if (!first) {
      throw new PackratError("PACKRAT_SIGNING_KEY", `gpg_key_file ${keyFile} holds no key`, {
        hint: "export the key again with `gpg --export-secret-subkeys --armor <ID>! > FILE`",
      });
    }
    throw noUsableKey(components, first, keyFile);
  }

  const match = components.find((c) => keySpecMatches(spec, c.fingerprint, c.keyId));
  if (!match) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `gpg_sign_key ${spec.raw} matches no key in ${keyFile}; it holds: ${listKeys(components)}`,
      {
        hint: 'set gpg_sign_key to the ID of a key marked "can sign", or export the right key into gpg_key_file',
      },
    );
  }
  const primary = primaryOf(match);
  checkPrimaryAlive(primary, keyFile);
  if (match.subkey === null) {
    const found = bestOfPrimary(components, match);
    if (found) return found;
    throw noUsableKey(components, match, keyFile);
  }
  const problem = whyUnusable(match);
  if (problem) throw unusableError(match, problem, keyFile, components);
  return match;
}

function bestOfPrimary(components: KeyComponent[], primary: KeyComponent): KeyComponent | null {
  const subkeys = components
    .filter((c) => c.key === primary.key && c.subkey !== null)
    .sort((a, b) => b.created.getTime() - a.created.getTime());
  return [...subkeys, primary].find((c) => usable(c, primary)) ?? null;
}

type Problem = "cannot-sign" | "weak" | "revoked" | "expired" | "no-secret" | "invalid";

function whyUnusable(c: KeyComponent): Problem | null {
  if (!canSign(c)) return "cannot-sign";
  if (c.weak) return "weak";
  if (c.revoked) return "revoked";
  if (c.expired) return "expired";
  if (!c.hasSecret) return "no-secret";
  if (c.invalid !== null) return "invalid";
  return null;
}

function checkPrimaryAlive(primary: KeyComponent, keyFile: string): void {
  if (primary.revoked) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `primary key ${primary.fingerprint} in ${keyFile} is revoked, so none of its subkeys may sign`,
      {
        hint: "make a new key (`packrat-agent keygen`), publish it to the clients and set gpg_sign_key and gpg_key_file to it",
      },
    );
  }
  if (primary.expired) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `primary key ${primary.fingerprint} in ${keyFile} expired on ${isoDay(primary.expiresAt)}, so none of its subkeys may sign`,
      {
        hint: `extend it with \`${setExpireCommand(primary.fingerprint, null)}\`, then export the key file again and let the agent republish the public key`,
      },
    );
  }
}

function noUsableKey(
  components: KeyComponent[],
  primary: KeyComponent,
  keyFile: string,
): PackratError {
  checkPrimaryAlive(primary, keyFile);
  const own = components.filter((c) => c.key === primary.key);
  const signers = own.filter(canSign);
  // Report the problem of the most promising candidate: one that could sign but for one reason.
  const candidate =
    signers.find((c) => whyUnusable(c) === "expired") ??
    signers.find((c) => whyUnusable(c) === "weak") ??
    signers.find((c) => whyUnusable(c) === "revoked") ??
    signers.find((c) => whyUnusable(c) === "no-secret") ??
    signers.find((c) => whyUnusable(c) === "invalid");
  if (candidate) {
    return unusableError(candidate, whyUnusable(candidate) ?? "invalid", keyFile, components);
  }
  return new PackratError(
    "PACKRAT_SIGNING_KEY",
    `key ${primary.fingerprint} in ${keyFile} has no key that is able to sign; it holds: ${listKeys(own)}`,
    {
      hint: `add a signing subkey with \`gpg --quick-add-key ${primary.fingerprint} ed25519 sign 1y\` and export it again, or make a key with \`packrat-agent keygen\``,
    },
  );
}

function unusableError(
  c: KeyComponent,
  problem: Problem,
  keyFile: string,
  components: KeyComponent[],
): PackratError {
  const what = `${c.subkey ? "subkey" : "key"} ${c.keyId} (${c.fingerprint}) in ${keyFile}`;
  const primary = components.find((p) => p.key === c.key && p.subkey === null) ?? c;
  switch (problem) {
    case "cannot-sign":
      return new PackratError(
        "PACKRAT_SIGNING_KEY",
        `${what} is not able to sign (${describeFlags(c)}); keys in the file: ${listKeys(components)}`,
        { hint: 'set gpg_sign_key to a key marked "can sign" ([S] in `gpg --list-keys`)' },
      );
    case "weak":
      return new PackratError(
        "PACKRAT_SIGNING_KEY",
        `${what} is ${c.algorithm}: RSA keys need at least ${MIN_RSA_BITS} bits`,
        {
          hint: `add a stronger signing subkey (\`gpg --quick-add-key ${primary.fingerprint} rsa3072 sign 1y\` or ed25519) and set gpg_sign_key to it`,
        },
      );
    case "revoked":
      return new PackratError("PACKRAT_SIGNING_KEY", `${what} is revoked`, {
        hint: `add a new signing subkey (\`gpg --quick-add-key ${primary.fingerprint} ed25519 sign 1y\`), export it and set gpg_sign_key to it`,
      });
    case "expired":
      return new PackratError("PACKRAT_SIGNING_KEY", `${what} expired on ${isoDay(c.expiresAt)}`, {
        hint: `extend it with \`${setExpireCommand(primary.fingerprint, c.subkey ? c.fingerprint : null)}\`, then export the key file again`,
      });
    case "no-secret":
      return new PackratError(
        "PACKRAT_SIGNING_KEY",
        `${what} has no secret part in the file (gpg exported only a stub for it)`,
        {
          hint: `export the secret of this subkey: \`gpg --export-secret-subkeys --armor ${c.keyId}! > ${keyFile}\``,
        },
      );
    case "invalid":
      return new PackratError(
        "PACKRAT_SIGNING_KEY",
        `${what} cannot be used: ${c.invalid ?? "invalid self-signature"}`,
        { hint: "check the key with `gpg --check-signatures` and export it again" },
      );
  }
}

/** The passphrase is needed only for the (sub)key that signs; the stubbed primary has none. */
async function unlock(
  signing: KeyComponent,
  passphraseFile: string | null,
  keyFile: string,
): Promise<void> {
  const packet = (signing.subkey ?? signing.key).keyPacket;
  if (!("decrypt" in packet) || packet.isDecrypted()) return;
  if (passphraseFile === null) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `key ${signing.keyId} in ${keyFile} is protected by a passphrase and gpg_passphrase_file is not set`,
      { hint: "write the passphrase into a file with mode 600 and set gpg_passphrase_file to it" },
    );
  }
  const raw = (await readSecretFile(passphraseFile, "gpg_passphrase_file")).toString("utf8");
  // Like gpg --passphrase-file: the first line is the passphrase.
  const passphrase = raw.split(/\r?\n/, 1)[0] ?? "";
  try {
    await packet.decrypt(passphrase);
  } catch (err) {
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `the passphrase in ${passphraseFile} does not unlock key ${signing.keyId} in ${keyFile} (wrong passphrase)`,
      {
        hint: "put the key's passphrase on the first line of gpg_passphrase_file; test it with `gpg --pinentry-mode loopback --passphrase-file FILE --dry-run --sign`",
        cause: err,
      },
    );
  }
}

function listKeys(components: KeyComponent[]): string {
  return components
    .map((c) => {
      const notes: string[] = [describeFlags(c)];
      if (c.weak) notes.push("too weak");
      if (!c.hasSecret) notes.push("no secret part");
      if (c.revoked) notes.push("revoked");
      if (c.expired) notes.push(`expired ${isoDay(c.expiresAt)}`);
      const primary = components.find((p) => p.key === c.key && p.subkey === null) ?? c;
      notes.push(usable(c, primary) ? "can sign" : "cannot sign");
      return `${c.subkey ? "subkey" : "primary"} ${c.keyId} ${c.fingerprint} ${c.algorithm} [${notes.join(", ")}]`;
    })
    .join("; ");
}

function describeFlags(c: KeyComponent): string {
  if (c.flags === null) return "no key flags";
  const f = openpgp.enums.keyFlags;
  const letters = [
    c.flags & f.certifyKeys ? "C" : "",
    c.flags & f.signData ? "S" : "",
    c.flags & (f.encryptCommunication | f.encryptStorage) ? "E" : "",
    c.flags & f.authentication ? "A" : "",
  ].join("");
  return `usage ${letters || "none"}`;
}

function flagsOf(signature: openpgp.SignaturePacket | undefined): number | null {
  const flags = signature?.keyFlags;
  return flags && flags.length > 0 ? (flags[0] ?? 0) : null;
}

function newest(signatures: openpgp.SignaturePacket[]): openpgp.SignaturePacket | undefined {
  return signatures.reduce<openpgp.SignaturePacket | undefined>(
    (best, s) => (!best || (s.created?.getTime() ?? 0) > (best.created?.getTime() ?? 0) ? s : best),
    undefined,
  );
}

function hasSecret(packet: AnyKeyPacket): boolean {
  return "isDummy" in packet && !packet.isDummy() && !packet.isMissingSecretKeyMaterial();
}

function finiteDate(expiry: Date | number | null): Date | null {
  return expiry instanceof Date ? expiry : null;
}

function isPast(expiry: Date | number | null, now: Date): boolean {
  return expiry instanceof Date && expiry.getTime() <= now.getTime();
}

function earliest(a: Date | null, b: Date | null): Date | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.getTime() <= b.getTime() ? a : b;
}

/** gpg 2.2's command to move the expiry of a primary key or of one of its subkeys. */
export function setExpireCommand(
  primaryFingerprint: string,
  subkeyFingerprint: string | null,
): string {
  return subkeyFingerprint === null
    ? `gpg --quick-set-expire ${primaryFingerprint} 1y`
    : `gpg --quick-set-expire ${primaryFingerprint} 1y ${subkeyFingerprint}`;
}

export function isoDay(date: Date | null): string {
  return date === null ? "never" : date.toISOString().slice(0, 10);
}

/** Primary key, user IDs, and only the signing subkey: what clients import. */
function publicKeyWithOnly(
  key: openpgp.PrivateKey,
  subkey: openpgp.Subkey | null,
): openpgp.PublicKey {
  const publicKey = key.toPublic();
  const keep = subkey?.getFingerprint();
  publicKey.subkeys = publicKey.subkeys.filter((s) => s.getFingerprint() === keep);
  return publicKey;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
