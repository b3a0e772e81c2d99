/**
 * pacman's `.PKGINFO`: `key = value` lines written by makepkg. Read the way repo-add 6.0.2
 * reads it (`db_write_entry`), so that our database entries equal its own: `#` lines are
 * comments, the key ends at the first space or `=`, runs of whitespace in the value become
 * one space, a repeated single-valued key keeps its last value, and the multi-valued keys
 * collect every value in order.
 */
import { FormatError } from "./format-error.js";

/** Keys that may repeat; repo-add collects each into an array. */
export const PKGINFO_LIST_KEYS = [
  "group",
  "license",
  "replaces",
  "depend",
  "conflict",
  "provides",
  "optdepend",
  "makedepend",
  "checkdepend",
  "backup",
] as const;

export type PkgInfo = Record<string, string | string[]>;

const LIST_KEYS: ReadonlySet<string> = new Set(PKGINFO_LIST_KEYS);

/** Parses .PKGINFO text; list keys are always arrays, every other key a string. */
export function parsePkgInfo(text: string): PkgInfo {
  const info: PkgInfo = {};
  for (const rawLine of text.split("\n")) {
    if (rawLine.startsWith("#")) continue;
    // bash `IFS=' =' read -r var val`: leading spaces go, the key ends at a space or "=",
    // then one delimiter (spaces around at most one "=") is consumed.
    const line = rawLine.replace(/^ +/, "");
    if (line === "") continue;
    const match = /^([^ =]*)(?: *= *| +)?(.*)$/s.exec(line);
    if (!match) continue;
    const key = match[1]!;
    // repo-add's `declare` rejects a key that is not a shell name and goes on: so do we.
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) continue;
    const value = trimEndSpaces(match[2]!).replace(/\s+/g, " ");
    if (LIST_KEYS.has(key)) {
      const list = info[key];
      if (Array.isArray(list)) list.push(value);
      else info[key] = [value];
    } else {
      info[key] = value;
    }
  }
  for (const key of ["pkgname", "pkgver"]) {
    const value = info[key];
    if (typeof value !== "string" || value === "") {
      throw new FormatError("pkginfo", `.PKGINFO has no ${key}`);
    }
  }
  return info;
}

/**
 * `s.replace(/ +$/, "")` in one pass: the regex retries from every space of a run, so a
 * value of 100,000 spaces then "b" took 28 s (quadratic).
 */
function trimEndSpaces(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x20) end--;
  return s.slice(0, end);
}

/** A single-valued key ("" when absent). */
export function pkgInfoValue(info: PkgInfo, key: string): string {
  const value = info[key];
  return typeof value === "string" ? value : "";
}

/** A list key ([] when absent). */
export function pkgInfoList(info: PkgInfo, key: string): string[] {
  const value = info[key];
  return Array.isArray(value) ? value : [];
}

/**
 * alpm's vercmp (`[epoch:]version[-release]`): <0, 0 or >0 as `a` is older, equal or newer.
 * Port of lib/libalpm/version.c (alpm_pkg_vercmp + rpmvercmp).
 */
export function vercmp(a: string, b: string): number {
  if (a === b) return 0;
  const [ea, va, ra] = parseEvr(a);
  const [eb, vb, rb] = parseEvr(b);
  let ret = rpmvercmp(ea, eb);
  if (ret === 0) {
    ret = rpmvercmp(va, vb);
    if (ret === 0 && ra !== null && rb !== null) ret = rpmvercmp(ra, rb);
  }
  return ret;
}

function parseEvr(evr: string): [string, string, string | null] {
  let s = 0;
  while (s < evr.length && evr.charCodeAt(s) >= 48 && evr.charCodeAt(s) <= 57) s++;
  let epoch = "0";
  let rest = evr;
  if (evr[s] === ":") {
    epoch = s === 0 ? "0" : evr.slice(0, s);
    rest = evr.slice(s + 1);
  }
  const dash = rest.lastIndexOf("-");
  if (dash === -1) return [epoch, rest, null];
  return [epoch, rest.slice(0, dash), rest.slice(dash + 1)];
}

const isAlnum = (c: string | undefined) => c !== undefined && /[A-Za-z0-9]/.test(c);
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";
const isAlpha = (c: string | undefined) => c !== undefined && /[A-Za-z]/.test(c);

function rpmvercmp(a: string, b: string): number {
  if (a === b) return 0;
  let one = 0;
  let two = 0;
  while (one < a.length && two < b.length) {
    const sepStart1 = one;
    const sepStart2 = two;
    while (one < a.length && !isAlnum(a[one])) one++;
    while (two < b.length && !isAlnum(b[two])) two++;
    if (one >= a.length || two >= b.length) break;
    // Separators of different lengths: the longer run wins (alpm's rule).
    if (one - sepStart1 !== two - sepStart2) return one - sepStart1 < two - sepStart2 ? -1 : 1;
    let p1 = one;
    let p2 = two;
    const numeric = isDigit(a[p1]);
    const take = numeric ? isDigit : isAlpha;
    while (p1 < a.length && take(a[p1])) p1++;
    while (p2 < b.length && take(b[p2])) p2++;
    let seg1 = a.slice(one, p1);
    let seg2 = b.slice(two, p2);
    if (seg2 === "") return numeric ? 1 : -1;
    if (numeric) {
      seg1 = seg1.replace(/^0+/, "");
      seg2 = seg2.replace(/^0+/, "");
      if (seg1.length !== seg2.length) return seg1.length > seg2.length ? 1 : -1;
    }
    if (seg1 !== seg2) return seg1 < seg2 ? -1 : 1;
    one = p1;
    two = p2;
  }
  const end1 = one >= a.length;
  const end2 = two >= b.length;
  if (end1 && end2) return 0;
  // "1.0" < "1.0.1", but "1.0a" < "1.0" (a trailing alpha is a pre-release).
  if ((end1 && !isAlpha(b[two])) || isAlpha(a[one])) return -1;
  return 1;
}
