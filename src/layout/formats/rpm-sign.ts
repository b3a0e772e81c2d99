/**
 * Adding an RPM v4 header signature with openpgp.js (no rpmsign at run time).
 *
 * The signature covers the main header's exact bytes (magic to end of store), like
 * RPMSIGTAG_SHA256. It goes into the signature header under the tag rpm's own sign code
 * (sign/rpmgensig.c) picks by key algorithm: RSA keys → RPMSIGTAG_RSA (268); DSA, ECDSA and
 * EdDSA keys → RPMSIGTAG_DSA (267). rpm 4.18 verifies EdDSA signatures in the DSA tag.
 * Any earlier OpenPGP signature (RSA/DSA header or v3 PGP/GPG header+payload) is replaced, as
 * `rpmsign --resign` does, so a key change re-signs cleanly. The main header and payload stay
 * byte-for-byte, so the SHA256/MD5/SIZE entries of the signature header stay valid.
 */
import { createHash } from "node:crypto";
import { PackratError } from "../../errors.js";
import type { Signer } from "../../signing/signer.js";
import type { ByteSource } from "../types.js";
import {
  alignTo8,
  binEntry,
  encodeHeader,
  entriesOf,
  HeaderReader,
  invalid,
  LEAD_SIZE,
  type NewEntry,
  readRpmStructure,
} from "./rpm-header.js";
import { SigTag, Tag } from "./rpm-tags.js";

/** OpenPGP public-key algorithm ids (RFC 4880 9.1, RFC 9580). */
const PGP_ALGO = { RSA: 1, RSA_SIGN: 3, DSA: 17, ECDSA: 19, EDDSA_LEGACY: 22, ED25519: 27 };

/** The public-key algorithm of a binary OpenPGP signature packet. */
export function signaturePubkeyAlgo(sig: Uint8Array): number {
  const first = sig[0] ?? 0;
  if ((first & 0x80) === 0) throw new Error("not an OpenPGP packet");
  let tag: number;
  let at: number;
  if (first & 0x40) {
    tag = first & 0x3f;
    const l0 = sig[1] ?? 0;
    at = l0 < 192 ? 2 : l0 < 224 ? 3 : l0 === 255 ? 6 : -1;
    if (at < 0) throw new Error("partial-length signature packet");
  } else {
    tag = (first >> 2) & 0x0f;
    const lengthType = first & 0x03;
    at = lengthType === 0 ? 2 : lengthType === 1 ? 3 : lengthType === 2 ? 5 : 1;
  }
  if (tag !== 2) throw new Error(`OpenPGP packet tag ${tag}, expected a signature (2)`);
  const version = sig[at];
  if (version === 4 || version === 5 || version === 6) return sig[at + 2] ?? 0;
  if (version === 3) return sig[at + 15] ?? 0;
  throw new Error(`OpenPGP signature version ${version}`);
}

/** The signature-header tag rpm uses for a header-only signature by this algorithm. */
export function headerSignatureTag(pubkeyAlgo: number): number {
  switch (pubkeyAlgo) {
    case PGP_ALGO.RSA:
    case PGP_ALGO.RSA_SIGN:
      return SigTag.RSA;
    case PGP_ALGO.DSA:
    case PGP_ALGO.ECDSA:
    case PGP_ALGO.EDDSA_LEGACY:
      return SigTag.DSA;
    default:
      throw new PackratError(
        "PACKRAT_SIGNING_KEY",
        `the signing key uses OpenPGP public-key algorithm ${pubkeyAlgo}, which rpm 4.18 cannot verify in an RPM header signature`,
        { hint: "use an RSA, DSA or legacy EdDSA (ed25519, algorithm 22) signing key" },
      );
  }
}

/**
 * Encode the signature header, taking the signature's room out of RPMSIGTAG_RESERVEDSPACE
 * when there is one (rpmbuild leaves ~4 KiB), as rpmsign does: the header then keeps its
 * size, so the main header, rpm:header-range and the file size stay where they were.
 */
function fitReservedSpace(entries: NewEntry[], originalSize: number): Uint8Array {
  const plain = encodeHeader(Tag.HEADERSIGNATURES, entries);
  const reserved = entries.find((e) => e.tag === SigTag.RESERVEDSPACE);
  const excess = plain.length - originalSize;
  if (!reserved || excess <= 0 || excess >= reserved.count) return plain;
  const shrunk = entries.map((e) =>
    e === reserved ? binEntry(SigTag.RESERVEDSPACE, new Uint8Array(reserved.count - excess)) : e,
  );
  const fitted = encodeHeader(Tag.HEADERSIGNATURES, shrunk);
  return fitted.length === originalSize ? fitted : plain;
}

const REPLACED_TAGS = new Set<number>([SigTag.RSA, SigTag.DSA, SigTag.PGP, SigTag.GPG]);

/**
 * The RPM with a fresh header signature by `signer`. Reads the whole file (the payload is
 * copied as it is).
 */
export async function signRpm(
  source: ByteSource,
  filename: string,
  signer: Signer,
): Promise<Uint8Array> {
  const { signature, header } = await readRpmStructure(source, filename);
  const headerBytes = header.bytes;
  const sig = new HeaderReader(signature, filename, "signature header");
  const digest = sig.string(SigTag.SHA256);
  const actual = createHash("sha256").update(headerBytes).digest("hex");
  if (digest !== null && digest !== actual) {
    throw invalid(
      filename,
      `the header's SHA256 digest is ${actual}, the signature header says ${digest}`,
    );
  }

  const pgp = await signer.signDetachedBinary(headerBytes);
  let sigTag: number;
  try {
    sigTag = headerSignatureTag(signaturePubkeyAlgo(pgp));
  } catch (err) {
    if (err instanceof PackratError) throw err;
    throw new PackratError(
      "PACKRAT_SIGNING_KEY",
      `signing ${filename}: the signer returned an unreadable OpenPGP signature`,
      { cause: err },
    );
  }

  const kept = entriesOf(signature, filename, "signature header").filter(
    (e) => !REPLACED_TAGS.has(e.tag),
  );
  const newSig = fitReservedSpace(
    [...kept, binEntry(sigTag, pgp)],
    signature.end - signature.start,
  );
  const padded = alignTo8(LEAD_SIZE + newSig.length) - LEAD_SIZE;
  const rest = source.size - header.start;
  const out = new Uint8Array(LEAD_SIZE + padded + rest);
  out.set(await source.read(0, LEAD_SIZE), 0);
  out.set(newSig, LEAD_SIZE);
  const CHUNK = 1 << 22;
  for (let at = 0; at < rest; at += CHUNK) {
    const part = await source.read(header.start + at, Math.min(CHUNK, rest - at));
    out.set(part, LEAD_SIZE + padded + at);
  }
  return out;
}
