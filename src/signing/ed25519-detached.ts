/**
 * Binary detached signatures (RFC 4880 5.2.3, v4) with an Ed25519 key (EdDSA, public-key
 * algorithm 22: what gpg 2.2 and `packrat-agent keygen` make), signed with node:crypto.
 *
 * Why: a pacman repo signs every package file (its `.sig` and %PGPSIG%), 10,000 of them on a
 * cold publish. openpgp.sign checks the key's self-signatures, imports the key into WebCrypto
 * and signs on the thread pool on every call: about 0.6 ms of CPU each, against about 0.05 ms
 * here with one KeyObject made at load time.
 *
 * The packet is laid out exactly as openpgp.js 6 lays it out for the same key and options
 * (hashed subpackets: creation time (critical), issuer key ID, the random salt notation
 * openpgp.js adds against fault attacks, issuer fingerprint; no unhashed subpackets), and
 * createDetachedSigner proves it at load time: it signs a probe both ways, checks that
 * openpgp.js's signature has that layout and that openpgp.js verifies ours. If either fails
 * (another key type, another openpgp.js), it returns null and every signature goes through
 * openpgp.js as before.
 */
import { createHash, createPrivateKey, randomBytes, sign, type KeyObject } from "node:crypto";
import * as openpgp from "openpgp";

/** The signing (sub)key's packet, as far as this module reads it. */
interface EdKeyPacket {
  version: number;
  algorithm: openpgp.enums.publicKey;
  getAlgorithmInfo(): { curve?: string };
  getFingerprintBytes(): Uint8Array | null;
  getKeyID(): { write(): Uint8Array };
  isDecrypted(): boolean | null;
  privateParams?: { seed?: Uint8Array } | null;
}

export interface DetachedSigner {
  /** A binary v4 detached signature of `data`, dated `date` (whole seconds). */
  sign(data: Uint8Array, date: Date): Uint8Array;
}

/** The name of openpgp.js's salt notation (RFC 4880 5.2.3.16, in its own namespace). */
const SALT_NOTATION = "salt@notations.openpgpjs.org";
const SALT_BYTES = 32; // openpgp.js: the salt length RFC 9580 gives for SHA-512
const SUB_CREATED = 2;
const SUB_ISSUER = 16;
const SUB_NOTATION = 20;
const SUB_ISSUER_FINGERPRINT = 33;
/** PKCS #8 wrapping of a raw Ed25519 seed (RFC 8410), for createPrivateKey. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** A subpacket: length (1 byte up to 191; ours are shorter), type (0x80: critical), body. */
function subpacket(type: number, critical: boolean, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([body.length + 1, (critical ? 0x80 : 0) | type]), body]);
}

/** A multiprecision integer: bit count, then the bytes without leading zeros. */
function mpi(bytes: Uint8Array): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const body = bytes.subarray(start);
  const bits = body.length === 0 ? 0 : (body.length - 1) * 8 + (32 - Math.clz32(body[0]!));
  return Buffer.concat([Buffer.from([bits >> 8, bits & 0xff]), body]);
}

/** A new-format packet header (RFC 4880 4.2.2): tag, then a one-, two- or five-byte length. */
function packetHeader(tag: number, length: number): Buffer {
  const first = 0xc0 | tag;
  if (length < 192) return Buffer.from([first, length]);
  if (length < 8384)
    return Buffer.from([first, ((length - 192) >> 8) + 192, (length - 192) & 0xff]);
  const out = Buffer.alloc(6);
  out[0] = first;
  out[1] = 0xff;
  out.writeUInt32BE(length, 2);
  return out;
}

/**
 * Salts come from one randomBytes call per SALT_POOL of them (a call per signature cost 10 µs,
 * 0.1 s of a cold 10,000-package pacman publish); each byte of the pool is used once.
 */
const SALT_POOL = 256;
let saltPool = Buffer.alloc(0);
let saltAt = 0;

function nextSalt(): Uint8Array {
  if (saltAt + SALT_BYTES > saltPool.length) {
    saltPool = randomBytes(SALT_BYTES * SALT_POOL);
    saltAt = 0;
  }
  const salt = saltPool.subarray(saltAt, saltAt + SALT_BYTES);
  saltAt += SALT_BYTES;
  return salt;
}

class Ed25519DetachedSigner implements DetachedSigner {
  constructor(
    private readonly key: KeyObject,
    private readonly hashAlgorithm: number,
    private readonly hashName: string,
    private readonly keyId: Uint8Array,
    private readonly fingerprint: Uint8Array,
    private readonly salted: boolean,
  ) {}

