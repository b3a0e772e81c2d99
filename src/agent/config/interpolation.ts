/**
 * configparser's BasicInterpolation, which the original agent got by using `ConfigParser()`:
 * `%%` is a literal `%`, `%(key)s` is the raw value of `key` in the same section or [DEFAULT],
 * and any other `%` is an error. A psk written for the original agent as `ab%%cd` therefore
 * still means `ab%cd` here. Follows CPython's `BasicInterpolation._interpolate_some`.
 */

/** CPython's MAX_INTERPOLATION_DEPTH. */
const MAX_DEPTH = 10;
const REFERENCE = /^%\(([^)]+)\)s/;

export type InterpolationResult = { value: string } | { problem: string };

/**
 * @param raw the value as read
 * @param lookup raw values of the section merged over [DEFAULT], by lowercased key
 */
export function interpolate(
  raw: string,
  lookup: (key: string) => string | undefined,
): InterpolationResult {
  const out: string[] = [];
  const problem = expand(raw, lookup, out, 1);
  return problem === null ? { value: out.join("") } : { problem };
}

function expand(
  text: string,
  lookup: (key: string) => string | undefined,
  out: string[],
  depth: number,
): string | null {
  if (depth > MAX_DEPTH) {
    return `%(...)s references nest deeper than ${MAX_DEPTH} levels (a key that refers to itself?)`;
  }
  let rest = text;
  while (rest !== "") {
    const p = rest.indexOf("%");
    if (p < 0) {
      out.push(rest);
      return null;
    }
    out.push(rest.slice(0, p));
    rest = rest.slice(p);
    const next = rest.charAt(1);
    if (next === "%") {
      out.push("%");
      rest = rest.slice(2);
      continue;
    }
    if (next !== "(") {
      return `"%" must be followed by "%" or "(" as in Python's configparser: write "%%" for a literal "%"`;
    }
    const ref = REFERENCE.exec(rest);
    if (!ref) {
      // The text itself is not quoted: it may be part of a secret.
      return `"%(" starts a reference that is not of the form %(key)s: write "%%" for a literal "%"`;
    }
    const name = (ref[1] ?? "").toLowerCase();
    rest = rest.slice(ref[0].length);
    const target = lookup(name);
    if (target === undefined) {
      return `%(${name})s refers to a key that is not set in this section or in [DEFAULT]`;
    }
    if (target.includes("%")) {
      const problem = expand(target, lookup, out, depth + 1);
      if (problem !== null) return problem;
    } else {
      out.push(target);
    }
  }
  return null;
}
