import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as openpgp from "openpgp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDetachedSigner } from "../../src/signing/ed25519-detached.js";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { loadSigner } from "../../src/signing/openpgp-signer.js";
import { gpgv } from "../support/gpg.js";

const SHA512 = { preferredHashAlgorithm: openpgp.enums.hash.sha512 };

async function signingPacketOf(armored: string) {
  const key = await openpgp.readPrivateKey({ armoredKey: armored });
  const subkey = key.subkeys[0];
  if (!subkey) throw new Error("no subkey");
  const viaOpenpgp =
    (config: openpgp.PartialConfig) =>
    async (data: Uint8Array, date: Date): Promise<Uint8Array> =>
      (await openpgp.sign({
        message: await openpgp.createMessage({ binary: data }),
        signingKeys: key,
        signingKeyIDs: [subkey.getKeyID()],
        detached: true,
        format: "binary",
        date,
        config,
      })) as Uint8Array;
  return {
    packet: subkey.keyPacket as unknown as Parameters<typeof createDetachedSigner>[0],
    publicKey: key.toPublic(),
    viaOpenpgp,
  };
}

async function verifies(
  publicKey: openpgp.PublicKey,
  data: Uint8Array,
  sig: Uint8Array,
): Promise<boolean> {
  const { signatures } = await openpgp.verify({
    message: await openpgp.createMessage({ binary: data }),
    signature: await openpgp.readSignature({ binarySignature: sig }),
    verificationKeys: publicKey,
  });
  return signatures[0]!.verified.then(
    () => true,
    () => false,
  );
}

describe("node:crypto detached signatures for Ed25519 keys", () => {
  let ed25519: string;
  let dir: string;
  beforeAll(async () => {
    ed25519 = (await generateSigningKey({ name: "fast path", type: "ed25519" })).armoredSecretKey;
    dir = await mkdtemp(path.join(tmpdir(), "packrat-ed25519-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("makes the very bytes openpgp.js makes (Ed25519 is deterministic once the salt is fixed)", async () => {
    const { packet, publicKey, viaOpenpgp } = await signingPacketOf(ed25519);
    // Without openpgp.js's random salt notation both sides are fully deterministic.
    const unsalted = viaOpenpgp({ ...SHA512, nonDeterministicSignaturesViaNotation: false });
    const date = new Date(Math.floor(Date.now() / 1000) * 1000 + 750);
    const fast = await createDetachedSigner(packet, publicKey, date, unsalted);
    expect(fast).not.toBeNull();
    for (const data of [new Uint8Array(0), new TextEncoder().encode("x"), new Uint8Array(70_000)]) {
      const ours = fast!.sign(data, date);
      expect(Buffer.from(ours).toString("hex")).toBe(
        Buffer.from(await unsalted(data, date)).toString("hex"),
      );
    }
  });

  it("salts like openpgp.js, and its signatures verify and catch a changed byte", async () => {
    const { packet, publicKey, viaOpenpgp } = await signingPacketOf(ed25519);
    const date = new Date();
    const fast = await createDetachedSigner(packet, publicKey, date, viaOpenpgp(SHA512));
    expect(fast).not.toBeNull();
    const data = new TextEncoder().encode("a package\n");
    const a = fast!.sign(data, date);
    const b = fast!.sign(data, date);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false); // the salt differs
    const sig = await openpgp.readSignature({ binarySignature: a });
    expect(sig.packets[0]!.rawNotations.map((n) => n.name)).toEqual([
      "salt@notations.openpgpjs.org",
    ]);
    expect(sig.packets[0]!.hashAlgorithm).toBe(openpgp.enums.hash.sha512);
    expect(await verifies(publicKey, data, a)).toBe(true);
    expect(await verifies(publicKey, new TextEncoder().encode("a package!\n"), a)).toBe(false);
  });

  it("is not used for an RSA key (openpgp.js signs those)", async () => {
    const rsa = (await generateSigningKey({ name: "rsa", type: "rsa", rsaBits: 2048 }))
      .armoredSecretKey;
    const { packet, publicKey, viaOpenpgp } = await signingPacketOf(rsa);
    expect(await createDetachedSigner(packet, publicKey, new Date(), viaOpenpgp(SHA512))).toBe(
      null,
    );
  });

  it("is not used when openpgp.js lays the packet out another way", async () => {
    const { packet, publicKey, viaOpenpgp } = await signingPacketOf(ed25519);
    // SHA-256 instead: fine for both, but a notation we do not write makes the probe differ.
    const other = async (data: Uint8Array, date: Date): Promise<Uint8Array> => {
      const key = await openpgp.readPrivateKey({ armoredKey: ed25519 });
      return (await openpgp.sign({
        message: await openpgp.createMessage({ binary: data }),
        signingKeys: key,
        signingKeyIDs: [key.subkeys[0]!.getKeyID()],
        detached: true,
        format: "binary",
        date,
        signatureNotations: [
          {
            name: "extra@packrat.invalid",
            value: new Uint8Array([1]),
            humanReadable: false,
            critical: false,
          },
        ],
        config: SHA512,
      })) as Uint8Array;
    };
    void viaOpenpgp;
    expect(await createDetachedSigner(packet, publicKey, new Date(), other)).toBe(null);
  });

  it("is what loadSigner signs with, and gpgv accepts it", async () => {
    const keyFile = path.join(dir, "key.asc");
    await writeFile(keyFile, ed25519, { mode: 0o600 });
    const signer = await loadSigner({ keyFile, signKeyId: null, passphraseFile: null });
    expect(signer.signsWithNodeCrypto).toBe(true);
    const data = new TextEncoder().encode("payload\n");
    const sigs = [await signer.signDetachedBinary(data), await signer.signDetachedBinary(data)];
    expect((await gpgv(signer.publicKeyBinary(), sigs[0]!, data)).ok).toBe(true);
    const bad = await gpgv(signer.publicKeyBinary(), sigs[1]!, new TextEncoder().encode("x"));
    expect(bad.ok).toBe(false);
  });
});
