/**
 * primary.xml, filelists.xml, other.xml and repomd.xml as createrepo_c writes them
 * (src/xml_dump_primary.c, xml_dump_filelists.c, xml_dump_other.c, repomd.c): the same
 * elements, attributes and order, so dnf/libsolv read our metadata exactly as theirs.
 */
import type { RpmChangelog, RpmDependency, RpmFile, RpmMeta } from "./rpm-meta.js";
import { isPrimaryFile } from "./rpm-meta.js";
import { xmlAttrs, xmlEscape } from "./xml.js";

export const NS_COMMON = "http://linux.duke.edu/metadata/common";
export const NS_RPM = "http://linux.duke.edu/metadata/rpm";
export const NS_FILELISTS = "http://linux.duke.edu/metadata/filelists";
export const NS_OTHER = "http://linux.duke.edu/metadata/other";
export const NS_REPO = "http://linux.duke.edu/metadata/repo";

const XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n';

/** The package as published: its metadata plus where it is and what its bytes hash to. */
export interface RpmEntry {
  meta: RpmMeta;
  /** Location relative to the repo root (the directory that holds repodata/). */
  href: string;
  /** SHA-256 of the published bytes (the pkgid). */
  sha256: string;
  /** Size of the published bytes. */
  size: number;
}

function versionXml(meta: RpmMeta): string {
  return `<version${xmlAttrs({ epoch: meta.epoch, ver: meta.version, rel: meta.release })}/>`;
}

function depsXml(tag: string, deps: readonly RpmDependency[]): string {
  if (deps.length === 0) return "";
  const entries = deps.map(
    (d) =>
      `      <rpm:entry${xmlAttrs({
        name: d.name,
        flags: d.flags,
        epoch: d.epoch,
        ver: d.ver,
        rel: d.rel,
        pre: d.pre ? "1" : undefined,
      })}/>\n`,
  );
  return `    <rpm:${tag}>\n${entries.join("")}    </rpm:${tag}>\n`;
}

function fileXml(file: RpmFile, indent: string): string {
  const type = file.type === "file" ? "" : ` type="${file.type}"`;
  return `${indent}<file${type}>${xmlEscape(file.path)}</file>\n`;
}

/** One <package> of primary.xml. */
export function primaryPackageXml(entry: RpmEntry): string {
  const m = entry.meta;
  const files = m.files.filter((f) => isPrimaryFile(f.path));
  return (
    `<package type="rpm">\n` +
    `  <name>${xmlEscape(m.name)}</name>\n` +
    `  <arch>${xmlEscape(m.arch)}</arch>\n` +
    `  ${versionXml(m)}\n` +
    `  <checksum type="sha256" pkgid="YES">${entry.sha256}</checksum>\n` +
    `  <summary>${xmlEscape(m.summary)}</summary>\n` +
    `  <description>${xmlEscape(m.description)}</description>\n` +
    `  <packager>${xmlEscape(m.packager)}</packager>\n` +
    `  <url>${xmlEscape(m.url)}</url>\n` +
    // The file's mtime is not ours to know (layouts never stat); the build time is stable,
    // so the same input renders the same bytes.
    `  <time${xmlAttrs({ file: m.buildTime, build: m.buildTime })}/>\n` +
    `  <size${xmlAttrs({ package: entry.size, installed: m.installedSize, archive: m.archiveSize })}/>\n` +
    `  <location${xmlAttrs({ href: entry.href })}/>\n` +
    `  <format>\n` +
    `    <rpm:license>${xmlEscape(m.license)}</rpm:license>\n` +
    `    <rpm:vendor>${xmlEscape(m.vendor)}</rpm:vendor>\n` +
    `    <rpm:group>${xmlEscape(m.group)}</rpm:group>\n` +
    `    <rpm:buildhost>${xmlEscape(m.buildHost)}</rpm:buildhost>\n` +
    `    <rpm:sourcerpm>${xmlEscape(m.sourceRpm)}</rpm:sourcerpm>\n` +
    `    <rpm:header-range${xmlAttrs({ start: m.headerStart, end: m.headerEnd })}/>\n` +
    depsXml("provides", m.provides) +
    depsXml("requires", m.requires) +
    depsXml("conflicts", m.conflicts) +
    depsXml("obsoletes", m.obsoletes) +
    depsXml("suggests", m.suggests) +
    depsXml("enhances", m.enhances) +
    depsXml("recommends", m.recommends) +
    depsXml("supplements", m.supplements) +
    files.map((f) => fileXml(f, "    ")).join("") +
    `  </format>\n` +
    `</package>\n`
  );
}

