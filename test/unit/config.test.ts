import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type * as FsPromises from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  ConfigInvalidError,
  DEFAULT_CONFIG_PATH,
  describeSettings,
  loadConfig,
  parseConfig,
  parseConfigWithWarnings,
  readConfig,
  resolveConfigPath,
} from "../../src/agent/config.js";
import { parseIni, type IniDocument } from "../../src/agent/config/ini.js";
import { interpolate } from "../../src/agent/config/interpolation.js";
import {
  keyOf,
  keysOf,
  LAYOUT_KEYS,
  MIRROR_KEYS,
  PACKRAT_KEYS,
  S3_KEYS,
} from "../../src/agent/config/keys.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { LayoutSettings } from "../../src/layout/types.js";
import { closest } from "../../src/agent/config/suggest.js";
import { isPackratError, PackratError } from "../../src/errors.js";
import { MIRROR_DEFAULTS, S3_DEFAULTS, type Settings } from "../../src/settings.js";

/** readFile fails with EACCES for this path, as it would for a non-root user. */
const { DENIED_PATH } = vi.hoisted(() => ({ DENIED_PATH: "/nonexistent-denied/mirror.conf" }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof FsPromises>();
  const readFile = ((path: string, ...rest: unknown[]) =>
    path === DENIED_PATH
      ? Promise.reject(Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" }))
      : (fs.readFile as (...args: unknown[]) => Promise<unknown>)(
          path,
          ...rest,
        )) as typeof fs.readFile;
  return { ...fs, readFile, default: { ...fs, readFile } };
});

const REPO = join(import.meta.dirname, "..", "..");
const EXAMPLE = join(REPO, "etc", "mirror.conf.example");
const ORACLE = join(REPO, "test", "fixtures", "config", "configparser-oracle.py");

const MINIMAL = `[packrat]
host: http://packrat
name: mirror

[mirror]
root_dir: /var/www/repo
`;

/** The problems a text produces; fails the test if it parses. */
function problemsOf(text: string, source = "mirror.conf"): string[] {
  try {
    parseConfigWithWarnings(text, source);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigInvalidError);
    return [...(err as ConfigInvalidError).problems];
  }
  throw new Error("expected the config to be refused");
}

function withMirror(lines: string): string {
  return `${MINIMAL}${lines}\n`;
}

/** The only problem a text produces. */
function problemOf(text: string): string {
  const problems = problemsOf(text);
  expect(problems).toHaveLength(1);
  return problems[0]!;
}

function rawSections(doc: IniDocument): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [name, section] of doc.sections) {
    out[name] = Object.fromEntries([...section.entries].map(([k, e]) => [k, e.value]));
  }
  return out;
}

describe("parseIni: Python configparser's dialect", () => {
  it("reads `key: value` and `key = value`; the first `:` or `=` splits", () => {
    const doc = parseIni(
      "[s]\nA: 1\nb = 2\nurl = http://x:80/p\nc: d = e\ne = f: g\nempty:\nsp   =   padded value   \n",
    );
    expect(doc.problems).toEqual([]);
    expect(rawSections(doc)).toEqual({
      s: {
        a: "1",
        b: "2",
        url: "http://x:80/p",
        c: "d = e",
        e: "f: g",
        empty: "",
        sp: "padded value",
      },
    });
  });

  it("skips full-line `#` and `;` comments, indented ones too, and keeps inline ones in the value", () => {
    const doc = parseIni("# top\n; top\n[s]\n  # indented\nk: a ; b # c\n;k2: no\n#k3: no\n");
    expect(doc.problems).toEqual([]);
    expect(rawSections(doc)).toEqual({ s: { k: "a ; b # c" } });
  });

  it("joins indented continuation lines with \\n, keeping inner blank lines and dropping trailing ones", () => {
    const doc = parseIni(
      "[s]\nk: first\n  second\n\n\tthird\n  # a comment is skipped\n   fourth\n\n\nnext: 1\nempty:\n  a\n",
    );
    expect(doc.problems).toEqual([]);
    expect(rawSections(doc)).toEqual({
      s: { k: "first\nsecond\n\nthird\nfourth", next: "1", empty: "\na" },
    });
    expect(doc.sections.get("s")?.entries.get("next")?.line).toBe(10);
  });

  it("remembers each key's line and each section's line", () => {
    const doc = parseIni("\n[a]\nx: 1\n\n[b]\n\ny = 2\n");
    expect(doc.sections.get("a")?.line).toBe(2);
    expect(doc.sections.get("a")?.entries.get("x")?.line).toBe(3);
    expect(doc.sections.get("b")?.entries.get("y")?.line).toBe(7);
  });

  it("lowercases keys, keeps section names as written, reads CRLF, CR and a BOM", () => {
    const doc = parseIni("\ufeff[Mirror]\r\nROOT_Dir: /x\r\nOther: y\rthird: z");
    expect(doc.problems).toEqual([]);
    expect(rawSections(doc)).toEqual({ Mirror: { root_dir: "/x", other: "y", third: "z" } });
  });

  it("treats [DEFAULT] as the fallback section, not as a section", () => {
    const doc = parseIni("[DEFAULT]\nk: 1\n[s]\nj: 2\n");
    expect([...doc.sections.keys()]).toEqual(["s"]);
    expect(doc.defaults.entries.get("k")?.value).toBe("1");
  });

  it("reports repeated sections and keys (strict mode), keys before any section and bogus lines", () => {
    const doc = parseIni(
      "orphan: 1\nmore: 2\n[s]\nk: 1\nK = 2\n[t]\n[s]\nk: 3\nnot a key line\n= no key\n",
    );
    expect(doc.problems).toEqual([
      {
        line: 1,
        message:
          '"orphan: 1" comes before any [section] header: the file must start with a section such as [packrat]',
      },
      { line: 5, message: "[s] k is set again (first on line 4): keep one of them" },
      { line: 7, message: "section [s] appears again (first on line 3): merge the two into one" },
      { line: 8, message: "[s] k is set again (first on line 4): keep one of them" },
      {
        line: 9,
        message:
          '"not a key line" is not a "key: value" line, a [section] header or a comment (an indented line continues the value above it)',
      },
      { line: 10, message: '"= no key" has no key before its "="' },
    ]);
    // The first value stays.
    expect(doc.sections.get("s")?.entries.get("k")?.value).toBe("1");
  });
});

