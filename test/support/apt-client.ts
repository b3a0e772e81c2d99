/**
 * Runs the real apt-get (update, then download) against a repo with a fully private
 * configuration: APT_CONFIG points at a throwaway apt.conf that moves every Dir::Etc, State,
 * Cache and Log path into a temp dir, so /etc/apt and /var/lib/apt are never read or written.
 * `Debug::Acquire::http` is on, so callers can check which URLs apt fetched (apt silently
 * falls back from a missing by-hash file to the plain name: FIELD_NOTES §7).
 * apt exits 0 with `W:` lines for some real problems; here any `W:` or `E:` line fails.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

export interface RunAptGetOptions {
  /** Base URL of the apt repo (the directory holding dists/ and pool/). */
  repoUrl: string;
  suite: string;
  components: string[];
  /** Public key apt trusts for this repo only (signed-by): binary `.gpg` or armored `.asc`. */
  keyringPath: string;
  /** Debian architectures, e.g. ["amd64"]; the first is APT::Architecture. */
  archs: string[];
  /** Package names for `apt-get download` after the update; none = update only. */
  packages?: string[];
  /** Keep everything under this directory (the caller removes it); default: a temp dir removed at the end. */
  workDir?: string;
  /** apt.conf lines added at the end (e.g. aptS3Method's `Dir::Bin::Methods::s3`). */
  extraConfig?: string;
}

export interface AptGetResult {
  /** stdout + stderr of `apt-get update` (with the http debug lines). */
  updateOutput: string;
  /** stdout + stderr of `apt-get download` ("" without packages). */
  downloadOutput: string;
  /** Basenames of the files `apt-get download` wrote, sorted. */
  downloadedFiles: string[];
  /** SHA-256 (hex) of each downloaded file by basename. */
  downloadedSha256: Record<string, string>;
  /** Where the downloads are; only still there when `workDir` was given. */
  downloadDir: string;
  /** Every URL apt requested (GET), in order, from both runs. */
  fetchedUrls: string[];
}

/** apt-get exited non-zero or printed a `W:`/`E:` line. */
export class AptGetError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(`${message}\n${output}`);
    this.name = "AptGetError";
  }
}

export async function runAptGet(options: RunAptGetOptions): Promise<AptGetResult> {
  if (options.archs.length === 0) throw new Error("runAptGet: archs must not be empty");
  const dir = options.workDir ?? (await mkdtemp(path.join(tmpdir(), "packrat-apt-")));
  try {
    const env = await writePrivateConfig(dir, options);
    const update = await aptGet(["update"], { cwd: dir, env });
    const downloadDir = path.join(dir, "download");
    await mkdir(downloadDir, { recursive: true });
    let downloadOutput = "";
    if (options.packages && options.packages.length > 0) {
      downloadOutput = await aptGet(["download", ...options.packages], { cwd: downloadDir, env });
    }
    const downloadedFiles = (await readdir(downloadDir)).sort();
    const downloadedSha256: Record<string, string> = {};
    for (const name of downloadedFiles) {
      const bytes = await readFile(path.join(downloadDir, name));
      downloadedSha256[name] = createHash("sha256").update(bytes).digest("hex");
    }
    return {
      updateOutput: update,
      downloadOutput,
      downloadedFiles,
      downloadedSha256,
      downloadDir,
      fetchedUrls: [...parseFetchedUrls(update), ...parseFetchedUrls(downloadOutput)],
    };
  } finally {
    if (options.workDir === undefined) await rm(dir, { recursive: true, force: true });
  }
}