function idAttrs(entry: RpmEntry): string {
  return xmlAttrs({ pkgid: entry.sha256, name: entry.meta.name, arch: entry.meta.arch });
}

/** One <package> of filelists.xml. */
export function filelistsPackageXml(entry: RpmEntry): string {
  return (
    `<package${idAttrs(entry)}>\n` +
    `  ${versionXml(entry.meta)}\n` +
    entry.meta.files.map((f) => fileXml(f, "  ")).join("") +
    `</package>\n`
  );
}

/**
 * The newest `limit` changelogs (header order, newest first) with the dates createrepo_c writes
 * (parsehdr.c): when an entry has the same time as the one read before it, every earlier entry
 * in the run that still has that date moves one second later, then the next, so a run of N
 * entries sharing time T becomes T+N-1 ... T+1, T. yum and dnf key changelogs by date, and
 * would merge entries that share one. Only the kept entries take part, so the limit changes
 * the dates, as it does in createrepo_c.
 */
export function changelogsAsCreaterepo(
  changelogs: readonly RpmChangelog[],
  limit: number,
): RpmChangelog[] {
  const out = changelogs.slice(0, Math.max(0, limit)).map((c) => ({ ...c }));
  let lastTime = 0;
  out.forEach((c, i) => {
    const time = changelogs[i]?.date ?? c.date;
    if (time !== lastTime) {
      lastTime = time;
      return;
    }
    let moving = time;
    for (let j = i - 1; j >= 0 && out[j]?.date === moving; j--) {
      (out[j] as RpmChangelog).date++;
      moving++;
    }
  });
  return out;
}

/**
 * One <package> of other.xml with at most `limit` changelogs: the newest ones, written oldest
 * first as createrepo_c does.
 */
export function otherPackageXml(entry: RpmEntry, limit: number): string {
  const logs = changelogsAsCreaterepo(entry.meta.changelogs, limit).reverse();
  return (
    `<package${idAttrs(entry)}>\n` +
    `  ${versionXml(entry.meta)}\n` +
    logs
      .map(
        (c) =>
          `  <changelog${xmlAttrs({ author: c.author, date: c.date })}>${xmlEscape(c.text)}</changelog>\n`,
      )
      .join("") +
    `</package>\n`
  );
}

const ROOTS = {
  primary: `<metadata xmlns="${NS_COMMON}" xmlns:rpm="${NS_RPM}"`,
  filelists: `<filelists xmlns="${NS_FILELISTS}"`,
  other: `<otherdata xmlns="${NS_OTHER}"`,
} as const;
const ROOT_END = {
  primary: "</metadata>\n",
  filelists: "</filelists>\n",
  other: "</otherdata>\n",
} as const;

/** What comes before the packages of a document (the renderer concatenates the parts). */
export function metadataHeader(type: keyof typeof ROOTS, count: number): Uint8Array {
  return Buffer.from(`${XML_DECL}${ROOTS[type]} packages="${count}">\n`, "utf8");
}

/** What comes after the packages of a document. */
export function metadataFooter(type: keyof typeof ROOTS): Uint8Array {
  return Buffer.from(ROOT_END[type], "utf8");
}

export interface RepomdData {
  type: string;
  href: string;
  checksum: string;
  openChecksum: string;
  size: number;
  openSize: number;
  timestamp: number;
}

export function repomdXml(revision: number, data: readonly RepomdData[]): string {
  const items = data.map(
    (d) =>
      `  <data${xmlAttrs({ type: d.type })}>\n` +
      `    <checksum type="sha256">${d.checksum}</checksum>\n` +
      `    <open-checksum type="sha256">${d.openChecksum}</open-checksum>\n` +
      `    <location${xmlAttrs({ href: d.href })}/>\n` +
      `    <timestamp>${d.timestamp}</timestamp>\n` +
      `    <size>${d.size}</size>\n` +
      `    <open-size>${d.openSize}</open-size>\n` +
      `  </data>\n`,
  );
  return (
    XML_DECL +
    `<repomd xmlns="${NS_REPO}" xmlns:rpm="${NS_RPM}">\n` +
    `  <revision>${revision}</revision>\n` +
    items.join("") +
    `</repomd>\n`
  );
}