describe("parseIni agrees with Python's configparser", () => {
  // Lines that exercise every branch of configparser's reader.
  const LINE = fc.constantFrom(
    "[packrat]",
    "[mirror]",
    "[Mirror]",
    "[DEFAULT]",
    "[a]b]",
    "[x] trailing",
    "host: http://packrat",
    "host = http://other",
    "Name: Mirror",
    "psk: a%%b",
    "psk: a%b",
    "ref: %(name)s!",
    "loop: %(loop)s",
    "k: v ; not a comment",
    "k2=",
    "k3 : x = y",
    "  indented: value",
    "    continued line",
    "\tTabbed = 1",
    "# comment",
    "; comment",
    "   # indented comment",
    "",
    "   ",
    "bogus line",
    "= no key",
    ": also no key",
    "[]",
    "[ spaced ]",
    "Key With Spaces = v",
    "pct: 50%(",
    "up: %(NAME)s/%(host)s",
    "\u00a0nbsp: x\u00a0",
  );
  const TEXT = fc
    .tuple(fc.array(LINE, { maxLength: 12 }), fc.constantFrom("\n", "\r\n", "\r"))
    .map(([lines, eol]) => lines.join(eol) + eol);

  interface OracleOk {
    ok: true;
    sections: Record<string, Record<string, string>>;
    defaults: Record<string, string>;
    interpolated: Record<string, Record<string, { value: string } | { error: string }>>;
  }
  interface OracleError {
    ok: false;
    error: string;
    lines: (number | null)[];
  }

  function oracle(texts: string[]): (OracleOk | OracleError)[] {
    // A missing python3 fails the test: CI installs it (python3-pip in .ci/packages.txt).
    const out = execFileSync("python3", [ORACLE], { input: JSON.stringify(texts) });
    return JSON.parse(out.toString()) as (OracleOk | OracleError)[];
  }

  const CURATED = [
    MINIMAL,
    "[s]\nk: 1\n  2\n\n  3\n\n\n[t]\nx = %(k)s\n",
    "[s]\n  indented: first\n  second: not a continuation\n",
    "[s]\nk: a\n  # comment inside\n  b\n",
    "[s]\nbad line\n  continues previous key\n",
    "[DEFAULT]\nbase: /srv\n[s]\npath: %(base)s/repo\n",
    "[s]\nk: 100%%\nj: 5%\n",
    "[a]b]\nk: 1\n[x] trailing\nk: 2\n",
    "k: before\n[s]\n",
    "[s]\n[s]\n",
    "[s]\nk: 1\nk: 2\n",
    "[DEFAULT]\n[DEFAULT]\nk: 1\n",
    // Python's whitespace is not JavaScript's: U+00A0, U+0085, U+001F, form feed, U+2028, BOM.
    "[s]\nk:\u00a0v\u00a0\n\u00a0 cont\n",
    "[s]\nk: v\f\n\u001f: x\n",
    "[s]\nj: \u0085x\u0085\n\u2028k: v\u2028\n",
    "[s]\nk\ufeff: \ufeffv\n",
    "[s]\n\tk: 1\n\t\tcont\n  j: 2\n",
  ];

  it("on curated texts", () => {
    const results = oracle(CURATED);
    CURATED.forEach((text, i) => compare(text, results[i]!));
  });

  it("on 400 generated texts", () => {
    const texts = fc.sample(TEXT, { numRuns: 400, seed: 20261121 });
    const results = oracle(texts);
    texts.forEach((text, i) => compare(text, results[i]!));
  });

  function compare(text: string, py: OracleOk | OracleError): void {
    const doc = parseIni(text);
    const context = JSON.stringify(text);
    if (!py.ok) {
      expect(doc.problems.length, `${context}: configparser raised ${py.error}`).toBeGreaterThan(0);
      // configparser stops at its first strict error; bogus lines it collects all of.
      if (py.error === "ParsingError") {
        expect(
          doc.problems.map((p) => p.line),
          context,
        ).toEqual(py.lines);
      } else {
        // A strict error raises at once, before the bogus lines collected so far are reported.
        expect(
          doc.problems.map((p) => p.line),
          context,
        ).toContain(py.lines[0]);
      }
      return;
    }
    expect(doc.problems, context).toEqual([]);
    expect(rawSections(doc), context).toEqual(py.sections);
    expect(
      Object.fromEntries([...doc.defaults.entries].map(([k, e]) => [k, e.value])),
      context,
    ).toEqual(py.defaults);
    for (const [name, keys] of Object.entries(py.interpolated)) {
      const section = doc.sections.get(name);
      const lookup = (k: string): string | undefined =>
        (section?.entries.get(k) ?? doc.defaults.entries.get(k))?.value;
      for (const [key, expected] of Object.entries(keys)) {
        const ours = interpolate(lookup(key) ?? "", lookup);
        if ("value" in expected) expect(ours, `${context} [${name}] ${key}`).toEqual(expected);
        else expect("problem" in ours, `${context} [${name}] ${key}`).toBe(true);
      }
    }
  }
});

describe("interpolation (configparser's BasicInterpolation)", () => {
  const values: Record<string, string> = { a: "x", b: "%(a)s-%(a)s", self: "%(self)s", pct: "5%%" };
  const lookup = (k: string): string | undefined => values[k];

  it("expands %% and %(key)s, recursively", () => {
    expect(interpolate("100%% of %(B)s and %(pct)s", lookup)).toEqual({
      value: "100% of x-x and 5%",
    });
  });

  it("refuses a lone %, an unknown key and a loop, without quoting the value", () => {
    expect(interpolate("s3cr%t", lookup)).toEqual({
      problem:
        '"%" must be followed by "%" or "(" as in Python\'s configparser: write "%%" for a literal "%"',
    });
    expect(interpolate("%(nope)s", lookup)).toEqual({
      problem: "%(nope)s refers to a key that is not set in this section or in [DEFAULT]",
    });
    expect(interpolate("%(self)s", lookup)).toHaveProperty("problem");
    const unfinished = interpolate("s3cret%(x", lookup);
    expect(unfinished).toHaveProperty("problem");
    expect(JSON.stringify(unfinished)).not.toContain("s3cret");
  });
});

/** The layout options' declared defaults, as Settings.layouts holds them. */
function layoutDefaults(): LayoutSettings {
  const { mirrorDescription: _unused, ...defaults } = DEFAULT_LAYOUT_OPTIONS;
  return defaults;
}

