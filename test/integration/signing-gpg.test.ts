/**
 * The Signer against the real gpg: keys made by gpg 2.2 in a throwaway GNUPGHOME and exported
 * with --export-secret-subkeys (gnu-dummy primary), keys made by generateSigningKey (no gpg),
 * every kind of signature verified with the real gpgv and gpg --verify.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as openpgp from "openpgp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSigner, type OpenPgpSigner } from "../../src/signing/openpgp-signer.js";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { checkExportedKey, publicKeyFiles } from "../../src/signing/public-key.js";

const run = promisify(execFile);

/** A throwaway GNUPGHOME; never the user's ~/.gnupg. */
class GpgHome {
  constructor(readonly dir: string) {}

  static async create(): Promise<GpgHome> {
    const dir = await mkdtemp(path.join(tmpdir(), "packrat-gpg-"));
    // gpg-agent calibrates the passphrase hashing to ~100 ms of C; openpgp.js then takes
    // seconds per attempt. The minimum count keeps the protected-key tests fast.
    await writeFile(path.join(dir, "gpg-agent.conf"), "s2k-count 65536\n");
    return new GpgHome(dir);
  }

  async gpg(args: string[], input?: string): Promise<string> {
    const child = run("gpg", ["--homedir", this.dir, "--batch", "--no-tty", ...args], {
      maxBuffer: 16 * 1024 * 1024,
    });
    if (input !== undefined) {
      child.child.stdin?.end(input);
    }
    const { stdout } = await child;
    return stdout;
  }

  /** A certify-only primary key; returns its fingerprint. */
  async genPrimary(
    uid: string,
    algo: string,
    expire = "2y",
    passphrase = "",
    extra: string[] = [],
  ): Promise<string> {
    await this.gpg([
      ...extra,
      "--pinentry-mode",
      "loopback",
      "--passphrase",
      passphrase,
      "--quick-gen-key",
      uid,
      algo,
      "cert",
      expire,
    ]);
    const fprs = await this.fingerprints(uid);
    const fpr = fprs[0];
    if (!fpr) throw new Error(`no key for ${uid}`);
    return fpr;
  }

  /** Adds a subkey and returns its fingerprint (the newest subkey). */
  async addSubkey(
    primary: string,
    algo: string,
    usage: string,
    expire = "1y",
    passphrase = "",
    extra: string[] = [],
  ): Promise<string> {
    await this.gpg([
      ...extra,
      "--pinentry-mode",
      "loopback",
      "--passphrase",
      passphrase,
      "--quick-add-key",
      primary,
      algo,
      usage,
      expire,
    ]);
    const fprs = await this.fingerprints(primary);
    const fpr = fprs[fprs.length - 1];
    if (!fpr) throw new Error(`no subkey for ${primary}`);
    return fpr;
  }

  /** Fingerprints of the key: primary first, then subkeys in order. */
  async fingerprints(id: string): Promise<string[]> {
    const out = await this.gpg(["--with-colons", "--list-keys", id]);
    return out
      .split("\n")
      .filter((l) => l.startsWith("fpr:"))
      .map((l) => l.split(":")[9] ?? "");
  }

  /** Revokes subkey number `index` (1-based, gpg's `key N`) through --edit-key. */
  async revokeSubkey(primary: string, index: number): Promise<void> {
    await this.gpg(
      [
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--command-fd",
        "0",
        "--edit-key",
        primary,
      ],
      `key ${index}\nrevkey\ny\n0\n\ny\nsave\n`,
    );
  }

  /** Imports the revocation certificate gpg made at key creation. */
  async revokePrimary(primary: string): Promise<void> {
    const rev = await readFile(path.join(this.dir, "openpgp-revocs.d", `${primary}.rev`), "utf8");
    const cert = rev.replace(/^:-----BEGIN/m, "-----BEGIN");
    const file = path.join(this.dir, "rev.asc");
    await writeFile(file, cert);
    await this.gpg(["--import", file]);
  }

