/**
 * A mirror without a master (repos from directories): a work dir with a signing key, one
 * incoming directory per repo (root_dir/NAME when the repos are published in place), and the
 * mirror.conf that declares them. The directory-source
 * tests share it.
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { generateSigningKey, type GeneratedSigningKey } from "../../src/signing/keygen.js";

export interface SourceMirror {
  work: string;
  /** The incoming directory of repo NAME is `${incoming}/NAME`. */
  incoming: string;
  root: string;
  conf: string;
  key: GeneratedSigningKey;
}

export async function makeSourceMirror(opts: {
  name: string;
  /** Repo name → its format and any extra [repo NAME] lines (`version: bookworm`). */
  repos: Record<string, { format: string; lines?: string[] }>;
  /** Extra [mirror] lines. */
  mirror?: string[];
  /**
   * Every repo published in place: its source is root_dir/NAME (`incoming` is root_dir), and
   * its section says `publish: in-place`.
   */
  inPlace?: boolean;
}): Promise<SourceMirror> {
  const work = await mkdtemp(path.join(tmpdir(), `packrat-${opts.name}-`));
  const root = path.join(work, "root");
  const incoming = opts.inPlace === true ? root : path.join(work, "incoming");
  const key = await generateSigningKey({
    name: opts.name,
    email: `${opts.name}@packrat.invalid`,
    type: "ed25519",
  });
  await writeFile(path.join(work, "key.asc"), key.armoredSecretKey, { mode: 0o600 });
  const sections: string[] = [];
  for (const [repo, { format, lines }] of Object.entries(opts.repos)) {
    await mkdir(path.join(incoming, repo), { recursive: true });
    sections.push(
      `[repo ${repo}]`,
      `format: ${format}`,
      `source: ${path.join(incoming, repo)}`,
      ...(opts.inPlace === true ? ["publish: in-place"] : []),
      ...(lines ?? []),
    );
  }
  const conf = path.join(work, "mirror.conf");
  await writeFile(
    conf,
    [
      "[mirror]",
      `root_dir: ${root}`,
      `state_db: ${path.join(work, "state.db")}`,
      `gpg_sign_key: ${key.signingKeyId}`,
      `gpg_key_file: ${path.join(work, "key.asc")}`,
      ...(opts.mirror ?? []),
      ...sections,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return { work, incoming, root, conf, key };
}
