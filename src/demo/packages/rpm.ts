/**
 * Minimal valid binary RPMs built in memory (lead, signature header with SHA256/MD5/SIZE/
 * PAYLOADSIZE, main header with an immutable region, cpio "newc" payload, uncompressed or
 * gzip): the demo's sample packages and the tests' synthetic ones. rpm -qp and rpmkeys
 * --checksig accept them.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import {
  binEntry,
  encodeHeader,
  int16Entry,
  int32Entry,
  LEAD_MAGIC,
  LEAD_SIZE,
  stringArrayEntry,
  stringEntry,
  type NewEntry,
} from "../../layout/formats/rpm-header.js";
import { RpmType, Sense, SigTag, Tag } from "../../layout/formats/rpm-tags.js";

export interface SyntheticRpmInput {
  name: string;
  version: string;
  release: string;
  epoch?: number;
  arch?: string;
  summary?: string;
  description?: string;
  buildTime?: number;
  requires?: { name: string; flags?: number; version?: string }[];
  provides?: { name: string; flags?: number; version?: string }[];
  /** Regular files: absolute path → content. */
  files?: Record<string, string>;
  changelog?: { time: number; author: string; text: string }[];
  compress?: "none" | "gzip";
}

function cpioEntry(name: string, mode: number, data: Uint8Array, ino: number): Uint8Array {
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const nameBytes = Buffer.from(`${name}\0`);
  const head = Buffer.from(
    "070701" +
      hex(ino) +
      hex(mode) +
      hex(0) +
      hex(0) +
      hex(1) +
      hex(0) +
      hex(data.length) +
      hex(0) +
      hex(0) +
      hex(0) +
      hex(0) +
      hex(nameBytes.length) +
      hex(0),
    "ascii",
  );
  const pad = (n: number) => (4 - (n % 4)) % 4;
  const headLen = head.length + nameBytes.length;
  return Buffer.concat([
    head,
    nameBytes,
    Buffer.alloc(pad(headLen)),
    data,
    Buffer.alloc(pad(data.length)),
  ]);
}

function depEntries(
  deps: readonly { name: string; flags?: number; version?: string }[],
  nameTag: number,
  flagsTag: number,
  versionTag: number,
): NewEntry[] {
  if (deps.length === 0) return [];
  return [
    stringArrayEntry(
      nameTag,
      deps.map((d) => d.name),
    ),
    int32Entry(
      flagsTag,
      deps.map((d) => d.flags ?? 0),
    ),
    stringArrayEntry(
      versionTag,
      deps.map((d) => d.version ?? ""),
    ),
  ];
}

// File-list tags only the builder writes (rpmtag.h).
const FILERDEVS = 1033;
const FILEMTIMES = 1034;
const FILEDIGESTS = 1035;
const FILELINKTOS = 1036;
const FILEUSERNAME = 1039;
const FILEGROUPNAME = 1040;
const FILEVERIFYFLAGS = 1045;
const FILEDEVICES = 1095;
const FILEINODES = 1096;
const FILELANGS = 1097;
const FILEDIGESTALGO = 5011;
const PAYLOADDIGEST = 5092;
const PAYLOADDIGESTALGO = 5093;
const PAYLOADDIGESTALT = 5097;

