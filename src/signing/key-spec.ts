/**
 * gpg_sign_key as gpg reads a key ID: an 8- or 16-hex key ID or a full fingerprint
 * (40 hex for v4 keys, 64 hex for v5/v6), any case, with or without `0x`, and with gpg's
 * optional trailing `!` ("exactly this subkey", which is what we do anyway).
 */
import { PackratError } from "../errors.js";

export interface KeySpec {
  /** What the user wrote, for messages. */
  readonly raw: string;
  /** Upper-case hex without 0x. */
  readonly hex: string;
  readonly kind: "short-id" | "long-id" | "fingerprint";
}

export function parseKeySpec(raw: string): KeySpec {
  const trimmed = raw.trim().replace(/!$/, "");
  const hex = trimmed.replace(/^0x/i, "").replace(/\s+/g, "").toUpperCase();
  if (/^[0-9A-F]+$/.test(hex)) {
    if (hex.length === 8) return { raw, hex, kind: "short-id" };
    if (hex.length === 16) return { raw, hex, kind: "long-id" };
    if (hex.length === 40 || hex.length === 64) return { raw, hex, kind: "fingerprint" };
  }
  throw new PackratError(
    "PACKRAT_SIGNING_KEY",
    `gpg_sign_key "${raw}" is not a key ID: expected 8 or 16 hex digits or a 40/64-hex fingerprint`,
    { hint: "run `gpg --list-secret-keys --keyid-format long` and copy the ID of the [S] subkey" },
  );
}

/** Whether a (sub)key with this fingerprint and 16-hex key ID is the one the spec names. */
export function keySpecMatches(spec: KeySpec, fingerprint: string, keyId: string): boolean {
  const fpr = fingerprint.toUpperCase();
  const id = keyId.toUpperCase();
  switch (spec.kind) {
    case "fingerprint":
      return fpr === spec.hex;
    case "long-id":
      return id === spec.hex;
    case "short-id":
      return id.endsWith(spec.hex);
  }
}
