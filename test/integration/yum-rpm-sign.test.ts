/**
 * RPM header signatures made with openpgp.js, checked by the real `rpmkeys --checksig` with the
 * public key imported into a throwaway rpm database.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRpm } from "../../src/layout/formats/rpm-meta.js";
import { signRpm } from "../../src/layout/formats/rpm-sign.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import { yumLayout } from "../../src/layout/yum.js";
import {
  buildRpmsWithRpmbuild,
  buildSyntheticRpm,
  STANDARD_SPECS,
} from "../support/rpm-builder.js";
import { gpgEd25519TestSigner, rsaTestSigner } from "../support/rpm-test-key.js";
import { makeTestSigner } from "../support/test-signer.js";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { loadSigner } from "../../src/signing/openpgp-signer.js";

const run = promisify(execFile);

let dir: string;
let built: Uint8Array[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-rpmsign-"));
  const paths = await buildRpmsWithRpmbuild(dir, STANDARD_SPECS);
  built = [
    ...(await Promise.all(paths.map((p) => readFile(p)))),
    buildSyntheticRpm({ name: "syn", version: "1", release: "1", files: { "/usr/bin/s": "s" } }),
  ];
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** rpmkeys --checksig with only `publicKey` trusted; returns [exit ok, output]. */
async function checksig(publicKey: string, rpm: Uint8Array): Promise<[boolean, string]> {
  const work = await mkdtemp(path.join(dir, "db-"));
  const keyFile = path.join(work, "key.asc");
  const rpmFile = path.join(work, "p.rpm");
  await writeFile(keyFile, publicKey);
  await writeFile(rpmFile, rpm);
  const db = ["--dbpath", path.join(work, "rpmdb")];
  await run("rpmdb", [...db, "--initdb"]);
  await run("rpmkeys", [...db, "--import", keyFile]);
  const check = async (...flags: string[]): Promise<[boolean, string]> => {
    try {
      const { stdout, stderr } = await run("rpmkeys", [...db, "--checksig", ...flags, rpmFile]);
      return [true, stdout + stderr];
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return [false, `${e.stdout ?? ""}${e.stderr ?? ""}`];
    }
  };
  // The plain line is what the tests assert on; the -v lines say which check failed.
  const [ok, out] = await check();
  const [, details] = await check("-v");
  return [ok, `${out}${details}`];
}

