/**
 * mirror.conf: find it, read it, and turn it into frozen Settings.
 *
 * parse (config/ini.ts, the configparser dialect the original agent's files are written in) →
 * interpolate (config/interpolation.ts) → typed values (config/keys.ts, config/values.ts) →
 * checks across keys (here). Every problem is collected with its file:line, section, key, the
 * value found and what was expected, and all of them are thrown together in one
 * PACKRAT_CONFIG_INVALID error. Unknown keys are warnings, not errors, so a file written for a
 * newer or older agent still loads; an unknown section is an error, because a misspelt section
 * header silently takes every key under it out of the configuration.
 */
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { posix } from "node:path";
import { PackratError } from "../errors.js";
import { redactUrl } from "../log.js";
import {
  MIRROR_DEFAULTS,
  type MirrorSettings,
  type PackratSettings,
  type RepoSettings,
  S3_DEFAULTS,
  type S3Settings,
  type Settings,
} from "../settings.js";
import {
  DEFAULT_SECTION,
  parseIni,
  type IniDocument,
  type IniEntry,
  type IniSection,
} from "./config/ini.js";
import { interpolate } from "./config/interpolation.js";
import { DEFAULT_LAYOUT_OPTIONS, layoutFor, layoutOptionSpecs } from "../layout/index.js";
import type { LayoutSettings, OptionContext } from "../layout/types.js";
import {
  keyOf,
  keysOf,
  LAYOUT_KEYS,
  SOURCE_REPO_KEYS,
  REPO_KEYS,
  repoSectionName,
  S3_KEYS,
  SECTION_NAMES,
  SECTIONS,
  type KeySpec,
  type SectionName,
} from "./config/keys.js";
import { closest } from "./config/suggest.js";

export const DEFAULT_CONFIG_PATH = "/etc/packrat/mirror.conf";
export const CONFIG_PATH_ENV = "PACKRAT_AGENT_CONFIG";

export interface ConfigResult {
  settings: Settings;
  /** One line each, `file:line: what`, for unknown keys. */
  warnings: string[];
}

/** PACKRAT_CONFIG_INVALID with the problems as a list, for callers that show or count them. */
export class ConfigInvalidError extends PackratError {
  readonly problems: readonly string[];
  readonly warnings: readonly string[];

  constructor(source: string, problems: string[], warnings: string[]) {
    const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
    super("PACKRAT_CONFIG_INVALID", `${source} has ${count}:\n${problems.join("\n")}`, {
      hint: "etc/mirror.conf.example documents every key",
    });
    this.name = "ConfigInvalidError";
    this.problems = Object.freeze([...problems]);
    this.warnings = Object.freeze([...warnings]);
  }
}

/** --config, else $PACKRAT_AGENT_CONFIG, else /etc/packrat/mirror.conf. Empty means unset. */
export function resolveConfigPath(options: {
  flag?: string | undefined;
  env: Record<string, string | undefined>;
}): string {
  if (options.flag) return options.flag;
  const fromEnv = options.env[CONFIG_PATH_ENV];
  return fromEnv ? fromEnv : DEFAULT_CONFIG_PATH;
}

/** Read and validate a config file; warnings go to `onWarning`, problems are thrown. */
export async function loadConfig(
  path: string,
  options: { onWarning?: (warning: string) => void } = {},
): Promise<Settings> {
  const { settings, warnings } = await readConfig(path);
  for (const w of warnings) options.onWarning?.(w);
  return settings;
}

/** Read and validate a config file, returning its warnings beside the settings. */
export async function readConfig(path: string): Promise<ConfigResult> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw notReadable(path, err);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new PackratError("PACKRAT_CONFIG_INVALID", `${path} is not UTF-8 text`, {
      hint: "save it as UTF-8",
      cause: err,
    });
  }
  const result = parseConfigWithWarnings(text, path);
  const exposed = await secretsReadableByOthers(path, result.settings);
  return exposed ? { ...result, warnings: [...result.warnings, exposed] } : result;
}

/**
 * A warning when the file holds a secret (the psk, a proxy password) and every user of the
 * machine may read it (mode & 0o004): the agent still starts, as an upgrade from a version that
 * never said so must not stop the mirror, but the operator learns the file, the mode and the fix.
 */