describe("parseConfig", () => {
  it("fills every optional key from MIRROR_DEFAULTS and freezes the result", () => {
    const settings = parseConfig(MINIMAL, "mirror.conf");
    expect(settings).toEqual({
      source: "mirror.conf",
      packrat: { host: "http://packrat", name: "mirror", username: null, psk: null, proxy: null },
      mirror: { ...MIRROR_DEFAULTS, rootDir: "/var/www/repo" },
      layouts: layoutDefaults(),
      s3: null,
      repos: {},
    });
    expect(Object.isFrozen(settings)).toBe(true);
    expect(Object.isFrozen(settings.mirror)).toBe(true);
    expect(Object.isFrozen(settings.mirror.keepFileList)).toBe(true);
    // The result does not share MIRROR_DEFAULTS' arrays.
    expect(settings.mirror.keepFileList).not.toBe(MIRROR_DEFAULTS.keepFileList);
  });

  it("reads every key, in `key = value` syntax", () => {
    const text = `
[packrat]
host = https://packrat.example.com:8443/
name = prod
username = mirror-reader
psk = p%%ss word
proxy = http://user:pw@proxy.example.com:3128

[mirror]
description = Prod mirror
root_dir = /srv/repo/
gpg_sign_key = 0x1f2e3d4c5b6a7988
state_db = /var/lib/packrat/state.db
full_sync_interval = 600
keep_file_list = index.html, ,robots.txt ,/srv/repo/extra/readme.txt
gpg_key_file = /etc/packrat/key.asc
gpg_passphrase_file = /etc/packrat/key.pass
public_key_name = prod-key
key_expiry_warn_days = 14
download_concurrency = 8
download_min_rate = 4096
download_min_rate_window = 10
download_deadline_base = 60
deep_verify_every = 3
max_removal_ratio = .25
trigger_debounce_ms = 1_000
metadata_grace_seconds = 3600
poll_timeout = 60
request_timeout = 45
watch_tree = Off
apt_architectures = amd64, arm64,i386
apt_valid_until_seconds = 604800
yum_compression = zstd
rpm_changelog_limit = 0
sign_rpm_packages = YES
pacman_repo_names = arch-prod:prod, arch-dev : dev
source_events_listen = 127.0.0.1:8095
metrics_listen = 127.0.0.1:9100
log_level = debug
publish_failed = yes
publish_deprecated = no

[s3]
bucket = packages.example
prefix = /mirror/prod
endpoint = https://s3.example.com:7480/
region = eu-west-1
path_style = yes
access_key_id = AKIAEXAMPLE
secret_access_key = c2VjcmV0
acl = public-read
upload_concurrency = 16

[repo prod-apt]
publish_failed = no

[repo prod-yum]
publish_deprecated = yes
`;
    const { settings, warnings } = parseConfigWithWarnings(text, "/etc/packrat/mirror.conf");
    expect(warnings).toEqual([]);
    const expected: Settings = {
      source: "/etc/packrat/mirror.conf",
      packrat: {
        host: "https://packrat.example.com:8443",
        name: "prod",
        username: "mirror-reader",
        psk: "p%ss word",
        proxy: "http://user:pw@proxy.example.com:3128",
      },
      mirror: {
        description: "Prod mirror",
        rootDir: "/srv/repo",
        gpgSignKey: "1F2E3D4C5B6A7988",
        stateDb: "/var/lib/packrat/state.db",
        fullSyncInterval: 600,
        keepFileList: ["index.html", "robots.txt", "extra/readme.txt"],
        gpgKeyFile: "/etc/packrat/key.asc",
        gpgPassphraseFile: "/etc/packrat/key.pass",
        publicKeyName: "prod-key",
        keyExpiryWarnDays: 14,
        downloadConcurrency: 8,
        downloadMinRate: 4096,
        downloadMinRateWindow: 10,
        downloadDeadlineBase: 60,
        deepVerifyEvery: 3,
        maxRemovalRatio: 0.25,
        triggerDebounceMs: 1000,
        metadataGraceSeconds: 3600,
        pollTimeout: 60,
        requestTimeout: 45,
        watchTree: false,
        sourceEventsListen: "127.0.0.1:8095",
        metricsListen: "127.0.0.1:9100",
        logLevel: "debug",
        publishFailed: true,
        publishDeprecated: false,
      },
      layouts: {
        aptArchitectures: ["amd64", "arm64", "i386"],
        aptValidUntilSeconds: 604800,
        yumCompression: "zstd",
        rpmChangelogLimit: 0,
        signRpmPackages: true,
        pacmanRepoNames: { "arch-prod": "prod", "arch-dev": "dev" },
      },
      s3: {
        bucket: "packages.example",
        prefix: "mirror/prod/",
        endpoint: "https://s3.example.com:7480",
        region: "eu-west-1",
        pathStyle: true,
        accessKeyId: "AKIAEXAMPLE",
        secretAccessKey: "c2VjcmV0",
        acl: "public-read",
        uploadConcurrency: 16,
      },
      repos: { "prod-apt": { publishFailed: false }, "prod-yum": { publishDeprecated: true } },
    };
    expect(settings).toEqual(expected);
    // The test above sets every key the table knows.
    for (const key of [...keysOf("packrat"), ...keysOf("mirror"), ...keysOf("s3")]) {
      expect(text).toMatch(new RegExp(`^${key} = `, "m"));
    }
  });

  it("reads a config written exactly as the original agent's, and says how to export the key", () => {
    const original = `[packrat]
host: http://packrat
name: mirror
psk: secret
[mirror]
description: Packrat Mirror
root_dir: /var/www/repo
gpg_sign_key: 4A9E8B1C
state_db: /var/lib/packratAgent/state.db
full_sync_interval: 900
keep_file_list: repo-key,index.html
`;
    expect(problemsOf(original)).toEqual([
      'mirror.conf:8: [mirror] gpg_sign_key = "4A9E8B1C": gpg_key_file is not set. This agent signs ' +
        "with OpenPGP.js and never runs a gpg binary or reads a keyring, so export the key once: " +
        "gpg --export-secret-subkeys --armor 4A9E8B1C > /etc/packrat/signing-key.asc && " +
        "chmod 600 /etc/packrat/signing-key.asc, then add the line " +
        '"gpg_key_file: /etc/packrat/signing-key.asc" under [mirror]',
    ]);

    const fixed = parseConfig(
      `${original}gpg_key_file: /etc/packrat/signing-key.asc\n`,
      "mirror.conf",
    );
    expect(fixed.packrat).toEqual({
      host: "http://packrat",
      name: "mirror",
      username: null,
      psk: "secret",
      proxy: null,
    });
    expect(fixed.mirror).toMatchObject({
      description: "Packrat Mirror",
      rootDir: "/var/www/repo",
      gpgSignKey: "4A9E8B1C",
      gpgKeyFile: "/etc/packrat/signing-key.asc",
      stateDb: "/var/lib/packratAgent/state.db",
      fullSyncInterval: 900,
      keepFileList: ["repo-key", "index.html"],
    });
  });

  it("reads the original agent's sample: empty values unset, absolute keep paths made relative", () => {
    // mirror.conf.sample of the Python packrat-agent.
    const sample = `[packrat]
host: http://127.0.0.1:80
name: dev
psk: dev
proxy:

[mirror]
description: dev-mirror
root_dir: /var/www/repo
gpg_sign_key:
state_db: /var/lib/packratAgent/state.db
full_sync_interval: 900
keep_file_list: /var/www/repo/repo-key
`;
    const { settings, warnings } = parseConfigWithWarnings(sample, "mirror.conf");
    expect(warnings).toEqual([]);
    expect(settings.packrat).toEqual({
      host: "http://127.0.0.1:80",
      name: "dev",
      username: null,
      psk: "dev",
      proxy: null,
    });
    expect(settings.mirror.gpgSignKey).toBeNull();
    expect(settings.mirror.keepFileList).toEqual(["repo-key"]);
  });

  it("takes keys from [DEFAULT] and interpolates %(key)s", () => {
    const settings = parseConfig(
      "[DEFAULT]\nbase: /srv/packrat\n[packrat]\nhost: http://m\nname: n\n" +
        "[mirror]\nroot_dir: %(base)s/repo\nstate_db: %(base)s/state.db\n",
      "mirror.conf",
    );
    expect(settings.mirror.rootDir).toBe("/srv/packrat/repo");
    expect(settings.mirror.stateDb).toBe("/srv/packrat/state.db");
  });

  it("reads continuation lines as list items", () => {
    const settings = parseConfig(
      withMirror("keep_file_list:\n    index.html\n    robots.txt,\n    favicon.ico"),
      "mirror.conf",
    );
    expect(settings.mirror.keepFileList).toEqual(["index.html", "robots.txt", "favicon.ico"]);
  });

  it("reads booleans as configparser's getboolean does", () => {
    for (const [raw, value] of [
      ["1", true],
      ["yes", true],
      ["True", true],
      ["ON", true],
      ["0", false],
      ["No", false],
      ["false", false],
      ["off", false],
    ] as const) {
      expect(parseConfig(withMirror(`watch_tree: ${raw}`), "m").mirror.watchTree).toBe(value);
    }
  });

  it("accepts the key ID and fingerprint forms", () => {
    const key = (id: string): string | null =>
      parseConfig(withMirror(`gpg_sign_key: ${id}\ngpg_key_file: /etc/k.asc`), "m").mirror
        .gpgSignKey;
    expect(key("4a9e8b1c")).toBe("4A9E8B1C");
    expect(key("0X4A9E8B1C4A9E8B1C")).toBe("4A9E8B1C4A9E8B1C");
    expect(key("ABCD EF01 2345 6789 ABCD  EF01 2345 6789 ABCD EF01")).toBe(
      "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
    );
    expect(key("a".repeat(64))).toBe("A".repeat(64));
  });

  it("strips one trailing slash from host and accepts names, IPv4, IPv6 and ports", () => {
    const host = (h: string): string =>
      parseConfig(MINIMAL.replace("http://packrat", h), "m").packrat!.host;
    expect(host("http://packrat/")).toBe("http://packrat");
    expect(host("HTTPS://Packrat.Example.com:8443")).toBe("https://Packrat.Example.com:8443");
    expect(host("http://10.0.0.5:8080")).toBe("http://10.0.0.5:8080");
    expect(host("http://[::1]:8080/")).toBe("http://[::1]:8080");
  });
});

