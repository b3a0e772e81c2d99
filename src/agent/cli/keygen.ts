/**
 * `packrat-agent keygen --name NAME --out FILE`: a new signing key without gpg, written with
 * mode 0600, and the two mirror.conf lines that use it.
 */
import { open } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { PackratError } from "../../errors.js";
import { generateSigningKey } from "../../signing/keygen.js";

const USAGE =
  "usage: packrat-agent keygen --name NAME --out FILE [--type ed25519|rsa] [--bits 2048..4096] [--expires-days N]";

export async function keygenCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        name: { type: "string" },
        email: { type: "string" },
        out: { type: "string" },
        type: { type: "string", default: "ed25519" },
        bits: { type: "string" },
        "expires-days": { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw usage(err instanceof Error ? err.message : String(err));
  }
  if (!values.name) throw usage("--name is required");
  if (!values.out) throw usage("--out is required");
  const type = values.type;
  if (type !== "ed25519" && type !== "rsa") throw usage(`--type ${type}: expected ed25519 or rsa`);
  if (values.bits !== undefined && type !== "rsa") throw usage("--bits applies to --type rsa only");
  const rsaBits = values.bits === undefined ? undefined : wholeNumber("--bits", values.bits);
  const expiresInDays =
    values["expires-days"] === undefined
      ? undefined
      : wholeNumber("--expires-days", values["expires-days"]);

  const out = path.resolve(values.out);
  // Open first (exclusive, mode 0600) so an existing file is never overwritten and the key is
  // never readable by others, not even between write and chmod.
  let handle;
  try {
    handle = await open(out, "wx", 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PackratError(
      "PACKRAT_USAGE",
      code === "EEXIST"
        ? `${out} already exists; keygen never overwrites a key file`
        : `cannot create ${out}: ${code ?? String(err)}`,
      { hint: "choose another --out path (or move the old file away first)", cause: err },
    );
  }
  let key;
  try {
    key = await generateSigningKey({
      name: values.name,
      ...(values.email === undefined ? {} : { email: values.email }),
      type,
      ...(rsaBits === undefined ? {} : { rsaBits }),
      ...(expiresInDays === undefined ? {} : { expiresInDays }),
    });
    await handle.writeFile(key.armoredSecretKey, "utf8");
    await handle.sync();
  } catch (err) {
    await handle.close();
    const { rm } = await import("node:fs/promises");
    await rm(out, { force: true });
    throw err;
  }
  await handle.close();

  process.stdout.write(
    `# Wrote a new ${type} key to ${out} (mode 0600).\n` +
      `# Primary key ${key.primaryFingerprint}, signing subkey ${key.signingFingerprint}.\n` +
      `# Add these lines to the [mirror] section of mirror.conf:\n` +
      `gpg_sign_key: ${key.signingKeyId}\n` +
      `gpg_key_file: ${out}\n`,
  );
  return 0;
}

function wholeNumber(flag: string, raw: string): number {
  if (!/^\d+$/.test(raw)) throw usage(`${flag} ${raw}: expected a whole number`);
  return Number(raw);
}

function usage(message: string): PackratError {
  return new PackratError("PACKRAT_USAGE", `keygen: ${message}`, { hint: USAGE });
}
