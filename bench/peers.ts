/**
 * The established tools, each as the shell steps an operator would run to get a signed repo:
 * index, compress, sign. Every peer works in its own directory on hard links to the same corpus
 * files ours reads, and signs with gpg (a throwaway GNUPGHOME, a passphrase-less Ed25519 key:
 * the same algorithm our signer uses).
 */
import { execFileSync } from "node:child_process";
import { copyFile, link, mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Format } from "./generate.js";

export interface Gpg {
  home: string;
  keyId: string;
}

export function setupGpg(home: string): Gpg {
  execFileSync("mkdir", ["-p", "-m", "700", home]);
  const env = { ...process.env, GNUPGHOME: home };
  const list = () =>
    execFileSync("gpg", ["--batch", "--list-secret-keys", "--with-colons"], { env }).toString();
  if (!list().includes("fpr:")) {
    execFileSync(
      "gpg",
      [
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Packrat Bench Peer <bench@packrat.invalid>",
        "ed25519",
        "sign",
        "never",
      ],
      { env, stdio: "ignore" },
    );
  }
  const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(list())?.[1];
  if (!fpr) throw new Error(`no key in ${home}`);
  return { home, keyId: fpr };
}

export interface Peer {
  tool: string;
  format: Format;
  /** Untimed: lay out the peer's directory (links to the corpus). */
  prepare(dir: string, corpusFiles: readonly string[]): Promise<void>;
  /** Timed: index and sign everything in the directory. */
  cold(dir: string): string;
  /** Untimed: put the new file where the tool expects it; returns the path to name. */
  place(dir: string, file: string): Promise<string>;
  /** Untimed: an N-package repo made from our published one, when the cold run was stopped. */
  seed?(dir: string, oursRepoDir: string): Promise<void>;
  /** Timed: from that file on disk to a signed entry point that names it. Null: not a +1 tool. */
  plusOne(dir: string, placed: string): string | null;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function linkAll(files: readonly string[], into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  for (const f of files) await link(f, path.join(into, path.basename(f)));
}

async function linkOne(file: string, into: string): Promise<string> {
  const target = path.join(into, path.basename(file));
  await link(file, target);
  return target;
}

/** gzip + xz of Packages, Release by apt-ftparchive, InRelease and Release.gpg by gpg. */
function aptFinish(gpg: Gpg): string {
  const dist = "dists/bench";
  const bin = `${dist}/main/binary-amd64`;
  return [
    `gzip -kf ${bin}/Packages`,
    `xz -kf ${bin}/Packages`,
    `apt-ftparchive -o APT::FTPArchive::Release::Codename=bench -o APT::FTPArchive::Release::Architectures=amd64 -o APT::FTPArchive::Release::Components=main release ${dist} > Release.tmp`,
    `mv Release.tmp ${dist}/Release`,
    `GNUPGHOME=${q(gpg.home)} gpg --batch --yes -u ${gpg.keyId} --clearsign -o ${dist}/InRelease ${dist}/Release`,
    `GNUPGHOME=${q(gpg.home)} gpg --batch --yes -u ${gpg.keyId} -abs -o ${dist}/Release.gpg ${dist}/Release`,
  ].join("\n");
}

export function peersFor(gpg: Gpg): Peer[] {
  const env = `export GNUPGHOME=${q(gpg.home)}`;
  const aptftparchive = (dir: string) =>
    [
      `cd ${q(dir)}`,
      "mkdir -p dists/bench/main/binary-amd64",
      "apt-ftparchive --db cache.db packages pool > dists/bench/main/binary-amd64/Packages",
      aptFinish(gpg),
    ].join("\n");
  const dpkgScan = (dir: string) =>
    [
      `cd ${q(dir)}`,
      "mkdir -p dists/bench/main/binary-amd64",
      "dpkg-scanpackages -m pool /dev/null > dists/bench/main/binary-amd64/Packages 2>/dev/null",
      aptFinish(gpg),
    ].join("\n");
  const aptly = (dir: string) => `aptly -config=${q(path.join(dir, "aptly.conf"))}`;
  return [
    {
      tool: "apt-ftparchive",
      format: "deb",
      prepare: (dir, files) => linkAll(files, path.join(dir, "pool/main")),
      cold: aptftparchive,
      place: (dir, file) => linkOne(file, path.join(dir, "pool/main")),
      plusOne: (dir) => aptftparchive(dir),
    },
    {
      tool: "dpkg-scanpackages",
      format: "deb",
      prepare: (dir, files) => linkAll(files, path.join(dir, "pool/main")),
      cold: dpkgScan,
      place: (dir, file) => linkOne(file, path.join(dir, "pool/main")),
      plusOne: () => null,
    },
    {
      tool: "aptly",
      format: "deb",
      prepare: async (dir, files) => {
        await linkAll(files, path.join(dir, "incoming"));
        await writeFile(
          path.join(dir, "aptly.conf"),
          JSON.stringify({
            rootDir: path.join(dir, "aptly"),
            gpgProvider: "gpg",
            architectures: [],
          }),
        );
      },
      cold: (dir) =>
        [
          env,
          `${aptly(dir)} repo create -distribution=bench -component=main bench > /dev/null`,
          `${aptly(dir)} repo add bench ${q(path.join(dir, "incoming"))} > /dev/null 2>&1`,
          `${aptly(dir)} publish repo -batch -gpg-key=${gpg.keyId} bench > /dev/null`,
        ].join("\n"),
      place: async (dir, file) => {
        await mkdir(path.join(dir, "new"), { recursive: true });
        return linkOne(file, path.join(dir, "new"));
      },
      plusOne: (dir, placed) =>
        [
          env,
          `${aptly(dir)} repo add bench ${q(placed)} > /dev/null 2>&1`,
          `${aptly(dir)} publish update -batch -gpg-key=${gpg.keyId} bench > /dev/null`,
        ].join("\n"),
    },
    {
      tool: "reprepro",
      format: "deb",
      prepare: async (dir, files) => {
        await linkAll(files, path.join(dir, "incoming"));
        await mkdir(path.join(dir, "conf"), { recursive: true });
        await writeFile(
          path.join(dir, "conf/distributions"),
          [
            "Codename: bench",
            "Architectures: amd64",
            "Components: main",
            `SignWith: ${gpg.keyId}`,
            "DebIndices: Packages Release . .gz .xz",
            "",
          ].join("\n"),
        );
      },
      cold: (dir) =>
        [
          env,
          `cd ${q(dir)}`,
          // Through xargs (100,000 names do not fit in one argv), exporting once at the end
          // as a single includedeb of every file would.
          "find incoming -name '*.deb' -print0 | xargs -0 reprepro --silent --export=silent-never -b . includedeb bench",
          "reprepro --silent -b . export bench",
        ].join("\n"),
      place: async (dir, file) => {
        await mkdir(path.join(dir, "new"), { recursive: true });
        return linkOne(file, path.join(dir, "new"));
      },
      plusOne: (dir, placed) =>
        [env, `cd ${q(dir)}`, `reprepro --silent -b . includedeb bench ${q(placed)}`].join("\n"),
    },
    {
      tool: "createrepo_c",
      format: "rpm",
      prepare: (dir, files) => linkAll(files, path.join(dir, "repo")),
      cold: (dir) =>
        [
          env,
          `cd ${q(path.join(dir, "repo"))}`,
          "createrepo_c --quiet --no-database .",
          `gpg --batch --yes -u ${gpg.keyId} -abs --armor -o repodata/repomd.xml.asc repodata/repomd.xml`,
        ].join("\n"),
      place: (dir, file) => linkOne(file, path.join(dir, "repo")),
      plusOne: (dir) =>
        [
          env,
          `cd ${q(path.join(dir, "repo"))}`,
          "createrepo_c --quiet --no-database --update .",
          `gpg --batch --yes -u ${gpg.keyId} -abs --armor -o repodata/repomd.xml.asc repodata/repomd.xml`,
        ].join("\n"),
    },
    {
      tool: "repo-add",
      format: "pacman",
      prepare: (dir, files) => linkAll(files, path.join(dir, "repo")),
      cold: (dir) =>
        [
          env,
          `cd ${q(path.join(dir, "repo"))}`,
          // Through xargs: 100,000 names do not fit in one argv (each batch adds to the db).
          `find . -maxdepth 1 -name '*.pkg.tar.zst' -print0 | xargs -0 repo-add -q -s -k ${gpg.keyId} bench.db.tar.gz`,
        ].join("\n"),
      place: (dir, file) => linkOne(file, path.join(dir, "repo")),
      seed: async (dir, oursRepoDir) => {
        // Our pacman databases are written field for field as repo-add's; repo-add reads them.
        await mkdir(path.join(dir, "repo"), { recursive: true });
        for (const kind of ["db", "files"]) {
          await copyFile(
            path.join(oursRepoDir, "x86_64", `pacman.${kind}.tar.gz`),
            path.join(dir, "repo", `bench.${kind}.tar.gz`),
          );
        }
      },
      plusOne: (dir, placed) =>
        [
          env,
          `cd ${q(path.join(dir, "repo"))}`,
          `repo-add -q -s -k ${gpg.keyId} bench.db.tar.gz ${q(path.basename(placed))}`,
        ].join("\n"),
    },
  ];
}

/** Is this tool on the PATH? */
export function haveTool(tool: string): boolean {
  try {
    execFileSync("bash", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Every file under dir (recursive), for checks that an index names a package. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}
