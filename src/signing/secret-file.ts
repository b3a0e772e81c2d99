/**
 * Reading the key file and the passphrase file. Both hold secrets, so like ssh we refuse a file
 * that group or others may access: a key readable by other local users is a key to rotate.
 */
import { open } from "node:fs/promises";
import { PackratError } from "../errors.js";

export type SecretFileRole = "gpg_key_file" | "gpg_passphrase_file";

export async function readSecretFile(path: string, role: SecretFileRole): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw unreadable(path, role, err);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      throw new PackratError("PACKRAT_SIGNING_KEY", `${role} ${path} is not a regular file`, {
        hint: `point ${role} at the file itself`,
      });
    }
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(3, "0");
      throw new PackratError(
        "PACKRAT_SIGNING_KEY",
        `${role} ${path} has mode ${mode}: group or others can access it, so it is refused`,
        {
          hint: `run \`chmod 600 ${path}\` (and consider the key exposed if others could read it)`,
        },
      );
    }
    return await handle.readFile();
  } catch (err) {
    if (err instanceof PackratError) throw err;
    throw unreadable(path, role, err);
  } finally {
    await handle.close();
  }
}

function unreadable(path: string, role: SecretFileRole, err: unknown): PackratError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") {
    return new PackratError("PACKRAT_SIGNING_KEY", `${role} ${path} does not exist`, {
      hint:
        role === "gpg_key_file"
          ? "export the key with `gpg --export-secret-subkeys --armor <ID>! > FILE` or make one with `packrat-agent keygen`, then set gpg_key_file to its path"
          : "write the passphrase into that file (mode 600) or remove gpg_passphrase_file",
      cause: err,
    });
  }
  const reason = code === "EISDIR" ? "it is a directory" : (code ?? String(err));
  return new PackratError("PACKRAT_SIGNING_KEY", `${role} ${path} cannot be read: ${reason}`, {
    hint: `check that ${path} is a file the agent's user can read (owner-only, mode 600)`,
    cause: err,
  });
}