  async exportSecretSubkeys(ids: string[]): Promise<string> {
    return this.gpg([
      "--pinentry-mode",
      "loopback",
      "--passphrase",
      "",
      "--armor",
      "--export-secret-subkeys",
      ...ids,
    ]);
  }

  async exportSecretKey(id: string, passphrase = ""): Promise<string> {
    return this.gpg([
      "--pinentry-mode",
      "loopback",
      "--passphrase",
      passphrase,
      "--armor",
      "--export-secret-keys",
      id,
    ]);
  }

  async remove(): Promise<void> {
    await run("gpgconf", ["--homedir", this.dir, "--kill", "all"]).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** gpgv with only the given binary keyring; `data` for detached signatures. */
async function gpgv(
  keyring: Uint8Array,
  signature: string | Uint8Array,
  data?: string | Uint8Array,
): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-gpgv-"));
  try {
    await writeFile(path.join(dir, "keyring.gpg"), keyring);
    await writeFile(path.join(dir, "sig"), signature);
    const args = ["--homedir", dir, "--keyring", path.join(dir, "keyring.gpg")];
    if (data === undefined) {
      args.push("--output", path.join(dir, "out"), path.join(dir, "sig"));
    } else {
      await writeFile(path.join(dir, "data"), data);
      args.push(path.join(dir, "sig"), path.join(dir, "data"));
    }
    const { stderr } = await run("gpgv", args);
    if (data === undefined)
      return `${stderr}\n--- signed text ---\n${await readFile(path.join(dir, "out"), "utf8")}`;
    return stderr;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** gpg --import of the armored public key into a fresh home, then gpg --verify. */
async function gpgVerify(
  armoredPublicKey: string,
  signature: string | Uint8Array,
  data?: string | Uint8Array,
): Promise<string> {
  const home = await GpgHome.create();
  try {
    const keyFile = path.join(home.dir, "key.asc");
    await writeFile(keyFile, armoredPublicKey);
    await home.gpg(["--import", keyFile]);
    await writeFile(path.join(home.dir, "sig"), signature);
    const args = ["--status-fd", "1", "--verify", path.join(home.dir, "sig")];
    if (data !== undefined) {
      await writeFile(path.join(home.dir, "data"), data);
      args.push(path.join(home.dir, "data"));
    }
    return await home.gpg(args);
  } finally {
    await home.remove();
  }
}

async function signaturePacketOf(sig: string | Uint8Array): Promise<openpgp.SignaturePacket> {
  // For a cleartext message, the armored signature block at its end.
  const parsed =
    typeof sig === "string"
      ? await openpgp.readSignature({
          armoredSignature: sig.slice(sig.indexOf("-----BEGIN PGP SIGNATURE-----")),
        })
      : await openpgp.readSignature({ binarySignature: sig });
  const packet = parsed.packets[0];
  if (!packet) throw new Error("no signature packet");
  return packet;
}

const STRONG_HASHES = [
  openpgp.enums.hash.sha256,
  openpgp.enums.hash.sha384,
  openpgp.enums.hash.sha512,
];

/** An InRelease-like text with lines that need dash-escaping and a "From " line. */
const RELEASE_TEXT = [
  "Origin: packrat",
  "Label: packrat",
  "Suite: stable",
  "Date: Sat, 21 Nov 2026 08:00:00 UTC",
  "SHA256:",
  " 3f2a0d8e2c1b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f 1234 main/binary-amd64/Packages",
  "-----BEGIN not really armor",
  "- a line with a leading dash",
  "--double dash",
  "From the master, with love",
  "",
].join("\n");

let tmp: string;
let home: GpgHome;

async function keyFile(name: string, content: string, mode = 0o600): Promise<string> {
  const file = path.join(tmp, name);
  await writeFile(file, content, { mode });
  return file;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "packrat-signing-"));
  home = await GpgHome.create();
});

