import { describe, expect, it } from "vitest";
import { scanRepodata, unescapeXml } from "../../src/layout/checks/repodata-scan.js";
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
