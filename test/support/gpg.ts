/** Running the real gpgv against a binary public key, for tests of anything that signs. */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface GpgvResult {
  ok: boolean;
  output: string;
}

/**
 * gpgv --keyring <key> <sig> [data]. The keyring is written to a throwaway dir; the user's
 * ~/.gnupg is never read.
 */
export async function gpgv(
  publicKeyBinary: Uint8Array,
  signature: Uint8Array | string,
  data?: Uint8Array | string,
): Promise<GpgvResult> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-gpgv-"));
  try {
    const keyring = path.join(dir, "key.gpg");
    const sig = path.join(dir, "sig");
    await writeFile(keyring, publicKeyBinary);
    await writeFile(sig, signature);
    const args = ["--homedir", dir, "--keyring", keyring, sig];
    if (data !== undefined) {
      await writeFile(path.join(dir, "data"), data);
      args.push(path.join(dir, "data"));
    }
    try {
      const { stdout, stderr } = await run("gpgv", args);
      return { ok: true, output: stdout + stderr };
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? e.message}` };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
