/**
 * `packrat-agent verify [--deep] [--json] [--s3]`: read every published repo as its clients do
 * (signatures against the exported key; every index by size and hash; every package by size
 * and SHA-256, from fingerprints, or re-hashed with --deep), check the state DB against the
 * disk, and list files nothing publishes; with --s3, check the bucket of [s3] holds every object
 * as the agent uploaded it (a listing: size and ETag). Exit 1 with a report when anything is wrong.
 */
import path from "node:path";
import { readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { describeError, PackratError } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { Settings } from "../../settings.js";
import type { Signer } from "../../signing/signer.js";
import type { StateStore } from "../../state/state-store.js";
import { openStateStore } from "../../state/db.js";
import { checkExportedKey, publicKeyFiles } from "../../signing/public-key.js";
import { createSignatureVerifier } from "../../signing/verify.js";
import { verifyTree, type VerifyProblem, type VerifyReport } from "../../sync/verify-tree.js";
import { loadConfiguredSigner, replicasFrom } from "../context.js";
import { parseCommandArgs, settingsAndLogger } from "./common.js";

export type { VerifyProblem };

function printReport(report: VerifyReport, root: string, deep: boolean): void {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const counts =
    `${report.repos} repo(s), ${report.entryPoints} entry point(s), ${report.packageRefs} package reference(s), ` +
    `${report.filesChecked} file(s) checked${deep ? ", every one re-hashed" : ""}`;
  if (report.ok) {
    out(`verify: ok (${counts})`);
    return;
  }
  out(`verify: ${report.problems.length} problem(s) in ${root} (${counts}):`);
  const byRepo = new Map<string, VerifyProblem[]>();
  for (const p of report.problems) {
    const key = p.repo ?? "(root_dir)";
    byRepo.set(key, [...(byRepo.get(key) ?? []), p]);
  }
  for (const [repo, list] of [...byRepo].sort(([a], [b]) => a.localeCompare(b))) {
    out(`  ${repo}:`);
    for (const p of list) out(`    ${p.path}: ${p.problem}`);
  }
  out("run `packrat-agent sync --deep` to repair; if the problem stays, report it");
}

/** `--s3`: the bucket holds every object root_dir serves, as the agent uploaded it. */
async function verifyBucket(
  settings: Settings,
  store: StateStore,
  log: Logger,
  signer: Signer | null,
): Promise<VerifyProblem[]> {
  const [replica] = replicasFrom(settings, store, log);
  if (!replica) {
    throw new PackratError("PACKRAT_USAGE", `verify --s3: ${settings.source} has no [s3] section`, {
      hint: "add an [s3] section with the bucket (etc/mirror.conf.example), or drop --s3",
    });
  }
  try {
    const rootFiles = signer
      ? publicKeyFiles(signer, settings.mirror.publicKeyName).map((f) => ({
          path: f.path,
          sha256: createHash("sha256").update(f.content).digest("hex"),
        }))
      : [];
    const problems = await replica.verify(rootFiles);
    return problems.map((p) => ({
      repo: `bucket ${replica.target}`,
      path: p.key,
      problem: p.problem,
    }));
  } catch (err) {
    return [{ repo: `bucket ${replica.target}`, path: "", problem: describeError(err) }];
  } finally {
    replica.close();
  }
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("verify", argv, {
    deep: { type: "boolean" },
    json: { type: "boolean" },
    s3: { type: "boolean" },
  });
  const { settings, log } = await settingsAndLogger(values);
  const root = settings.mirror.rootDir;
  const deep = values.deep === true;
  const signer = await loadConfiguredSigner(settings, log);
  const keyProblems: VerifyProblem[] = [];
  const rootFiles: string[] = [];
  let armoredKey: string | null = null;
  if (signer) {
    for (const f of publicKeyFiles(signer, settings.mirror.publicKeyName)) {
      rootFiles.push(f.path);
      let bytes: Buffer;
      try {
        bytes = await readFile(path.join(root, f.path));
      } catch {
        keyProblems.push({
          repo: null,
          path: f.path,
          problem: "the exported public key is missing",
        });
        continue;
      }
      const problem = await checkExportedKey(bytes, signer);
      if (problem) keyProblems.push({ repo: null, path: f.path, problem });
      // Clients import the exported key: check signatures against it when it is the right one.
      else if (typeof f.content === "string") armoredKey = bytes.toString("utf8");
    }
  }
  const verifier = signer
    ? await createSignatureVerifier(armoredKey ?? signer.publicKeyArmored())
    : null;

  let store;
  try {
    store = openStateStore(settings.mirror.stateDb, { readonly: true });
  } catch (err) {
    throw new PackratError(
      "PACKRAT_VERIFY_FAILED",
      `cannot read the state DB ${settings.mirror.stateDb}: nothing to verify against`,
      { hint: "run `packrat-agent sync` first", cause: err },
    );
  }
  let report: VerifyReport;
  const bucketProblems: VerifyProblem[] = [];
  try {
    report = await verifyTree({
      root,
      store,
      keepFileList: settings.mirror.keepFileList,
      deep,
      verifier,
      rootFiles,
    });
    if (values.s3 === true) {
      const problems = await verifyBucket(settings, store, log, signer);
      bucketProblems.push(...problems);
    }
  } finally {
    store.close();
  }
  report.problems.push(...bucketProblems);
  report.problems.unshift(...keyProblems);
  report.ok = report.problems.length === 0;

  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else printReport(report, root, deep);
  return report.ok ? 0 : 1;
}