describe("parseConfig problems", () => {
  it("names file:line, section, key, the value found and what was expected", () => {
    expect(problemOf(withMirror("full_sync_interval: ten"))).toBe(
      'mirror.conf:7: [mirror] full_sync_interval = "ten": expected whole seconds, e.g. 900',
    );
    expect(problemOf(withMirror("full_sync_interval: 30"))).toBe(
      'mirror.conf:7: [mirror] full_sync_interval = "30": expected whole seconds from 60 to 2147483, e.g. 900',
    );
    expect(problemOf(MINIMAL.replace("http://packrat", "http://packrat/api/v2/"))).toBe(
      'mirror.conf:2: [packrat] host = "http://packrat/api/v2/": expected http(s)://name[:port] ' +
        "with no path (the agent adds /api/v2/ itself), e.g. http://packrat.example.com:8080",
    );
    expect(problemOf(MINIMAL.replace("/var/www/repo", "var/www/repo"))).toBe(
      'mirror.conf:6: [mirror] root_dir = "var/www/repo": expected an absolute path, e.g. /var/www/repo',
    );
  });

  it("says where to add a missing required key", () => {
    expect(problemsOf("[packrat]\nhost: http://packrat\n\n[mirror]\ndescription: x\n")).toEqual([
      'mirror.conf:1: [packrat] name is missing: add a line "name: prod" (this mirror\'s name on the master) under [packrat]',
      'mirror.conf:4: [mirror] root_dir is missing: add a line "root_dir: /var/www/repo" (the directory the web server publishes) under [mirror]',
    ]);
    expect(problemsOf("[mirror]\nroot_dir: /var/www/repo\nhost: http://packrat\n")).toEqual([
      'mirror.conf: [packrat] host is missing: add a [packrat] section with a line "host: http://packrat.example.com" ' +
        "(the packrat master's URL); it is on line 3 under [mirror], which is the wrong section",
      'mirror.conf: [packrat] name is missing: add a [packrat] section with a line "name: prod" ' +
        "(this mirror's name on the master)",
    ]);
    expect(problemsOf("")).toHaveLength(3);
    expect(problemOf(MINIMAL.replace("root_dir", "root_dri"))).toBe(
      'mirror.conf:5: [mirror] root_dir is missing: add a line "root_dir: /var/www/repo" ' +
        '(the directory the web server publishes) under [mirror]; is "root_dri" on line 6 meant to be root_dir?',
    );
    expect(problemOf(MINIMAL.replace("name: mirror", "name:"))).toBe(
      `mirror.conf:3: [packrat] name = "": expected the mirror's name on the master, without spaces, ":" or "/", e.g. prod`,
    );
  });

  it("collects every problem at once, in file order, in one PACKRAT_CONFIG_INVALID", () => {
    const text = `[packrat]
host: packrat:8080
name: mirror
psk: bad%value
stray line

[mirror]
root_dir: /var/www/repo
download_concurrency: 0
max_removal_ratio: 1.5
download_concurrency: 2
log_level: loud
`;
    let error: unknown;
    try {
      parseConfig(text, "/etc/packrat/mirror.conf");
    } catch (err) {
      error = err;
    }
    expect(isPackratError(error, "PACKRAT_CONFIG_INVALID")).toBe(true);
    const message = (error as PackratError).message;
    expect(message.split("\n")).toEqual([
      "/etc/packrat/mirror.conf has 7 problems:",
      '/etc/packrat/mirror.conf:2: [packrat] host = "packrat:8080": expected http(s)://name[:port] with no path (the agent adds /api/v2/ itself), e.g. http://packrat.example.com:8080 (the scheme is missing)',
      '/etc/packrat/mirror.conf:4: [packrat] psk = "[redacted]": "%" must be followed by "%" or "(" as in Python\'s configparser: write "%%" for a literal "%"',
      '/etc/packrat/mirror.conf:5: "stray line" is not a "key: value" line, a [section] header or a comment (an indented line continues the value above it)',
      '/etc/packrat/mirror.conf:9: [mirror] download_concurrency = "0": expected a whole number of downloads from 1 to 64, e.g. 4',
      '/etc/packrat/mirror.conf:10: [mirror] max_removal_ratio = "1.5": expected a fraction from 0 to 1, e.g. 0.5',
      "/etc/packrat/mirror.conf:11: [mirror] download_concurrency is set again (first on line 9): keep one of them",
      '/etc/packrat/mirror.conf:12: [mirror] log_level = "loud": expected one of fatal, error, warn, info, debug, trace',
    ]);
    expect((error as ConfigInvalidError).problems).toHaveLength(7);
    expect((error as PackratError).hint).toBe("etc/mirror.conf.example documents every key");
    expect(message).not.toContain("bad%value");
  });

  it.each([
    ["host", "ftp://packrat", "expected http(s)://name[:port] with no path"],
    ["host", "http://packrat:99999", "expected http(s)://name[:port] with no path"],
    ["host", "http://user@packrat", "expected http(s)://name[:port] with no path"],
    ["host", "http://packrat//", "expected http(s)://name[:port] with no path"],
    ["name", "my mirror", "expected the mirror's name on the master"],
    ["proxy", "socks5://proxy:1080", "expected an http:// or https:// proxy URL"],
    ["description", "100%", '"%" must be followed by "%" or "("'],
    ["root_dir", "/", "expected an absolute path other than /"],
    [
      "gpg_sign_key",
      "4A9E8B1",
      "expected a key ID of 8 or 16 hex digits or a 40/64-hex fingerprint",
    ],
    ["gpg_sign_key", "nothex00", "expected a key ID of 8 or 16 hex digits"],
    ["state_db", "state.db", "expected an absolute path, e.g. /var/lib/packratAgent/state.db"],
    ["full_sync_interval", "15m", "expected whole seconds, e.g. 900"],
    ["full_sync_interval", "3000000", "expected whole seconds from 60 to 2147483"],
    ["keep_file_list", "../etc/passwd", 'without ".."'],
    ["keep_file_list", "index.html, ./", "not root_dir itself"],
    ["gpg_key_file", "key.asc", "expected an absolute path, e.g. /etc/packrat/signing-key.asc"],
    ["gpg_passphrase_file", "~/pass", "expected an absolute path"],
    [
      "public_key_name",
      "keys/repo-key",
      'expected a file name without "/" or spaces, e.g. repo-key',
    ],
    ["key_expiry_warn_days", "-1", "expected a whole number of days from 0 to 3650, e.g. 30"],
    ["download_concurrency", "65", "from 1 to 64"],
    ["download_concurrency", "4.5", "expected a whole number of downloads, e.g. 4"],
    ["deep_verify_every", "0", "from 1 to 10000"],
    ["max_removal_ratio", "half", "expected a fraction from 0 to 1, e.g. 0.5"],
    ["max_removal_ratio", "nan", "expected a fraction from 0 to 1"],
    ["trigger_debounce_ms", "60001", "expected whole milliseconds from 0 to 60000"],
    ["metadata_grace_seconds", "1d", "expected whole seconds, e.g. 86400"],
    ["poll_timeout", "5", "expected whole seconds from 10 to 3600"],
    ["request_timeout", "0", "expected whole seconds from 1 to 3600"],
    ["download_min_rate", "1k", "expected bytes per second, e.g. 1024"],
    ["download_min_rate", "0", "expected bytes per second from 1 to 1073741824"],
    ["download_min_rate_window", "0", "expected whole seconds from 1 to 3600"],
    ["download_deadline_base", "2m", "expected whole seconds, e.g. 120"],
    ["watch_tree", "maybe", "expected yes/no, true/false, on/off or 1/0"],
    ["apt_architectures", "amd64, Arm64", "expected Debian architecture names separated by commas"],
    ["apt_architectures", ",", "expected Debian architecture names"],
    ["apt_valid_until_seconds", "60", "expected whole seconds from 3600 to 31536000"],
    ["yum_compression", "xz", "expected one of gz, zstd"],
    ["rpm_changelog_limit", "many", "expected a whole number of entries, e.g. 10"],
    ["sign_rpm_packages", "sure", "expected yes/no"],
    ["pacman_repo_names", "arch-prod", "expected filesystem_dir:repo-name pairs"],
    ["pacman_repo_names", "a:x, a:y", "a appears twice"],
    ["pacman_repo_names", "a/b:x", "expected filesystem_dir:repo-name pairs"],
    ["metrics_listen", "9100", "expected host:port, e.g. 127.0.0.1:9100"],
    ["metrics_listen", "localhost:70000", "expected host:port"],
    ["log_level", "verbose", "expected one of fatal, error, warn, info, debug, trace"],
  ])("refuses %s = %j", (key, value, expected) => {
    const line = new RegExp(`^${key}: .*$`, "m");
    const text = line.test(MINIMAL)
      ? MINIMAL.replace(line, `${key}: ${value}`)
      : keysOf("packrat").includes(key)
        ? MINIMAL.replace("[packrat]\n", `[packrat]\n${key}: ${value}\n`)
        : withMirror(`${key}: ${value}`);
    const problem = problemOf(text);
    expect(problem).toContain(`${key} = ${JSON.stringify(value)}: `);
    expect(problem).toContain(expected);
  });

  it("checks keys against each other", () => {
    expect(problemOf(withMirror("gpg_key_file: /etc/packrat/k.asc"))).toBe(
      'mirror.conf:7: [mirror] gpg_key_file = "/etc/packrat/k.asc": gpg_sign_key is not set, so ' +
        'nothing would be signed: add the key ID to sign with (e.g. "gpg_sign_key: 4A9E8B1C"; ' +
        "gpg --list-secret-keys --keyid-format long shows it), or remove gpg_key_file to publish unsigned",
    );
    expect(problemOf(withMirror("gpg_passphrase_file: /etc/p"))).toContain(
      "gpg_key_file is not set, so there is no key to unlock",
    );
    expect(problemOf(withMirror("sign_rpm_packages: yes"))).toContain("signing RPMs needs a key");
    expect(problemOf(withMirror("apt_valid_until_seconds: 3600\nfull_sync_interval: 7200"))).toBe(
      'mirror.conf:7: [mirror] apt_valid_until_seconds = "3600": expected more than ' +
        "full_sync_interval (7200 s), or Release files would expire between two syncs and apt " +
        "would refuse them, e.g. 604800",
    );
    expect(
      problemOf(withMirror("gpg_sign_key: 4A9E8B1C\ngpg_key_file: /var/www/repo/key.asc")),
    ).toBe(
      'mirror.conf:8: [mirror] gpg_key_file = "/var/www/repo/key.asc": expected a path outside ' +
        "root_dir (/var/www/repo): the web server would publish it and cleanup would delete it",
    );
    expect(problemOf(MINIMAL.replace("/var/www/repo", "/var/lib"))).toBe(
      'mirror.conf:6: [mirror] root_dir = "/var/lib": contains state_db ' +
        "(/var/lib/packratAgent/state.db, the default): the web server would publish it and " +
        "cleanup would delete it; set state_db to a path outside root_dir",
    );
    expect(problemOf(withMirror("keep_file_list: index.html, /etc/passwd"))).toBe(
      'mirror.conf:7: [mirror] keep_file_list = "index.html, /etc/passwd": /etc/passwd is not ' +
        "inside root_dir (/var/www/repo): expected paths relative to root_dir, e.g. repo-key",
    );
  });

  it("reports one mistake once: a refused key counts neither as set nor as unset", () => {
    expect(problemsOf(withMirror("gpg_sign_key: 4A9E8B1C\ngpg_key_file: key.asc"))).toEqual([
      'mirror.conf:8: [mirror] gpg_key_file = "key.asc": expected an absolute path, e.g. /etc/packrat/signing-key.asc',
    ]);
    expect(problemsOf(withMirror("gpg_sign_key: nope\ngpg_key_file: /etc/k.asc"))).toHaveLength(1);
    expect(
      problemsOf(withMirror("full_sync_interval: x\napt_valid_until_seconds: 3600")),
    ).toHaveLength(1);
    expect(problemsOf(MINIMAL.replace("/var/www/repo", "/var/lib") + "state_db: db")).toHaveLength(
      1,
    );
  });

  it("never shows the psk or proxy credentials", () => {
    const text = MINIMAL.replace(
      "name: mirror",
      "name: mirror\npsk: top%secret\nproxy: ftp://u:hunter2@proxy",
    );
    const problems = problemsOf(text).join("\n");
    expect(problems).toContain('psk = "[redacted]"');
    expect(problems).not.toContain("top");
    expect(problems).not.toContain("hunter2");
  });
});

