/**
 * The apt layout: pool/ and dists/ as the original packrat agent laid them out, with the
 * indexes dpkg-scanpackages and apt-ftparchive would write, by-hash copies, and InRelease.
 *
 * Origin and Label are the repo's name (stable: users pin on them with `o=`/`l=`);
 * Description is the repo's description, else the mirror's, else the repo name.
 */
import { createAptCheck } from "./checks/apt.js";
import { digestHex, sha256Hex } from "../digest.js";
import { architectureList, integer } from "../config-values.js";
import { PackratError } from "../errors.js";
import type { DistroVersion } from "../types.js";
import type { DebMeta } from "./formats/deb.js";
import { xzCompress } from "./formats/compress.js";
import { GzipMemberCache } from "./formats/gzip-members.js";
import { RenderCaches } from "./formats/render-caches.js";
import { asDebMeta, parseDeb } from "./formats/deb.js";
import type { ControlField } from "./formats/deb-control.js";
import { controlValue, renderStanza } from "./formats/deb-control.js";
import { compareDebianVersions } from "./formats/debian-version.js";
import type {
  PlacementInput,
  PublishedPackage,
  RenderedFile,
  RenderInput,
  RenderResult,
  RepoLayout,
} from "./types.js";

const COMPONENT = "main";

/**
 * Where Debian indexes .udeb files (debian-installer components): their own Packages per
 * architecture, listed in the dist's Release, never mixed into binary-<arch>/Packages
 * (dpkg-scanpackages -t udeb writes them; apt reads them for a `main/debian-installer` line).
 */
const UDEB_DIR = `${COMPONENT}/debian-installer`;

/**
 * Debug packages (.ddeb) go to a dist of their own, `<codename>-debug`, as Debian publishes
 * its debug symbols (the `<suite>-debug` archive) and Ubuntu in a separate ddebs archive: apt
 * reads them with `deb URL <codename>-debug main`, and nobody gets them without asking.
 */
export const DEBUG_SUFFIX = "-debug";

export type DebKind = "deb" | "udeb" | "ddeb";

/** What kind of Debian binary package a file is, by its name (as dpkg-scanpackages -t). */
export function debKind(filename: string): DebKind {
  return filename.endsWith(".udeb") ? "udeb" : filename.endsWith(".ddeb") ? "ddeb" : "deb";
}

/**
 * In a quick generation, a Packages index larger than this is published without its .xz (xz -6
 * of a 770 KB index takes ~0.4 s, of a 7 MB one at -1 ~0.5 s, and apt falls back to
 * Packages.gz when no .xz is listed); the complete generation that follows adds it.
 */
export const QUICK_XZ_MAX_BYTES = 64 * 1024;

/** Packrat architecture names → Debian ones; others pass through. */
export function debianArch(packratArch: string): string {
  return packratArch === "x86_64" ? "amd64" : packratArch;
}

/** A path component from master data: refuse anything that could leave its directory. */
function safeComponent(value: string, what: string): string {
  if (!/^[0-9A-Za-z._+~-]+$/.test(value) || value === "." || value === "..") {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `${what} ${JSON.stringify(value)} is not a safe path component`,
      {
        hint: "expected letters, digits and ._+~- only",
      },
    );
  }
  return value;
}

export function poolPath(packageName: string, filename: string): string {
  const prefix = safeComponent(packageName, "package name").slice(0, 6);
  return `pool/${safeComponent(prefix, "pool directory")}/${safeComponent(filename, "filename")}`;
}

/** The dists/ directory name: the DistroVersion's version (its name when version is null). */
export function codenameOf(dv: DistroVersion): string {
  return safeComponent(dv.version ?? dv.name, `distro version ${dv.name}: codename`);
}

interface IndexEntry {
  /** sha256, pool path and size: decides the stanza (the meta is the sha256's). */
  key: string;
  /** A udeb is listed in the debian-installer index only. */
  udeb: boolean;
  name: string;
  version: string;
  filename: string;
  arch: string;
  /** The stanza and its blank line, UTF-8: indexes are concatenated, never re-encoded. */
  bytes: Uint8Array;
}

/**
 * What the last render of a dist made, reused by the next one: each package's entry (so a
 * generation that adds one package renders one stanza, not 10,000) and the gzip members of each
 * architecture's Packages.gz. Pure memoisation: entries are keyed by everything that decides
 * them, and each render keeps only what it used, so memory stays one index's worth per dist.
 */