afterAll(async () => {
  await home.remove();
  await rm(tmp, { recursive: true, force: true });
});

interface KeyCase {
  label: string;
  make: () => Promise<{ file: string; signKeyId: string | null; expectFingerprint: string }>;
}

const cases: KeyCase[] = [
  {
    label: "gpg RSA 2048 primary + RSA 3072 signing subkey (export-secret-subkeys)",
    make: async () => {
      const primary = await home.genPrimary("RSA Mirror <rsa@packrat.invalid>", "rsa2048");
      const sub = await home.addSubkey(primary, "rsa3072", "sign");
      const file = await keyFile("rsa.asc", await home.exportSecretSubkeys([`${sub}!`]));
      return { file, signKeyId: sub.slice(-16), expectFingerprint: sub };
    },
  },
  {
    label: "gpg Ed25519 primary + Ed25519 signing subkey, named by primary fingerprint",
    make: async () => {
      const primary = await home.genPrimary("Ed Mirror <ed@packrat.invalid>", "ed25519");
      const sub = await home.addSubkey(primary, "ed25519", "sign");
      const file = await keyFile("ed.asc", await home.exportSecretSubkeys([primary]));
      return { file, signKeyId: primary.toLowerCase(), expectFingerprint: sub };
    },
  },
  {
    label: "generateSigningKey ed25519 (no gpg)",
    make: async () => {
      const key = await generateSigningKey({ name: "Gen Ed", type: "ed25519", expiresInDays: 365 });
      const file = await keyFile("gen-ed.asc", key.armoredSecretKey);
      return { file, signKeyId: key.signingKeyId, expectFingerprint: key.signingFingerprint };
    },
  },
  {
    label: "generateSigningKey rsa 2048 (no gpg), signKeyId null",
    make: async () => {
      const key = await generateSigningKey({ name: "Gen RSA", type: "rsa", rsaBits: 2048 });
      const file = await keyFile("gen-rsa.asc", key.armoredSecretKey);
      return { file, signKeyId: null, expectFingerprint: key.signingFingerprint };
    },
  },
];