async function secretsReadableByOthers(path: string, settings: Settings): Promise<string | null> {
  const held: string[] = [];
  for (const section of SECTION_NAMES) {
    const values = (settings[section] ?? {}) as unknown as Record<string, unknown>;
    for (const [field, spec] of Object.entries(SECTIONS[section]) as [string, KeySpec<unknown>][]) {
      const value = values[field];
      if (spec.secret && value !== null && value !== undefined)
        held.push(`[${section}] ${keyOf(field)}`);
    }
  }
  if (settings.packrat && settings.packrat.proxy !== null) {
    try {
      if (new URL(settings.packrat.proxy).password !== "")
        held.push("the [packrat] proxy password");
    } catch {
      // validated already; an unparsable URL holds no password we could name
    }
  }
  if (held.length === 0) return null;
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o7777;
  } catch {
    return null; // read a moment ago; gone now: nothing to advise on
  }
  if ((mode & 0o004) === 0) return null;
  const octal = mode.toString(8).padStart(4, "0");
  if (settings.s3?.secretAccessKey) {
    // New keys, so no upgrade to keep working: bucket credentials every user could read are
    // refused outright.
    throw new PackratError(
      "PACKRAT_CONFIG_INVALID",
      `${path} holds [s3] secret_access_key and is readable by every user (mode ${octal}): refused`,
      {
        hint: `run \`chmod 640 ${path}\` (owner root, group of the agent's user), or drop the keys from [s3] and use the AWS credential chain (AWS_ACCESS_KEY_ID, ~/.aws/credentials, an instance role)`,
      },
    );
  }
  return (
    `${path} holds ${held.join(" and ")} and is readable by every user (mode ${octal}); ` +
    `run \`chmod 640 ${path}\` (owner root, group of the agent's user, e.g. chgrp packrat)`
  );
}

/** Validate config text; `source` names it in messages (a path, or e.g. "mirror.conf"). */
export function parseConfig(
  text: string,
  source: string,
  onWarning?: (warning: string) => void,
): Settings {
  const { settings, warnings } = parseConfigWithWarnings(text, source);
  if (onWarning) for (const w of warnings) onWarning(w);
  return settings;
}

export function parseConfigWithWarnings(text: string, source: string): ConfigResult {
  const doc = parseIni(text);
  const report = new Report(source);
  for (const p of doc.problems) report.problem(p.line, p.message);
  reportUnknown(doc, report);

  const failed = new Set<string>();
  // Repos declared with a `source` need no master: then [packrat] may be left out altogether.
  const declared = [...doc.sections.values()].filter(
    (s) => repoSectionName(s.name) !== null && SOURCE_REPO_KEYS.some((key) => s.entries.has(key)),
  );
  const withoutMaster = declared.length > 0 && !doc.sections.has("packrat");
  const packrat = withoutMaster
    ? null
    : (readSection(doc, "packrat", report, failed) as Partial<Values<PackratSettings>>);
  const mirror = readSection(doc, "mirror", report, failed) as Partial<Values<MirrorSettings>>;
  const layouts = readKeys(doc, "mirror", LAYOUT_KEYS, report, failed, {
    useDefaults: true,
  }) as Partial<Values<LayoutSettings>>;
  // [s3] is optional as a whole; once written, its bucket is required. No [DEFAULT] fallback:
  // a region or prefix meant for another tool must not turn publishing to a bucket on.
  const s3 = doc.sections.has("s3")
    ? (readKeys(doc, "s3", S3_KEYS, report, failed, { useDefaults: false }) as Partial<
        Values<S3Settings>
      >)
    : null;
  if (s3 && (s3.accessKeyId === undefined) !== (s3.secretAccessKey === undefined)) {
    const given = s3.accessKeyId ?? s3.secretAccessKey;
    report.problem(
      given?.entry.line ?? null,
      "[s3] access_key_id and secret_access_key go together: write both, or neither to use the AWS credential chain (AWS_ACCESS_KEY_ID, ~/.aws/credentials, an instance role)",
    );
  }
  const repos: Record<string, RepoSettings> = {};
  for (const section of doc.sections.values()) {
    const repo = repoSectionName(section.name);
    if (repo === null) continue;
    const found = readKeys(doc, section.name, REPO_KEYS, report, new Set(), {
      useDefaults: false,
    }) as Partial<Values<RepoSettings>>;
    checkRepoSection(
      section,
      repo,
      found,
      { withoutMaster, hasDeclared: declared.length > 0 },
      report,
    );
    repos[repo] = unwrap(found);
  }
  checkAcrossKeys(mirror, failed, report);
  checkLayoutOptions(layouts, mirror, failed, report);
  if (withoutMaster && mirror.rootDir) checkSourcesApart(mirror.rootDir.value, repos, doc, report);
  if (withoutMaster) checkInPlace(mirror.rootDir?.value, repos, layouts, s3, doc, report);
  if (withoutMaster) checkBucketSources(repos, s3, doc, report);
  const keepFileList =
    mirror.keepFileList && mirror.rootDir
      ? resolveKeepList(mirror.keepFileList, mirror.rootDir, report)
      : undefined;

  if (report.problems.length > 0) {
    throw new ConfigInvalidError(source, report.sortedProblems(), report.warnings);
  }
  const settings: Settings = {
    source,
    packrat: packrat && {
      host: packrat.host?.value ?? "",
      name: packrat.name?.value ?? "",
      username: packrat.username?.value ?? null,
      psk: packrat.psk?.value ?? null,
      proxy: packrat.proxy?.value ?? null,
    },
    mirror: {
      ...cloneDefaults(),
      ...unwrap(mirror),
      ...(keepFileList ? { keepFileList } : {}),
    } as MirrorSettings,
    layouts: { ...layoutDefaults(), ...unwrap(layouts) },
    s3: s3 ? ({ ...S3_DEFAULTS, ...unwrap(s3) } as S3Settings) : null,
    repos,
  };
  return { settings: deepFreeze(settings), warnings: report.warnings };
}

