/**
 * `packrat-agent keygen` without gpg: the file it writes (mode 0600, never overwritten), the
 * mirror.conf lines it prints, and a key that the real gpg reads as a certify-only primary key
 * with a signing subkey, whose signatures gpgv accepts.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { keygenCommand } from "../../src/agent/cli/keygen.js";
import { isPackratError } from "../../src/errors.js";
import { keyExpiryWarning } from "../../src/signing/expiry.js";
import { loadSigner } from "../../src/signing/openpgp-signer.js";

const run = promisify(execFile);
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "packrat-keygen-"));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs keygenCommand and returns its exit code and what it printed. */
async function keygen(argv: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  const code = await keygenCommand(argv);
  vi.restoreAllMocks();
  return { code, stdout };
}

/** The `key: value` lines of the output that are not comments. */
function confLines(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^([a-z_]+): (.+)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

async function gpgv(keyring: Uint8Array, sig: string, data?: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-gpgv-"));
  try {
    await writeFile(path.join(dir, "k.gpg"), keyring);
    await writeFile(path.join(dir, "sig"), sig);
    const args = ["--homedir", dir, "--keyring", path.join(dir, "k.gpg"), path.join(dir, "sig")];
    if (data !== undefined) {
      await writeFile(path.join(dir, "data"), data);
      args.push(path.join(dir, "data"));
    }
    return (await run("gpgv", args)).stderr;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("keygen", () => {
  it("writes an ed25519 key with mode 0600 (even with umask 0) and prints the mirror.conf lines", async () => {
    const out = path.join(tmp, "ed.asc");
    const oldUmask = process.umask(0);
    let result;
    try {
      result = await keygen(["--name", "Example Mirror <ops@example.invalid>", "--out", out]);
    } finally {
      process.umask(oldUmask);
    }
    expect(result.code).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const conf = confLines(result.stdout);
    expect(Object.keys(conf)).toEqual(["gpg_sign_key", "gpg_key_file"]);
    expect(conf.gpg_sign_key).toMatch(/^[0-9A-F]{16}$/);
    expect(conf.gpg_key_file).toBe(out);

    const signer = await loadSigner({
      keyFile: conf.gpg_key_file!,
      signKeyId: conf.gpg_sign_key!,
      passphraseFile: null,
    });
    expect(signer.keyId).toBe(conf.gpg_sign_key);
    expect(signer.expiresAt).toBeNull();
    expect(signer.userIds).toEqual(["Example Mirror <ops@example.invalid>"]);
    const inRelease = await signer.signCleartext("Origin: example\nSuite: stable\n");
    expect(await gpgv(signer.publicKeyBinary(), inRelease)).toContain("Good signature");

    // The real gpg sees a certify-only primary key (capabilities "c") and a signing subkey ("s").
    const home = await mkdtemp(path.join(tmpdir(), "packrat-gpg-"));
    try {
      await run("gpg", ["--homedir", home, "--batch", "--import", out]);
      const { stdout } = await run("gpg", [
        "--homedir",
        home,
        "--with-colons",
        "--list-secret-keys",
      ]);
      const rows = stdout.split("\n").map((l) => l.split(":"));
      const sec = rows.find((r) => r[0] === "sec");
      const ssb = rows.find((r) => r[0] === "ssb");
      expect(sec?.[3]).toBe("22"); // legacy EdDSA, as gpg 2.2 makes it
      // Own capability "c" only; "SC" is what the whole key can do (signing via the subkey).
      expect(sec?.[11]).toBe("cSC");
      expect(ssb?.[11]).toBe("s");
      expect(ssb?.[4]).toBe(conf.gpg_sign_key);
      // gpg accepts the re-issued self-signature and the subkey binding ("!" = good).
      const checked = await run("gpg", [
        "--homedir",
        home,
        "--with-colons",
        "--check-signatures",
        conf.gpg_sign_key!,
      ]);
      const sigs = checked.stdout.split("\n").filter((l) => l.startsWith("sig:"));
      expect(sigs.length).toBe(2);
      expect(sigs.map((l) => l.split(":")[1])).toEqual(["!", "!"]);
    } finally {
      await run("gpgconf", ["--homedir", home, "--kill", "all"]).catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    }
  });

  it("makes RSA keys with the requested size and expiry", async () => {
    const out = path.join(tmp, "rsa.asc");
    const { code, stdout } = await keygen([
      "--name",
      "RSA Mirror",
      "--out",
      out,
      "--type",
      "rsa",
      "--bits",
      "2048",
      "--expires-days",
      "20",
    ]);
    expect(code).toBe(0);
    const conf = confLines(stdout);
    const signer = await loadSigner({
      keyFile: out,
      signKeyId: conf.gpg_sign_key!,
      passphraseFile: null,
    });
    const days = (signer.expiresAt!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(19.9);
    expect(days).toBeLessThanOrEqual(20);
    expect(keyExpiryWarning(signer, new Date(), 30)).toMatch(
      new RegExp(
        `^primary key ${signer.primaryFingerprint} and signing subkey ${signer.fingerprint} expire on .* \\(in 19 days\\)`,
      ),
    );
    const data = "Packages\n";
    expect(
      await gpgv(
        signer.publicKeyBinary(),
        await signer.signDetachedArmored(new TextEncoder().encode(data)),
        data,
      ),
    ).toContain("Good signature");
  });

  it("never overwrites an existing file", async () => {
    const out = path.join(tmp, "exists.asc");
    await writeFile(out, "precious\n", { mode: 0o600 });
    await expect(keygenCommand(["--name", "X", "--out", out])).rejects.toThrow(
      `${out} already exists; keygen never overwrites a key file`,
    );
    expect(await readFile(out, "utf8")).toBe("precious\n");
  });

  it.each([
    [["--out", "/tmp/x.asc"], /--name is required/],
    [["--name", "X"], /--out is required/],
    [["--name", "X", "--out", "/tmp/x", "--type", "dsa"], /--type dsa: expected ed25519 or rsa/],
    [["--name", "X", "--out", "/tmp/x", "--bits", "2048"], /--bits applies to --type rsa only/],
    [["--name", "X", "--out", "/tmp/x", "--expires-days", "soon"], /--expires-days soon/],
    [["--name", "X", "--out", "/tmp/x", "--colour"], /Unknown option/],
  ])("refuses %j", async (argv, message) => {
    const err: unknown = await keygenCommand(argv).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_USAGE")).toBe(true);
    expect((err as Error).message).toMatch(message);
  });

  it("refuses an RSA size outside 2048..4096 and leaves no file behind", async () => {
    const out = path.join(tmp, "small.asc");
    await expect(
      keygenCommand(["--name", "X", "--out", out, "--type", "rsa", "--bits", "1024"]),
    ).rejects.toThrow(/RSA key size 1024 is not supported/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });
});
