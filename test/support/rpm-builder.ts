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
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

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

export {
  buildSyntheticRpm,
  syntheticRpmFilename,
  type SyntheticRpmInput,
} from "../../src/demo/packages/rpm.js";