describe.each(cases)("$label", ({ make }) => {
  let signer: OpenPgpSigner;
  let expectFingerprint: string;

  beforeAll(async () => {
    const made = await make();
    expectFingerprint = made.expectFingerprint;
    signer = await loadSigner({
      keyFile: made.file,
      signKeyId: made.signKeyId,
      passphraseFile: null,
    });
  });

  it("signs with the expected subkey", () => {
    expect(signer.fingerprint).toBe(expectFingerprint);
    expect(signer.keyId).toBe(expectFingerprint.slice(-16));
    expect(signer.primaryFingerprint).not.toBe(signer.fingerprint);
  });

  it("makes a cleartext InRelease that gpgv and gpg --verify accept", async () => {
    const signed = await signer.signCleartext(RELEASE_TEXT);
    const header = signed.split("\n").slice(0, 3);
    expect(header[0]).toBe("-----BEGIN PGP SIGNED MESSAGE-----");
    expect(header[1]).toMatch(/^Hash: SHA(256|384|512)$/);
    expect(header[2]).toBe("");
    expect(signed).not.toContain("\r");
    expect(signed).toContain("\n- -----BEGIN not really armor\n");
    expect(signed).toContain("\n- - a line with a leading dash\n");
    expect(signed).toContain("\n- --double dash\n");
    // Like gpg --clearsign and Debian's InRelease: no blank line before the signature.
    expect(signed).toContain("\nFrom the master, with love\n-----BEGIN PGP SIGNATURE-----\n");
    const out = await gpgv(signer.publicKeyBinary(), signed);
    expect(out).toContain("Good signature");
    expect(out).toContain(signer.fingerprint);
    expect(out.split("--- signed text ---\n")[1]).toBe(RELEASE_TEXT);
    const status = await gpgVerify(signer.publicKeyArmored(), signed);
    expect(status).toMatch(
      new RegExp(`VALIDSIG ${signer.fingerprint} .* ${signer.primaryFingerprint}`),
    );

    const packet = await signaturePacketOf(signed);
    expect(packet.version).toBe(4);
    expect(STRONG_HASHES).toContain(packet.hashAlgorithm);
  });

  it("makes a detached armored signature that gpgv and gpg --verify accept", async () => {
    const data = new TextEncoder().encode(RELEASE_TEXT);
    const sig = await signer.signDetachedArmored(data);
    expect(sig).toMatch(/^-----BEGIN PGP SIGNATURE-----\n/);
    expect(await gpgv(signer.publicKeyBinary(), sig, data)).toContain("Good signature");
    const status = await gpgVerify(signer.publicKeyArmored(), sig, data);
    expect(status).toContain(`VALIDSIG ${signer.fingerprint}`);
    const packet = await signaturePacketOf(sig);
    expect(packet.version).toBe(4);
    expect(STRONG_HASHES).toContain(packet.hashAlgorithm);
    // The issuer fingerprint subpacket lets apt/gpgv find the key without guessing.
    expect(
      Buffer.from(packet.issuerFingerprint ?? [])
        .toString("hex")
        .toUpperCase(),
    ).toBe(signer.fingerprint);
  });

  it("makes a detached binary signature that gpgv and gpg --verify accept", async () => {
    const data = new Uint8Array(100_000).map((_, i) => (i * 7) % 256);
    const sig = await signer.signDetachedBinary(data);
    expect(sig[0]! & 0x80).toBe(0x80); // an OpenPGP packet, not armor
    expect(await gpgv(signer.publicKeyBinary(), sig, data)).toContain("Good signature");
    expect(await gpgVerify(signer.publicKeyArmored(), sig, data)).toContain(
      `VALIDSIG ${signer.fingerprint}`,
    );
    const packet = await signaturePacketOf(sig);
    expect(packet.version).toBe(4);
    // And a changed byte is caught: the test can fail.
    const tampered = data.slice();
    tampered[500] = tampered[500]! ^ 1;
    await expect(gpgv(signer.publicKeyBinary(), sig, tampered)).rejects.toThrow(/BAD signature/);
  });

  it("exports a public key with the primary, user ID and only the signing subkey", async () => {
    const home2 = await GpgHome.create();
    try {
      const [armored, binary] = publicKeyFiles(signer, "repo-key");
      expect(armored?.path).toBe("repo-key");
      expect(binary?.path).toBe("repo-key.gpg");
      await writeFile(path.join(home2.dir, "k.gpg"), binary!.content);
      await home2.gpg(["--import", path.join(home2.dir, "k.gpg")]);
      const fprs = await home2.fingerprints(signer.primaryFingerprint);
      expect(fprs).toEqual([signer.primaryFingerprint, signer.fingerprint]);
      const listing = await home2.gpg(["--with-colons", "--list-keys", signer.primaryFingerprint]);
      expect(listing).toMatch(/^uid:/m);
      expect(await checkExportedKey(binary!.content as Uint8Array, signer)).toBeNull();
      expect(
        await checkExportedKey(new TextEncoder().encode(armored!.content as string), signer),
      ).toBeNull();
    } finally {
      await home2.remove();
    }
  });
});

