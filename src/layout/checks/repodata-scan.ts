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
 * The <package> elements of `xml` from `pos` up to `limit`. An element that does not end
 * before `limit` throws when `strict`; otherwise the answer is null (a piece of a document
 * whose next piece may hold the rest).
 */
function scanPackages(
  xml: string,
  pos: number,
  limit: number,
  childNames: readonly string[],
  memo: ScanMemo | undefined,
  strict: boolean,
): ScannedPackage[] | null {
  const packages: ScannedPackage[] = [];
  for (;;) {
    const at = xml.indexOf("<package", pos);
    if (at < 0 || at >= limit) break;
    const nameEnd = tagEnd(xml, at, "package");
    if (nameEnd < 0) {
      pos = at + 8;
      continue;
    }
    const gt = xml.indexOf(">", nameEnd);
    if (gt < 0) {
      if (!strict) return null;
      throw new FormatError("repodata", "a <package> start tag is not closed");
    }
    let stop = gt + 1;
    if (xml.charCodeAt(gt - 1) !== 47 /* "/": self-closed */ || gt === nameEnd) {
      const end = xml.indexOf("</package>", gt);
      if (end < 0 || end > limit) {
        if (!strict) return null;
        throw new FormatError("repodata", "a <package> element is not closed");
      }
      stop = end + "</package>".length;
    }
    const element = xml.slice(at, stop);
    let pkg = memo?.last?.get(element) ?? memo?.used.get(element);
    pkg ??= readPackage(memo ? detached(element) : element, nameEnd - at, childNames);
    memo?.used.set(element, pkg);
    packages.push(pkg);
    pos = stop;
  }
  return packages;
}

function rootStart(xml: string, root: string): RegExpExecArray | null {
  return new RegExp(`<${root}(?=[\\s/>])([^>]*)>`).exec(xml);
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
  const rm = rootStart(xml, root);
  if (!rm) throw new FormatError("repodata", `no <${root}> element`);
  const rootAttrs = parseAttrs(rm[1] ?? "");
  const rootEnd = xml.lastIndexOf(`</${root}>`);
  if (rootEnd < 0 && !(rm[1] ?? "").endsWith("/"))
    throw new FormatError("repodata", `<${root}> is not closed`);
  const limit = rootEnd < 0 ? xml.length : rootEnd;
  const packages = scanPackages(xml, rm.index + rm[0].length, limit, childNames, memo, true)!;
  return { rootAttrs, packages };
}

/**
 * The last byte of a piece a cut may follow: '>' or white space. No name this scanner looks
 * for ("<package", "</package>", the root's tags) can then be split, nor a UTF-8 character.
 */
const CUT_AFTER = new Set([0x3e, 0x20, 0x09, 0x0d, 0x0a]);

/** One piece of a document (a member of a multi-member gzip file) and what identifies it. */
export interface DocPiece<K> {
  plain: Uint8Array;
  /** The same key stands for the same bytes (a gzip member matched by its exact bytes). */
  key: K;
}

/** What a pieces scan remembers between readings: each middle piece's packages, by its key. */
export interface PieceMemo<K> {
  last: ReadonlyMap<K, ScannedPackage[]> | undefined;
  used: Map<K, ScannedPackage[]>;
}

/**
 * scanRepodata of the pieces joined, without joining them (issue 25): each piece is read on
 * its own, and a middle piece remembered by its key gives its packages without being decoded
 * or looked at. Exact where every cut follows a '>' or white space, each <package> element
 * ends in the piece it starts in, the root's start tag is in the first piece and its last end
 * tag in the last: then no name, element or character spans a cut, and reading the pieces
 * one by one finds what reading the whole finds. Null where the pieces are not cut so (or are too few to gain anything):
 * the caller then reads the joined text with scanRepodata, which also says what is broken.
 */
export function scanRepodataPieces<K>(
  pieces: readonly DocPiece<K>[],
  root: string,
  childNames: readonly string[],
  memo?: ScanMemo,
  pieceMemo?: PieceMemo<K>,
): ScannedDocument | null {
  const n = pieces.length;
  if (n < 3) return null;
  for (let i = 0; i < n - 1; i++) {
    const p = pieces[i]!.plain;
    if (p.length === 0 || !CUT_AFTER.has(p[p.length - 1]!)) return null;
  }
  const text = (i: number) => {
    const p = pieces[i]!.plain;
    return Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("utf8");
  };
  const first = text(0);
  const rm = rootStart(first, root);
  if (!rm || (rm[1] ?? "").endsWith("/")) return null;
  const last = text(n - 1);
  const rootEnd = last.lastIndexOf(`</${root}>`);
  if (rootEnd < 0) return null;
  const head = scanPackages(first, rm.index + rm[0].length, first.length, childNames, memo, false);
  if (head === null) return null;
  const packages = head;
  for (let i = 1; i < n - 1; i++) {
    const { key } = pieces[i]!;
    let found = pieceMemo?.last?.get(key) ?? pieceMemo?.used.get(key);
    if (found === undefined) {
      const t = text(i);
      // The root's end tag in a middle piece: the whole would end the root there. Rare;
      // read the whole.
      if (t.includes(`</${root}>`)) return null;
      const read = scanPackages(t, 0, t.length, childNames, memo, false);
      if (read === null) return null;
      found = read;
    }
    pieceMemo?.used.set(key, found);
    for (const p of found) packages.push(p);
  }
  const tail = scanPackages(last, 0, rootEnd, childNames, memo, false);
  if (tail === null) return null;
  for (const p of tail) packages.push(p);
  return { rootAttrs: parseAttrs(rm[1] ?? ""), packages };
}
