/**
 * A scanner for the large repodata documents (primary, filelists, other): the root element's
 * attributes and, for each <package>, its attributes and those of the child elements asked for.
 *
 * Not a general XML parser. It relies on what keeps repodata simple: element text never holds
 * an unescaped '<' (escaping is required outside CDATA, and createrepo_c and this agent never
 * write CDATA), and <package> elements do not nest. libsolv's parser stays the judge of
 * everything else in the real dnf tests. Building a DOM of a 10,000-package primary.xml took
 * ~0.6 s and most of the memory of every publish.
 */
import { FormatError } from "../formats/format-error.js";

export interface ScannedElement {
  attrs: Map<string, string>;
  text: string;
}

export interface ScannedPackage {
  attrs: Map<string, string>;
  /** The first child element of each name asked for (namespace prefixes dropped). */
  children: Map<string, ScannedElement>;
}

export interface ScannedDocument {
  rootAttrs: Map<string, string>;
  packages: ScannedPackage[];
}

const ENTITY = /&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g;

export function unescapeXml(s: string): string {
  if (!s.includes("&")) return s;
  return s.replace(ENTITY, (_, e: string) => {
    switch (e) {
      case "amp":
        return "&";
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
      default:
        return String.fromCodePoint(
          e[1] === "x" ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10),
        );
    }
  });
}

const ATTR = /([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

function parseAttrs(s: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of s.matchAll(ATTR)) {
    const name = m[1]!;
    const local = name.includes(":") && !name.startsWith("xmlns") ? name.split(":")[1]! : name;
    out.set(local, unescapeXml(m[2] ?? m[3] ?? ""));
  }
  return out;
}

/** Index just past a start tag's name, if `xml` has `<name` at `at` followed by a delimiter. */
function tagEnd(xml: string, at: number, name: string): number {
  const end = at + 1 + name.length;
  const c = xml.charCodeAt(end);
  // space, tab, CR, LF, '>' or '/'
  return c === 32 || c === 9 || c === 13 || c === 10 || c === 62 || c === 47 ? end : -1;
}

function childElement(block: string, name: string): ScannedElement | undefined {
  // <name ...> or <prefix:name ...>
  const re = new RegExp(`<(?:[\\w.-]+:)?${name}(?=[\\s/>])([^>]*)>`, "g");
  const m = re.exec(block);
  if (!m) return undefined;
  let attrText = m[1] ?? "";
  const selfClosing = attrText.endsWith("/");
  if (selfClosing) attrText = attrText.slice(0, -1);
  const attrs = parseAttrs(attrText);
  if (selfClosing) return { attrs, text: "" };
  const close = block.indexOf("</", re.lastIndex);
  if (close < 0) throw new FormatError("repodata", `<${name}> is not closed`);
  return { attrs, text: unescapeXml(block.slice(re.lastIndex, close)) };
}

/**
 * What a scan remembers between readings of one document (issue 25): each <package> element's
 * reading by the element's exact text. `last` is the previous reading's, `used` fills with
 * this one's; each reading made now is of a copy of its element, so a reading carried to later
 * generations keeps a few hundred bytes alive, not the whole document it came from.
 */
export interface ScanMemo {
  last: ReadonlyMap<string, ScannedPackage> | undefined;
  used: Map<string, ScannedPackage>;
}

/** A string with no tie to the one it was cut from (V8 keeps substrings as slices of it). */
const detached = (s: string) => Buffer.from(s, "utf8").toString("utf8");

/** The reading of one <package ...>...</package> (or self-closed) element's text. */
function readPackage(
  element: string,
  nameEnd: number,
  childNames: readonly string[],
): ScannedPackage {
  const gt = element.indexOf(">", nameEnd);
  let attrText = element.slice(nameEnd, gt);
  const selfClosing = attrText.endsWith("/");
  if (selfClosing) attrText = attrText.slice(0, -1);
  const attrs = parseAttrs(attrText);
  const children = new Map<string, ScannedElement>();
  if (!selfClosing) {
    const block = element.slice(gt + 1, element.length - "</package>".length);
    for (const name of childNames) {
      const el = childElement(block, name);
      if (el) children.set(name, el);
    }
  }
  return { attrs, children };
}

/**
 * Scan a document whose root element is `root` (e.g. "metadata") for its <package> elements.
 * Throws FormatError when the structure is broken (no root, an unclosed package). With a
 * memo, an element read last time (the same text) is not read again.
 */
export function scanRepodata(
  xml: string,
  root: string,
  childNames: readonly string[],
  memo?: ScanMemo,
): ScannedDocument {
  const rootRe = new RegExp(`<${root}(?=[\\s/>])([^>]*)>`);
  const rm = rootRe.exec(xml);
  if (!rm) throw new FormatError("repodata", `no <${root}> element`);
  const rootAttrs = parseAttrs(rm[1] ?? "");
  const closeRoot = `</${root}>`;
  const rootEnd = xml.lastIndexOf(closeRoot);
  if (rootEnd < 0 && !(rm[1] ?? "").endsWith("/"))
    throw new FormatError("repodata", `<${root}> is not closed`);
  const packages: ScannedPackage[] = [];
  let pos = rm.index + rm[0].length;
  const limit = rootEnd < 0 ? xml.length : rootEnd;
  for (;;) {
    const at = xml.indexOf("<package", pos);
    if (at < 0 || at >= limit) break;
    const nameEnd = tagEnd(xml, at, "package");
    if (nameEnd < 0) {
      pos = at + 8;
      continue;
    }
    const gt = xml.indexOf(">", nameEnd);
    if (gt < 0) throw new FormatError("repodata", "a <package> start tag is not closed");
    let stop = gt + 1;
    if (xml.charCodeAt(gt - 1) !== 47 /* "/": self-closed */ || gt === nameEnd) {
      const end = xml.indexOf("</package>", gt);
      if (end < 0 || end > limit)
        throw new FormatError("repodata", "a <package> element is not closed");
      stop = end + "</package>".length;
    }
    const element = xml.slice(at, stop);
    let pkg = memo?.last?.get(element) ?? memo?.used.get(element);
    pkg ??= readPackage(memo ? detached(element) : element, nameEnd - at, childNames);
    memo?.used.set(element, pkg);
    packages.push(pkg);
    pos = stop;
  }
  return { rootAttrs, packages };
}
