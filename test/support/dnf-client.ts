/**
 * Runs the real dnf with a private everything: its own dnf.conf, reposdir, cachedir, logdir,
 * persistdir and installroot under one directory, so nothing of the host's dnf or rpm
 * configuration is read or written. Signatures are on: repo_gpgcheck=1 always, gpgcheck (the
 * RPMs' own signatures) as asked.
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

export interface DnfRepo {
  id: string;
  baseUrl: string;
}

export interface DnfSetup {
  /** Everything of this dnf lives under here. */
  base: string;
  repos: DnfRepo[];
  /** The public key that signs repomd.xml (and the RPMs). */
  keyFile: string;
  /** Check the RPMs' own signatures too (gpgcheck=1). Default true. */
  packageGpgcheck?: boolean;
  releasever?: string;
}

export interface DnfRun {
  ok: boolean;
  output: string;
}

/** Write the private dnf.conf and .repo file of `setup`. */
export async function writeDnfConfig(setup: DnfSetup): Promise<void> {
  const { base } = setup;
  const reposDir = path.join(base, "repos.d");
  await mkdir(reposDir, { recursive: true });
  await mkdir(path.join(base, "installroot"), { recursive: true });
  const gpgcheck = (setup.packageGpgcheck ?? true) ? 1 : 0;
  await writeFile(
    path.join(base, "dnf.conf"),
    [
      "[main]",
      `gpgcheck=${gpgcheck}`,
      "repo_gpgcheck=1",
      "skip_if_unavailable=False",
      `reposdir=${reposDir}`,
      `cachedir=${path.join(base, "cache")}`,
      `logdir=${path.join(base, "log")}`,
      `persistdir=${path.join(base, "persist")}`,
      "metadata_expire=0",
      "",
    ].join("\n"),
  );
  const repoFile = setup.repos
    .map((r) =>
      [
        `[${r.id}]`,
        `name=${r.id}`,
        `baseurl=${r.baseUrl}`,
        "enabled=1",
        `gpgcheck=${gpgcheck}`,
        "repo_gpgcheck=1",
        `gpgkey=file://${setup.keyFile}`,
        "",
      ].join("\n"),
    )
    .join("\n");
  await writeFile(path.join(reposDir, "packrat.repo"), repoFile);
}

/** dnf ARGS with the private setup written by writeDnfConfig. Never throws for dnf's own failures. */
export function runDnf(
  setup: Pick<DnfSetup, "base" | "releasever">,
  args: string[],
  timeoutMs = 120_000,
): Promise<DnfRun> {
  const { base } = setup;
  const argv = [
    "-c",
    path.join(base, "dnf.conf"),
    `--installroot=${path.join(base, "installroot")}`,
    `--releasever=${setup.releasever ?? "9"}`,
    // dnf-plugins-core's "local" plugin adds a repo of its own under /var/lib/dnf.
    "--disableplugin=local",
    `--setopt=reposdir=${path.join(base, "repos.d")}`,
    `--setopt=cachedir=${path.join(base, "cache")}`,
    // -y answers the key import prompt with the key configured; signatures are still checked
    // against it.
    "-y",
    ...args,
  ];
  return new Promise((resolve, reject) => {
    execFile("dnf", argv, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === "ENOENT") {
        reject(new Error("dnf is not installed (Debian package dnf)"));
        return;
      }
      resolve(
        err
          ? { ok: false, output: `${err.message}\n${stdout}${stderr}` }
          : { ok: true, output: stdout + stderr },
      );
    });
  });
}