interface DistCache {
  entries: Map<string, IndexEntry>;
  /** Each entry's position in the last render's sorted index, by key. */
  rank: Map<string, number>;
  gz: Map<string, GzipMemberCache>;
}

/** An apt layout's render caches: per repo and dist, made on first use. */
type DistCaches = RenderCaches<DistCache>;

function newDistCaches(): DistCaches {
  return new RenderCaches<DistCache>(() => ({
    entries: new Map(),
    rank: new Map(),
    gz: new Map(),
  }));
}

function stanzaFor(
  control: readonly ControlField[],
  meta: DebMeta,
  path: string,
  size: number,
): string {
  // Filename, Size and the checksums replace any the control file carries (dpkg-scanpackages
  // sets them the same way); renderStanza puts every field in dpkg's order.
  const drop = new Set(["filename", "size", "md5sum", "sha1", "sha256"]);
  const fields: [string, string][] = control.filter(([n]) => !drop.has(n.toLowerCase()));
  fields.push(
    ["Filename", path],
    ["Size", String(size)],
    ["MD5sum", meta.md5],
    ["SHA1", meta.sha1],
    ["SHA256", meta.sha256],
  );
  return renderStanza(fields);
}

function newEntry(key: string, pkg: PublishedPackage, path: string): IndexEntry {
  const meta = asDebMeta(pkg.meta, pkg.file.filename);
  if (meta.sha256 !== pkg.sha256 || meta.size !== pkg.size) {
    throw new Error(
      `apt: ${pkg.file.filename}: parsed metadata (sha256 ${meta.sha256}, ${meta.size} bytes) does not describe the file on disk (${pkg.sha256}, ${pkg.size} bytes)`,
    );
  }
  return {
    key,
    udeb: debKind(path) === "udeb",
    name: controlValue(meta.control, "Package") ?? pkg.file.packageName,
    version: controlValue(meta.control, "Version") ?? pkg.file.version,
    filename: path,
    arch: controlValue(meta.control, "Architecture") ?? debianArch(pkg.file.arch),
    bytes: Buffer.from(`${stanzaFor(meta.control, meta, path, pkg.size)}\n`),
  };
}

/**
 * Two files with the same name, version and architecture in one dist: apt keeps one of them
 * arbitrarily, so a client may get either. Say so (the master should not allow it).
 */
function warnDuplicates(entries: readonly IndexEntry[], where: string, warnings: string[]): void {
  for (let i = 1; i < entries.length; i++) {
    const a = entries[i - 1]!;
    const b = entries[i]!;
    if (
      a.name === b.name &&
      a.arch === b.arch &&
      a.udeb === b.udeb &&
      compareDebianVersions(a.version, b.version) === 0
    ) {
      warnings.push(
        `${where}: ${a.name} ${a.version} (${a.arch}) is published twice, as ${a.filename} and ${b.filename}; apt will use either`,
      );
    }
  }
}

function compareEntries(a: IndexEntry, b: IndexEntry): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  const v = compareDebianVersions(a.version, b.version);
  if (v !== 0) return v;
  // Architecture next, so that warnDuplicates finds equal (name, version, arch) side by side.
  if (a.arch !== b.arch) return a.arch < b.arch ? -1 : 1;
  return a.filename < b.filename ? -1 : a.filename > b.filename ? 1 : 0;
}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();

/** RFC 2822 in UTC, as apt-ftparchive writes it. */
export function releaseDate(d: Date): string {
  return d.toUTCString().replace(/GMT$/, "UTC");
}

interface IndexFile {
  /** Relative to dists/<codename>/. */
  name: string;
  content: Uint8Array;
}

function checksumLines(files: readonly IndexFile[], algo: "md5" | "sha1" | "sha256"): string {
  return files
    .map((f) => {
      const hash = digestHex(algo, f.content);
      return ` ${hash} ${String(f.content.length).padStart(16)} ${f.name}\n`;
    })
    .join("");
}

const encoder = new TextEncoder();

interface Dist {
  codename: string;
  packages: PublishedPackage[];
}

