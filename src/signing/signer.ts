/**
 * What layouts and the publisher need from a signing key. Implemented with openpgp.js in
 * openpgp-signer.ts; no gpg binary is needed at run time.
 */
export interface Signer {
  /** Upper-case hex fingerprint of the (sub)key that makes the signatures. */
  readonly fingerprint: string;
  /** Upper-case 16-hex key ID of that (sub)key. */
  readonly keyId: string;
  /** Upper-case hex fingerprint of the primary key (what clients import). */
  readonly primaryFingerprint: string;
  /** When the signing (sub)key expires; null if never. */
  readonly expiresAt: Date | null;
  /** Detached, ASCII-armored (apt Release.gpg, yum repomd.xml.asc, json .gpg). */
  signDetachedArmored(data: Uint8Array): Promise<string>;
  /** Detached, binary (pacman .sig, RPM header signatures). */
  signDetachedBinary(data: Uint8Array): Promise<Uint8Array>;
  /** Cleartext-signed (apt InRelease). */
  signCleartext(text: string): Promise<string>;
  /** The matching public key (primary + the signing subkey), armored. */
  publicKeyArmored(): string;
  /** The same, binary, for apt's Signed-By keyrings. */
  publicKeyBinary(): Uint8Array;
}
