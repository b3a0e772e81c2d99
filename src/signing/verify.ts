/**
 * Signature checks for the client-view checkers (src/layout/checks), with openpgp.js against
 * the exported public key: the same key apt's Signed-By, dnf's gpgkey and pacman-key trust.
 */
import * as openpgp from "openpgp";

export interface SignatureVerifier {
  verifyCleartext(text: string): Promise<{ ok: boolean; body: string | null; error?: string }>;
  verifyDetached(data: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

const ARMOR = "-----BEGIN PGP SIGNATURE-----";

async function allVerified(
  signatures: { verified: Promise<unknown> }[],
): Promise<{ ok: boolean; error?: string }> {
  if (signatures.length === 0) return { ok: false, error: "no signature" };
  try {
    for (const s of signatures) await s.verified;
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

/** A verifier that accepts only signatures made by `publicKeyArmored` (primary or subkey). */
export async function createSignatureVerifier(
  publicKeyArmored: string,
): Promise<SignatureVerifier> {
  const keys = await openpgp.readKeys({ armoredKeys: publicKeyArmored });
  return {
    async verifyCleartext(text) {
      try {
        const message = await openpgp.readCleartextMessage({ cleartextMessage: text });
        const { signatures } = await openpgp.verify({ message, verificationKeys: keys });
        const res = await allVerified(signatures);
        return { ...res, body: res.ok ? message.getText() : null };
      } catch (err) {
        return { ok: false, body: null, error: err instanceof Error ? err.message : String(err) };
      }
    },
    async verifyDetached(data, signatureBytes) {
      try {
        const head = Buffer.from(signatureBytes.subarray(0, 64)).toString("latin1");
        const signature = head.includes(ARMOR)
          ? await openpgp.readSignature({
              armoredSignature: Buffer.from(signatureBytes).toString("utf8"),
            })
          : await openpgp.readSignature({ binarySignature: signatureBytes });
        const message = await openpgp.createMessage({ binary: data });
        const { signatures } = await openpgp.verify({
          message,
          signature,
          verificationKeys: keys,
          format: "binary",
        });
        return (await allVerified(signatures)).ok;
      } catch {
        return false;
      }
    },
  };
}
