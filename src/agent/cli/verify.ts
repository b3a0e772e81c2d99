/**
 * `packrat-agent verify [--deep] [--json]`: check the published tree against the state DB.
 * Every metadata file of each repo's current generation must hold the bytes it was published
 * with; every package file must exist with its size and SHA-256 (fingerprints by default, a
 * full re-hash with --deep); the exported public key must match the signing key; nothing
 * unexpected may sit under root_dir.
 */
import path from "node:path";
import { readFile } from "node:fs/promises";
import { openStateStore } from "../../state/db.js";
import { TMP_DIR, sha256File, statInfo, walkTree } from "../../sync/disk.js";
import { checkExportedKey, publicKeyFiles } from "../../signing/public-key.js";
import { loadConfiguredSigner } from "../context.js";
import { parseCommandArgs, settingsAndLogger } from "./common.js";

export interface VerifyProblem {
  repo: string | null;
  path: string;
  problem: string;
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("verify", argv, {
    deep: { type: "boolean" },
    json: { type: "boolean" },
  });
  const { settings, log } = await settingsAndLogger(values);
  const root = settings.mirror.rootDir;
  const store = openStateStore(settings.mirror.stateDb, { readonly: true });
  const problems: VerifyProblem[] = [];
  let checked = 0;
  try {
    const published = store.listPublishedFiles();
    const expected = new Set(published.map((r) => r.path));
    for (const row of published) {
      if (row.supersededAt !== null) continue; // grace-period files may already be gone
      checked++;
      const full = path.join(root, row.path);
      const st = await statInfo(full);
      if (st === null) {
        problems.push({ repo: row.repo, path: row.path, problem: `missing (${row.kind})` });
        continue;
      }
      const fp = store.getFingerprint(row.path);
      const trust =
        !values.deep &&
        row.kind === "package" &&
        fp !== undefined &&
        fp.sha256 === row.sha256 &&
        fp.size === st.size &&
        fp.mtimeNs === st.mtimeNs &&
        fp.ino === st.ino;
      if (!trust) {
        const actual = await sha256File(full);
        if (actual !== row.sha256)
          problems.push({
            repo: row.repo,
            path: row.path,
            problem: `SHA-256 is ${actual}, published as ${row.sha256}`,
          });
      }
    }
    const signer = await loadConfiguredSigner(settings, log);
    if (signer) {
      for (const f of publicKeyFiles(signer, settings.mirror.publicKeyName)) {
        expected.add(f.path);
        try {
          const problem = await checkExportedKey(await readFile(path.join(root, f.path)), signer);
          if (problem) problems.push({ repo: null, path: f.path, problem });
        } catch {
          problems.push({
            repo: null,
            path: f.path,
            problem: "the exported public key is missing",
          });
        }
      }
    }
    const keep = settings.mirror.keepFileList;
    const repoDirs = store.listRepos().map((r) => r.repo.filesystemDir);
    for (const e of await walkTree(root)) {
      if (e.kind === "dir" || e.rel === TMP_DIR || e.rel.startsWith(`${TMP_DIR}/`)) continue;
      if (expected.has(e.rel)) continue;
      if (keep.some((k) => e.rel === k || (k.endsWith("/") && e.rel.startsWith(k)))) continue;
      const owner = repoDirs.find((d) => e.rel.startsWith(`${d}/`)) ?? null;
      problems.push({
        repo: owner,
        path: e.rel,
        problem: "unexpected file (nothing publishes it; the next full sync removes it)",
      });
    }
  } finally {
    store.close();
  }
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ ok: problems.length === 0, checked, problems }, null, 2)}\n`,
    );
  } else if (problems.length === 0) {
    process.stdout.write(
      `verify: ok (${checked} files checked${values.deep ? ", every one re-hashed" : ""})\n`,
    );
  } else {
    process.stdout.write(`verify: ${problems.length} problem(s) in ${root}:\n`);
    for (const p of problems)
      process.stdout.write(`  ${p.path}: ${p.problem}${p.repo ? ` [repo ${p.repo}]` : ""}\n`);
    process.stdout.write("run `packrat-agent sync --deep` to repair\n");
  }
  return problems.length === 0 ? 0 : 1;
}
