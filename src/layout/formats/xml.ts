/**
 * The little XML the yum layout writes: escaping for text and attributes. Characters XML 1.0
 * cannot carry at all (most C0 controls, lone surrogates, U+FFFE/FFFF) are dropped, so a
 * package with odd bytes in its description still yields metadata every parser accepts.
 */

const FORBIDDEN =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
};

/** Escape text content (quotes stay as they are, as libxml2 writes them). */
export function xmlEscape(value: string | number): string {
  return String(value)
    .replace(FORBIDDEN, "")
    .replace(/[&<>]/g, (c) => ENTITIES[c] ?? c);
}

/** Escape an attribute value (double-quoted). */
export function xmlAttrEscape(value: string | number): string {
  return String(value)
    .replace(FORBIDDEN, "")
    .replace(/[&<>"]/g, (c) => ENTITIES[c] ?? c);
}

/** ` name="value"` pairs, skipping undefined values, in the order given. */
export function xmlAttrs(attrs: Record<string, string | number | undefined>): string {
  let out = "";
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined) out += ` ${k}="${xmlAttrEscape(v)}"`;
  }
  return out;
}
