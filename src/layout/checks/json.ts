/**
 * A json repo's client view: each `_repo_main/MANIFEST_<arch>.json` (with its detached `.gpg`
 * when signed) parses as `{ package: [{ version, path, type, sha256, size }] }` and every
 * entry's path exists with that size and SHA-256. MANIFEST_all.json must exist.
 */
import {
  Findings,
  checkPackageRef,
  decodeUtf8,
  errorText,
  joinRel,
  readRequired,
} from "./common.js";
import type { CheckInput, CheckResult } from "./types.js";

interface ManifestEntry {
  path?: unknown;
  sha256?: unknown;
  size?: unknown;
}

export async function checkJsonRepo(input: CheckInput): Promise<CheckResult> {
  const f = new Findings();
  const { reader, verifier } = input;
  const manifests = input.metadataPaths.filter((p) => /^_repo_main\/MANIFEST_[^/]+\.json$/.test(p));
  if (input.metadataPaths.length > 0 && !manifests.includes("_repo_main/MANIFEST_all.json"))
    f.add("_repo_main/MANIFEST_all.json", "missing (clients of the original agent read it)");
  for (const path of manifests.sort()) {
    f.entryPoints++;
    const bytes = await readRequired(f, reader, path, "it is published");
    if (bytes === null) continue;
    if (verifier) {
      const sig = await readRequired(f, reader, `${path}.gpg`, "the repo is signed");
      if (sig !== null && !(await verifier.verifyDetached(bytes, sig)))
        f.add(`${path}.gpg`, "signature does not verify against the manifest");
    }
    let doc: unknown;
    try {
      doc = JSON.parse(decodeUtf8(bytes) ?? "");
    } catch (err) {
      f.add(path, `is not valid JSON: ${errorText(err)}`);
      continue;
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
      f.add(path, "is not a JSON object of packages");
      continue;
    }
    for (const [pkg, list] of Object.entries(doc as Record<string, unknown>)) {
      if (!Array.isArray(list)) {
        f.add(path, `${pkg}: not a list of files`);
        continue;
      }
      for (const e of list as ManifestEntry[]) {
        const rel = typeof e.path === "string" ? e.path : "";
        await checkPackageRef(
          f,
          reader,
          joinRel("", rel),
          {
            size: typeof e.size === "number" ? e.size : null,
            sha256: typeof e.sha256 === "string" ? e.sha256 : null,
          },
          `${path} (${pkg})`,
          rel,
        );
        if (typeof e.sha256 !== "string" || typeof e.size !== "number")
          f.add(path, `${pkg} ${rel}: entry lacks sha256 or size`);
      }
    }
  }
  return f.result();
}
