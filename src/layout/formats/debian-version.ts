/**
 * Debian version ordering, as dpkg implements it (lib/dpkg/version.c, deb-version(7)):
 * [epoch:]upstream[-revision]; epochs compare as numbers, then upstream, then revision, each
 * with verrevcmp: alternating runs of non-digits (letters sort before other characters, `~`
 * before everything, even the end of the string) and numbers (compared by value).
 */

export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

export function parseDebianVersion(version: string): DebianVersion {
  const v = version.trim();
  const colon = v.indexOf(":");
  let epoch = 0;
  let rest = v;
  if (colon !== -1) {
    const e = v.slice(0, colon);
    epoch = /^[0-9]+$/.test(e) ? Number(e) : 0;
    rest = v.slice(colon + 1);
  }
  const dash = rest.lastIndexOf("-");
  return dash === -1
    ? { epoch, upstream: rest, revision: "" }
    : { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) };
}

/** Negative, zero or positive as `a` sorts before, equal to or after `b` (dpkg order). */
export function compareDebianVersions(a: string, b: string): number {
  const va = parseDebianVersion(a);
  const vb = parseDebianVersion(b);
  if (va.epoch !== vb.epoch) return va.epoch < vb.epoch ? -1 : 1;
  return verrevcmp(va.upstream, vb.upstream) || verrevcmp(va.revision, vb.revision);
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** dpkg's order(): digits and the end 0, `~` -1, letters themselves, anything else after. */
function order(c: number): number {
  if (c === 0 || isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 0x7e) return -1;
  return c + 256;
}

function verrevcmp(a: string, b: string): number {
  // Char codes with a 0 sentinel past the end, like the C strings dpkg walks.
  const at = (s: string, i: number) => (i < s.length ? s.charCodeAt(i) : 0);
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(at(a, i))) || (j < b.length && !isDigit(at(b, j)))) {
      const ac = order(at(a, i));
      const bc = order(at(b, j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (at(a, i) === 0x30) i++;
    while (at(b, j) === 0x30) j++;
    while (isDigit(at(a, i)) && isDigit(at(b, j))) {
      if (!firstDiff) firstDiff = at(a, i) - at(b, j);
      i++;
      j++;
    }
    if (isDigit(at(a, i))) return 1;
    if (isDigit(at(b, j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}