async function writePrivateConfig(
  dir: string,
  options: RunAptGetOptions,
): Promise<NodeJS.ProcessEnv> {
  const etc = path.join(dir, "etc");
  const state = path.join(dir, "state");
  for (const sub of [
    path.join(etc, "apt.conf.d"),
    path.join(etc, "sources.list.d"),
    path.join(etc, "trusted.gpg.d"),
    path.join(etc, "preferences.d"),
    path.join(state, "lists", "partial"),
    path.join(dir, "cache", "archives", "partial"),
    path.join(dir, "log"),
  ]) {
    await mkdir(sub, { recursive: true });
  }
  await writeFile(path.join(state, "status"), "");
  const archs = options.archs;
  const source = `deb [arch=${archs.join(",")} signed-by=${options.keyringPath}] ${options.repoUrl} ${options.suite} ${options.components.join(" ")}\n`;
  await writeFile(path.join(etc, "sources.list"), source);
  // Running as root, apt drops to _apt for downloads, which cannot enter a 0700 temp dir
  // and then warns; as root, stay root (the repo and dirs are ours anyway).
  const sandbox = process.getuid?.() === 0 ? 'APT::Sandbox::User "root";\n' : "";
  const conf = `Dir "/";
Dir::Etc "${etc}/";
Dir::Etc::main "${etc}/apt.conf";
Dir::Etc::parts "${etc}/apt.conf.d/";
Dir::Etc::sourcelist "${etc}/sources.list";
Dir::Etc::sourceparts "${etc}/sources.list.d/";
Dir::Etc::trusted "${etc}/trusted.gpg";
Dir::Etc::trustedparts "${etc}/trusted.gpg.d/";
Dir::Etc::preferences "${etc}/preferences";
Dir::Etc::preferencesparts "${etc}/preferences.d/";
Dir::State "${state}/";
Dir::State::lists "${state}/lists/";
Dir::State::status "${state}/status";
Dir::Cache "${dir}/cache/";
Dir::Cache::archives "${dir}/cache/archives/";
Dir::Log "${dir}/log/";
APT::Architecture "${archs[0]}";
APT::Architectures { ${archs.map((a) => `"${a}";`).join(" ")} };
Acquire::Languages "none";
Acquire::Retries "0";
Acquire::http::Proxy::${new URL(options.repoUrl).hostname} "DIRECT";
Acquire::AllowInsecureRepositories "false";
Debug::NoLocking "true";
Debug::Acquire::http "true";
${sandbox}${options.extraConfig ?? ""}`;
  const aptConfig = path.join(dir, "apt.conf");
  await writeFile(aptConfig, conf);
  const env: NodeJS.ProcessEnv = { ...process.env, APT_CONFIG: aptConfig, LC_ALL: "C" };
  for (const key of ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"]) {
    delete env[key];
  }
  return env;
}

function aptGet(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "apt-get",
      ["-q", ...args],
      { ...opts, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        if (err && (err as NodeJS.ErrnoException).code === "ENOENT") {
          reject(new Error("apt-get is not installed (Debian package apt)", { cause: err }));
          return;
        }
        if (err) {
          reject(new AptGetError(`apt-get ${args.join(" ")} failed: ${err.message}`, output));
          return;
        }
        const problems = output.split("\n").filter((line) => /^(W|E): /.test(line));
        if (problems.length > 0) {
          reject(
            new AptGetError(
              `apt-get ${args.join(" ")} exited 0 but printed ${problems.length} W:/E: line(s): ${problems.join(" | ")}`,
              output,
            ),
          );
          return;
        }
        resolve(output);
      },
    );
  });
}

/**
 * `Debug::Acquire::http` prints each request: a `GET <path> HTTP/1.1` line followed by its
 * `Host:` line. Returns `http://<host><path>` for each.
 */
export function parseFetchedUrls(output: string): string[] {
  const urls: string[] = [];
  let pendingPath: string | null = null;
  for (const line of output.split("\n")) {
    const get = /^GET (\S+) HTTP\/1\.[01]\s*$/.exec(line);
    if (get) {
      pendingPath = get[1] ?? null;
      continue;
    }
    const host = /^Host: (\S+)\s*$/.exec(line);
    if (host && pendingPath !== null) {
      urls.push(`http://${host[1]}${pendingPath}`);
      pendingPath = null;
    }
  }
  return urls;
}
