import { describe, expect, it } from "vitest";
import { multiUris } from "../../src/sync/cinp.js";

describe("multiUris", () => {
  it("groups by model, drops repeated ids in first-seen order, chunks by max", () => {
    const f = (id: number) => `/api/v2/Package/PackageFile:${id}:`;
    const r = (id: string) => `/api/v2/Repo/Repo:${id}:`;
    const out = multiUris([f(3), r("a"), f(1), f(3), f(2), r("a"), f(4), r("b")], 2);
    expect(out).toEqual([
      { uri: "/api/v2/Package/PackageFile:3:1:", members: [f(3), f(1)] },
      { uri: "/api/v2/Package/PackageFile:2:4:", members: [f(2), f(4)] },
      { uri: "/api/v2/Repo/Repo:a:b:", members: [r("a"), r("b")] },
    ]);
  });

  it("takes 100,000 URIs, each once", () => {
    const uris = Array.from({ length: 100_000 }, (_, i) => `/api/v2/Package/PackageFile:${i}:`);
    const out = multiUris([...uris, ...uris.slice(0, 10)], 500);
    expect(out).toHaveLength(200);
    expect(out.flatMap((c) => c.members)).toEqual(uris);
  });

  it("refuses what is not a single-object URI", () => {
    expect(() => multiUris(["/api/v2/Package/PackageFile:1:2:"], 10)).toThrow(
      /not a CInP object URI/,
    );
  });
});