/** A copy of the settings that is safe to log: the psk and proxy credentials are hidden. */
export function describeSettings(settings: Settings): Record<string, unknown> {
  const { packrat, mirror } = settings;
  return {
    source: settings.source,
    packrat: packrat && {
      ...packrat,
      psk: packrat.psk === null ? null : "[redacted]",
      proxy: packrat.proxy === null ? null : redactUrl(packrat.proxy),
    },
    mirror: { ...mirror, keepFileList: [...mirror.keepFileList] },
    layouts: structuredClone(settings.layouts),
    s3: settings.s3 && {
      ...settings.s3,
      accessKeyId: settings.s3.accessKeyId === null ? null : "[redacted]",
      secretAccessKey: settings.s3.secretAccessKey === null ? null : "[redacted]",
    },
    repos: { ...settings.repos },
  };
}

// ---------------------------------------------------------------------------------------------

/** A value read from the file, with where it was written (for checks across keys). */
interface Found<T> {
  value: T;
  entry: IniEntry;
  section: string;
}

type Values<S> = { [F in keyof S]: Found<NonNullable<S[F]>> };

class Report {
  readonly problems: { line: number | null; text: string }[] = [];
  readonly warnings: string[] = [];

  constructor(readonly source: string) {}

  at(line: number | null): string {
    return line === null || line === 0 ? this.source : `${this.source}:${line}`;
  }

  problem(line: number | null, message: string): void {
    this.problems.push({ line, text: `${this.at(line)}: ${message}` });
  }

  /** `[mirror] full_sync_interval = "ten": expected whole seconds, e.g. 900` */
  valueProblem(section: string, entry: IniEntry, shown: string, expected: string): void {
    this.problem(entry.line, `[${section}] ${entry.key} = ${JSON.stringify(shown)}: ${expected}`);
  }

  warn(line: number | null, message: string): void {
    this.warnings.push(`${this.at(line)}: ${message}`);
  }

  /** File order; problems without a line (a missing section) last. */
  sortedProblems(): string[] {
    return this.problems
      .map((p, i) => ({ ...p, i }))
      .sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || a.i - b.i)
      .map((p) => p.text);
  }
}

function shownValue(spec: KeySpec<unknown>, raw: string): string {
  if (spec.secret) return "[redacted]";
  return spec.show ? spec.show(raw) : raw;
}

