/**
 * Debian control stanzas (deb-control(5), deb822(5)), parsed and written the way dpkg's own
 * Dpkg::Control::HashCore does, so that a Packages stanza we write equals the one
 * dpkg-scanpackages writes for the same .deb.
 */
import { FormatError } from "./format-error.js";

/** One field as found in the control file: its name as spelled there and its raw value. */
export type ControlField = [name: string, value: string];

/**
 * The first stanza of a control file, fields in file order. A value keeps its lines as found:
 * the first line without the blank after the colon, continuation lines verbatim (with their
 * leading blank), joined by "\n". Rules follow Dpkg::Control::HashCore::parse: `#` lines are
 * comments, a blank line ends the stanza, field names are case-insensitive and unique.
 */
export function parseControlStanza(text: string): ControlField[] {
  const fields: ControlField[] = [];
  const seen = new Set<string>();
  let current: ControlField | null = null;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, "");
    // trimEnd, not .replace(/\s+$/, ""): the regex retries from every blank of a run, so a
    // line of 100,000 blanks then "x" took 40 s (quadratic); trimEnd strips the same set
    // (WhiteSpace and LineTerminator, which is what \s matches) in one pass.
    const trimmed = raw.trimEnd();
    if (trimmed.length === 0) {
      if (fields.length === 0) continue;
      break;
    }
    if (trimmed.startsWith("#")) continue;
    if (/^\s/.test(raw)) {
      if (!current)
        throw new FormatError("deb-control", `line ${i + 1}: continuation line before any field`);
      current[1] += `\n${raw}`;
      continue;
    }
    const colon = raw.indexOf(":");
    const name = colon === -1 ? "" : raw.slice(0, colon).trimEnd();
    if (colon === -1 || !/^[!-9;-~]+$/.test(name)) {
      throw new FormatError(
        "deb-control",
        `line ${i + 1}: expected "Field: value", found ${JSON.stringify(raw.slice(0, 80))}`,
      );
    }
    if (name.startsWith("-"))
      throw new FormatError("deb-control", `line ${i + 1}: field name starts with "-"`);
    const key = name.toLowerCase();
    if (seen.has(key))
      throw new FormatError("deb-control", `line ${i + 1}: duplicate field ${name}`);
    seen.add(key);
    current = [name, raw.slice(colon + 1).replace(/^\s+/, "")];
    fields.push(current);
  }
  return fields;
}

/** A field's value by case-insensitive name, as dpkg would store it (see normalizeValue). */
export function controlValue(fields: readonly ControlField[], name: string): string | undefined {
  const key = name.toLowerCase();
  const field = fields.find(([n]) => n.toLowerCase() === key);
  return field ? normalizeValue(field[1]) : undefined;
}

/**
 * The value as Dpkg::Control stores it: trailing blanks removed from every line, the first
 * blank of each continuation line removed, and a line of only dots loses one dot (the " ."
 * paragraph separator becomes an empty line).
 */
export function normalizeValue(raw: string): string {
  const [first = "", ...rest] = raw.split("\n");
  // trimEnd for /\s+$/: linear on long blank runs (see parseControlStanza).
  const out = [first.trimEnd()];
  for (const line of rest) {
    let l = line.trimEnd().slice(1);
    if (/^\.+$/.test(l)) l = l.slice(1);
    out.push(l);
  }
  return out.join("\n");
}

/** Field names whose canonical spelling is not the generic Capital-After-Dash form. */
const IRREGULAR_NAMES: Record<string, string> = {
  md5sum: "MD5sum",
  sha1: "SHA1",
  sha256: "SHA256",
  notautomatic: "NotAutomatic",
  butautomaticupgrades: "ButAutomaticUpgrades",
  "no-support-for-architecture-all": "No-Support-for-Architecture-all",
};

/** Dpkg::Control::FieldsCore::field_capitalize. */
export function capitalizeField(name: string): string {
  const key = name.toLowerCase();
  return (
    IRREGULAR_NAMES[key] ??
    key
      .split("-")
      .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
      .join("-")
  );
}

/** Dpkg::Control::FieldsCore field order for CTRL_INDEX_PKG (a Packages stanza), dpkg 1.21. */
export const PACKAGES_FIELD_ORDER: readonly string[] = [
  "package",
  "package-type",
  "source",
  "version",
  "kernel-version",
  "built-for-profiles",
  "auto-built-package",
  "architecture",
  "subarchitecture",
  "installer-menu-item",
  "build-essential",
  "essential",
  "protected",
  "origin",
  "bugs",
  "maintainer",
  "installed-size",
  "pre-depends",
  "depends",
  "recommends",
  "suggests",
  "enhances",
  "conflicts",
  "breaks",
  "replaces",
  "provides",
  "built-using",
  "static-built-using",
  "filename",
  "size",
  "md5sum",
  "sha1",
  "sha256",
  "section",
  "priority",
  "multi-arch",
  "homepage",
  "description",
  "tag",
  "task",
];

/**
 * A stanza as Dpkg::Control::HashCore::output writes it: fields in `order` (lower-case names)
 * first, the rest sorted by capitalised name; whitespace-only values dropped (dpkg's
 * drop_empty for index types); every value normalised. Ends with "\n" (no blank line).
 */
/** Field rank maps, built once per order list: renderStanza runs once per package per render. */
const ranks = new WeakMap<readonly string[], Map<string, number>>();
function rankOf(order: readonly string[]): Map<string, number> {
  let rank = ranks.get(order);
  if (!rank) ranks.set(order, (rank = new Map(order.map((name, i) => [name, i]))));
  return rank;
}

export function renderStanza(
  fields: readonly (readonly [string, string])[],
  order: readonly string[] = PACKAGES_FIELD_ORDER,
): string {
  const rank = rankOf(order);
  const named = fields.map(([name, value]) => ({
    key: name.toLowerCase(),
    name: capitalizeField(name),
    value: normalizeValue(value),
  }));
  named.sort((a, b) => {
    const ra = rank.get(a.key);
    const rb = rank.get(b.key);
    if (ra !== undefined && rb !== undefined) return ra - rb;
    if (ra !== undefined) return -1;
    if (rb !== undefined) return 1;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
  let out = "";
  for (const { name, value } of named) {
    if (!/\S/.test(value)) continue;
    const [first = "", ...rest] = value.split("\n");
    out += first.length > 0 ? `${name}: ${first}\n` : `${name}:\n`;
    for (const line of rest) {
      out += line.length === 0 || /^\.+$/.test(line) ? ` .${line}\n` : ` ${line}\n`;
    }
  }
  return out;
}