describe("which key signs", () => {
  let primary: string;
  let older: string;
  let newer: string;
  let file: string;

  beforeAll(async () => {
    // Distinct creation times, so "newest" is well defined (gpg's own choice).
    const t0 = Math.floor(Date.now() / 1000) - 3000;
    primary = await home.genPrimary("Pick <pick@packrat.invalid>", "ed25519", "2y", "", [
      "--faked-system-time",
      `${t0}!`,
    ]);
    older = await home.addSubkey(primary, "ed25519", "sign", "1y", "", [
      "--faked-system-time",
      `${t0 + 1000}!`,
    ]);
    newer = await home.addSubkey(primary, "ed25519", "sign", "1y", "", [
      "--faked-system-time",
      `${t0 + 2000}!`,
    ]);
    await home.addSubkey(primary, "cv25519", "encr");
    file = await keyFile("pick.asc", await home.exportSecretSubkeys([primary]));
  });

  it("with gpg_sign_key unset, or naming the primary, picks the newest signing subkey", async () => {
    for (const signKeyId of [null, primary, `0x${primary.slice(-16)}`]) {
      const signer = await loadSigner({ keyFile: file, signKeyId, passphraseFile: null });
      expect(signer.fingerprint).toBe(newer);
    }
  });

  it("accepts every spelling of a subkey ID", async () => {
    for (const signKeyId of [
      older,
      older.toLowerCase(),
      `0x${older}`,
      older.slice(-16),
      `0X${older.slice(-16).toLowerCase()}`,
      older.slice(-8),
      `${older.slice(-16)}!`,
    ]) {
      const signer = await loadSigner({ keyFile: file, signKeyId, passphraseFile: null });
      expect(signer.fingerprint, signKeyId).toBe(older);
      expect(signer.primaryFingerprint).toBe(primary);
    }
  });

  it("skips a revoked signing subkey when the primary is named", async () => {
    const p = await home.genPrimary("Skip <skip@packrat.invalid>", "ed25519", "2y", "", [
      "--faked-system-time",
      `${Math.floor(Date.now() / 1000) - 100}!`,
    ]);
    const good = await home.addSubkey(p, "ed25519", "sign", "1y", "", [
      "--faked-system-time",
      `${Math.floor(Date.now() / 1000) - 50}!`,
    ]);
    await home.addSubkey(p, "ed25519", "sign");
    await home.revokeSubkey(p, 2);
    const f = await keyFile("skip.asc", await home.exportSecretSubkeys([p]));
    const signer = await loadSigner({ keyFile: f, signKeyId: p, passphraseFile: null });
    expect(signer.fingerprint).toBe(good);
  });

  it("signs with the primary key when it may sign and has no signing subkey", async () => {
    // genPrimary makes certify-only keys; this one may also sign, and has no subkey.
    await home.gpg([
      "--pinentry-mode",
      "loopback",
      "--passphrase",
      "",
      "--quick-gen-key",
      "Both <both@packrat.invalid>",
      "ed25519",
      "sign,cert",
      "1y",
    ]);
    const [both] = await home.fingerprints("Both <both@packrat.invalid>");
    const f = await keyFile("both.asc", await home.exportSecretKey(both!));
    const signer = await loadSigner({ keyFile: f, signKeyId: null, passphraseFile: null });
    expect(signer.fingerprint).toBe(both);
    expect(signer.primaryFingerprint).toBe(both);
    const sig = await signer.signDetachedBinary(new TextEncoder().encode("y"));
    expect(await gpgv(signer.publicKeyBinary(), sig, "y")).toContain("Good signature");
  });

  it("uses a full secret key (not only a subkey export)", async () => {
    const f = await keyFile("full.asc", await home.exportSecretKey(primary));
    const signer = await loadSigner({ keyFile: f, signKeyId: older, passphraseFile: null });
    const sig = await signer.signDetachedArmored(new TextEncoder().encode("x"));
    expect(await gpgv(signer.publicKeyBinary(), sig, "x")).toContain("Good signature");
  });
});

