/** The warning shown (log and status) while the signing key nears its expiry. */
import { isoDay, setExpireCommand } from "./openpgp-signer.js";
import type { Signer } from "./signer.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * null while the key is valid for more than `warnDays` days (or never expires); otherwise a
 * message naming the key, the day, the days left and the gpg command that extends it. When the
 * primary key is what expires first, that is the one to extend.
 */
export function keyExpiryWarning(signer: Signer, now: Date, warnDays: number): string | null {
  const expiresAt = signer.expiresAt;
  if (expiresAt === null) return null;
  const msLeft = expiresAt.getTime() - now.getTime();
  if (msLeft > warnDays * DAY_MS) return null;
  const primaryExpiresAt = "primaryExpiresAt" in signer ? signer.primaryExpiresAt : undefined;
  const primaryFirst =
    signer.fingerprint === signer.primaryFingerprint ||
    (primaryExpiresAt instanceof Date && primaryExpiresAt.getTime() <= expiresAt.getTime());
  const which = primaryFirst
    ? `primary key ${signer.primaryFingerprint}`
    : `signing key ${signer.fingerprint}`;
  const command = setExpireCommand(
    signer.primaryFingerprint,
    primaryFirst ? null : signer.fingerprint,
  );
  const fix = `extend it with \`${command}\`, export the key file again (\`gpg --export-secret-subkeys --armor ${signer.keyId}!\`) and reload the agent so it republishes the public key`;
  if (msLeft <= 0) return `${which} expired on ${isoDay(expiresAt)}: ${fix}`;
  const days = Math.ceil(msLeft / DAY_MS);
  return `${which} expires on ${isoDay(expiresAt)} (in ${days} day${days === 1 ? "" : "s"}): ${fix}`;
}
