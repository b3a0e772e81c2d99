import { describe, expect, it } from "vitest";
import { keyExpiryWarning } from "../../src/signing/expiry.js";
import type { Signer } from "../../src/signing/signer.js";

const PRIMARY = "BB4A61AF1C7D65CD8CA4CD34A6D7492FAB2C13D7";
const SUB = "EF06E932C26363C63292F3EA98BE3C54F29BC765";
const NOW = new Date("2026-11-21T10:00:00Z");

function signer(expiresAt: Date | null, extra: object = {}): Signer {
  const fail = () => Promise.reject(new Error("not for signing"));
  return {
    fingerprint: SUB,
    keyId: SUB.slice(-16),
    primaryFingerprint: PRIMARY,
    expiresAt,
    signDetachedArmored: fail,
    signDetachedBinary: fail,
    signCleartext: fail,
    publicKeyArmored: () => "",
    publicKeyBinary: () => new Uint8Array(),
    ...extra,
  };
}

describe("keyExpiryWarning", () => {
  it("is null for a key that never expires or expires after the window", () => {
    expect(keyExpiryWarning(signer(null), NOW, 30)).toBeNull();
    expect(keyExpiryWarning(signer(new Date("2026-12-22T10:00:01Z")), NOW, 30)).toBeNull();
  });

  it("names the subkey, the day, the days left and the command to extend it", () => {
    const msg = keyExpiryWarning(signer(new Date("2026-12-01T12:00:00Z")), NOW, 30);
    expect(msg).toBe(
      `signing key ${SUB} expires on 2026-12-01 (in 10 days): extend it with ` +
        `\`gpg --quick-set-expire ${PRIMARY} 1y ${SUB}\`, export the key file again ` +
        `(\`gpg --export-secret-subkeys --armor ${SUB.slice(-16)}!\`) and reload the agent so it republishes the public key`,
    );
  });

  it("says 1 day, within a day, and 'expired' once it has", () => {
    expect(keyExpiryWarning(signer(new Date("2026-11-22T11:00:00Z")), NOW, 30)).toMatch(
      /expires on 2026-11-22 \(in 1 day\)/,
    );
    expect(keyExpiryWarning(signer(new Date("2026-11-22T09:00:00Z")), NOW, 30)).toMatch(
      /expires on 2026-11-22 \(within a day\)/,
    );
    expect(keyExpiryWarning(signer(new Date("2026-11-20T00:00:00Z")), NOW, 30)).toMatch(
      /^signing key .* expired on 2026-11-20: /,
    );
  });

  it("points at the primary key when that is what expires first", () => {
    const at = new Date("2026-12-01T00:00:00Z");
    const later = new Date("2027-06-01T00:00:00Z");
    const msg = keyExpiryWarning(
      signer(at, { primaryExpiresAt: at, signingKeyExpiresAt: later }),
      NOW,
      30,
    );
    expect(msg).toMatch(new RegExp(`^primary key ${PRIMARY} expires on 2026-12-01`));
    expect(msg).toContain(`\`gpg --quick-set-expire ${PRIMARY} 1y\``);
  });

  it("names both keys and both commands when both expire within the window", () => {
    const at = new Date("2026-12-01T00:00:00Z");
    const msg = keyExpiryWarning(
      signer(at, { primaryExpiresAt: at, signingKeyExpiresAt: at }),
      NOW,
      30,
    );
    expect(msg).toMatch(
      new RegExp(`^primary key ${PRIMARY} and signing subkey ${SUB} expire on 2026-12-01`),
    );
    expect(msg).toContain(
      `\`gpg --quick-set-expire ${PRIMARY} 1y && gpg --quick-set-expire ${PRIMARY} 1y ${SUB}\``,
    );
  });

  it("honours the configured window", () => {
    const at = new Date("2027-01-10T00:00:00Z");
    expect(keyExpiryWarning(signer(at), NOW, 30)).toBeNull();
    expect(keyExpiryWarning(signer(at), NOW, 60)).toMatch(/in 49 days/);
  });
});
