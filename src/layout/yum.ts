/**
 * yum/dnf repositories, laid out as the original packrat agent did:
 * `<distro>/main/<version>/<arch>/<file>` with `repodata/` in each `<distro>/main/<version>/`
 * (one dnf repo per distro version). Metadata is createrepo_c's: checksum-named
 * primary/filelists/other, and repomd.xml (+ repomd.xml.asc when signing).
 */
import { createYumCheck } from "./checks/yum.js";
import { sha256Hex } from "../digest.js";
import { boolean, integer, oneOf } from "../config-values.js";
import { PackratError } from "../errors.js";
import type { DistroVersion } from "../types.js";
import type { RpmEntry, RepomdData } from "./formats/rpm-repodata.js";
import {
  filelistsPackageXml,
  metadataFooter,
  metadataHeader,
  otherPackageXml,
  primaryPackageXml,
  repomdXml,
} from "./formats/rpm-repodata.js";
import { zstdCompress } from "./formats/compress.js";
import { GzipMemberCache, type ChunkItem } from "./formats/gzip-members.js";
import { RenderCaches } from "./formats/render-caches.js";
import { asRpmMeta, parseRpm } from "./formats/rpm-meta.js";
import { signRpm } from "./formats/rpm-sign.js";
import type {
  LayoutOptions,
  PlacementInput,
  PublishedPackage,
  RenderedFile,
  RenderInput,
  RenderResult,
  RepoLayout,
} from "./types.js";

const SAFE_SEGMENT = /^[0-9A-Za-z._+~-]+$/;

function safeSegment(value: string, what: string): string {
  if (!SAFE_SEGMENT.test(value) || value === "." || value === "..") {
    throw new PackratError(
      "PACKRAT_UNSAFE_FILENAME",
      `yum layout: ${what} ${JSON.stringify(value)} cannot be a directory name`,
      { hint: "fix the distro version on the master (letters, digits, . _ + ~ - only)" },
    );
  }
  return value;
}

/** The distro of a repo published in place (sourceDistroVersion): its root is the repo dir. */
const IN_PLACE_DISTRO = "";

/** `root/rel`, or `rel` at the repo directory's top. */
function under(root: string, rel: string): string {
  return root === "" ? rel : `${root}/${rel}`;
}

/** `<distro>/main/<version>`: the directory that holds one dnf repo's repodata/. */
export function yumRepoRoot(dv: DistroVersion): string {
  // A repo published in place: repodata/ at the top of the source directory.
  if (dv.distro === IN_PLACE_DISTRO) return "";
  const distro = safeSegment(dv.distro, "distro");
  const version = safeSegment(dv.version ?? dv.name, "distro version");
  return `${distro}/main/${version}`;
}

/** packrat's `all` is RPM's `noarch`. */
export function yumArchDir(arch: string): string {
  return safeSegment(arch === "all" ? "noarch" : arch, "arch");
}

const DOC_TYPES = ["primary", "filelists", "other"] as const;
type DocType = (typeof DOC_TYPES)[number];

/**
 * One package's part of each document, as the last render made it. Keyed by everything that
 * decides it (sha256, href, size, changelog limit), so a generation that adds one package
 * renders one package, not 10,000.
 */
interface CachedEntry {
  key: string;
  sortKey: string[];
  /** SHA-256 of the bytes the metadata was parsed from (differs after RPM signing). */
  metaSha256: string;
  filename: string;
  docs: Record<DocType, Uint8Array>;
}

/** Per dnf repo (repo name + root): entries and each document's gzip members. */
interface RootCache {
  entries: Map<string, CachedEntry>;
  gz: Map<DocType, GzipMemberCache>;
}
type RootCaches = RenderCaches<RootCache>;

