/**
 * The real pacman and pip, each with a private everything (config, db, cache, keyring), for
 * tests that read a published tree from a URL: a web server or a bucket. apt-get and dnf have
 * theirs in apt-client.ts and dnf-client.ts.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface ClientRun {
  ok: boolean;
  output: string;
}

function failed(err: unknown): ClientRun {
  const e = err as { stdout?: string; stderr?: string; message: string };
  return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? e.message}` };
}

/** A pacman keyring under `dir` that trusts `armoredKey` (pacman-key --init, --add, --lsign-key). */
export async function pacmanKeyring(
  dir: string,
  armoredKey: string,
  fingerprint: string,
): Promise<string> {
  const gpgdir = path.join(dir, "gnupg");
  await run("pacman-key", ["--gpgdir", gpgdir, "--init"]);
  const keyFile = path.join(dir, "pacman-key.asc");
  await writeFile(keyFile, armoredKey);
  await run("pacman-key", ["--gpgdir", gpgdir, "--add", keyFile]);
  await run("pacman-key", ["--gpgdir", gpgdir, "--lsign-key", fingerprint]);
  return gpgdir;
}

/**
 * `pacman -Sy` (then each of `commands`) against one repo `name` at `server` (`.../$arch`),
 * SigLevel = Required, with a private config, db, root, cache and the keyring `gpgdir`.
 */
export async function runPacman(opts: {
  work: string;
  gpgdir: string;
  repo: string;
  server: string;
  commands?: string[][];
}): Promise<ClientRun> {
  const base = await mkdtemp(path.join(opts.work, "pacman-"));
  const dirs = ["db", "root", "cache"].map((d) => path.join(base, d));
  for (const d of dirs) await mkdir(d, { recursive: true });
  const config = path.join(base, "pacman.conf");
  await writeFile(
    config,
    [
      "[options]",
      "Architecture = x86_64",
      "SigLevel = Required",
      "LocalFileSigLevel = Required",
      "",
      `[${opts.repo}]`,
      `Server = ${opts.server}`,
      "",
    ].join("\n"),
  );
  const common = [
    "--config",
    config,
    "--dbpath",
    dirs[0]!,
    "--root",
    dirs[1]!,
    "--cachedir",
    dirs[2]!,
    "--gpgdir",
    opts.gpgdir,
    "--logfile",
    path.join(base, "log"),
    "--noconfirm",
    "--noprogressbar",
  ];
  try {
    const sy = await run("pacman", [...common, "-Sy"]);
    let output = sy.stdout + sy.stderr;
    for (const command of opts.commands ?? []) {
      const r = await run("pacman", [...common, ...command]);
      output += r.stdout + r.stderr;
    }
    return { ok: true, output };
  } catch (err) {
    return failed(err);
  }
}

/**
 * `pip download --no-deps` of `requirement` (or several, in one run) from the index at
 * `indexUrl` (ending in /simple/).
 */
export async function pipDownload(opts: {
  work: string;
  indexUrl: string;
  requirement: string | readonly string[];
}): Promise<ClientRun & { files: string[] }> {
  const dest = await mkdtemp(path.join(opts.work, "pip-"));
  try {
    const { stdout, stderr } = await run(
      "python3",
      [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--dest",
        dest,
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--index-url",
        opts.indexUrl,
        ...(typeof opts.requirement === "string" ? [opts.requirement] : opts.requirement),
      ],
      {
        env: { ...process.env, PIP_CONFIG_FILE: "/dev/null", PIP_NO_INPUT: "1" },
        timeout: 120_000,
      },
    );
    return { ok: true, output: stdout + stderr, files: await readdir(dest) };
  } catch (err) {
    return { ...failed(err), files: await readdir(dest) };
  }
}
