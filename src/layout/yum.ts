/**
 * yum/dnf repositories, laid out as the original packrat agent did:
 * `<distro>/main/<version>/<arch>/<file>` with `repodata/` in each `<distro>/main/<version>/`
 * (one dnf repo per distro version). Metadata is createrepo_c's: checksum-named
 * primary/filelists/other, and repomd.xml (+ repomd.xml.asc when signing).
 */
import { sha256Hex } from "../digest.js";
import { gzipSync } from "node:zlib";
import { compress as zstdCompress } from "zstd-napi";
import { PackratError } from "../errors.js";
import type { DistroVersion } from "../types.js";
import type { RpmEntry, RepomdData } from "./formats/rpm-repodata.js";
import {
  filelistsXml,
  otherXml,
  primaryPackageXml,
  primaryXml,
  repomdXml,
} from "./formats/rpm-repodata.js";
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

/** `<distro>/main/<version>`: the directory that holds one dnf repo's repodata/. */
export function yumRepoRoot(dv: DistroVersion): string {
  const distro = safeSegment(dv.distro, "distro");
  const version = safeSegment(dv.version ?? dv.name, "distro version");
  return `${distro}/main/${version}`;
}

/** packrat's `all` is RPM's `noarch`. */
export function yumArchDir(arch: string): string {
  return safeSegment(arch === "all" ? "noarch" : arch, "arch");
}

function compressMetadata(data: Uint8Array, options: LayoutOptions): [Uint8Array, string] {
  if (options.yumCompression === "zstd") return [zstdCompress(data), "zst"];
  // node writes a gzip header with mtime 0 and no name: same input, same bytes.
  return [gzipSync(data, { level: 9 }), "gz"];
}

function sortEntries(entries: RpmEntry[]): RpmEntry[] {
  const key = (e: RpmEntry) => [
    e.meta.name,
    e.meta.arch,
    String(e.meta.epoch),
    e.meta.version,
    e.meta.release,
    e.href,
  ];
  return entries.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      const x = ka[i] ?? "";
      const y = kb[i] ?? "";
      if (x !== y) return x < y ? -1 : 1;
    }
    return 0;
  });
}

function entryOf(pkg: PublishedPackage, root: string): RpmEntry {
  const path = pkg.paths[0];
  if (path === undefined || !path.startsWith(`${root}/`)) {
    throw new Error(`yum layout: ${pkg.file.filename} is at ${path}, outside its repo ${root}`);
  }
  return {
    meta: asRpmMeta(pkg.meta, pkg.file.filename),
    href: path.slice(root.length + 1),
    sha256: pkg.sha256,
    size: pkg.size,
  };
}

/** The files of one dnf repo (one `<distro>/main/<version>`). */
async function renderRepo(
  root: string,
  entries: RpmEntry[],
  input: RenderInput,
): Promise<RenderedFile[]> {
  const sorted = sortEntries(entries);
  const timestamp = Math.floor(input.now.getTime() / 1000);
  const docs: [type: string, xml: string][] = [
    ["primary", primaryXml(sorted)],
    ["filelists", filelistsXml(sorted)],
    ["other", otherXml(sorted, input.options.rpmChangelogLimit)],
  ];
  const files: RenderedFile[] = [];
  const data: RepomdData[] = [];
  for (const [type, xml] of docs) {
    const open = Buffer.from(xml, "utf8");
    const [packed, ext] = compressMetadata(open, input.options);
    const checksum = sha256Hex(packed);
    const href = `repodata/${checksum}-${type}.xml.${ext}`;
    files.push({ path: `${root}/${href}`, content: packed, contentAddressed: true, stage: 0 });
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
    path: `${root}/repodata/repomd.xml`,
    content: repomd,
    contentAddressed: false,
    stage: 1,
  });
  if (input.signer) {
    const asc = await input.signer.signDetachedArmored(repomd);
    files.push({
      path: `${root}/repodata/repomd.xml.asc`,
      content: Buffer.from(asc, "utf8"),
      contentAddressed: false,
      stage: 2,
    });
  }
  return files;
}

async function render(input: RenderInput): Promise<RenderResult> {
  const warnings: string[] = [];
  const byRoot = new Map<string, RpmEntry[]>();
  for (const dv of input.distroVersions.values()) byRoot.set(yumRepoRoot(dv), []);
  for (const pkg of input.packages) {
    const root = yumRepoRoot(pkg.distroVersion);
    let list = byRoot.get(root);
    if (!list) byRoot.set(root, (list = []));
    list.push(entryOf(pkg, root));
  }
  // rpm:header-range comes from the parsed bytes; after signing it moves. Metadata parsed
  // from other bytes than those published would publish a wrong range.
  const stale = input.packages.filter((p) => p.meta.sha256 !== p.sha256);
  if (stale.length > 0) {
    warnings.push(
      `${input.repo.name}: ${stale.length} RPM(s) (e.g. ${stale[0]?.file.filename}) were parsed from bytes other than those published; rpm:header-range may be wrong`,
    );
  }
  const files: RenderedFile[] = [];
  for (const root of [...byRoot.keys()].sort()) {
    files.push(...(await renderRepo(root, byRoot.get(root) ?? [], input)));
  }
  if (!input.signer) {
    warnings.push(
      `${input.repo.name}: publishing unsigned repomd.xml (no signing key configured); dnf needs repo_gpgcheck=0`,
    );
  }
  return { files, warnings };
}

export const yumLayout: RepoLayout = {
  managerType: "yum",
  fileTypes: ["rpm"],

  placePackage(input: PlacementInput): string[] {
    const root = yumRepoRoot(input.distroVersion);
    return [`${root}/${yumArchDir(input.file.arch)}/${input.file.filename}`];
  },

  async parse(source, filename) {
    return { ...(await parseRpm(source, filename)) };
  },

  render,

  async transform(source, filename, signer, options) {
    if (!options.signRpmPackages || !signer) return null;
    return signRpm(source, filename, signer);
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
