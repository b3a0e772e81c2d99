/**
 * A reader for the INI dialect of Python's `configparser`, with the defaults the original Python
 * packrat-agent used (`configparser.ConfigParser()`): delimiters `=` and `:`, full-line comments
 * starting with `#` or `;` (no inline comments: `key: a ; b` has the value `a ; b`), indented
 * continuation lines, blank lines kept inside a multi-line value, keys lowercased, section names
 * case-sensitive, `[DEFAULT]` as the fallback section, strict mode (a repeated section or key is an
 * error). Values are interpolated separately (interpolation.ts) because configparser does that
 * only when a value is read.
 *
 * Hand-written because the `ini` npm package speaks another dialect: it has no `key: value`, no
 * continuation lines, and it treats `;`/`#` after a value as a comment.
 *
 * The algorithm follows CPython's `RawConfigParser._read` line by line, so that a file the original
 * agent accepted means the same thing here. Where configparser stops at the first problem, this
 * reader records it and goes on, so that one run lists every problem.
 */

/** configparser's default section: its keys are the fallback for every other section. */
export const DEFAULT_SECTION = "DEFAULT";

export interface IniEntry {
  /** Lowercased key (configparser's `optionxform`). */
  key: string;
  /** Raw value: stripped, continuation lines joined with "\n", not yet interpolated. */
  value: string;
  /** 1-based line of the `key: value` line. */
  line: number;
}

export interface IniSection {
  name: string;
  /** Line of the first header of this section. */
  line: number;
  entries: Map<string, IniEntry>;
}

export interface IniProblem {
  line: number;
  message: string;
}

export interface IniDocument {
  /** Sections in file order, without `[DEFAULT]`. */
  sections: Map<string, IniSection>;
  /** The `[DEFAULT]` section; empty when the file has none. */
  defaults: IniSection;
  problems: IniProblem[];
}

/**
 * Python's `str.isspace()` set, which `str.strip()` removes. JavaScript's `trim()` differs: it also
 * strips U+FEFF and keeps U+001C..U+001F and U+0085.
 */
const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const SPACE_CHAR = new RegExp(`[${PY_SPACE}]`);
const NON_SPACE = new RegExp(`[^${PY_SPACE}]`);

// Loops rather than /\s+$/: that regex is quadratic on a long run of spaces before a non-space.
function isSpace(s: string, i: number): boolean {
  return SPACE_CHAR.test(s.charAt(i));
}

export function pyStrip(s: string): string {
  let start = 0;
  while (start < s.length && isSpace(s, start)) start++;
  return pyRstrip(s.slice(start));
}

function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && isSpace(s, end - 1)) end--;
  return s.slice(0, end);
}

const COMMENT_PREFIXES = ["#", ";"];
/** configparser's SECTCRE `\[(?P<header>.+)\]` with re.match: anchored at the start only. */
const SECTION_HEADER = /^\[(.+)\]/s;

/** Python's text mode reads `\n`, `\r\n` and `\r` as line ends (universal newlines). */
function splitLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function quote(s: string): string {
  return JSON.stringify(s);
}

export function parseIni(text: string): IniDocument {
  const sections = new Map<string, IniSection>();
  const defaults: IniSection = { name: DEFAULT_SECTION, line: 0, entries: new Map() };
  const problems: IniProblem[] = [];
  // Pieces of each value, joined at the end like configparser's _join_multiline_values.
  const pieces = new Map<IniEntry, string[]>();

  let current: IniSection | null = null;
  let entry: IniEntry | null = null;
  let indentLevel = 0;
  // Strict mode: sections and (section, key) pairs seen in this file.
  const seenSections = new Set<string>();
  const seenKeys = new Set<string>();
  // After a line that is neither a section nor a key, configparser has no current key either.
  let skippingOrphanLines = false;

  // A BOM is not whitespace to Python, so configparser would reject line 1; editors add one, and
  // there is no other meaning it could have.
  const body = text.startsWith("\ufeff") ? text.slice(1) : text;

  splitLines(body).forEach((rawLine, index) => {
    const lineNo = index + 1;
    const stripped = pyStrip(rawLine);
    const isComment = COMMENT_PREFIXES.some((p) => stripped.startsWith(p));
    if (isComment) return;
    if (stripped === "") {
      // empty_lines_in_values=True: a blank line belongs to the value being read, if any;
      // trailing blank lines are dropped when the value is joined.
      if (current !== null && entry !== null) pieces.get(entry)?.push("");
      return;
    }

    const indent = rawLine.search(NON_SPACE);
    if (current !== null && entry !== null && indent > indentLevel) {
      pieces.get(entry)?.push(stripped);
      return;
    }
    indentLevel = indent;

    const header = SECTION_HEADER.exec(stripped);
    if (header) {
      const name = header[1] ?? "";
      entry = null;
      skippingOrphanLines = false;
      if (name === DEFAULT_SECTION) {
        // configparser does not apply the duplicate-section check to [DEFAULT].
        current = defaults;
        if (defaults.line === 0) defaults.line = lineNo;
        return;
      }
      const existing = sections.get(name);
      if (existing) {
        if (seenSections.has(name)) {
          problems.push({
            line: lineNo,
            message: `section [${name}] appears again (first on line ${existing.line}): merge the two into one`,
          });
        }
        current = existing;
        return;
      }
      current = { name, line: lineNo, entries: new Map() };
      sections.set(name, current);
      seenSections.add(name);
      return;
    }

    if (current === null) {
      if (!skippingOrphanLines) {
        problems.push({
          line: lineNo,
          message: `${quote(stripped)} comes before any [section] header: the file must start with a section such as [packrat]`,
        });
      }
      // Report the first orphan line only; the rest of them share its cause.
      skippingOrphanLines = true;
      return;
    }

    const delimiter = stripped.search(/[=:]/);
    if (delimiter < 0) {
      // configparser keeps the current key here, so indented lines below still continue it.
      problems.push({
        line: lineNo,
        message: `${quote(stripped)} is not a "key: value" line, a [section] header or a comment (an indented line continues the value above it)`,
      });
      return;
    }
    const key = pyRstrip(stripped.slice(0, delimiter)).toLowerCase();
    const value = pyStrip(stripped.slice(delimiter + 1));
    if (key === "") {
      entry = null;
      problems.push({
        line: lineNo,
        message: `${quote(stripped)} has no key before its "${stripped[delimiter] ?? ""}"`,
      });
      return;
    }
    const previous = current.entries.get(key);
    const pairId = `${current.name}\u0000${key}`;
    if (previous && seenKeys.has(pairId)) {
      problems.push({
        line: lineNo,
        message: `[${current.name}] ${key} is set again (first on line ${previous.line}): keep one of them`,
      });
      // Keep the first value and skip this one's continuation lines.
      entry = { key, value, line: lineNo };
      pieces.set(entry, [value]);
      return;
    }
    seenKeys.add(pairId);
    entry = { key, value, line: lineNo };
    pieces.set(entry, [value]);
    current.entries.set(key, entry);
  });

  for (const [e, parts] of pieces) e.value = pyRstrip(parts.join("\n"));
  return { sections, defaults, problems };
}