const KNOWN_SECTIONS = [...SECTION_NAMES, "repo NAME", DEFAULT_SECTION]
  .map((s) => `[${s}]`)
  .join(", ");

function reportUnknown(doc: IniDocument, report: Report): void {
  for (const section of doc.sections.values()) {
    if ((SECTION_NAMES as string[]).includes(section.name)) {
      warnUnknownKeys(section, section.name as SectionName, report);
      continue;
    }
    if (repoSectionName(section.name) !== null) {
      const known = Object.keys(REPO_KEYS).map(keyOf);
      for (const entry of section.entries.values()) {
        if (known.includes(entry.key)) continue;
        const guess = closest(entry.key, known);
        report.warn(
          entry.line,
          `[${section.name}] unknown key "${entry.key}" is ignored (a [repo NAME] section takes ${known.join(", ")})${guess ? `; did you mean ${guess}?` : ""}`,
        );
      }
      continue;
    }
    // A problem, not a warning like an unknown key: a misspelt header drops every key under it
    // (a [mirorr] loses the whole mirror setup), and this agent's set of sections is closed.
    const guess = /^repo\b/i.test(section.name)
      ? "repo NAME"
      : closest(section.name, SECTION_NAMES);
    report.problem(
      section.line,
      `unknown section [${section.name}]: the known sections are ${KNOWN_SECTIONS}${guess ? `; did you mean [${guess}]?` : ""}`,
    );
  }
  const everyKey = SECTION_NAMES.flatMap(keysOf);
  for (const entry of doc.defaults.entries.values()) {
    if (everyKey.includes(entry.key)) continue;
    const guess = closest(entry.key, everyKey);
    report.warn(
      entry.line,
      `[${DEFAULT_SECTION}] unknown key "${entry.key}" is ignored${guess ? `; did you mean ${guess}?` : ""}`,
    );
  }
}

function warnUnknownKeys(section: IniSection, name: SectionName, report: Report): void {
  const known = keysOf(name);
  for (const entry of section.entries.values()) {
    if (known.includes(entry.key)) continue;
    const home = SECTION_NAMES.find((s) => s !== name && keysOf(s).includes(entry.key));
    const guess = closest(entry.key, known);
    const advice = home ? `; it belongs under [${home}]` : guess ? `; did you mean ${guess}?` : "";
    report.warn(entry.line, `[${name}] unknown key "${entry.key}" is ignored${advice}`);
  }
}

/**
 * Parse every key of one section. A key not written, or written empty, is left out (its default
 * applies); a key whose value is refused is left out and its field added to `failed`.
 */
function readSection(
  doc: IniDocument,
  name: SectionName,
  report: Report,
  failed: Set<string>,
): Partial<Record<string, Found<unknown>>> {
  return readKeys(doc, name, SECTIONS[name], report, failed, { useDefaults: true });
}

/**
 * Parse the keys of `specs` in section `name`; `useDefaults`: a key missing there is taken from
 * [DEFAULT], as configparser does ([repo NAME] sections are read without that fallback, so a
 * [DEFAULT] key meant for [mirror] does not become a per-repo override).
 */
function readKeys(
  doc: IniDocument,
  name: string,
  specs: object,
  report: Report,
  failed: Set<string>,
  options: { useDefaults: boolean },
): Partial<Record<string, Found<unknown>>> {
  const section = doc.sections.get(name);
  const lookup = (key: string): string | undefined =>
    (section?.entries.get(key) ?? doc.defaults.entries.get(key))?.value;
  const out: Partial<Record<string, Found<unknown>>> = {};

  for (const [field, spec] of Object.entries(specs as Record<string, KeySpec<unknown>>)) {
    const key = keyOf(field);
    const local = section?.entries.get(key);
    const entry = local ?? (options.useDefaults ? doc.defaults.entries.get(key) : undefined);
    const where = local ? name : DEFAULT_SECTION;
    if (entry === undefined) {
      if (spec.required) report.problem(section?.line ?? null, missing(doc, name, key, spec));
      continue;
    }
    const interpolated = interpolate(entry.value, lookup);
    if ("problem" in interpolated) {
      report.valueProblem(where, entry, shownValue(spec, entry.value), interpolated.problem);
      failed.add(field);
      continue;
    }
    const raw = interpolated.value;
    // An empty value means "not set", as in the original agent (`proxy:`, `gpg_sign_key:`).
    if (raw === "" && !spec.required) continue;
    const parsed = spec.parse(raw);
    if ("expected" in parsed) {
      report.valueProblem(where, entry, shownValue(spec, raw), parsed.expected);
      failed.add(field);
      continue;
    }
    out[field] = { value: parsed.value, entry, section: where };
  }
  return out;
}

