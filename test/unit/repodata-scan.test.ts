import { describe, expect, it } from "vitest";
import {
  scanRepodata,
  scanRepodataPieces,
  unescapeXml,
  type PieceMemo,
  type ScannedPackage,
} from "../../src/layout/checks/repodata-scan.js";
import { FormatError } from "../../src/layout/formats/format-error.js";

const primary = `<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>a&amp;b</name>
  <checksum type="sha256" pkgid="YES">ABC</checksum>
  <size package="12" installed="3"/>
  <location href="x86_64/a&amp;b-1.rpm"/>
  <format><rpm:provides><rpm:entry name="size"/></rpm:provides></format>
</package>
<package type='rpm'><name>&#x263A;&#65;</name><location href="b.rpm"/></package>
</metadata>
`;

describe("scanRepodata", () => {
  it("reads the root's attributes and each package's children, unescaping entities", () => {
    const doc = scanRepodata(primary, "metadata", ["name", "checksum", "size", "location"]);
    expect(doc.rootAttrs.get("packages")).toBe("2");
    expect(doc.packages).toHaveLength(2);
    const [a, b] = doc.packages;
    expect(a!.attrs.get("type")).toBe("rpm");
    expect(a!.children.get("name")!.text).toBe("a&b");
    expect(a!.children.get("checksum")!.attrs.get("type")).toBe("sha256");
    expect(a!.children.get("checksum")!.text).toBe("ABC");
    expect(a!.children.get("size")!.attrs.get("package")).toBe("12");
    expect(a!.children.get("location")!.attrs.get("href")).toBe("x86_64/a&b-1.rpm");
    expect(b!.attrs.get("type")).toBe("rpm");
    expect(b!.children.get("name")!.text).toBe("☺A");
    expect(b!.children.has("checksum")).toBe(false);
  });
  it("reads package attributes of filelists/other and self-closing packages", () => {
    const xml = `<filelists packages="2"><package pkgid="p1" name="n"><file>/a</file></package><package pkgid="p2"/></filelists>`;
    const doc = scanRepodata(xml, "filelists", []);
    expect(doc.packages.map((p) => p.attrs.get("pkgid"))).toEqual(["p1", "p2"]);
  });
  it("does not take <packages> or <packager> for a package", () => {
    const xml = `<metadata packages="1"><package type="rpm"><packager>me</packager></package><packagex/></metadata>`;
    expect(scanRepodata(xml, "metadata", ["packager"]).packages).toHaveLength(1);
  });
  it("refuses a document without its root or with an unclosed package", () => {
    expect(() => scanRepodata("<other/>", "metadata", [])).toThrow(FormatError);
    expect(() =>
      scanRepodata(
        `<metadata packages="1"><package type="rpm"><name>x</name></metadata>`,
        "metadata",
        [],
      ),
    ).toThrow(/not closed/);
  });
  it("with a memo, gives the same readings, and reads again an element changed at its end", () => {
    const children = ["name", "checksum", "size", "location"];
    const memo = { last: undefined, used: new Map() };
    const first = scanRepodata(primary, "metadata", children, memo);
    expect(first).toEqual(scanRepodata(primary, "metadata", children));
    // The next document: the first package as before, the second with another location.
    const next = primary.replace('href="b.rpm"', 'href="c.rpm"');
    const memo2 = { last: memo.used, used: new Map() };
    const second = scanRepodata(next, "metadata", children, memo2);
    expect(second.packages[0]).toBe(first.packages[0]); // remembered, not read again
    expect(second.packages[1]!.children.get("location")!.attrs.get("href")).toBe("c.rpm");
    expect(second).toEqual(scanRepodata(next, "metadata", children));
    // Only this document's elements are kept for the next reading.
    expect(memo2.used.size).toBe(2);
  });
  it("unescapes the five entities and character references", () => {
    expect(unescapeXml("&lt;&gt;&amp;&quot;&apos;&#38;&#x26;")).toBe(`<>&"'&&`);
  });
});

