/**
 * The little XML the yum layout writes: escaping for text and attributes. Characters XML 1.0
 * cannot carry at all (most C0 controls, lone surrogates, U+FFFE/FFFF) are dropped, so a
 * package with odd bytes in its description still yields metadata every parser accepts.
 */

const FORBIDDEN =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Any character xmlEscape drops or replaces (FORBIDDEN or [&<>\r]); tab and LF stay. */
// eslint-disable-next-line no-control-regex
const TEXT_NEEDS_WORK = /[\u0000-\u0008\u000b-\u001f&<>\ud800-\udfff\ufffe\uffff]/;
/** Any character xmlAttrEscape drops or replaces: controls, [&<>"] and everything non-ASCII. */
// eslint-disable-next-line no-control-regex
const ATTR_NEEDS_WORK = /[\u0000-\u001f&<>"\u0080-\uffff]/;

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
};

/**
 * Escape text content as libxml2 writes it for createrepo_c (xmlsave.c xmlEscapeContent): quotes
 * stay, CR becomes &#13; (an XML parser would otherwise read it as a line end).
 */
export function xmlEscape(value: string | number): string {
  if (typeof value === "number") return String(value);
  // Most values need nothing: one scan instead of two replaces (a 10,000-RPM render escapes
  // a few hundred thousand values).
  if (!TEXT_NEEDS_WORK.test(value)) return value;
  return value.replace(FORBIDDEN, "").replace(/[&<>\r]/g, (c) => ENTITIES[c] ?? "&#13;");
}

/**
 * Escape an attribute value (double-quoted) as libxml2 does in a document without a declared
 * encoding, which is how createrepo_c builds its nodes (xmlBufAttrSerializeTxtContent): tab,
 * LF and CR as character references (attribute normalisation would turn them into spaces),
 * and every non-ASCII character as &#xHEX; rather than UTF-8, e.g. name="na&#xEF;ve".
 */
export function xmlAttrEscape(value: string | number): string {
  if (typeof value === "number") return String(value);
  if (!ATTR_NEEDS_WORK.test(value)) return value;
  return value.replace(FORBIDDEN, "").replace(/[&<>"\t\n\r]|[\u0080-\u{10ffff}]/gu, (c) => {
    const entity = ENTITIES[c];
    if (entity !== undefined) return entity;
    const cp = c.codePointAt(0) ?? 0;
    return cp < 0x80 ? `&#${cp};` : `&#x${cp.toString(16).toUpperCase()};`;
  });
}

/** ` name="value"` pairs, skipping undefined values, in the order given. */
export function xmlAttrs(attrs: Record<string, string | number | undefined>): string {
  let out = "";
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined) out += ` ${k}="${xmlAttrEscape(v)}"`;
  }
  return out;
}
