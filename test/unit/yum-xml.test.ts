import fc from "fast-check";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { describe, expect, it } from "vitest";
import { xmlAttrs, xmlEscape } from "../../src/layout/formats/xml.js";

// What XML 1.0 can carry: tab, LF, CR and everything from U+0020 except U+FFFE/U+FFFF and
// lone surrogates.
const allowed = (s: string) =>
  s
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "")
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "");

describe("xml escaping", () => {
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