async function renderDist(
  distCaches: DistCaches,
  dist: Dist,
  input: RenderInput,
  warnings: string[],
  deferred: { xz: boolean },
): Promise<RenderedFile[]> {
  const { repo, options } = input;
  const cache = distCaches.get(repo.name, dist.codename);
  let entries: IndexEntry[] = [];
  const used = new Map<string, IndexEntry>();
  const present = new Set<string>();
  for (const pkg of dist.packages) {
    const path = pkg.paths[0];
    if (path === undefined) throw new Error(`apt: ${pkg.file.filename} has no path`);
    const key = `${pkg.sha256}\t${path}\t${pkg.size}`;
    const entry = cache.entries.get(key) ?? used.get(key) ?? newEntry(key, pkg, path);
    used.set(key, entry);
    const arch = entry.arch;
    if (arch !== debianArch(pkg.file.arch)) {
      warnings.push(
        `apt repo ${repo.name}: ${pkg.file.filename} is Architecture ${arch} but the master says ${pkg.file.arch}; indexed as ${arch}`,
      );
    }
    if (arch !== "all") present.add(arch);
    entries.push(entry);
  }
  cache.entries = used;
  // In the last render's sorted order, new entries after: TimSort then merges one long sorted
  // run with a short tail in ~N comparisons, instead of N log N dpkg version comparisons
  // (~0.8 s at 50,000 packages).
  const ranked: IndexEntry[][] = [];
  const tail: IndexEntry[] = [];
  for (const e of entries) {
    const r = cache.rank.get(e.key);
    if (r === undefined) tail.push(e);
    else (ranked[r] ??= []).push(e);
  }
  entries = [...ranked.flat(), ...tail];
  entries.sort(compareEntries);
  cache.rank = new Map(entries.map((e, i) => [e.key, i]));
  warnDuplicates(entries, `apt repo ${repo.name} dist ${dist.codename}`, warnings);

  // `all` is not a binary-<arch> of its own here: its packages go into every listed arch.
  const architectures = [
    ...new Set(
      options.aptArchitectures.length > 0
        ? options.aptArchitectures.map(debianArch)
        : [...present, "amd64"],
    ),
  ]
    .filter((a) => a !== "all")
    .map((a) => safeComponent(a, "architecture"))
    .sort();

  const origin = oneLine(repo.name);
  const description = oneLine(repo.description) || oneLine(options.mirrorDescription) || origin;
  // Every architecture's indexes at once: gzip and xz both run on libuv's thread pool, so a
  // multi-arch dist compresses in parallel instead of one arch after the other.
  const gzCaches = new Map<string, GzipMemberCache>();
  const packagesIndex = async (dir: string, items: IndexEntry[]): Promise<IndexFile[]> => {
    const plain = Buffer.concat(items.map((e) => e.bytes));
    const gzCache = cache.gz.get(dir) ?? new GzipMemberCache();
    gzCaches.set(dir, gzCache);
    const withXz = !input.quick || plain.length <= QUICK_XZ_MAX_BYTES;
    if (!withXz) deferred.xz = true;
    const [gz, xzed] = await Promise.all([
      gzCache.compress(items),
      withXz ? xzCompress(plain) : null,
    ]);
    return [
      { name: `${dir}/Packages`, content: plain },
      { name: `${dir}/Packages.gz`, content: gz },
      ...(xzed ? [{ name: `${dir}/Packages.xz`, content: xzed }] : []),
    ];
  };
  // debian-installer indexes only where there are udebs: a dist without any stays as it was.
  const hasUdebs = entries.some((e) => e.udeb);
  const perArch = await Promise.all(
    architectures.map(async (arch): Promise<IndexFile[]> => {
      const dir = `${COMPONENT}/binary-${arch}`;
      const ofArch = entries.filter((e) => e.arch === arch || e.arch === "all");
      const archRelease = encoder.encode(
        `Archive: ${dist.codename}\nOrigin: ${origin}\nLabel: ${origin}\nCodename: ${dist.codename}\n` +
          `Component: ${COMPONENT}\nArchitecture: ${arch}\n`,
      );
      const [debs, udebs] = await Promise.all([
        packagesIndex(
          dir,
          ofArch.filter((e) => !e.udeb),
        ),
        hasUdebs
          ? packagesIndex(
              `${UDEB_DIR}/binary-${arch}`,
              ofArch.filter((e) => e.udeb),
            )
          : [],
      ]);
      return [...debs, { name: `${dir}/Release`, content: archRelease }, ...udebs];
    }),
  );
  cache.gz = gzCaches;
  const indexFiles: IndexFile[] = perArch.flat();
  indexFiles.sort((a, b) => (a.name < b.name ? -1 : 1));

  let release =
    `Origin: ${origin}\nLabel: ${origin}\nSuite: ${dist.codename}\nCodename: ${dist.codename}\n` +
    `Date: ${releaseDate(input.now)}\n`;
  if (options.aptValidUntilSeconds !== null) {
    release += `Valid-Until: ${releaseDate(new Date(input.now.getTime() + options.aptValidUntilSeconds * 1000))}\n`;
  }
  // Only SHA256 by-hash copies exist, so SHA512 is not listed: apt fetches by-hash for the
  // strongest hash the Release names (FIELD_NOTES §7).
  release +=
    `Acquire-By-Hash: yes\nArchitectures: ${architectures.join(" ")}\nComponents: ${COMPONENT}\n` +
    `Description: ${description}\n` +
    `MD5Sum:\n${checksumLines(indexFiles, "md5")}` +
    `SHA1:\n${checksumLines(indexFiles, "sha1")}` +
    `SHA256:\n${checksumLines(indexFiles, "sha256")}`;

  const base = `dists/${dist.codename}`;
  const out: RenderedFile[] = [];
  // Stage 0: by-hash copies (content-addressed, never rewritten). Stage 1: the plain-name
  // indexes, for clients without by-hash. Stage 2: Release and Release.gpg, which name both.
  // Stage 3: InRelease, the entry point apt reads first, so it appears only once everything
  // it names resolves. (Release and Release.gpg cannot switch together; apt prefers
  // InRelease, and an old-Release/new-Release.gpg mix lasts one rename.)
  for (const f of indexFiles) {
    const hash = sha256Hex(f.content);
    const dir = f.name.slice(0, f.name.lastIndexOf("/"));
    out.push({
      path: `${base}/${dir}/by-hash/SHA256/${hash}`,
      content: f.content,
      contentAddressed: true,
      stage: 0,
    });
    out.push({ path: `${base}/${f.name}`, content: f.content, contentAddressed: false, stage: 1 });
  }
  const releaseBytes = encoder.encode(release);
  out.push({ path: `${base}/Release`, content: releaseBytes, contentAddressed: false, stage: 2 });
  if (input.signer) {
    const [detached, cleartext] = await Promise.all([
      input.signer.signDetachedArmored(releaseBytes),
      input.signer.signCleartext(release),
    ]);
    out.push({
      path: `${base}/Release.gpg`,
      content: encoder.encode(detached),
      contentAddressed: false,
      stage: 2,
    });
    out.push({
      path: `${base}/InRelease`,
      content: encoder.encode(cleartext),
      contentAddressed: false,
      stage: 3,
    });
  }
  return out;
}