/** A minimal valid binary RPM, built in memory. */
export function buildSyntheticRpm(input: SyntheticRpmInput): Uint8Array {
  const arch = input.arch ?? "noarch";
  const files = Object.entries(input.files ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  const dirs: string[] = [];
  const dirIndexes: number[] = [];
  const basenames: string[] = [];
  const cpio: Uint8Array[] = [];
  let installed = 0;
  files.forEach(([p, content], i) => {
    const slash = p.lastIndexOf("/") + 1;
    const dir = p.slice(0, slash);
    let di = dirs.indexOf(dir);
    if (di < 0) di = dirs.push(dir) - 1;
    dirIndexes.push(di);
    basenames.push(p.slice(slash));
    const data = Buffer.from(content);
    installed += data.length;
    cpio.push(cpioEntry(`.${p}`, 0o100644, data, i + 1));
  });
  cpio.push(cpioEntry("TRAILER!!!", 0, new Uint8Array(), 0));
  const archive = Buffer.concat(cpio);
  const payload = input.compress === "gzip" ? gzipSync(archive) : archive;
  const contents = files.map(([, c]) => Buffer.from(c));
  const provides = [
    ...(input.provides ?? []),
    {
      name: input.name,
      flags: Sense.EQUAL,
      version: `${input.epoch !== undefined ? `${input.epoch}:` : ""}${input.version}-${input.release}`,
    },
  ];
  const entries: NewEntry[] = [
    stringEntry(Tag.NAME, input.name),
    stringEntry(Tag.VERSION, input.version),
    stringEntry(Tag.RELEASE, input.release),
    ...(input.epoch !== undefined ? [int32Entry(Tag.EPOCH, [input.epoch])] : []),
    stringArrayEntry(Tag.HEADERI18NTABLE, ["C"]),
    stringArrayEntry(Tag.SUMMARY, [input.summary ?? `${input.name} synthetic`], RpmType.I18NSTRING),
    stringArrayEntry(
      Tag.DESCRIPTION,
      [input.description ?? `${input.name}: a synthetic package.`],
      RpmType.I18NSTRING,
    ),
    int32Entry(Tag.BUILDTIME, [input.buildTime ?? 1700000000]),
    stringEntry(Tag.BUILDHOST, "synthetic.invalid"),
    int32Entry(Tag.SIZE, [installed]),
    stringEntry(Tag.LICENSE, "MIT"),
    stringArrayEntry(Tag.GROUP, ["Unspecified"], RpmType.I18NSTRING),
    stringEntry(Tag.OS, "linux"),
    stringEntry(Tag.ARCH, arch),
    stringEntry(Tag.SOURCERPM, `${input.name}-${input.version}-${input.release}.src.rpm`),
    stringEntry(Tag.PAYLOADFORMAT, "cpio"),
    stringEntry(Tag.PAYLOADCOMPRESSOR, input.compress === "gzip" ? "gzip" : "identity"),
    stringEntry(Tag.PAYLOADFLAGS, input.compress === "gzip" ? "9" : "0"),
    // Without a payload digest rpm 4.14+ reports "DIGESTS SIGNATURES NOT OK" for a package
    // whose only signature is a header signature.
    stringArrayEntry(PAYLOADDIGEST, [createHash("sha256").update(payload).digest("hex")]),
    int32Entry(PAYLOADDIGESTALGO, [8]),
    stringArrayEntry(PAYLOADDIGESTALT, [createHash("sha256").update(archive).digest("hex")]),
    ...depEntries(provides, Tag.PROVIDENAME, Tag.PROVIDEFLAGS, Tag.PROVIDEVERSION),
    ...depEntries(
      [
        ...(input.requires ?? []),
        {
          name: "rpmlib(CompressedFileNames)",
          flags: Sense.LESS | Sense.EQUAL | Sense.RPMLIB,
          version: "3.0.4-1",
        },
      ],
      Tag.REQUIRENAME,
      Tag.REQUIREFLAGS,
      Tag.REQUIREVERSION,
    ),
  ];
  if (files.length > 0) {
    entries.push(
      int32Entry(
        Tag.FILESIZES,
        contents.map((c) => c.length),
      ),
      int16Entry(
        Tag.FILEMODES,
        files.map(() => 0o100644),
      ),
      int32Entry(
        Tag.FILEFLAGS,
        files.map(() => 0),
      ),
      int32Entry(Tag.DIRINDEXES, dirIndexes),
      // rpm's file list wants owners, times, digests, links, devices and inodes too.
      stringArrayEntry(
        FILEUSERNAME,
        files.map(() => "root"),
      ),
      stringArrayEntry(
        FILEGROUPNAME,
        files.map(() => "root"),
      ),
      int32Entry(
        FILEMTIMES,
        files.map(() => input.buildTime ?? 1700000000),
      ),
      stringArrayEntry(
        FILEDIGESTS,
        contents.map((c) => createHash("sha256").update(c).digest("hex")),
      ),
      int32Entry(FILEDIGESTALGO, [8]),
      stringArrayEntry(
        FILELINKTOS,
        files.map(() => ""),
      ),
      int16Entry(
        FILERDEVS,
        files.map(() => 0),
      ),
      int32Entry(
        FILEDEVICES,
        files.map(() => 1),
      ),
      int32Entry(
        FILEINODES,
        files.map((_, i) => i + 1),
      ),
      stringArrayEntry(
        FILELANGS,
        files.map(() => ""),
      ),
      int32Entry(
        FILEVERIFYFLAGS,
        files.map(() => 0xffffffff),
      ),
      stringArrayEntry(Tag.BASENAMES, basenames),
      stringArrayEntry(Tag.DIRNAMES, dirs),
    );
  }
  if (input.changelog?.length) {
    entries.push(
      int32Entry(
        Tag.CHANGELOGTIME,
        input.changelog.map((c) => c.time),
      ),
      stringArrayEntry(
        Tag.CHANGELOGNAME,
        input.changelog.map((c) => c.author),
      ),
      stringArrayEntry(
        Tag.CHANGELOGTEXT,
        input.changelog.map((c) => c.text),
      ),
    );
  }
  const header = encodeHeader(Tag.HEADERIMMUTABLE, entries);
  const md5 = createHash("md5").update(header).update(payload).digest();
  const sha256 = createHash("sha256").update(header).digest("hex");
  const sig = encodeHeader(Tag.HEADERSIGNATURES, [
    stringEntry(SigTag.SHA256, sha256),
    int32Entry(SigTag.SIZE, [header.length + payload.length]),
    binEntry(SigTag.MD5, md5),
    int32Entry(SigTag.PAYLOADSIZE, [archive.length]),
  ]);
  const sigPad = (8 - (sig.length % 8)) % 8;

  const lead = new Uint8Array(LEAD_SIZE);
  const dv = new DataView(lead.buffer);
  lead.set(LEAD_MAGIC, 0);
  lead[4] = 3;
  lead[5] = 0;
  dv.setUint16(6, 0); // binary
  dv.setUint16(8, 1); // archnum (unused by rpm 4)
  lead.set(Buffer.from(`${input.name}-${input.version}-${input.release}`.slice(0, 65)), 10);
  dv.setUint16(76, 1); // osnum linux
  dv.setUint16(78, 5); // signature type: header-style

  return Buffer.concat([lead, sig, Buffer.alloc(sigPad), header, payload]);
}

/** The file name rpm would give a synthetic package. */
export function syntheticRpmFilename(input: SyntheticRpmInput): string {
  return `${input.name}-${input.version}-${input.release}.${input.arch ?? "noarch"}.rpm`;
}