describe("errors", () => {
  async function loadError(
    opts: Partial<Parameters<typeof loadSigner>[0]> & { keyFile: string },
  ): Promise<{ message: string; hint: string; code: string }> {
    try {
      await loadSigner({ signKeyId: null, passphraseFile: null, ...opts });
    } catch (err) {
      const e = err as { message: string; hint?: string; code?: string };
      return { message: e.message, hint: e.hint ?? "", code: e.code ?? "" };
    }
    throw new Error("loadSigner did not fail");
  }

  let primary: string;
  let signSub: string;
  let encrSub: string;
  let file: string;

  beforeAll(async () => {
    primary = await home.genPrimary("Err <err@packrat.invalid>", "ed25519", "2y");
    signSub = await home.addSubkey(primary, "ed25519", "sign", "1y");
    encrSub = await home.addSubkey(primary, "cv25519", "encr", "1y");
    file = await keyFile("err.asc", await home.exportSecretSubkeys([primary]));
  });

  it("missing key file", async () => {
    const e = await loadError({ keyFile: path.join(tmp, "nope.asc") });
    expect(e.code).toBe("PACKRAT_SIGNING_KEY");
    expect(e.message).toBe(`gpg_key_file ${path.join(tmp, "nope.asc")} does not exist`);
    expect(e.hint).toContain("--export-secret-subkeys");
  });

  it("unreadable key file", async () => {
    const e = await loadError({ keyFile: path.join(file, "child") });
    expect(e.message).toMatch(/cannot be read: ENOTDIR/);
    expect((await loadError({ keyFile: tmp })).message).toMatch(/is not a regular file/);
  });

  it("key file readable by group or others is refused with the chmod to run", async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const f = await keyFile(`open-${mode.toString(8)}.asc`, await readFile(file, "utf8"), mode);
      const e = await loadError({ keyFile: f });
      expect(e.message).toContain(`has mode ${mode.toString(8)}: group or others can access it`);
      expect(e.hint).toContain(`chmod 600 ${f}`);
    }
  });

  it("not a key, not armored, a public key, a corrupt armor", async () => {
    const junk = await keyFile("junk.asc", "hello world\n");
    expect((await loadError({ keyFile: junk })).message).toMatch(
      /is not an ASCII-armored OpenPGP secret key/,
    );
    const binary = await keyFile("bin.gpg", "\x95\x01\x02binary");
    expect((await loadError({ keyFile: binary })).hint).toMatch(/--armor/);
    const pub = await keyFile("pub.asc", await home.gpg(["--armor", "--export", primary]));
    const e = await loadError({ keyFile: pub });
    expect(e.message).toMatch(/holds a public key, not a secret key/);
    const armored = await readFile(file, "utf8");
    const lines = armored.split("\n");
    lines[5] = "AAAA" + (lines[5] ?? "").slice(4).split("").reverse().join("");
    const corrupt = await keyFile("corrupt.asc", lines.join("\n"));
    expect((await loadError({ keyFile: corrupt })).message).toMatch(
      /cannot be parsed as an OpenPGP secret key/,
    );
  });

  it("gpg_sign_key that is not a key ID", async () => {
    const e = await loadError({ keyFile: file, signKeyId: "mirror-key" });
    expect(e.message).toMatch(/gpg_sign_key "mirror-key" is not a key ID/);
  });

  it("no key matching gpg_sign_key lists the keys there, marking which can sign", async () => {
    const e = await loadError({ keyFile: file, signKeyId: "0xDEADBEEF" });
    expect(e.message).toContain(`gpg_sign_key 0xDEADBEEF matches no key in ${file}`);
    expect(e.message).toContain(`primary ${primary.slice(-16)} ${primary}`);
    expect(e.message).toMatch(
      new RegExp(`subkey ${signSub.slice(-16)} ${signSub} [^\\]]*can sign\\]`),
    );
    expect(e.message).toMatch(
      new RegExp(`subkey ${encrSub.slice(-16)} ${encrSub} [^\\]]*cannot sign\\]`),
    );
    expect(e.message).toMatch(/no secret part/); // the stubbed primary
  });

  it("a key that is not able to sign", async () => {
    const e = await loadError({ keyFile: file, signKeyId: encrSub });
    expect(e.message).toContain(
      `subkey ${encrSub.slice(-16)} (${encrSub}) in ${file} is not able to sign (usage E)`,
    );
    const p = await home.genPrimary("NoSign <nosign@packrat.invalid>", "ed25519");
    await home.addSubkey(p, "cv25519", "encr");
    const f = await keyFile("nosign.asc", await home.exportSecretSubkeys([p]));
    const e2 = await loadError({ keyFile: f, signKeyId: p });
    expect(e2.message).toContain(`key ${p} in ${f} has no key that is able to sign`);
    expect(e2.hint).toContain(`gpg --quick-add-key ${p} ed25519 sign`);
  });

  it("an expired subkey and an expired primary", async () => {
    const inThirteenMonths = new Date(Date.now() + 400 * 86_400_000);
    const e = await loadError({ keyFile: file, signKeyId: signSub, now: inThirteenMonths });
    expect(e.message).toMatch(
      new RegExp(
        `subkey ${signSub.slice(-16)} \\(${signSub}\\) in .* expired on \\d{4}-\\d{2}-\\d{2}`,
      ),
    );
    expect(e.hint).toContain(`gpg --quick-set-expire ${primary} 1y ${signSub}`);
    // Named by the primary: the only signing subkey has expired.
    expect(
      (await loadError({ keyFile: file, signKeyId: primary, now: inThirteenMonths })).message,
    ).toMatch(/expired on/);
    const inThreeYears = new Date(Date.now() + 3 * 366 * 86_400_000);
    const e2 = await loadError({ keyFile: file, signKeyId: signSub, now: inThreeYears });
    expect(e2.message).toMatch(new RegExp(`primary key ${primary} in .* expired on`));
    expect(e2.hint).toContain(`gpg --quick-set-expire ${primary} 1y`);
  });

  it("a key that really expired (made in the past with gpg)", async () => {
    const past = Math.floor(Date.now() / 1000) - 10 * 86_400;
    const p = await home.genPrimary("Old <old@packrat.invalid>", "ed25519", "5d", "", [
      "--faked-system-time",
      `${past}!`,
    ]);
    const s = await home.addSubkey(p, "ed25519", "sign", "5d", "", [
      "--faked-system-time",
      `${past + 10}!`,
    ]);
    const f = await keyFile("old.asc", await home.exportSecretSubkeys([p]));
    const e = await loadError({ keyFile: f, signKeyId: s });
    expect(e.message).toMatch(/expired on/);
  });

  it("a revoked subkey and a revoked primary", async () => {
    const p = await home.genPrimary("Rev <rev@packrat.invalid>", "ed25519");
    const s = await home.addSubkey(p, "ed25519", "sign");
    await home.revokeSubkey(p, 1);
    const f = await keyFile("rev-sub.asc", await home.exportSecretSubkeys([p]));
    const e = await loadError({ keyFile: f, signKeyId: s });
    expect(e.message).toBe(`subkey ${s.slice(-16)} (${s}) in ${f} is revoked`);
    expect((await loadError({ keyFile: f, signKeyId: p })).message).toMatch(/is revoked/);

    const p2 = await home.genPrimary("Rev2 <rev2@packrat.invalid>", "ed25519");
    const s2 = await home.addSubkey(p2, "ed25519", "sign");
    await home.revokePrimary(p2);
    const f2 = await keyFile("rev-primary.asc", await home.exportSecretSubkeys([p2]));
    const e2 = await loadError({ keyFile: f2, signKeyId: s2 });
    expect(e2.message).toBe(
      `primary key ${p2} in ${f2} is revoked, so none of its subkeys may sign`,
    );
  });

  it("a subkey whose secret part is not in the file", async () => {
    const p = await home.genPrimary("Stub <stub@packrat.invalid>", "ed25519");
    const a = await home.addSubkey(p, "ed25519", "sign");
    const b = await home.addSubkey(p, "ed25519", "sign");
    // gpg keeps B's public part and writes a gnu-dummy stub for it once its secret is gone.
    await home.gpg(["--yes", "--delete-secret-keys", `${b}!`]);
    const f = await keyFile("stub.asc", await home.exportSecretSubkeys([p]));
    const e = await loadError({ keyFile: f, signKeyId: b });
    expect(e.message).toContain(
      `subkey ${b.slice(-16)} (${b}) in ${f} has no secret part in the file`,
    );
    expect(e.hint).toContain(`gpg --export-secret-subkeys --armor ${b.slice(-16)}!`);
    // The one that is there still works.
    const signer = await loadSigner({ keyFile: f, signKeyId: a, passphraseFile: null });
    expect(signer.fingerprint).toBe(a);
  });

  it("an RSA key shorter than 2048 bits", async () => {
    const p = await home.genPrimary("Weak <weak@packrat.invalid>", "ed25519");
    const s = await home.addSubkey(p, "rsa1024", "sign");
    const f = await keyFile("weak.asc", await home.exportSecretSubkeys([`${s}!`]));
    const e = await loadError({ keyFile: f, signKeyId: s });
    expect(e.message).toBe(
      `subkey ${s.slice(-16)} (${s}) in ${f} is rsa1024: RSA keys need at least 2048 bits`,
    );
  });

  it("a v6 key, whose signatures gpgv 2.2 cannot check", async () => {
    const { privateKey } = await openpgp.generateKey({
      type: "curve25519",
      userIDs: [{ name: "v6" }],
      subkeys: [{ sign: true }],
      config: { v6Keys: true },
    });
    const f = await keyFile("v6.asc", privateKey);
    const e = await loadError({ keyFile: f });
    expect(e.message).toMatch(
      /is a v6 OpenPGP key; apt on Debian 12 \(gpgv 2\.2\) cannot check v6 signatures/,
    );
  });

  describe("passphrase-protected key", () => {
    let p: string;
    let s: string;
    let f: string;

    beforeAll(async () => {
      p = await home.genPrimary("Locked <locked@packrat.invalid>", "ed25519", "2y", "s3cret pass");
      s = await home.addSubkey(p, "ed25519", "sign", "1y", "s3cret pass");
      const armored = await home.gpg([
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "s3cret pass",
        "--armor",
        "--export-secret-subkeys",
        `${s}!`,
      ]);
      f = await keyFile("locked.asc", armored);
    });

    it("without a passphrase file", async () => {
      const e = await loadError({ keyFile: f, signKeyId: s });
      expect(e.message).toBe(
        `key ${s.slice(-16)} in ${f} is protected by a passphrase and gpg_passphrase_file is not set`,
      );
      expect(e.hint).toContain("gpg_passphrase_file");
    });

    it("with a wrong passphrase", async () => {
      const pass = await keyFile("wrong.pass", "not it\n");
      const e = await loadError({ keyFile: f, signKeyId: s, passphraseFile: pass });
      expect(e.message).toBe(
        `the passphrase in ${pass} does not unlock key ${s.slice(-16)} in ${f} (wrong passphrase)`,
      );
    });

    it("with a passphrase file others can read", async () => {
      const pass = await keyFile("open.pass", "s3cret pass\n", 0o644);
      const e = await loadError({ keyFile: f, signKeyId: s, passphraseFile: pass });
      expect(e.message).toContain(`gpg_passphrase_file ${pass} has mode 644`);
      expect(e.hint).toContain(`chmod 600 ${pass}`);
    });

    it("with the right passphrase it signs, and gpgv accepts the signature", async () => {
      const pass = await keyFile("right.pass", "s3cret pass\n");
      const signer = await loadSigner({ keyFile: f, signKeyId: s, passphraseFile: pass });
      const signed = await signer.signCleartext("Origin: locked\n");
      expect(await gpgv(signer.publicKeyBinary(), signed)).toContain("Good signature");
      expect(signer.primaryFingerprint).toBe(p);
    });
  });
});
