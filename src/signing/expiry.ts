/** The warning shown (log and status) while the signing key nears its expiry. */
import { isoDay, setExpireCommand } from "./openpgp-signer.js";
import type { Signer } from "./signer.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** What OpenPgpSigner adds to Signer: which of the two keys expires when. */
interface ExpiryDetails {
  primaryExpiresAt?: Date | null;
  signingKeyExpiresAt?: Date | null;
}

/**
 * null while the key is valid for more than `warnDays` days (or never expires); otherwise a
 * message naming the key that expires (the signing subkey, the primary key, or both), the day,
 * the days left and the gpg commands that extend it.
 */
export function keyExpiryWarning(
  signer: Signer & ExpiryDetails,
  now: Date,
  warnDays: number,
): string | null {
  const expiresAt = signer.expiresAt;
  if (expiresAt === null) return null;
  const msLeft = expiresAt.getTime() - now.getTime();
  const horizon = now.getTime() + warnDays * DAY_MS;
  if (expiresAt.getTime() > horizon) return null;

  const primary = signer.primaryFingerprint;
  const due = (d: Date | null | undefined): boolean => d instanceof Date && d.getTime() <= horizon;
  const signsWithPrimary = signer.fingerprint === primary;
  // Without the details (another Signer), the signing key is the one to extend.
  const primaryDue = signsWithPrimary || due(signer.primaryExpiresAt);
  const subkeyDue =
    !signsWithPrimary &&
    (signer.signingKeyExpiresAt === undefined ? !primaryDue : due(signer.signingKeyExpiresAt));

  const which =
    primaryDue && subkeyDue
      ? `primary key ${primary} and signing subkey ${signer.fingerprint}`
      : primaryDue
        ? `primary key ${primary}`
        : `signing key ${signer.fingerprint}`;
  const commands = [
    ...(primaryDue ? [setExpireCommand(primary, null)] : []),
    ...(subkeyDue ? [setExpireCommand(primary, signer.fingerprint)] : []),
  ];
  const fix =
    `extend ${commands.length > 1 ? "them" : "it"} with \`${commands.join(" && ")}\`, ` +
    `export the key file again (\`gpg --export-secret-subkeys --armor ${signer.keyId}!\`) ` +
    "and reload the agent so it republishes the public key";
  const verb = primaryDue && subkeyDue ? "expire" : "expires";
  if (msLeft <= 0) return `${which} expired on ${isoDay(expiresAt)}: ${fix}`;
  const days = Math.floor(msLeft / DAY_MS);
  const left = days === 0 ? "within a day" : `in ${days} day${days === 1 ? "" : "s"}`;
  return `${which} ${verb} on ${isoDay(expiresAt)} (${left}): ${fix}`;
}