/** Distributions of the repo: one per codename, each with only its own packages. */
function groupDists(input: RenderInput): Dist[] {
  const dists = new Map<string, Dist>();
  const add = (dv: DistroVersion, suffix = "") => {
    const codename = codenameOf(dv) + suffix;
    let dist = dists.get(codename);
    if (!dist) dists.set(codename, (dist = { codename, packages: [] }));
    return dist;
  };
  for (const dv of input.distroVersions.values()) add(dv);
  for (const pkg of input.packages) {
    const path = pkg.paths[0] ?? pkg.file.filename;
    const suffix = debKind(path) === "ddeb" ? DEBUG_SUFFIX : "";
    add(pkg.distroVersion, suffix).packages.push(pkg);
  }
  return [...dists.values()].sort((a, b) => (a.codename < b.codename ? -1 : 1));
}

async function renderApt(distCaches: DistCaches, input: RenderInput): Promise<RenderResult> {
  const warnings: string[] = [];
  if (!input.signer) {
    warnings.push(
      `apt repo ${input.repo.name}: publishing unsigned: no signing key configured (apt will refuse it unless told [trusted=yes])`,
    );
  }
  // One pool path for two different files (two dists sharing a filename with other bytes):
  // only one of them can be on disk, so one dist's index would name the wrong bytes.
  const byPath = new Map<string, string>();
  for (const pkg of input.packages) {
    const path = pkg.paths[0];
    if (path === undefined) continue;
    const seen = byPath.get(path);
    if (seen !== undefined && seen !== pkg.sha256) {
      throw new PackratError(
        "PACKRAT_MASTER_INCONSISTENT",
        `apt repo ${input.repo.name}: two different files (sha256 ${seen} and ${pkg.sha256}) both belong at ${path}`,
        { hint: "the master has two package files with the same filename but different contents" },
      );
    }
    byPath.set(path, pkg.sha256);
  }
  const files: RenderedFile[] = [];
  const deferred = { xz: false };
  for (const dist of groupDists(input))
    files.push(...(await renderDist(distCaches, dist, input, warnings, deferred)));
  files.sort((a, b) => a.stage - b.stage || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, warnings, ...(deferred.xz ? { deferred: true } : {}) };
}