describe("[s3]", () => {
  it("is off without the section, and reports each bad key with what was expected", () => {
    expect(parseConfig(MINIMAL, "mirror.conf").s3).toBeNull();
    const text = `${MINIMAL}
[s3]
bucket = Not_A_Bucket
prefix = a/../b
endpoint = s3.example.com/bucket
path_style = maybe
acl = world-writable
access_key_id = AKIAX
`;
    expect(problemsOf(text)).toEqual([
      'mirror.conf:9: [s3] bucket = "Not_A_Bucket": expected an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, e.g. packages-example',
      'mirror.conf:10: [s3] prefix = "a/../b": expected a key prefix such as mirror/prod (no empty, "." or ".." parts, no control characters)',
      'mirror.conf:11: [s3] endpoint = "s3.example.com/bucket": expected an http:// or https:// URL, e.g. https://s3.example.com:7480',
      expect.stringMatching(/^mirror\.conf:12: \[s3\] path_style = "maybe": expected/),
      expect.stringMatching(/^mirror\.conf:13: \[s3\] acl = "world-writable": expected/),
      "mirror.conf:14: [s3] access_key_id and secret_access_key go together: write both, or neither to use the AWS credential chain (AWS_ACCESS_KEY_ID, ~/.aws/credentials, an instance role)",
    ]);
    expect(problemsOf(`${MINIMAL}\n[s3]\nregion = eu-west-1\n`)).toEqual([
      expect.stringMatching(/\[s3\] bucket is missing: add a line "bucket: packages-example"/),
    ]);
  });

  it("takes the defaults, and a prefix gets its one trailing slash", () => {
    const s3 = parseConfig(`${MINIMAL}\n[s3]\nbucket = b-1\nprefix = /mirror//\n`, "m").s3;
    expect(s3).toEqual({
      bucket: "b-1",
      prefix: "mirror/",
      endpoint: null,
      region: "us-east-1",
      pathStyle: false,
      accessKeyId: null,
      secretAccessKey: null,
      acl: null,
      uploadConcurrency: 8,
    });
  });
});

