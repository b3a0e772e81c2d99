import { beforeAll, describe, expect, it } from "vitest";
import { gpgv } from "../support/gpg.js";
import { makeTestSigner, type TestKey } from "../support/test-signer.js";

// The test signer backs every layout's signature tests, so prove once that gpgv accepts it.
describe("test signer", () => {
  let key: TestKey;
  beforeAll(async () => {
    key = await makeTestSigner();
  });

  it("makes cleartext signatures gpgv accepts, with dash-escaping", async () => {
    const text = "Origin: test\n-starts with a dash\nFrom the start\n";
    const signed = await key.signer.signCleartext(text);
    expect(signed).toMatch(/^-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n/);
    expect((await gpgv(key.signer.publicKeyBinary(), signed)).ok).toBe(true);
  });

  it("makes detached signatures gpgv accepts, and rejects tampered data", async () => {
    const data = new TextEncoder().encode("payload\n");
    const sig = await key.signer.signDetachedBinary(data);
    expect((await gpgv(key.signer.publicKeyBinary(), sig, data)).ok).toBe(true);
    const armored = await key.signer.signDetachedArmored(data);
    expect((await gpgv(key.signer.publicKeyBinary(), armored, data)).ok).toBe(true);
    const bad = await gpgv(
      key.signer.publicKeyBinary(),
      sig,
      new TextEncoder().encode("payload!\n"),
    );
    expect(bad.ok).toBe(false);
    expect(bad.output).toMatch(/BAD signature/);
  });
});