/** A document with what makes scanning tricky: look-alike names, self-closed and multibyte. */
const tricky = `<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" packages="5">
<package type="rpm"><name>a</name><packager>p&lt;q</packager><location href="a.rpm"/></package>
<packagex/>
<package type="rpm"><name>\u263a\u00e9</name><location href="b.rpm"/></package>
  <package pkgid="c"/>
<package type="rpm"><name>d</name><location href="d.rpm"/>
</package>
<package type="rpm"><name>e</name><location href="e.rpm"/></package>
</metadata>
`;
const CHILDREN = ["name", "location", "packager"];

/** `text` cut at `cuts` (byte offsets, ascending) into pieces keyed by their index. */
function cutInto(text: string, cuts: number[]) {
  const bytes = Buffer.from(text, "utf8");
  const at = [0, ...cuts, bytes.length];
  return at.slice(0, -1).map((from, i) => ({ plain: bytes.subarray(from, at[i + 1]), key: i }));
}

describe("scanRepodataPieces", () => {
  it("finds what the joined text gives wherever it answers, at every set of cuts", () => {
    // Every pair of cut points over the document (about 170,000): where the pieces
    // scan apart, the result must be the whole's; where they cannot, null (never a guess).
    const whole = scanRepodata(tricky, "metadata", CHILDREN);
    const len = Buffer.byteLength(tricky);
    let answered = 0;
    for (let a = 1; a < len; a++)
      for (let b = a + 1; b < len; b++) {
        const doc = scanRepodataPieces(cutInto(tricky, [a, b]), "metadata", CHILDREN);
        if (doc === null) continue;
        answered++;
        expect(doc, `cut at ${a} and ${b}`).toEqual(whole);
      }
    // ...and the cuts the renderer makes (between elements) do answer.
    expect(answered).toBeGreaterThan(100);
  });

  it("reads the pieces the renderer cuts, and takes a remembered middle piece from memory", () => {
    const lines = tricky.split(/(?<=\n)/);
    // header (declaration and root) | two elements | the rest
    const pieces = (text: string) => {
      const parts = text.split(/(?<=\n)/);
      const sizes = [2, 2, parts.length - 4];
      let i = 0;
      return sizes.map((n, k) => {
        const plain = Buffer.from(parts.slice(i, (i += n)).join(""), "utf8");
        return { plain, key: `${k}:${plain.toString("hex")}` };
      });
    };
    expect(lines.length).toBeGreaterThan(5);
    const memo: PieceMemo<string> = { last: undefined, used: new Map() };
    const first = scanRepodataPieces(pieces(tricky), "metadata", CHILDREN, undefined, memo);
    expect(first).toEqual(scanRepodata(tricky, "metadata", CHILDREN));
    const middle = [...memo.used.values()][0]!;
    // The same middle piece next time is not read again: its very readings come back.
    const memo2: PieceMemo<string> = { last: memo.used, used: new Map() };
    const next = tricky.replace('href="e.rpm"', 'href="f.rpm"');
    const second = scanRepodataPieces(pieces(next), "metadata", CHILDREN, undefined, memo2);
    expect(second).toEqual(scanRepodata(next, "metadata", CHILDREN));
    expect(second!.packages[0]).toBe(middle[0]);
    expect(second!.packages.at(-1)!.children.get("location")!.attrs.get("href")).toBe("f.rpm");
  });

  it("answers null for an element cut in two, a root end in a middle piece, or too few pieces", () => {
    const at = (s: string) => Buffer.byteLength(tricky.slice(0, tricky.indexOf(s)));
    // Cut inside the multi-line element d, after its newline: the cut follows white space.
    const insideD = at('</package>\n<package type="rpm"><name>e');
    expect(scanRepodataPieces(cutInto(tricky, [10, insideD]), "metadata", CHILDREN)).toBeNull();
    expect(scanRepodataPieces(cutInto(tricky, [at("<packagex")]), "metadata", CHILDREN)).toBeNull();
    const early = `<metadata packages="1">\n</metadata>\n<package pkgid="x"/>\n</metadata>\n`;
    const cuts = [early.indexOf("</metadata>"), early.indexOf("<package")];
    // The whole reads up to the last end tag, so x is in it; a piece cannot know that.
    const read: ScannedPackage[] = scanRepodata(early, "metadata", []).packages;
    expect(read).toHaveLength(1);
    expect(scanRepodataPieces(cutInto(early, cuts), "metadata", [])).toBeNull();
  });
});