function missing(doc: IniDocument, name: string, key: string, spec: KeySpec<unknown>): string {
  const line = `"${key}: ${spec.example}" (${spec.what})`;
  const advice = doc.sections.has(name)
    ? `add a line ${line} under [${name}]`
    : `add a [${name}] section with a line ${line}`;
  const misplaced = [...doc.sections.values()].find((s) => s.name !== name && s.entries.has(key));
  const misspelled = [...(doc.sections.get(name)?.entries.values() ?? [])].find(
    (e) => closest(e.key, [key]) !== undefined,
  );
  const note = misplaced
    ? `; it is on line ${misplaced.entries.get(key)?.line ?? "?"} under [${misplaced.name}], which is the wrong section`
    : misspelled
      ? `; is "${misspelled.key}" on line ${misspelled.line} meant to be ${key}?`
      : "";
  return `[${name}] ${key} is missing: ${advice}${note}`;
}

function isInside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

function problemAt(report: Report, f: Found<unknown>, expected: string): void {
  report.valueProblem(f.section, f.entry, f.entry.value, expected);
}

/**
 * Checks that involve more than one key. A key whose own value was refused (`failed`) counts
 * neither as set nor as unset, so one mistake is reported once.
 */
function checkAcrossKeys(
  m: Partial<Values<MirrorSettings>>,
  failed: ReadonlySet<string>,
  report: Report,
): void {
  const unset = (field: keyof MirrorSettings): boolean => !m[field] && !failed.has(field);

  if (m.gpgSignKey && unset("gpgKeyFile")) {
    const id = m.gpgSignKey.value;
    problemAt(
      report,
      m.gpgSignKey,
      "gpg_key_file is not set. This agent signs with OpenPGP.js and never runs a gpg binary or " +
        "reads a keyring, so export the key once: " +
        `gpg --export-secret-subkeys --armor ${id} > /etc/packrat/signing-key.asc && ` +
        "chmod 600 /etc/packrat/signing-key.asc, then add the line " +
        '"gpg_key_file: /etc/packrat/signing-key.asc" under [mirror]',
    );
  }
  if (m.gpgKeyFile && unset("gpgSignKey")) {
    problemAt(
      report,
      m.gpgKeyFile,
      "gpg_sign_key is not set, so nothing would be signed: add the key ID to sign with " +
        '(e.g. "gpg_sign_key: 4A9E8B1C"; gpg --list-secret-keys --keyid-format long shows it), ' +
        "or remove gpg_key_file to publish unsigned",
    );
  }
  if (m.gpgPassphraseFile && unset("gpgKeyFile")) {
    problemAt(
      report,
      m.gpgPassphraseFile,
      "gpg_key_file is not set, so there is no key to unlock: set gpg_key_file or remove this line",
    );
  }

  const root = m.rootDir;
  if (!root) return;
  // Private files inside the published tree would be served to anyone, and cleanup deletes what
  // the master does not list.
  const privateFiles = [
    ["state_db", m.stateDb, failed.has("stateDb") ? null : MIRROR_DEFAULTS.stateDb],
    ["gpg_key_file", m.gpgKeyFile, null],
    ["gpg_passphrase_file", m.gpgPassphraseFile, null],
  ] as const;
  for (const [key, found, fallback] of privateFiles) {
    const path = found?.value ?? fallback;
    if (path === null || !isInside(path, root.value)) continue;
    const why = "the web server would publish it and cleanup would delete it";
    if (found) {
      problemAt(report, found, `expected a path outside root_dir (${root.value}): ${why}`);
    } else {
      problemAt(
        report,
        root,
        `contains ${key} (${path}, the default): ${why}; set ${key} to a path outside root_dir`,
      );
    }
  }
}

