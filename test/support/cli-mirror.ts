/**
 * Shared setup for the tests that drive the real CLI against the fake master (crash, churn,
 * master faults) and for bench/soak-crash.ts: a master with apt, yum and json repos, a signing
 * key, a mirror.conf, and checks of the tree against what the master holds.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { generateSigningKey } from "../../src/signing/keygen.js";
import { TMP_DIR, sha256File, walkTree } from "../../src/sync/disk.js";
import { buildDeb, controlText } from "./deb-builder.js";
import { startFakeMaster, type FakeMaster, type NewPackageFile } from "./fake-master.js";
import { TAG as SAMPLE_TAG, addSampleMirror } from "./mirror-fixture.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "./rpm-builder.js";
import { spawn, type ChildProcess } from "node:child_process";
import { runCli, type CliResult } from "./cli.js";

export type { CliResult };
export const TAG = SAMPLE_TAG;
export const MIRROR = "crash";

export interface CliMirror {
  master: FakeMaster;
  dir: string;
  root: string;
  stateDb: string;
  confPath: string;
  /** filename → sha256 of every file the master has ever served. */
  masterFiles: Map<string, string>;
  /** Package file ids by filename. */
  ids: Map<string, number>;
  addDeb(name: string, version: string, tags?: string[]): number;
  addRpm(name: string, version: string, tags?: string[]): number;
  addJson(name: string, version: string, tags?: string[]): number;
  writeConfig(extra?: Record<string, string | number>): Promise<void>;
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  close(): Promise<void>;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export async function startCliMirror(
  opts: { yum?: boolean; pollTimeout?: number } = {},
): Promise<CliMirror> {
  const dir = await mkdtemp(path.join(tmpdir(), "packrat-cli-mirror-"));
  const master = await startFakeMaster({ minPollTimeout: 1 });
  addSampleMirror(master, {
    yum: opts.yum ?? false,
    name: MIRROR,
    description: "crash test mirror",
  });

  const key = await generateSigningKey({
    name: "packrat crash test",
    email: "crash@packrat.invalid",
    type: "ed25519",
  });
  const keyFile = path.join(dir, "signing-key.asc");
  await writeFile(keyFile, key.armoredSecretKey, { mode: 0o600 });

  const masterFiles = new Map<string, string>();
  const ids = new Map<string, number>();
  const add = (f: NewPackageFile, tags: string[]) => {
    const id = master.addPackageFile({ ...f, tags });
    masterFiles.set(f.filename, sha256(f.content));
    ids.set(f.filename, id);
    return id;
  };
  const m: CliMirror = {
    master,
    dir,
    root: path.join(dir, "root"),
    stateDb: path.join(dir, "state", "state.db"),
    confPath: path.join(dir, "mirror.conf"),
    masterFiles,
    ids,
    addDeb(name, version, tags = [TAG]) {
      const content = buildDeb({
        control: controlText({
          Package: name,
          Version: version,
          Architecture: "all",
          Maintainer: "Packrat Test <test@packrat.invalid>",
          "Installed-Size": "1",
          Description: `${name} sample\n made for crash tests.`,
        }),
        // Some bulk, so that downloads take long enough to be killed in the middle.
        files: { [`usr/share/doc/${name}/README`]: `${name} ${version}\n`.repeat(2000) },
      });
      return add(
        {
          package: name,
          distroVersion: "bookworm",
          version,
          type: "deb",
          arch: "all",
          filename: `${name}_${version}_all.deb`,
          content,
        },
        tags,
      );
    },
    addRpm(name, version, tags = [TAG]) {
      const input = {
        name,
        version,
        release: "1",
        arch: "noarch",
        files: { [`/usr/share/${name}/README`]: `${name} ${version}\n` },
      };
      return add(
        {
          package: name,
          distroVersion: "el9",
          version,
          type: "rpm",
          arch: "all",
          filename: syntheticRpmFilename(input),
          content: buildSyntheticRpm(input),
        },
        tags,
      );
    },
    addJson(name, version, tags = [TAG]) {
      const content = new TextEncoder().encode(`${name} ${version}\n`.repeat(500));
      return add(
        {
          package: name,
          distroVersion: "none",
          version,
          type: "tar",
          arch: "all",
          filename: `${name}_${version}.tar.gz`,
          content,
        },
        tags,
      );
    },
    async writeConfig(extra = {}) {
      const settings: Record<string, string | number> = {
        description: "crash test mirror",
        root_dir: m.root,
        state_db: m.stateDb,
        gpg_sign_key: key.signingKeyId,
        gpg_key_file: keyFile,
        full_sync_interval: 3600,
        poll_timeout: opts.pollTimeout ?? 10,
        request_timeout: 5,
        trigger_debounce_ms: 50,
        max_removal_ratio: 0.95,
        ...extra,
      };
      await writeFile(
        m.confPath,
        [
          "[packrat]",
          `host: ${master.url}`,
          `name: ${MIRROR}`,
          "",
          "[mirror]",
          ...Object.entries(settings).map(([k, v]) => `${k}: ${v}`),
          "",
        ].join("\n"),
      );
    },
    cli: (args, timeoutMs = 60_000) => runCli([...args, "--config", m.confPath], { timeoutMs }),
    close: async () => {
      await master.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await m.writeConfig();
  return m;
}

/**
 * Files at final paths (outside .packrat-tmp) whose bytes are not whole: a package file whose
 * SHA-256 differs from the master's, or a metadata file that is empty. Returns descriptions.
 */
export async function partialFiles(m: CliMirror): Promise<string[]> {
  const bad: string[] = [];
  for (const e of await walkTree(m.root)) {
    if (e.kind !== "file" || e.rel === TMP_DIR || e.rel.startsWith(`${TMP_DIR}/`)) continue;
    const base = path.basename(e.rel);
    const expected = m.masterFiles.get(base);
    const full = path.join(m.root, e.rel);
    if (expected !== undefined) {
      const actual = await sha256File(full);
      if (actual !== expected) bad.push(`${e.rel}: sha256 ${actual}, master has ${expected}`);
    } else if ((await readFile(full)).length === 0) {
      bad.push(`${e.rel}: empty metadata file`);
    }
  }
  return bad;
}

/** `verify --deep --json`, parsed. */
export async function verifyDeep(m: CliMirror): Promise<{
  code: number | null;
  report: { ok: boolean; problems: { path: string; problem: string }[] };
  raw: CliResult;
}> {
  const raw = await m.cli(["verify", "--deep", "--json"]);
  let report: { ok: boolean; problems: { path: string; problem: string }[] };
  try {
    report = JSON.parse(raw.stdout) as typeof report;
  } catch {
    report = {
      ok: false,
      problems: [{ path: "", problem: `no JSON report: ${raw.stdout}${raw.stderr}` }],
    };
  }
  return { code: raw.code, report, raw };
}

/**
 * What a reboot leaves in the lock file: the PID of the killed agent, now reused by a live,
 * unrelated process (PIDs restart low after a boot; in a container the agent was often PID 1).
 * Starts a `sleep` that plays that process and writes its PID over the lock; kill it when done.
 */
export async function lockNamesLiveProcess(m: CliMirror): Promise<ChildProcess> {
  const unrelated = spawn("sleep", ["600"], { stdio: "ignore" });
  if (unrelated.pid === undefined) throw new Error("could not start sleep(1)");
  await writeFile(`${m.stateDb}.lock`, `${unrelated.pid}\n`);
  return unrelated;
}
