import { beforeAll, describe, expect, it } from "vitest";
import type { Signer } from "../../src/signing/signer.js";
import { checkExportedKey, publicKeyFiles } from "../../src/signing/public-key.js";
import { makeTestSigner } from "../support/test-signer.js";

let a: Signer;
let b: Signer;

beforeAll(async () => {
  a = (await makeTestSigner("key a")).signer;
  b = (await makeTestSigner("key b")).signer;
});

describe("publicKeyFiles", () => {
  it("gives the armored key under the base name and the binary one under .gpg", () => {
    const files = publicKeyFiles(a, "repo-key");
    expect(files.map((f) => f.path)).toEqual(["repo-key", "repo-key.gpg"]);
    expect(files[0]?.content).toBe(a.publicKeyArmored());
    expect(files[1]?.content).toEqual(a.publicKeyBinary());
  });
});

describe("checkExportedKey", () => {
  it("accepts the signer's own key, armored or binary", async () => {
    expect(await checkExportedKey(a.publicKeyBinary(), a)).toBeNull();
    expect(await checkExportedKey(new TextEncoder().encode(a.publicKeyArmored()), a)).toBeNull();
  });

  it("names both fingerprints when the published key is another key", async () => {
    const msg = await checkExportedKey(b.publicKeyBinary(), a);
    expect(msg).toBe(
      `the published public key does not match the signing key: it holds ${b.primaryFingerprint}, ` +
        `the signing key is primary ${a.primaryFingerprint} with signing subkey ${a.fingerprint}`,
    );
  });

  it("notices a published key that lacks the signing subkey", async () => {
    const other = { ...a, fingerprint: "0".repeat(40) };
    const msg = await checkExportedKey(a.publicKeyBinary(), other, "repo-key");
    expect(msg).toMatch(/^repo-key does not hold the signing subkey: it holds primary /);
    expect(msg).toContain(a.fingerprint);
  });

  it("says so when the file is not a key at all", async () => {
    const msg = await checkExportedKey(new TextEncoder().encode("<html>404</html>"), a);
    expect(msg).toMatch(/^the published public key is not an OpenPGP public key/);
  });
});