function compareSortKeys(a: CachedEntry, b: CachedEntry): number {
  for (let i = 0; i < a.sortKey.length; i++) {
    const x = a.sortKey[i] ?? "";
    const y = b.sortKey[i] ?? "";
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function hrefOf(pkg: PublishedPackage, root: string): string {
  const path = pkg.paths[0];
  if (path === undefined || (root !== "" && !path.startsWith(`${root}/`))) {
    throw new Error(`yum layout: ${pkg.file.filename} is at ${path}, outside its repo ${root}`);
  }
  return root === "" ? path : path.slice(root.length + 1);
}

function newEntry(
  key: string,
  pkg: PublishedPackage,
  href: string,
  options: LayoutOptions,
): CachedEntry {
  const entry: RpmEntry = {
    meta: asRpmMeta(pkg.meta, pkg.file.filename),
    href,
    sha256: pkg.sha256,
    size: pkg.size,
  };
  const m = entry.meta;
  return {
    key,
    sortKey: [m.name, m.arch, String(m.epoch), m.version, m.release, href],
    metaSha256: m.sha256,
    filename: pkg.file.filename,
    docs: {
      primary: Buffer.from(primaryPackageXml(entry), "utf8"),
      filelists: Buffer.from(filelistsPackageXml(entry), "utf8"),
      other: Buffer.from(otherPackageXml(entry, options.rpmChangelogLimit), "utf8"),
    },
  };
}

/** The files of one dnf repo (one `<distro>/main/<version>`). */
async function renderRepo(
  rootCaches: RootCaches,
  root: string,
  packages: readonly PublishedPackage[],
  input: RenderInput,
  stale: string[],
): Promise<RenderedFile[]> {
  const cache = rootCaches.get(input.repo.name, root);
  const used = new Map<string, CachedEntry>();
  const entries: CachedEntry[] = [];
  for (const pkg of packages) {
    const href = hrefOf(pkg, root);
    const key = `${pkg.sha256}\t${href}\t${pkg.size}\t${input.options.rpmChangelogLimit}`;
    const entry =
      cache.entries.get(key) ?? used.get(key) ?? newEntry(key, pkg, href, input.options);
    used.set(key, entry);
    entries.push(entry);
    // rpm:header-range comes from the parsed bytes; after signing it moves. Metadata parsed
    // from other bytes than those published would publish a wrong range.
    if (entry.metaSha256 !== pkg.sha256) stale.push(entry.filename);
  }
  cache.entries = used;
  entries.sort(compareSortKeys);

  const timestamp = Math.floor(input.now.getTime() / 1000);
  const files: RenderedFile[] = [];
  const gzCaches = new Map<DocType, GzipMemberCache>();
  const docs = await Promise.all(
    DOC_TYPES.map(async (type) => {
      const items: ChunkItem[] = [
        {
          key: `header ${entries.length}`,
          bytes: metadataHeader(type, entries.length),
          alone: true,
        },
        ...entries.map((e) => ({ key: e.key, bytes: e.docs[type] })),
        { key: "footer", bytes: metadataFooter(type), alone: true },
      ];
      const open = Buffer.concat(items.map((i) => i.bytes));
      if (input.options.yumCompression === "zstd")
        return { type, open, packed: zstdCompress(open), ext: "zst" };
      // Gzip members over chunks of packages: unchanged chunks keep their member (see
      // gzip-members.ts); node writes each member's header with mtime 0 and no name.
      const gz = cache.gz.get(type) ?? new GzipMemberCache();
      gzCaches.set(type, gz);
      return { type, open, packed: await gz.compress(items), ext: "gz" };
    }),
  );
  cache.gz = gzCaches;
  const data: RepomdData[] = [];
  for (const { type, open, packed, ext } of docs) {
    const checksum = sha256Hex(packed);
    const href = `repodata/${checksum}-${type}.xml.${ext}`;
    files.push({ path: under(root, href), content: packed, contentAddressed: true, stage: 0 });
    data.push({
      type,
      href,
      checksum,
      openChecksum: sha256Hex(open),
      size: packed.length,
      openSize: open.length,
      timestamp,
    });
  }
  const repomd = Buffer.from(repomdXml(timestamp, data), "utf8");
  /*
   * Entry points last, after the checksum-named files they name (stage 0): repomd.xml in
   * stage 1, then repomd.xml.asc in stage 2. librepo (dnf) reads repomd.xml first and then,
   * with repo_gpgcheck=1, repomd.xml.asc. With the renames at t1 < t2 and a client's reads at
   * a < b, renaming in the client's order fails only when both reads fall inside (t1, t2)
   * (new repomd, old .asc) or span all of it (old repomd, new .asc). Renaming the .asc first
   * fails whenever the reads overlap (t1, t2) at all (old repomd, new .asc): a strict superset.
   * Either way a mismatch is a "Bad GPG signature" dnf reports and retries on its next
   * refresh; it never makes dnf accept unsigned data, and repomd.xml never names a missing file.
   */
  files.push({
    path: under(root, "repodata/repomd.xml"),
    content: repomd,
    contentAddressed: false,
    stage: 1,
  });
  if (input.signer) {
    const asc = await input.signer.signDetachedArmored(repomd);
    files.push({
      path: under(root, "repodata/repomd.xml.asc"),
      content: Buffer.from(asc, "utf8"),
      contentAddressed: false,
      stage: 2,
    });
  }
  return files;
}

async function render(rootCaches: RootCaches, input: RenderInput): Promise<RenderResult> {
  const warnings: string[] = [];
  const byRoot = new Map<string, PublishedPackage[]>();
  for (const dv of input.distroVersions.values()) byRoot.set(yumRepoRoot(dv), []);
  for (const pkg of input.packages) {
    const root = yumRepoRoot(pkg.distroVersion);
    let list = byRoot.get(root);
    if (!list) byRoot.set(root, (list = []));
    list.push(pkg);
  }
  const files: RenderedFile[] = [];
  const stale: string[] = [];
  for (const root of [...byRoot.keys()].sort()) {
    files.push(...(await renderRepo(rootCaches, root, byRoot.get(root) ?? [], input, stale)));
  }
  if (stale.length > 0) {
    warnings.push(
      `${input.repo.name}: ${stale.length} RPM(s) (e.g. ${stale[0]}) were parsed from bytes other than those published; rpm:header-range may be wrong`,
    );
  }
  if (!input.signer) {
    warnings.push(
      `${input.repo.name}: publishing unsigned repomd.xml (no signing key configured); dnf needs repo_gpgcheck=0`,
    );
  }
  return { files, warnings };
}

/** A new yum layout, with render caches and checker memory of its own. */
export function createYumLayout(): RepoLayout {
  const rootCaches: RootCaches = new RenderCaches<RootCache>(() => ({
    entries: new Map(),
    gz: new Map(),
  }));
  return {
    ...YUM,
    check: createYumCheck(),
    render: (input) => render(rootCaches, input),
    forgetRepos: (keep) => rootCaches.forgetRepos(keep),
  };
}

/** What every yum layout shares; render and its caches come from createYumLayout. */
const YUM: Omit<RepoLayout, "render" | "forgetRepos" | "check"> = {
  managerType: "yum",
  title: "yum/dnf",
  fileKinds: ".rpm",
  cacheRules: {
    entryPoints: [String.raw`/repodata/repomd\.xml(\.asc|\.key)?$`],
    immutable: [String.raw`/repodata/[0-9a-f]{32,128}-[^/]+$`, String.raw`\.rpm$`],
  },
  // 2: non-UTF-8 header text read as createrepo_c reads it, changelog authors trimmed.
  metaVersion: 2,
  fileTypes: ["rpm"],

  optionsUsed: ["rpmChangelogLimit", "signRpmPackages", "yumCompression"],
  options: {
    yumCompression: {
      parse: oneOf(["gz", "zstd"] as const),
      default: "gz",
      example: "gz",
      what: "the yum metadata compression",
      doc: [
        "Compression of yum/dnf repodata: gz or zstd (choose zstd only if every client's dnf/yum",
        "reads zstd repodata). Default: gz",
      ],
    },
    rpmChangelogLimit: {
      parse: integer({ min: 0, max: 1000, unit: "a whole number of entries", example: 10 }),
      default: 10,
      example: "10",
      what: "changelog entries per RPM",
      doc: ["Changelog entries per RPM in other.xml, 0 to 1000. Default: 10"],
    },
    signRpmPackages: {
      parse: boolean(),
      default: false,
      example: "no",
      what: "whether to sign each RPM",
      doc: [
        "Add an RPM v4 header signature to each RPM before publishing it, so clients can use",
        "gpgcheck=1 (needs gpg_sign_key). yes/no. Default: no",
      ],
      check: (on, { signing }) =>
        !on || signing
          ? null
          : "signing RPMs needs a key: set gpg_sign_key and gpg_key_file, or set sign_rpm_packages: no",
    },
  },

  filenamePattern: /\.rpm$/,
  // repodata/ of each <distro>/main/<version>/; an arch dir named repodata would be inside it.
  reservesPath: (rel) => rel.split("/").includes("repodata"),

  placePackage(input: PlacementInput): string[] {
    // In place: where the producer put it (hrefs are relative to the top, where repodata/ is).
    if (input.sourcePath !== undefined) return [input.sourcePath];
    const root = yumRepoRoot(input.distroVersion);
    return [`${root}/${yumArchDir(input.file.arch)}/${input.file.filename}`];
  },

  async parse(source, filename) {
    return { ...(await parseRpm(source, filename)) };
  },

  // sign_rpm_packages: each RPM is served with an RPM v4 header signature by the repo key.
  derive: {
    wants: (options, signer) =>
      options.signRpmPackages && signer ? { rewrite: true, signature: false } : null,
    run: async (source, filename, signer) => ({ bytes: await signRpm(source, filename, signer) }),
  },

  // <distro>/main/<version>/: el/9 unless the repo names them.
  // In place: repodata/ at the top of the source directory, the one dnf baseurl.
  sourceDistroVersion: (given) =>
    given.inPlace === true
      ? { distro: IN_PLACE_DISTRO, version: null }
      : { distro: given.distro ?? "el", version: given.version ?? "9" },

  identify(meta, filename) {
    const rpm = asRpmMeta(meta, filename);
    const evr = `${rpm.epoch > 0 ? `${rpm.epoch}:` : ""}${rpm.version}-${rpm.release}`;
    return { name: rpm.name, version: evr, arch: rpm.arch === "noarch" ? "all" : rpm.arch };
  },

  describe(meta, filename) {
    const rpm = asRpmMeta(meta, filename);
    return primaryPackageXml({
      meta: rpm,
      href: `${yumArchDir(rpm.arch)}/${filename}`,
      sha256: rpm.sha256,
      size: rpm.packageSize,
    });
  },
};

/** A shared instance, for `inspect` and tests; the agent makes its own (layout/index.ts). */
export const yumLayout = createYumLayout();