/** The Packages stanza the agent publishes for a parsed .deb (for `packrat-agent inspect`). */
export function describeDeb(metaIn: Record<string, unknown>, filename: string): string {
  const meta = asDebMeta(metaIn, filename);
  const name = controlValue(meta.control, "Package") ?? "";
  return stanzaFor(meta.control, meta, poolPath(name, filename), meta.size);
}

/**
 * A new apt layout. Its render caches are its own (two engines in one process, or a test,
 * never share them); `cachedDists` lists the (repo, codename) pairs it holds caches for.
 */
export function createAptLayout(): RepoLayout & { cachedDists(): [string, string][] } {
  const distCaches = newDistCaches();
  return {
    ...APT,
    check: createAptCheck(),
    render: (input) => renderApt(distCaches, input),
    forgetRepos: (keep) => distCaches.forgetRepos(keep),
    cachedDists: () => distCaches.keys(),
  };
}

/** What every apt layout shares; render and its caches come from createAptLayout. */
const APT: Omit<RepoLayout, "render" | "forgetRepos" | "check"> = {
  managerType: "apt",
  title: "apt",
  fileKinds: ".deb, .udeb, .ddeb",
  cacheRules: {
    entryPoints: [String.raw`/(InRelease|Release|Release\.gpg)$`],
    immutable: ["/by-hash/", "/pool/", String.raw`\.(deb|udeb|ddeb)$`],
  },

  fileTypes: ["deb"],
  // udebs (debian-installer) and ddebs (debug symbols) are apt packages too.
  optionsUsed: ["aptArchitectures", "aptValidUntilSeconds", "mirrorDescription"],
  options: {
    aptArchitectures: {
      parse: architectureList(),
      default: [],
      example: "amd64, arm64",
      what: "the apt architectures",
      doc: [
        "Debian architectures listed in every apt Release, separated by commas, e.g. amd64, arm64.",
        "Default: none set, meaning the architectures present plus amd64.",
      ],
    },
    aptValidUntilSeconds: {
      parse: integer({ min: 3600, max: 31_536_000, unit: "whole seconds", example: 604800 }),
      default: null,
      example: "604800",
      what: "the Release Valid-Until window",
      doc: [
        "Give each apt Release a Valid-Until of Date + this many seconds (3600 to 31536000, and more",
        "than full_sync_interval), e.g. 604800 for a week. Default: none (no Valid-Until).",
      ],
      // A Release that expires before the next full sync re-signs it is refused by apt.
      check: (seconds, { fullSyncInterval }) =>
        fullSyncInterval === null || seconds > fullSyncInterval
          ? null
          : `expected more than full_sync_interval (${fullSyncInterval} s), or Release files would expire ` +
            "between two syncs and apt would refuse them, e.g. 604800",
    },
  },
  filenamePattern: /\.[ud]?deb$/,
  // In place: where the producer put it (Filename: is relative to the top, where dists/ is).
  placePackage: (input: PlacementInput) => [
    input.sourcePath ?? poolPath(input.file.packageName, input.file.filename),
  ],
  // Every index, Release and by-hash file is under dists/.
  reservesPath: (rel) => rel === "dists" || rel.startsWith("dists/"),
  parse: (source, filename) => parseDeb(source, filename),
  describe: describeDeb,
  // dists/<codename>: "stable" unless the repo names one.
  sourceDistroVersion: (given) => ({ distro: "debian", version: given.version ?? "stable" }),
  identify(meta, filename) {
    const control = asDebMeta(meta, filename).control;
    const field = (name: string): string => {
      const value = controlValue(control, name);
      if (value === undefined || value === "")
        throw new PackratError("PACKRAT_PACKAGE_INVALID", `${filename}: control has no ${name}`, {
          hint: "a .deb's control file names its Package, Version and Architecture",
        });
      return value;
    };
    const arch = field("Architecture");
    return {
      name: field("Package"),
      version: field("Version"),
      arch: arch === "amd64" ? "x86_64" : arch,
    };
  },
};

/** A shared instance, for `inspect` and tests; the agent makes its own (layout/index.ts). */
export const aptLayout = createAptLayout();