/** A [repo NAME] section: overrides under a master, or a repo of its own without one. */
function checkRepoSection(
  section: IniSection,
  repo: string,
  found: Partial<Values<RepoSettings>>,
  mode: { withoutMaster: boolean; hasDeclared: boolean },
  report: Report,
): void {
  const own = SOURCE_REPO_KEYS.filter((key) => section.entries.has(key));
  if (!mode.withoutMaster) {
    // With a master, repos come from it: a `source` here would be silently ignored.
    for (const key of own) {
      report.problem(
        section.entries.get(key)!.line,
        `[${section.name}] ${key}: a repo with its own format and source needs no [packrat] master, ` +
          "and this file has one: remove the [packrat] section to publish repos from directories, " +
          "or remove this line (a mirror of a master takes its repos from the master)",
      );
    }
    return;
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(repo)) {
    report.problem(
      section.line,
      `[${section.name}]: the repo name is its directory under root_dir: expected letters, digits and ._- (starting with a letter or digit), e.g. [repo prod-apt]`,
    );
  }
  for (const key of ["format", "source"] as const) {
    if (section.entries.has(key)) continue;
    const spec = REPO_KEYS[key];
    report.problem(
      section.line,
      `[${section.name}] ${key} is missing: add a line "${key}: ${spec.example}" (${spec.what}); without a [packrat] master every [repo NAME] section declares a repo`,
    );
  }
  const format = found.format?.value;
  if (found.distro && format !== undefined && format !== "yum") {
    problemAt(
      report,
      found.distro,
      `expected no distro: only yum repos have one, and this one is format ${format}`,
    );
  }
  if (found.version && format !== undefined && format !== "yum" && format !== "apt") {
    problemAt(
      report,
      found.version,
      `expected no version: only apt (codename) and yum repos have one, and this one is format ${format}`,
    );
  }
}

/**
 * A source directory and the published tree must not overlap: cleanup removes from root_dir
 * whatever the agent does not publish (a source inside it would lose its packages), and a scan
 * of a source holding root_dir would take the published copies for new packages.
 */
function checkSourcesApart(
  root: string,
  repos: Readonly<Record<string, RepoSettings>>,
  doc: IniDocument,
  report: Report,
): void {
  for (const [name, repo] of Object.entries(repos)) {
    const source = repo.source;
    if (source === undefined || source.startsWith("s3://")) continue;
    if (repo.publish === "in-place") continue; // checkInPlace: inside root_dir, on purpose
    const line = doc.sections.get(`repo ${name}`)?.entries.get("source")?.line ?? null;
    if (isInside(source, root)) {
      report.problem(
        line,
        `[repo ${name}] source = "${source}": expected a directory outside root_dir (${root}): the agent removes from root_dir what it does not publish, so the packages would be deleted`,
      );
    } else if (isInside(root, source)) {
      report.problem(
        line,
        `[repo ${name}] source = "${source}": expected a directory that does not hold root_dir (${root}): its published copies would be read back as new packages`,
      );
    }
  }
}

/**
 * `publish = in-place`: the source directory is the served tree, so it lies inside root_dir
 * (below it, not root_dir itself), is a directory the agent can write its metadata into, and
 * its format can be served from where the producer puts the packages.
 */
