/**
 * Test RPMs, two ways:
 * - buildRpmsWithRpmbuild: the real rpmbuild on generated spec files (integration tests; the
 *   packages are exactly what a distribution would ship).
 * - buildSyntheticRpm: a pure-TS builder of minimal valid RPMs (lead, signature header with
 *   SHA256/MD5/SIZE/PAYLOADSIZE, main header with an immutable region, cpio "newc" payload,
 *   uncompressed or gzip). Fast enough to make 10,000 packages for benchmarks; rpm -qp and
 *   rpmkeys --checksig accept its output.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
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
} from "../../src/layout/formats/rpm-header.js";
import { RpmType, Sense, SigTag, Tag } from "../../src/layout/formats/rpm-tags.js";

const run = promisify(execFile);

// ---- rpmbuild ------------------------------------------------------------------------------

export interface SpecInput {
  name: string;
  version: string;
  release: string;
  epoch?: number;
  /** BuildArch: noarch or x86_64. */
  arch: "noarch" | "x86_64";
  summary?: string;
  /** Extra preamble lines (Requires:, Recommends:, Requires(pre):, ...). */
  preamble?: string[];
  /** Files to create: path → content. A path ending in "/" is a directory. */
  files: Record<string, string>;
  /** %ghost paths. */
  ghosts?: string[];
  /** Changelog entries, newest first: [date "Mon Jan 01 2024", author, text]. */
  changelog?: [string, string, string][];
  /** Build the source RPM (rpmbuild -bs) instead of the binary one. */
  source?: boolean;
  /** %description text (default: a line naming the package). */
  description?: string;
  /**
   * Write the spec in ISO-8859-1 instead of UTF-8, as old packages were: the header then holds
   * Latin-1 bytes, which rpmbuild accepts once told not to stop at invalid UTF-8.
   */
  latin1?: boolean;
}

function specText(s: SpecInput): string {
  const lines = [
    `Name: ${s.name}`,
    ...(s.epoch !== undefined ? [`Epoch: ${s.epoch}`] : []),
    `Version: ${s.version}`,
    `Release: ${s.release}`,
    `Summary: ${s.summary ?? `${s.name} test package`}`,
    "License: MIT",
    `URL: https://example.invalid/${s.name}`,
    `BuildArch: ${s.arch}`,
    ...(s.preamble ?? []),
    "%description",
    s.description ?? `${s.name}: a package built by the packrat-agent tests.`,
    "%install",
  ];
  for (const [p, content] of Object.entries(s.files)) {
    if (p.endsWith("/")) {
      lines.push(`mkdir -p %{buildroot}${p}`);
    } else {
      lines.push(`mkdir -p %{buildroot}${path.posix.dirname(p)}`);
      lines.push(`printf '%s' '${content.replace(/'/g, "")}' > %{buildroot}${p}`);
    }
  }
  lines.push("%files");
  for (const p of Object.keys(s.files)) lines.push(p.endsWith("/") ? `%dir ${p}` : p);
  for (const g of s.ghosts ?? []) lines.push(`%ghost ${g}`);
  if (s.changelog?.length) {
    lines.push("%changelog");
    for (const [date, author, text] of s.changelog) {
      lines.push(`* ${date} ${author}`, `- ${text}`, "");
    }
  }
  return lines.join("\n") + "\n";
}

/** Build each spec with rpmbuild under `dir`; returns the built RPM paths in spec order. */
export async function buildRpmsWithRpmbuild(
  dir: string,
  specs: readonly SpecInput[],
): Promise<string[]> {
  const out: string[] = [];
  for (const s of specs) {
    const top = path.join(dir, `top-${s.name}`);
    await mkdir(top, { recursive: true });
    const spec = path.join(top, `${s.name}.spec`);
    await writeFile(spec, specText(s), s.latin1 ? "latin1" : "utf8");
    await run(
      "rpmbuild",
      [
        "--define",
        `_topdir ${top}`,
        "--define",
        "_build_id_links none",
        // Fixed build time and host: the same spec builds the same RPM.
        "--define",
        "use_source_date_epoch_as_buildtime 1",
        "--define",
        "_buildhost packrat-test.invalid",
        ...(s.latin1 ? ["--define", "_invalid_encoding_terminates_build 0"] : []),
        "--nodeps",
        "--target",
        s.arch,
        s.source ? "-bs" : "-bb",
        spec,
      ],
      { env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000", LC_ALL: "C" } },
    );
    const rpmDir = s.source ? path.join(top, "SRPMS") : path.join(top, "RPMS", s.arch);
    const built = (await readdir(rpmDir)).filter((f) => f.endsWith(".rpm"));
    if (built.length !== 1) throw new Error(`rpmbuild made ${built.length} RPMs for ${s.name}`);
    out.push(path.join(rpmDir, built[0]!));
  }
  return out;
}

/** A varied set: epoch, noarch and x86_64, weak deps, pre-requires, several dirs, changelogs. */
export const STANDARD_SPECS: readonly SpecInput[] = [
  {
    name: "hello",
    epoch: 2,
    version: "1.0",
    release: "3",
    arch: "x86_64",
    summary: 'Hello <test> & "friends"',
    preamble: [
      "Requires(pre): /bin/sh",
      "Requires: bash >= 5.0",
      // Requirement forms createrepo_c treats specially (pre flag, duplicates, own files).
      "Requires(post): coreutils",
      "Requires: coreutils",
      "Requires(preun): sed",
      "Requires(pretrans): grep",
      "Requires: /usr/bin/hello",
      "Requires: bash >= 5.0",
      "Recommends: vim",
      "Suggests: emacs",
      "Supplements: hello-extra",
      "Enhances: world",
      "Conflicts: goodbye < 1.0",
      "Obsoletes: hello-old <= 0.9",
      "Provides: hello-api = 1.0",
    ],
    files: {
      "/usr/bin/hello": "#!/bin/sh\necho hi\n",
      "/etc/hello/": "",
      "/etc/hello/hello.conf": "conf\n",
      "/usr/share/doc/hello/README": "doc\n",
    },
    ghosts: ["/var/log/hello.log"],
    changelog: [
      ["Tue Jan 02 2024", "Ann Tester <ann@example.invalid> - 2:1.0-3", "second entry"],
      ["Mon Jan 01 2024", "Bob Tester <bob@example.invalid> - 2:1.0-2", "first entry"],
    ],
  },
  {
    name: "world-data",
    version: "0.5",
    release: "1",
    arch: "noarch",
    preamble: [
      "Requires: hello",
      "Provides: world",
      "Requires: libfoo >= 1:2.0-3",
      "Obsoletes: world-legacy",
      "Conflicts: world-bad = 0.1-1",
      "Suggests: hello >= 1.0",
    ],
    files: {
      "/opt/world/sbin/tool": "t\n",
      "/usr/lib/sendmail": "s\n",
      "/usr/share/world/a.txt": "a\n",
      "/usr/share/world/sub/b.txt": "b\n",
      "/usr/lib/world/": "",
    },
    changelog: [["Mon Jan 01 2024", "Carol <c@example.invalid> - 0.5-1", "initial"]],
  },
];

// ---- pure-TS synthetic RPMs -----------------------------------------------------------------

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