describe("parseConfig warnings", () => {
  it("warns about unknown keys, with a suggestion for a near miss", () => {
    const text = `${MINIMAL}root_dri: /x
colour: blue
host: http://elsewhere

[DEFAULT]
logg_level: debug
`;
    const warnings: string[] = [];
    const settings = parseConfig(text, "mirror.conf", (w) => warnings.push(w));
    expect(settings.packrat!.host).toBe("http://packrat");
    expect(warnings).toEqual([
      'mirror.conf:7: [mirror] unknown key "root_dri" is ignored; did you mean root_dir?',
      'mirror.conf:8: [mirror] unknown key "colour" is ignored',
      'mirror.conf:9: [mirror] unknown key "host" is ignored; it belongs under [packrat]',
      'mirror.conf:12: [DEFAULT] unknown key "logg_level" is ignored; did you mean log_level?',
    ]);
  });

  it("refuses an unknown section with its file, line and the known sections", () => {
    // [mirorr] would otherwise take full_sync_interval out of the configuration without a word.
    const text = `${MINIMAL}
[mirorr]
full_sync_interval: 60

[Packrat]
[extra]
[repo]
[repo a b]
[repo prod-apt]
`;
    const known = "the known sections are [packrat], [mirror], [s3], [repo NAME], [DEFAULT]";
    expect(problemsOf(text)).toEqual([
      `mirror.conf:8: unknown section [mirorr]: ${known}; did you mean [mirror]?`,
      `mirror.conf:11: unknown section [Packrat]: ${known}; did you mean [packrat]?`,
      `mirror.conf:12: unknown section [extra]: ${known}`,
      `mirror.conf:13: unknown section [repo]: ${known}; did you mean [repo NAME]?`,
      `mirror.conf:14: unknown section [repo a b]: ${known}; did you mean [repo NAME]?`,
    ]);
  });

  it("returns warnings beside the problems when both exist", () => {
    try {
      parseConfig(withMirror("full_sync_interval: x\ntypo_key: 1"), "m");
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigInvalidError).warnings).toEqual([
        'm:8: [mirror] unknown key "typo_key" is ignored',
      ]);
    }
  });

  it("suggests only close matches", () => {
    expect(closest("root_dri", keysOf("mirror"))).toBe("root_dir");
    expect(closest("full_sync_intreval", keysOf("mirror"))).toBe("full_sync_interval");
    expect(closest("colour", keysOf("mirror"))).toBeUndefined();
  });
});

describe("any text either parses or is refused with a PackratError", () => {
  it("holds for arbitrary text, syntax soup and mangled valid configs", () => {
    const check = (text: string): void => {
      try {
        parseConfigWithWarnings(text, "fuzz.conf");
      } catch (err) {
        if (!(err instanceof PackratError)) throw err;
        expect(err.code).toBe("PACKRAT_CONFIG_INVALID");
      }
    };
    // Any Unicode text, and text made of the characters the syntax cares about.
    // (unit "grapheme", not "binary": the latter is slow to generate under fc.assert.)
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 300 }), check), {
      numRuns: 300,
    });
    const TOKEN = fc.constantFrom(
      "[",
      "]",
      "=",
      ":",
      "%",
      "%(",
      ")s",
      "#",
      ";",
      " ",
      "\t",
      "\n",
      "\r",
      "\u00a0",
      "\ufeff",
      "a",
      "packrat",
      "mirror",
      "host",
      "root_dir",
      "/",
      "0x",
    );
    fc.assert(
      fc.property(fc.array(TOKEN, { maxLength: 80 }), (tokens) => check(tokens.join(""))),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MINIMAL.length }),
        fc.string({ maxLength: 20 }),
        (at, insert) => check(MINIMAL.slice(0, at) + insert + MINIMAL.slice(at)),
      ),
      { numRuns: 200 },
    );
  });
});

