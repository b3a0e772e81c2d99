import fc from "fast-check";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { describe, expect, it } from "vitest";
import { xmlAttrEscape, xmlAttrs, xmlEscape } from "../../src/layout/formats/xml.js";

// What XML 1.0 can carry: tab, LF, CR and everything from U+0020 except U+FFFE/U+FFFF and
// lone surrogates.
const allowed = (s: string) =>
  s
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "")
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "");

describe("xml escaping", () => {
  it("the quick path (nothing to escape) agrees with the full escape for every UTF-16 unit", () => {
    // The full escape, as written before the quick path: every value through both replaces.
    const ENT: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
    const FORBIDDEN =
      // eslint-disable-next-line no-control-regex
      /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
    const fullText = (v: string) =>
      v.replace(FORBIDDEN, "").replace(/[&<>\r]/g, (c) => ENT[c] ?? "&#13;");
    const fullAttr = (v: string) =>
      v.replace(FORBIDDEN, "").replace(/[&<>"\t\n\r]|[\u0080-\u{10ffff}]/gu, (c) => {
        const cp = c.codePointAt(0) ?? 0;
        return ENT[c] ?? (cp < 0x80 ? `&#${cp};` : `&#x${cp.toString(16).toUpperCase()};`);
      });
    for (let u = 0; u <= 0xffff; u++) {
      const s = `a${String.fromCharCode(u)}b`;
      expect(xmlEscape(s)).toBe(fullText(s));
      expect(xmlAttrEscape(s)).toBe(fullAttr(s));
    }
    for (const s of ["", "plain-1.0_x86_64", "\ud83d\ude00", "x\ud83dy", 'q"t', "t\tl\nc\r"]) {
      expect(xmlEscape(s)).toBe(fullText(s));
      expect(xmlAttrEscape(s)).toBe(fullAttr(s));
    }
    expect(xmlAttrEscape(-12)).toBe("-12");
  });

  it("any string survives as text and as an attribute in a well-formed document", () => {
    const parser = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: "",
      trimValues: false,
      parseTagValue: false,
      parseAttributeValue: false,
      processEntities: true,
      // Decodes numeric character references (&#xEF;), which attributes use for non-ASCII.
      htmlEntities: true,
    });
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 60 }), (s) => {
        const doc = `<r><t${xmlAttrs({ a: s })}>${xmlEscape(s)}</t></r>`;
        expect(XMLValidator.validate(doc)).toBe(true);
        const parsed = parser.parse(doc) as { r: { t: string | { a?: string; "#text"?: string } } };
        const t = parsed.r.t;
        const text = typeof t === "string" ? t : (t["#text"] ?? "");
        const attr = typeof t === "string" ? "" : (t.a ?? "");
        // The parser normalises CR and CRLF in content to LF, as XML requires.
        const expected = allowed(s);
        expect(text.replace(/\r\n?/g, "\n")).toBe(expected.replace(/\r\n?/g, "\n"));
        // Attribute values: line ends and tabs may come back as spaces (attribute normalisation).
        const ws = (v: string) => v.replace(/\r\n?|[\t\n]/g, " ");
        expect(ws(attr)).toBe(ws(expected));
      }),
      { numRuns: 200 },
    );
  });

  it("escapes markup in text but leaves quotes, as libxml2 does", () => {
    expect(xmlEscape(`a<b>&"c"`)).toBe(`a&lt;b&gt;&amp;"c"`);
    expect(xmlAttrs({ x: `"<&>` })).toBe(` x="&quot;&lt;&amp;&gt;"`);
    expect(xmlAttrs({ x: undefined, y: 1 })).toBe(` y="1"`);
  });

  it("writes CR in text, and tab, line ends and non-ASCII in attributes, as references", () => {
    // What createrepo_c's libxml2 writes (checked against createrepo_c 0.17 output).
    expect(xmlEscape("tab\there cr\rthere é")).toBe("tab\there cr&#13;there é");
    expect(xmlAttrs({ name: "na\u00efve\t\n\r\u{1f600}" })).toBe(
      ` name="na&#xEF;ve&#9;&#10;&#13;&#x1F600;"`,
    );
  });
});