describe("RPM header signing", () => {
  it("EdDSA (gpg-made key, signing subkey): rpmkeys says digests signatures OK", async () => {
    const signer = await gpgEd25519TestSigner();
    for (const rpm of built) {
      const signed = await signRpm(bufferSource(rpm), "p.rpm", signer);
      const [ok, out] = await checksig(signer.publicKeyArmored(), signed);
      expect(out).toContain("digests signatures OK");
      expect(ok).toBe(true);
    }
  });

  it("RSA key: rpmkeys says digests signatures OK", async () => {
    const signer = await rsaTestSigner();
    const signed = await signRpm(bufferSource(built[0]!), "p.rpm", signer);
    const [ok, out] = await checksig(signer.publicKeyArmored(), signed);
    expect(out).toContain("digests signatures OK");
    expect(ok).toBe(true);
  });

  it("re-signing with another key replaces the old signature", async () => {
    const first = await gpgEd25519TestSigner();
    const second = await rsaTestSigner();
    const once = await signRpm(bufferSource(built[0]!), "p.rpm", first);
    const twice = await signRpm(bufferSource(once), "p.rpm", second);
    expect((await checksig(second.publicKeyArmored(), twice))[0]).toBe(true);
    const [okOld, outOld] = await checksig(first.publicKeyArmored(), twice);
    expect(okOld).toBe(false);
    expect(outOld).toMatch(/NOKEY|NOT OK/);
  });

  it("a tampered signed RPM fails the check", async () => {
    const signer = await gpgEd25519TestSigner();
    const signed = Buffer.from(await signRpm(bufferSource(built[0]!), "p.rpm", signer));
    const meta = await parseRpm(bufferSource(signed), "p.rpm");
    // Flip a byte inside the main header's store (the summary lives there).
    const tampered = Buffer.from(signed);
    const at = meta.headerEnd - 40;
    tampered[at] = (tampered[at] ?? 0) ^ 0x20;
    const [ok, out] = await checksig(signer.publicKeyArmored(), tampered);
    expect(ok).toBe(false);
    expect(out).toMatch(/NOT OK|BAD/);
  });

  it("the signed RPM parses to the same package, same size and header range", async () => {
    const { signer } = await makeTestSigner();
    const before = await parseRpm(bufferSource(built[0]!), "p.rpm");
    const signed = await signRpm(bufferSource(built[0]!), "p.rpm", signer);
    const after = await parseRpm(bufferSource(signed), "p.rpm");
    expect(after.headerEnd - after.headerStart).toBe(before.headerEnd - before.headerStart);
    // rpmbuild leaves RPMSIGTAG_RESERVEDSPACE; the signature takes its room, as with rpmsign.
    expect(after.headerStart).toBe(before.headerStart);
    expect(signed.length).toBe(built[0]!.length);
    expect({ ...after, sha256: "", packageSize: 0, headerStart: 0, headerEnd: 0 }).toEqual({
      ...before,
      sha256: "",
      packageSize: 0,
      headerStart: 0,
      headerEnd: 0,
    });
  });

  it("keys made by `packrat-agent keygen` (Ed25519 and RSA, signing subkey) import into rpm 4.18 and verify", async () => {
    // openpgp.js marks a subkey's back-signature critical in the hashed area, which rpm 4.18
    // refuses at import; keygen moves it to the unhashed area (src/signing/keygen.ts).
    for (const type of ["ed25519", "rsa"] as const) {
      const key = await generateSigningKey({ name: `rpm ${type}`, type, rsaBits: 2048 });
      const keyFile = path.join(dir, `keygen-${type}.asc`);
      await writeFile(keyFile, key.armoredSecretKey, { mode: 0o600 });
      const signer = await loadSigner({ keyFile, signKeyId: null, passphraseFile: null });
      for (const rpm of built) {
        const signed = await signRpm(bufferSource(rpm), "p.rpm", signer);
        const [ok, out] = await checksig(signer.publicKeyArmored(), signed);
        expect(ok, `${type}: ${out}`).toBe(true);
        expect(out, type).toMatch(/digests signatures OK/);
      }
    }
  });

  it("the openpgp.js default (back-signature critical and hashed) is what rpm 4.18 refuses", async () => {
    // Why keygen re-issues the binding: if this starts passing, rpm takes openpgp.js keys as
    // they are and the re-issue in keygen.ts can go.
    const { signer } = await makeTestSigner();
    const signed = await signRpm(bufferSource(built[0]!), "p.rpm", signer);
    await expect(checksig(signer.publicKeyArmored(), signed)).rejects.toThrow(/import failed/);
  });

  it("derive rewrites only when sign_rpm_packages is on and a signer exists", async () => {
    const signer = await gpgEd25519TestSigner();
    const src = bufferSource(built[0]!);
    const derive = yumLayout.derive!;
    expect(derive.wants(DEFAULT_LAYOUT_OPTIONS, signer)).toBeNull();
    const on = { ...DEFAULT_LAYOUT_OPTIONS, signRpmPackages: true };
    expect(derive.wants(on, null)).toBeNull();
    expect(derive.wants(on, signer)).toEqual({ rewrite: true, signature: false });
    const { bytes, signature } = await derive.run(src, "p.rpm", signer, on);
    expect(signature).toBeUndefined();
    expect((await checksig(signer.publicKeyArmored(), bytes!))[0]).toBe(true);
  });
});