  sign(data: Uint8Array, date: Date, salt: Uint8Array = nextSalt()): Uint8Array {
    const created = Buffer.alloc(4);
    created.writeUInt32BE(Math.floor(date.getTime() / 1000));
    const subpackets = [
      subpacket(SUB_CREATED, true, created),
      subpacket(SUB_ISSUER, false, this.keyId),
    ];
    if (this.salted) {
      const name = Buffer.from(SALT_NOTATION);
      const head = Buffer.alloc(8); // flags (0: not human-readable), name and value lengths
      head.writeUInt16BE(name.length, 4);
      head.writeUInt16BE(salt.length, 6);
      subpackets.push(subpacket(SUB_NOTATION, false, Buffer.concat([head, name, salt])));
    }
    subpackets.push(
      subpacket(SUB_ISSUER_FINGERPRINT, false, Buffer.concat([Buffer.from([4]), this.fingerprint])),
    );
    const hashedSubpackets = Buffer.concat(subpackets);
    // version 4, binary document (0x00), EdDSA (22), hash; then the hashed subpackets.
    const hashed = Buffer.concat([
      Buffer.from([4, 0x00, openpgp.enums.publicKey.eddsaLegacy, this.hashAlgorithm]),
      Buffer.from([hashedSubpackets.length >> 8, hashedSubpackets.length & 0xff]),
      hashedSubpackets,
    ]);
    const trailer = Buffer.alloc(6);
    trailer[0] = 4;
    trailer[1] = 0xff;
    trailer.writeUInt32BE(hashed.length, 2);
    const digest = createHash(this.hashName).update(data).update(hashed).update(trailer).digest();
    // Legacy EdDSA signs the digest itself; R and S are written as MPIs.
    const rs = sign(null, digest, this.key);
    const body = Buffer.concat([
      hashed,
      Buffer.from([0, 0]), // no unhashed subpackets
      digest.subarray(0, 2),
      mpi(rs.subarray(0, 32)),
      mpi(rs.subarray(32)),
    ]);
    return new Uint8Array(Buffer.concat([packetHeader(2, body.length), body]));
  }
}

const HASH_NAMES: Record<number, string> = {
  [openpgp.enums.hash.sha256]: "sha256",
  [openpgp.enums.hash.sha384]: "sha384",
  [openpgp.enums.hash.sha512]: "sha512",
};

/**
 * A fast detached signer for `packet` (the unlocked signing key or subkey of `key`), or null
 * when the key is not a v4 Ed25519 key or when the probe finds openpgp.js laying out or
 * checking signatures in a way this module does not reproduce.
 * `viaOpenpgp` makes a binary detached signature the slow way, as the agent otherwise would.
 */
export async function createDetachedSigner(
  packet: EdKeyPacket,
  publicKey: openpgp.PublicKey,
  date: Date,
  viaOpenpgp: (data: Uint8Array, date: Date) => Promise<Uint8Array>,
): Promise<DetachedSigner | null> {
  if (packet.version !== 4 || packet.algorithm !== openpgp.enums.publicKey.eddsaLegacy) return null;
  if (packet.getAlgorithmInfo().curve !== "ed25519Legacy" || packet.isDecrypted() !== true)
    return null;
  const seed = packet.privateParams?.seed;
  const fingerprint = packet.getFingerprintBytes();
  if (!(seed instanceof Uint8Array) || seed.length !== 32 || fingerprint?.length !== 20)
    return null;
  try {
    const key = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
      format: "der",
      type: "pkcs8",
    });
    const probe = randomBytes(64);
    const reference = await openpgp.readSignature({
      binarySignature: await viaOpenpgp(probe, date),
    });
    const ref = reference.packets[0];
    if (ref === undefined || reference.packets.length !== 1) return null;
    const hashAlgorithm = ref.hashAlgorithm;
    const hashName = hashAlgorithm === null ? undefined : HASH_NAMES[hashAlgorithm];
    if (hashAlgorithm === null || hashName === undefined || ref.version !== 4) return null;
    const salt = ref.rawNotations.find((n) => n.name === SALT_NOTATION);
    const fast = new Ed25519DetachedSigner(
      key,
      hashAlgorithm,
      hashName,
      packet.getKeyID().write(),
      fingerprint,
      salt !== undefined,
    );
    // Same salt and date: Ed25519 is deterministic, so the two must be the same bytes.
    const ours = fast.sign(probe, date, salt?.value ?? new Uint8Array(0));
    if (!Buffer.from(ours).equals(Buffer.from(reference.write()))) return null;
    const { signatures } = await openpgp.verify({
      message: await openpgp.createMessage({ binary: probe }),
      signature: await openpgp.readSignature({ binarySignature: fast.sign(probe, date) }),
      verificationKeys: publicKey,
      date,
      expectSigned: true,
    });
    await signatures[0]?.verified;
    return fast;
  } catch {
    return null;
  }
}