describe("config files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "packrat-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loadConfig reads a file, names it in messages and passes warnings to a callback", async () => {
    const path = join(dir, "mirror.conf");
    await writeFile(path, withMirror("bogus_key: 1"));
    const warnings: string[] = [];
    const settings = await loadConfig(path, { onWarning: (w) => warnings.push(w) });
    expect(settings.source).toBe(path);
    expect(settings.mirror.rootDir).toBe("/var/www/repo");
    expect(warnings).toEqual([`${path}:7: [mirror] unknown key "bogus_key" is ignored`]);
    expect((await readConfig(path)).warnings).toEqual(warnings);
  });

  it("warns when a file holding the psk or a proxy password is readable by others, naming mode and fix", async () => {
    const path = join(dir, "secret.conf");
    await writeFile(path, MINIMAL.replace("name: mirror", "name: mirror\npsk: s3cret"));
    await chmod(path, 0o644);
    const warnings = (await readConfig(path)).warnings;
    expect(warnings).toEqual([
      `${path} holds [packrat] psk and is readable by every user (mode 0644); ` +
        `run \`chmod 640 ${path}\` (owner root, group of the agent's user, e.g. chgrp packrat)`,
    ]);
    expect(warnings.join("")).not.toContain("s3cret");
    await chmod(path, 0o640);
    expect((await readConfig(path)).warnings).toEqual([]);

    await writeFile(
      path,
      MINIMAL.replace("name: mirror", "name: mirror\nproxy: http://u:pw@p:3128"),
    );
    await chmod(path, 0o604);
    expect((await readConfig(path)).warnings[0]).toContain(
      "holds the [packrat] proxy password and is readable by every user (mode 0604)",
    );
    // No secret, no warning, whatever the mode.
    await writeFile(path, MINIMAL);
    await chmod(path, 0o644);
    expect((await readConfig(path)).warnings).toEqual([]);
  });

  it("refuses [s3] credentials in a file every user can read, and never shows them", async () => {
    const path = join(dir, "s3.conf");
    await writeFile(
      path,
      `${MINIMAL}\n[s3]\nbucket = b-1\naccess_key_id = AKIAX\nsecret_access_key = topsecret\n`,
    );
    await chmod(path, 0o644);
    const err: unknown = await readConfig(path).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_CONFIG_INVALID")).toBe(true);
    expect((err as PackratError).message).toBe(
      `${path} holds [s3] secret_access_key and is readable by every user (mode 0644): refused`,
    );
    expect(JSON.stringify(err) + String(err)).not.toContain("topsecret");
    await chmod(path, 0o640);
    const { settings } = await readConfig(path);
    expect(settings.s3).toMatchObject({ bucket: "b-1", secretAccessKey: "topsecret" });
    expect(JSON.stringify(describeSettings(settings))).not.toContain("topsecret");
  });

  it("a missing file is PACKRAT_CONFIG_NOT_FOUND naming the path and the ways to give one", async () => {
    const path = join(dir, "nope.conf");
    const err: unknown = await loadConfig(path).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_CONFIG_NOT_FOUND")).toBe(true);
    expect((err as PackratError).message).toBe(`config file ${path} does not exist`);
    expect((err as PackratError).hint).toBe(
      "create it from etc/mirror.conf.example, or give its path with --config PATH or " +
        "$PACKRAT_AGENT_CONFIG (default /etc/packrat/mirror.conf)",
    );
  });

  it("a directory or an unreadable file is PACKRAT_CONFIG_NOT_FOUND too", async () => {
    const sub = join(dir, "a-directory");
    await mkdir(sub);
    const err: unknown = await loadConfig(sub).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_CONFIG_NOT_FOUND")).toBe(true);
    expect((err as PackratError).message).toBe(`config file ${sub} is a directory, not a file`);

    // Root reads any file, so the permission error comes from the mocked readFile (top of file).
    const deniedErr: unknown = await loadConfig(DENIED_PATH).catch((e: unknown) => e);
    expect(isPackratError(deniedErr, "PACKRAT_CONFIG_NOT_FOUND")).toBe(true);
    expect((deniedErr as PackratError).message).toBe(
      `config file ${DENIED_PATH} cannot be read: permission denied`,
    );
    expect((deniedErr as PackratError).hint).toContain("it holds the psk");

    const notADir = join(dir, "mirror.conf", "x");
    const notADirErr: unknown = await loadConfig(notADir).catch((e: unknown) => e);
    expect((notADirErr as PackratError).message).toBe(`config file ${notADir} does not exist`);
  });

  it("refuses a file that is not UTF-8", async () => {
    const path = join(dir, "latin1.conf");
    await writeFile(path, Buffer.from([0x5b, 0x70, 0x5d, 0x0a, 0x6b, 0x3a, 0xe9, 0x0a]));
    const err: unknown = await loadConfig(path).catch((e: unknown) => e);
    expect(isPackratError(err, "PACKRAT_CONFIG_INVALID")).toBe(true);
    expect((err as PackratError).message).toBe(`${path} is not UTF-8 text`);
  });

  it("resolveConfigPath: --config, else $PACKRAT_AGENT_CONFIG, else the default", () => {
    const env = { PACKRAT_AGENT_CONFIG: "/env/mirror.conf" };
    expect(resolveConfigPath({ flag: "./my.conf", env })).toBe("./my.conf");
    expect(resolveConfigPath({ env })).toBe("/env/mirror.conf");
    expect(resolveConfigPath({ flag: "", env: { PACKRAT_AGENT_CONFIG: "" } })).toBe(
      DEFAULT_CONFIG_PATH,
    );
    expect(resolveConfigPath({ env: {} })).toBe("/etc/packrat/mirror.conf");
  });
});

describe("describeSettings", () => {
  it("hides the psk and proxy credentials and returns a plain, unfrozen copy", () => {
    const settings = parseConfig(
      MINIMAL.replace("name: mirror", "name: mirror\npsk: s3cret\nproxy: http://u:pw@proxy:3128"),
      "m",
    );
    const described = describeSettings(settings);
    expect(described).toMatchObject({
      packrat: { psk: "[redacted]", proxy: "http://redacted:redacted@proxy:3128/" },
      mirror: { rootDir: "/var/www/repo" },
    });
    expect(JSON.stringify(described)).not.toMatch(/s3cret|pw@/);
    expect(Object.isFrozen(described)).toBe(false);
    expect(settings.packrat!.psk).toBe("s3cret");
    expect(describeSettings(parseConfig(MINIMAL, "m"))).toMatchObject({
      packrat: { psk: null, proxy: null },
    });
  });
});