function checkInPlace(
  root: string | undefined,
  repos: Readonly<Record<string, RepoSettings>>,
  layouts: Partial<Values<LayoutSettings>>,
  s3: Partial<Values<S3Settings>> | null,
  doc: IniDocument,
  report: Report,
): void {
  for (const [name, repo] of Object.entries(repos)) {
    if (repo.publish !== "in-place") continue;
    const section = doc.sections.get(`repo ${name}`);
    const entryOf = (key: string) => section?.entries.get(key);
    const problem = (key: string, expected: string) => {
      const entry = entryOf(key);
      if (entry) report.valueProblem(`repo ${name}`, entry, entry.value, expected);
      else report.problem(section?.line ?? null, `[repo ${name}] ${expected}`);
    };
    const format = repo.format;
    const layout = format === undefined ? undefined : layoutFor(format);
    if (layout?.notInPlace !== undefined) {
      problem(
        "publish",
        `expected root_dir for a ${format} repo: it cannot be published in place (${layout.notInPlace})`,
      );
    }
    if (format === "yum") {
      for (const key of ["distro", "version"] as const) {
        if (entryOf(key))
          problem(
            key,
            `expected no ${key}: a yum repo published in place has its repodata/ at the top of its source directory (the dnf baseurl), with no <distro>/main/<version>/ tree`,
          );
      }
      if (layouts.signRpmPackages?.value === true) {
        problem(
          "publish",
          "expected root_dir while [mirror] sign_rpm_packages is on: signing rewrites each RPM, and the agent never writes a producer's file (turn signing off, or publish to root_dir)",
        );
      }
    }
    const source = repo.source;
    if (source === undefined) continue;
    if (source.startsWith("s3://")) {
      // In place in a bucket: the [s3] section publishes into the source's bucket, and the
      // repo is served at the source prefix (metadata beside the packages, as s3apt does).
      if (!s3?.bucket) continue; // checkBucketSources asks for the [s3] section
      const [bucket, ...rest] = source.slice("s3://".length).split("/");
      const prefix = rest.join("/");
      const published = s3.prefix?.value ?? S3_DEFAULTS.prefix;
      if (bucket !== s3.bucket.value || !prefix.startsWith(published) || prefix === published) {
        problem(
          "source",
          `expected a prefix below where the mirror is published (s3://${s3.bucket.value}/${published}...) for a repo published in place in a bucket: the index is written beside the packages, and the [s3] section is what writes to the bucket`,
        );
      }
      continue;
    }
    if (root === undefined) continue;
    const sourceEntry = entryOf("source");
    const sourceProblem = (expected: string) => {
      if (sourceEntry)
        report.valueProblem(`repo ${name}`, sourceEntry, sourceEntry.value, expected);
    };
    if (!isInside(source, root) || source === root) {
      sourceProblem(
        `expected a directory below root_dir (${root}) for a repo published in place: the source directory is the served tree, at its path under root_dir (e.g. ${posix.join(root, name)})`,
      );
      continue;
    }
    const rel = source.slice(root.length + 1);
    if (rel.split("/").some((seg) => seg.startsWith("."))) {
      sourceProblem(
        `expected no segment starting with "." under root_dir (${rel}): such names are the agent's own`,
      );
      continue;
    }
    try {
      if (!statSync(source).isDirectory()) {
        sourceProblem("expected a directory (the agent writes the repo's metadata into it)");
        continue;
      }
      accessSync(source, fsConstants.W_OK | fsConstants.X_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      sourceProblem(
        code === "ENOENT"
          ? "expected an existing directory: a repo published in place has its metadata written into its source (create it)"
          : `expected a directory the agent can write (${code ?? "not writable"}): a repo published in place has its metadata written into its source`,
      );
    }
  }
}

/**
 * An s3:// source is read with the [s3] section's connection (endpoint, region, credentials),
 * and must not overlap the prefix the mirror is published to in the same bucket (the published
 * packages would be read back as new ones, and replica cleanup could delete sources).
 */
function checkBucketSources(
  repos: Readonly<Record<string, RepoSettings>>,
  s3: Partial<Values<S3Settings>> | null,
  doc: IniDocument,
  report: Report,
): void {
  for (const [name, repo] of Object.entries(repos)) {
    const source = repo.source;
    if (source === undefined || !source.startsWith("s3://")) continue;
    const line = doc.sections.get(`repo ${name}`)?.entries.get("source")?.line ?? null;
    if (!s3) {
      report.problem(
        line,
        `[repo ${name}] source = "${source}": an s3:// source is read with the [s3] section's endpoint, region and credentials: add an [s3] section (its bucket is where the mirror is published, which may be the same bucket under another prefix)`,
      );
      continue;
    }
    const [bucket, ...rest] = source.slice("s3://".length).split("/");
    const prefix = rest.join("/");
    const published = s3.prefix?.value ?? S3_DEFAULTS.prefix;
    if (repo.publish === "in-place") continue; // served where it is: checkInPlace
    if (
      s3.bucket?.value === bucket &&
      (prefix.startsWith(published) || published.startsWith(prefix))
    ) {
      report.problem(
        line,
        `[repo ${name}] source = "${source}": expected a prefix apart from where the mirror is published ([s3] prefix "${published}" in the same bucket): the published packages would be read back as new ones`,
      );
    }
  }
}

/**
 * Each layout option's own check against the rest of [mirror] (OptionSpec.check): RPM signing
 * needs a key, a Valid-Until must outlast full_sync_interval. Skipped when a key it depends on
 * was refused, so one mistake is reported once.
 */
function checkLayoutOptions(
  layouts: Partial<Values<LayoutSettings>>,
  m: Partial<Values<MirrorSettings>>,
  failed: ReadonlySet<string>,
  report: Report,
): void {
  const context: OptionContext = {
    // A refused gpg_sign_key counts as written: its own problem is reported already.
    signing: m.gpgSignKey !== undefined || failed.has("gpgSignKey"),
    fullSyncInterval: failed.has("fullSyncInterval")
      ? null
      : (m.fullSyncInterval?.value ?? MIRROR_DEFAULTS.fullSyncInterval),
  };
  const specs = layoutOptionSpecs();
  for (const [field, found] of Object.entries(layouts) as [
    keyof LayoutSettings,
    Found<unknown>,
  ][]) {
    const problem = specs[field].check?.(found.value as NonNullable<unknown>, context);
    if (problem) problemAt(report, found, problem);
  }
}

/** Every layout option's default, copied (arrays and records too, so freezing cannot alias). */
function layoutDefaults(): LayoutSettings {
  const { mirrorDescription: _unused, ...defaults } = structuredClone(DEFAULT_LAYOUT_OPTIONS);
  return defaults;
}

/**
 * keep_file_list as paths relative to root_dir. The original agent's files list absolute paths
 * (keep_file_list: /var/www/repo/repo-key), which are accepted when they are inside root_dir.
 */
function resolveKeepList(keep: Found<string[]>, root: Found<string>, report: Report): string[] {
  const relative: string[] = [];
  for (const item of keep.value) {
    if (!item.startsWith("/")) {
      if (!relative.includes(item)) relative.push(item);
      continue;
    }
    if (!isInside(item, root.value) || item === root.value) {
      problemAt(
        report,
        keep,
        `${item} is not inside root_dir (${root.value}): expected paths relative to root_dir, e.g. repo-key`,
      );
      continue;
    }
    const rel = posix.relative(root.value, item);
    if (!relative.includes(rel)) relative.push(rel);
  }
  return relative;
}

/** MIRROR_DEFAULTS with its arrays and records copied, so freezing the result cannot alias it. */
function cloneDefaults(): Omit<MirrorSettings, "rootDir"> {
  const d = MIRROR_DEFAULTS;
  return {
    ...d,
    keepFileList: [...d.keepFileList],
  };
}

function unwrap<S>(values: Partial<Values<S>>): Partial<S> {
  const out: Record<string, unknown> = {};
  for (const [field, found] of Object.entries(values)) {
    if (found) out[field] = (found as Found<unknown>).value;
  }
  return out as Partial<S>;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function notReadable(path: string, err: unknown): PackratError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const where =
    "create it from etc/mirror.conf.example, or give its path with --config PATH or " +
    `$${CONFIG_PATH_ENV} (default ${DEFAULT_CONFIG_PATH})`;
  if (code === "ENOENT" || code === "ENOTDIR") {
    return new PackratError("PACKRAT_CONFIG_NOT_FOUND", `config file ${path} does not exist`, {
      hint: where,
      cause: err,
    });
  }
  if (code === "EACCES" || code === "EPERM") {
    return new PackratError(
      "PACKRAT_CONFIG_NOT_FOUND",
      `config file ${path} cannot be read: permission denied`,
      {
        hint: "make it readable by the user the agent runs as, and by no one else: it holds the psk (chmod 640)",
        cause: err,
      },
    );
  }
  if (code === "EISDIR") {
    return new PackratError(
      "PACKRAT_CONFIG_NOT_FOUND",
      `config file ${path} is a directory, not a file`,
      { hint: where, cause: err },
    );
  }
  const reason = err instanceof Error ? err.message : String(err);
  return new PackratError(
    "PACKRAT_CONFIG_NOT_FOUND",
    `config file ${path} cannot be read: ${reason}`,
    {
      hint: where,
      cause: err,
    },
  );
}
