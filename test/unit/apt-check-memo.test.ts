/**
 * The apt checker's memory (issue 25): the next reading of a Packages index parses only the
 * stanza chunks and inflates only the gzip members it has not read before. What it remembers
 * must never hide a problem: a changed stanza, a package that changed in the tree, a gzip
 * member that decodes to other bytes or not at all are each reported on a later reading.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { createAptCheck } from "../../src/layout/checks/apt.js";
import type { CheckResult, PackageInfo, TreeReader } from "../../src/layout/types.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const PK = "main/binary-amd64/Packages";

interface Tree {
  files: Map<string, Uint8Array>;
  packages: Map<string, PackageInfo>;
}

function stanza(i: number, over: Record<string, string | null> = {}): string {
  const fields: Record<string, string | null> = {
    Package: `p${i}`,
    Version: "1.0",
    Architecture: "amd64",
    Filename: `pool/p${i}.deb`,
    Size: String(100 + i),
    SHA256: sha(Buffer.from(`p${i}`)),
    ...over,
  };
  return Object.entries(fields)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}: ${v}\n`)
    .join("");
}

/** A dist whose Packages.gz is one gzip member per `perMember` stanzas (as the layout writes). */
function tree(stanzas: string[], perMember = 10, gz?: Uint8Array): Tree {
  const entries = stanzas.map((s) => Buffer.from(`${s}\n`));
  const plain = Buffer.concat(entries);
  const members: Buffer[] = [];
  for (let i = 0; i < entries.length; i += perMember)
    members.push(gzipSync(Buffer.concat(entries.slice(i, i + perMember))));
  const packed = gz ?? Buffer.concat(members);
  const line = (b: Uint8Array, name: string) => ` ${sha(b)} ${b.length} ${name}\n`;
  const release =
    "Suite: s\nCodename: s\nArchitectures: amd64\nComponents: main\nSHA256:\n" +
    line(plain, PK) +
    line(packed, `${PK}.gz`);
  const packages = new Map<string, PackageInfo>();
  for (let i = 0; i < stanzas.length; i++)
    packages.set(`pool/p${i}.deb`, { size: 100 + i, sha256: sha(Buffer.from(`p${i}`)) });
  return {
    files: new Map([
      ["dists/s/Release", Buffer.from(release)],
      [`dists/s/${PK}`, plain],
      [`dists/s/${PK}.gz`, packed],
    ]),
    packages,
  };
}

function reader(t: Tree, sync: boolean): TreeReader {
  return {
    read: (rel) => Promise.resolve(t.files.get(rel) ?? null),
    packageInfo: (rel) => Promise.resolve(t.packages.get(rel) ?? null),
    ...(sync ? { packageInfoSync: (rel: string) => t.packages.get(rel) ?? null } : {}),
  };
}

const N = 100;
const all = () => Array.from({ length: N }, (_, i) => stanza(i));

for (const sync of [true, false]) {
  describe(`apt checker memory (${sync ? "a reader that answers at once" : "an async reader"})`, () => {
    const run = (check: ReturnType<typeof createAptCheck>, t: Tree): Promise<CheckResult> =>
      check({
        reader: reader(t, sync),
        metadataPaths: [...t.files.keys()].map((p) => p),
        verifier: null,
        scope: "r",
      });

    it("reads a next generation with one stanza changed, and reports what is wrong in it", async () => {
      const check = createAptCheck();
      const first = await run(check, tree(all()));
      expect(first.problems).toEqual([]);
      expect(first.packages).toBe(N);
      const stanzas = all();
      // Changed near its end: a memory keyed by less than the whole stanza would miss it.
      stanzas[50] = stanza(50, { Size: "x" });
      stanzas.push(stanza(N));
      const next = tree(stanzas);
      next.packages.set(`pool/p${N}.deb`, { size: 100 + N, sha256: sha(Buffer.from(`p${N}`)) });
      const second = await run(check, next);
      expect(second.packages).toBe(N + 1);
      expect(second.problems).toEqual([
        {
          path: `dists/s/${PK}`,
          problem: "p50 lacks a valid Size or SHA256",
        },
      ]);
      // ...and once it is put right, the same checker passes it.
      expect((await run(check, tree(all()))).problems).toEqual([]);
    });

    it("checks every remembered stanza's package against the tree again", async () => {
      const check = createAptCheck();
      const t = tree(all());
      expect((await run(check, t)).problems).toEqual([]);
      t.packages.set("pool/p7.deb", { size: 1, sha256: t.packages.get("pool/p7.deb")!.sha256 });
      t.packages.delete("pool/p8.deb");
      const again = await run(check, t);
      expect(again.problems.map((p) => [p.path, p.problem])).toEqual([
        ["pool/p7.deb", `is 1 bytes, dists/s/${PK} (p7) says 107`],
        ["pool/p8.deb", `missing (named by dists/s/${PK} (p8))`],
      ]);
    });

    it("reports a remembered gzip member next to one that decodes to other bytes", async () => {
      const check = createAptCheck();
      const good = tree(all());
      expect((await run(check, good)).problems).toEqual([]);
      // Nine members as before, one of other stanzas: each member is whole and valid gzip.
      const entries = all().map((s) => Buffer.from(`${s}\n`));
      const members: Buffer[] = [];
      for (let i = 0; i < N; i += 10) {
        const chunk = entries.slice(i, i + 10);
        if (i === 30) chunk[3] = Buffer.from(`${stanza(33, { Version: "2.0" })}\n`);
        members.push(gzipSync(Buffer.concat(chunk)));
      }
      const r = await run(check, tree(all(), 10, Buffer.concat(members)));
      expect(r.problems).toEqual([
        {
          path: `dists/s/${PK}.gz`,
          problem: `decodes to other stanzas than dists/s/${PK}`,
        },
      ]);
    });

    it("reads members cut inside stanzas as the whole text reads", async () => {
      // Members cut every 333 bytes, inside stanzas and fields: read member by member, a
      // stanza would be split in two. Every package must still be found, and a fault in a
      // stanza that straddles a cut reported, on the first reading and a remembering one.
      const cutAt = (stanzas: string[]) => {
        const plain = Buffer.from(stanzas.map((st) => `${st}\n`).join(""));
        const members: Buffer[] = [];
        for (let i = 0; i < plain.length; i += 333)
          members.push(gzipSync(plain.subarray(i, i + 333)));
        return tree(stanzas, 10, Buffer.concat(members));
      };
      const check = createAptCheck();
      const first = await run(check, cutAt(all()));
      expect(first.problems).toEqual([]);
      expect(first.packages).toBe(N);
      const stanzas = all();
      stanzas[3] = stanza(3, { Size: "x" });
      const second = await run(check, cutAt(stanzas));
      expect(second.packages).toBe(N);
      expect(second.problems).toEqual([
        { path: `dists/s/${PK}`, problem: "p3 lacks a valid Size or SHA256" },
      ]);
    });

    it("reports a damaged member after a good reading, the way gunzip does", async () => {
      const check = createAptCheck();
      const good = tree(all());
      expect((await run(check, good)).problems).toEqual([]);
      const packed = Buffer.from(good.files.get(`dists/s/${PK}.gz`)!);
      // The last member's CRC-32 (its trailer's first four bytes).
      packed[packed.length - 8]! ^= 0xff;
      const r = await run(check, tree(all(), 10, packed));
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]!.path).toBe(`dists/s/${PK}.gz`);
      expect(r.problems[0]!.problem).toMatch(/^cannot be decompressed/);
    });
  });
}