describe("etc/mirror.conf.example", () => {
  it("parses with no problems and no warnings", async () => {
    // Installed as the example asks (chmod 640): it holds a psk, so a checkout's 0644 would warn.
    const dir = await mkdtemp(join(tmpdir(), "packrat-example-"));
    const copy = join(dir, "mirror.conf");
    await writeFile(copy, await readFile(EXAMPLE), { mode: 0o640 });
    const { settings, warnings } = await readConfig(copy).finally(() =>
      rm(dir, { recursive: true, force: true }),
    );
    expect(warnings).toEqual([]);
    expect(settings.packrat!.host).toBe("http://packrat");
    expect(settings.mirror.rootDir).toBe("/var/www/packrat");
  });

  it("documents every key, and each commented-out line shows the key's default", async () => {
    const text = await readFile(EXAMPLE, "utf8");
    const allKeys = [
      ...Object.keys(PACKRAT_KEYS).map(keyOf),
      ...Object.keys(MIRROR_KEYS).map(keyOf),
      ...Object.keys(LAYOUT_KEYS).map(keyOf),
      ...Object.keys(S3_KEYS).map(keyOf),
    ];
    for (const key of allKeys) {
      // Each key has a line of its own, preceded by a comment that explains it.
      const match = new RegExp(`#[^\\n]*\\n#?${key}:`).exec(text);
      expect(match, key).not.toBeNull();
    }
    // Uncommenting every key changes nothing but the values the example sets.
    const uncommented = text.replace(/^#([a-z_]+:)/gm, "$1").replace(/^#\[s3\]$/m, "[s3]");
    const { settings, warnings } = parseConfigWithWarnings(uncommented, "example");
    expect(warnings).toEqual([]);
    const { rootDir, description, ...rest } = settings.mirror;
    expect(rootDir).toBe("/var/www/packrat");
    expect(description).toBe("Packrat Mirror");
    const { description: _d, ...defaults } = MIRROR_DEFAULTS;
    expect(rest).toEqual(defaults);
    // The format options, each layout's own, at the defaults the layouts declare.
    expect(settings.layouts).toEqual(layoutDefaults());
    // The [s3] block, uncommented with its bucket, gives the defaults too.
    const { bucket, ...s3 } = settings.s3!;
    expect(bucket).toBe("packages-example");
    expect(s3).toEqual(S3_DEFAULTS);
  });
});

describe("repos of their own: [repo NAME] with a source, no [packrat] master", () => {
  const LOCAL = `[mirror]
root_dir: /var/www/repo

[repo prod-apt]
format: apt
source: /srv/incoming/apt
version: bookworm

[repo prod-yum]
format: yum
source: /srv/incoming/yum/
distro: rocky
version: 9
`;

  it("reads them, with no master at all", () => {
    const settings = parseConfig(LOCAL, "mirror.conf");
    expect(settings.packrat).toBeNull();
    expect(settings.repos).toEqual({
      "prod-apt": { format: "apt", source: "/srv/incoming/apt", version: "bookworm" },
      "prod-yum": { format: "yum", source: "/srv/incoming/yum", distro: "rocky", version: "9" },
    });
  });

  it("refuses a source beside a master, naming the line and both ways out", () => {
    const [problem, second] = problemsOf(
      `${MINIMAL}\n[repo prod-apt]\nformat: apt\nsource: /srv/in\n`,
    );
    expect(second).toMatch(/^mirror\.conf:10: \[repo prod-apt\] source: /);
    expect(problem).toMatch(
      /^mirror\.conf:9: \[repo prod-apt\] format: .*needs no \[packrat\] master/,
    );
    expect(problem).toContain("remove the [packrat] section");
  });

  it("asks for a missing format or source, and refuses an unknown format", () => {
    expect(problemOf(`[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\n`)).toContain(
      '[repo a] source is missing: add a line "source: /srv/incoming/prod-apt"',
    );
    expect(problemOf(`[mirror]\nroot_dir: /r\n[repo a]\nformat: conda\nsource: /s\n`)).toMatch(
      /\[repo a\] format = "conda": expected one of apt, yum, pacman, pypi, json/,
    );
  });

  it("reads an s3:// source with the [s3] section's connection, apart from the published prefix", () => {
    const s3 = `[s3]\nbucket: packages\nprefix: mirror\n`;
    const ok = parseConfig(
      `[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\nsource: s3://packages/pool\n${s3}`,
      "m",
    );
    expect(ok.repos.a!.source).toBe("s3://packages/pool/");
    expect(
      problemOf(`[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\nsource: s3://packages/pool/\n`),
    ).toContain("an s3:// source is read with the [s3] section's endpoint, region and credentials");
    expect(
      problemOf(
        `[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\nsource: s3://packages/mirror/in\n${s3}`,
      ),
    ).toContain("the published packages would be read back as new ones");
    expect(
      problemOf(`[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\nsource: s3://Bad_Bucket/x\n${s3}`),
    ).toContain("expected an S3 bucket name");
  });

  it("refuses a source inside root_dir (cleanup would delete it) or holding it", () => {
    expect(
      problemOf(`[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\nsource: /r/incoming\n`),
    ).toContain("the packages would be deleted");
    expect(
      problemOf(`[mirror]\nroot_dir: /srv/r\n[repo a]\nformat: apt\nsource: /srv\n`),
    ).toContain("read back as new packages");
  });

  it("refuses keys that do not fit the format, and a repo name that is not a directory name", () => {
    expect(
      problemOf(`[mirror]\nroot_dir: /r\n[repo a]\nformat: apt\nsource: /s\ndistro: el\n`),
    ).toContain("expected no distro: only yum repos have one, and this one is format apt");
    expect(problemOf(`[mirror]\nroot_dir: /r\n[repo a+b]\nformat: apt\nsource: /s\n`)).toContain(
      "the repo name is its directory under root_dir",
    );
  });
});

describe("[repo NAME] publish = in-place: the source directory is the served tree", () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "packrat-inplace-conf-"));
    await mkdir(join(root, "apt"));
    await mkdir(join(root, ".hidden"));
    await writeFile(join(root, "a-file"), "");
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  const repo = (lines: string) => `[mirror]\nroot_dir: ${root}\n[repo a]\n${lines}\n`;

  it("reads a directory below root_dir, and root_dir publishing stays the default", () => {
    const settings = parseConfig(
      repo(`format: apt\nsource: ${root}/apt\npublish: in-place`),
      "mirror.conf",
    );
    expect(settings.repos.a).toEqual({ format: "apt", source: `${root}/apt`, publish: "in-place" });
    expect(parseConfig(LOCAL_FOR_DEFAULT, "m").repos.a!.publish).toBeUndefined();
  });

  it("refuses a bad value, naming file, line, key and the choices", () => {
    expect(problemOf(repo(`format: apt\nsource: /srv/in\npublish: inplace`))).toMatch(
      /^mirror\.conf:6: \[repo a\] publish = "inplace": expected one of root_dir, in-place/,
    );
  });

  it("refuses a source that is not below root_dir, is root_dir, hides under a dot, or is no writable directory", () => {
    expect(problemOf(repo(`format: apt\nsource: /srv/incoming\npublish: in-place`))).toMatch(
      /^mirror\.conf:5: \[repo a\] source = "\/srv\/incoming": expected a directory below root_dir .* for a repo published in place/,
    );
    expect(problemOf(repo(`format: apt\nsource: ${root}\npublish: in-place`))).toContain(
      "expected a directory below root_dir",
    );
    expect(problemOf(repo(`format: apt\nsource: ${root}/.hidden\npublish: in-place`))).toContain(
      'expected no segment starting with "."',
    );
    expect(problemOf(repo(`format: apt\nsource: ${root}/nope\npublish: in-place`))).toContain(
      "expected an existing directory: a repo published in place has its metadata written into its source",
    );
    expect(problemOf(repo(`format: apt\nsource: ${root}/a-file\npublish: in-place`))).toContain(
      "expected a directory (the agent writes the repo's metadata into it)",
    );
  });

  it("refuses a format that cannot be served from the producer's paths, and yum keys that do not apply", () => {
    expect(problemOf(repo(`format: docker\nsource: ${root}/apt\npublish: in-place`))).toMatch(
      /\[repo a\] publish = "in-place": expected root_dir for a docker repo: it cannot be published in place \(a docker registry serves blobs at content-addressed paths/,
    );
    expect(
      problemOf(repo(`format: yum\nsource: ${root}/apt\npublish: in-place\ndistro: rocky`)),
    ).toContain("expected no distro: a yum repo published in place has its repodata/ at the top");
    expect(
      problemsOf(
        `[mirror]\nroot_dir: ${root}\ngpg_sign_key: ABCD\nsign_rpm_packages: yes\n[repo a]\nformat: yum\nsource: ${root}/apt\npublish: in-place\n`,
      ).join("\n"),
    ).toContain("expected root_dir while [mirror] sign_rpm_packages is on");
  });

  it("serves an s3:// source in place only below the [s3] prefix of the same bucket", () => {
    const inBucket = (source: string, s3: string) =>
      `[mirror]\nroot_dir: ${root}\n[repo a]\nformat: apt\nsource: ${source}\npublish: in-place\n[s3]\n${s3}\n`;
    expect(parseConfig(inBucket("s3://packages/pool/", "bucket: packages"), "m").repos.a).toEqual({
      format: "apt",
      source: "s3://packages/pool/",
      publish: "in-place",
    });
    expect(problemOf(inBucket("s3://packages/pool/", "bucket: other"))).toMatch(
      /\[repo a\] source = "s3:\/\/packages\/pool\/": expected a prefix below where the mirror is published \(s3:\/\/other\/\.\.\.\) for a repo published in place in a bucket/,
    );
    expect(
      problemOf(inBucket("s3://packages/pool/", "bucket: packages\nprefix: mirror")),
    ).toContain("expected a prefix below where the mirror is published (s3://packages/mirror/...)");
    expect(
      problemOf(inBucket("s3://packages/mirror/", "bucket: packages\nprefix: mirror")),
    ).toContain("expected a prefix below where the mirror is published");
  });

  it("refuses publish beside a [packrat] master (a master's repos are always copied)", () => {
    expect(problemsOf(`${MINIMAL}\n[repo a]\npublish: in-place\n`).join("\n")).toMatch(
      /\[repo a\] publish: a repo with its own format and source needs no \[packrat\] master/,
    );
  });
});

const LOCAL_FOR_DEFAULT = `[mirror]\nroot_dir: /var/www/repo\n[repo a]\nformat: apt\nsource: /srv/in\n`;
