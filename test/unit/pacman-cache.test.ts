/**
 * The pacman layout's warm path: a render that reuses the last generation's entries and gzip
 * members gives the same bytes as a cold render of the same packages, reads only the package
 * metadata of the chunks it remakes, and never keeps a stale %PGPSIG%; the self-check, which
 * reuses its reading of unchanged gzip members, still reports every problem a whole reading
 * reports.
 */
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync, inflateRawSync } from "node:zlib";
import fc from "fast-check";
import { beforeAll, describe, expect, test } from "vitest";
import { checkPacmanRepo } from "../../src/layout/checks/pacman.js";
import type { CheckResult } from "../../src/layout/checks/types.js";
import { readTarStream, writeTar } from "../../src/layout/formats/tar.js";
import type { PacmanPublishedPackage } from "../../src/layout/pacman.js";
import { pacmanLayout, tarSlice } from "../../src/layout/pacman.js";
import type { RenderInput, RenderedFile } from "../../src/layout/types.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { Signer } from "../../src/signing/signer.js";
import type { BuiltPacmanPackage } from "../support/pacman-builder.js";
import { buildPacmanPackage, pacmanRepo, publishedPacman } from "../support/pacman-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

/** Enough packages for several gzip members (one boundary every 64 entries on average). */
const N = 400;

let signer: Signer;
let built: BuiltPacmanPackage[];
let published: PacmanPublishedPackage[];
/** How many times each render read PublishedPackage.meta. */
let metaReads = 0;

/** A stand-in package signature: pacman's bytes are not checked here, only carried. */
const fakeSignature = (seed: string) =>
  new Uint8Array(createHash("sha512").update(seed).digest().subarray(0, 48));

function withCountedMeta(p: PacmanPublishedPackage): PacmanPublishedPackage {
  const meta = p.meta;
  const out = { ...p };
  Object.defineProperty(out, "meta", {
    get() {
      metaReads++;
      return meta;
    },
  });
  return out;
}

beforeAll(async () => {
  ({ signer } = await makeTestSigner());
  built = [];
  published = [];
  for (let i = 0; i < N + 1; i++) {
    const b = buildPacmanPackage({
      name: `pkg${String(i).padStart(4, "0")}`,
      version: `1.${i % 7}-1`,
      arch: i % 5 === 0 ? "any" : "x86_64",
      files: { [`usr/share/pkg${i}/README`]: `package ${i}\n` },
    });
    built.push(b);
    const meta = await pacmanLayout.parse(bufferSource(b.bytes), b.filename);
    published.push(
      withCountedMeta(
        publishedPacman(b, meta, [`x86_64/${b.filename}`], fakeSignature(b.filename)),
      ),
    );
  }
}, 60_000);

function input(
  repoName: string,
  packages: readonly PacmanPublishedPackage[],
  quick = false,
): RenderInput {
  // Same filesystem_dir (same db names), separate repo names (separate caches).
  return {
    repo: { ...pacmanRepo("extra"), name: repoName },
    distroVersions: new Map(),
    packages,
    signer,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date(0),
    quick,
  };
}

const content = (files: readonly RenderedFile[], path: string) =>
  files.find((f) => f.path === path)!.content;

/** The databases' bytes (their .sig files differ between any two signings). */
function databases(files: readonly RenderedFile[]): Record<string, Uint8Array> {
  return Object.fromEntries(
    ["x86_64/extra.db", "x86_64/extra.files", "x86_64/extra.db.tar.gz"].map((p) => [
      p,
      content(files, p),
    ]),
  );
}

async function tarEntries(tar: Uint8Array): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await readTarStream([tar], {
    maxContent: 1 << 20,
    maxMembers: 100_000,
    wantContent: () => true,
    onMember: (m, data) => out.set(m.name, Buffer.from(data ?? []).toString()),
  });
  return out;
}

/** How many gzip members `gz` is made of (RFC 1952: a 10-byte header, deflate data, 8 bytes). */
function gzipMembers(gz: Uint8Array): number {
  const buf = Buffer.from(gz);
  let count = 0;
  for (let pos = 0; pos < buf.length; count++) {
    expect(buf[pos + 3]).toBe(0); // no optional header fields
    const r = inflateRawSync(buf.subarray(pos + 10), { info: true }) as unknown as {
      engine: { bytesWritten: number };
    };
    pos += 10 + r.engine.bytesWritten + 8;
  }
  return count;
}

describe("warm render", () => {
  test("a +1 on a warm cache gives the cold render's bytes, reading few package records", async () => {
    const before = published.slice(0, N);
    await pacmanLayout.render(input("warm", before));
    metaReads = 0;
    const warm = await pacmanLayout.render(input("warm", published));
    const warmReads = metaReads;
    const cold = await pacmanLayout.render(input("cold", published));
    expect(databases(warm.files)).toEqual(databases(cold.files));
    // One chunk (or two, when the new entry is a boundary) of about 64 is remade.
    expect(warmReads).toBeGreaterThan(0);
    expect(warmReads).toBeLessThan(N / 2);

    // A series of members that reads as one archive: every entry, in name order, then the end.
    const db = content(warm.files, "x86_64/extra.db");
    expect(gzipMembers(db)).toBeGreaterThan(2);
    const tar = gunzipSync(db);
    const names = [...(await tarEntries(tar)).keys()];
    expect(names).toHaveLength(2 * (N + 1));
    expect(names).toEqual([...names].sort());
    expect(tar.subarray(tar.length - 1024).every((b) => b === 0)).toBe(true);
    expect(tar.length % 512).toBe(0);
  });

  test("a quick +1 republishes the last files database, signed, and asks for a complete render", async () => {
    const before = published.slice(0, N);
    const first = await pacmanLayout.render(input("quick", before, true));
    expect(first.deferred).toBeUndefined();
    const quick = await pacmanLayout.render(input("quick", published, true));
    expect(quick.deferred).toBe(true);
    for (const name of ["extra.files", "extra.files.sig", "extra.files.tar.gz.sig"])
      expect(content(quick.files, `x86_64/${name}`)).toBe(content(first.files, `x86_64/${name}`));
    const cold = await pacmanLayout.render(input("quick-cold", published));
    expect(content(quick.files, "x86_64/extra.db")).toEqual(content(cold.files, "x86_64/extra.db"));
    // The complete render makes the files database of the new generation...
    const settled = await pacmanLayout.render(input("quick", published, false));
    expect(settled.deferred).toBeUndefined();
    expect(databases(settled.files)).toEqual(databases(cold.files));
    // ...and a quick render with nothing new is complete as it is.
    const again = await pacmanLayout.render(input("quick", published, true));
    expect(again.deferred).toBeUndefined();
    expect(content(again.files, "x86_64/extra.files")).toBe(
      content(settled.files, "x86_64/extra.files"),
    );
    // Another signing key never republishes a signature of the old one.
    const other = (await makeTestSigner()).signer;
    const rekeyed = await pacmanLayout.render({ ...input("quick", before, true), signer: other });
    expect(rekeyed.deferred).toBeUndefined();
    expect(content(rekeyed.files, "x86_64/extra.files.sig")).not.toEqual(
      content(settled.files, "x86_64/extra.files.sig"),
    );
  });

  test("a removed package leaves; a render with nothing new reads no package records", async () => {
    await pacmanLayout.render(input("rm", published));
    const fewer = published.filter((_, i) => i !== 123);
    const warm = await pacmanLayout.render(input("rm", fewer));
    const cold = await pacmanLayout.render(input("rm-cold", fewer));
    expect(databases(warm.files)).toEqual(databases(cold.files));
    metaReads = 0;
    const again = await pacmanLayout.render(input("rm", fewer));
    expect(metaReads).toBe(0);
    expect(databases(again.files)).toEqual(databases(cold.files));
  });

  test("a package whose signature changed gets the new %PGPSIG% (no stale entry or member)", async () => {
    await pacmanLayout.render(input("resign", published));
    const resigned = published.map((p, i) =>
      i === 7 ? { ...p, meta: p.meta, signature: fakeSignature("another key") } : p,
    );
    const warm = await pacmanLayout.render(input("resign", resigned));
    const cold = await pacmanLayout.render(input("resign-cold", resigned));
    expect(databases(warm.files)).toEqual(databases(cold.files));
    const entries = await tarEntries(gunzipSync(content(warm.files, "x86_64/extra.db")));
    const desc = [...entries].find(
      ([name]) => name.startsWith(`${built[7]!.spec.name}-`) && name.endsWith("/desc"),
    )!;
    expect(desc[1]).toContain(
      `%PGPSIG%\n${Buffer.from(fakeSignature("another key")).toString("base64")}\n`,
    );
    // ...and an unsigned render of the same repo embeds none.
    const unsigned = await pacmanLayout.render({ ...input("resign", resigned), signer: null });
    const db = gunzipSync(content(unsigned.files, "x86_64/extra.db")).toString("latin1");
    expect(db).not.toContain("%PGPSIG%");
  });
});

/** Check a tree of rendered files and published packages, as the publisher does. */
async function check(
  files: ReadonlyMap<string, Uint8Array>,
  packages: readonly PacmanPublishedPackage[],
): Promise<CheckResult> {
  const infos = new Map<string, { size: number; sha256: string }>();
  for (const p of packages) for (const rel of p.paths) infos.set(rel, p);
  return checkPacmanRepo({
    reader: {
      read: (rel) => Promise.resolve(files.get(rel) ?? null),
      packageInfo: (rel) => Promise.resolve(infos.get(rel) ?? null),
    },
    metadataPaths: [...files.keys()],
    verifier: null,
  });
}

/** A database of hand-made members, each gzip(`parts[i]`). */
function membersDb(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts.map((p) => gzipSync(p)));
}

/** The tar entries of a package's desc, without the end-of-archive blocks. */
function descTar(name: string, version: string, filename: string, sha256: string): Uint8Array {
  const desc =
    `%FILENAME%\n${filename}\n\n%NAME%\n${name}\n\n%VERSION%\n${version}\n\n` +
    `%SHA256SUM%\n${sha256}\n\n`;
  const tar = writeTar([
    { name: `${name}-${version}/`, mtime: 0 },
    { name: `${name}-${version}/desc`, content: Buffer.from(desc), mtime: 0 },
  ]);
  return tar.subarray(0, tar.length - 1024);
}

describe("self-check of a database in gzip members", () => {
  test("reports problems in reused members and in new ones", async () => {
    const rendered = await pacmanLayout.render(input("chk", published));
    const files = new Map(rendered.files.map((f) => [f.path, f.content]));
    const first = await check(files, published);
    expect(first.problems).toEqual([]);
    expect(first.packages).toBe(N + 1);

    // Same database bytes (every member reused), but a package and a .sig differ on disk.
    const victim = published[42]!;
    const wrongSize = { ...victim, size: victim.size + 1 };
    const tampered = new Map(files);
    tampered.set(`x86_64/${built[43]!.filename}.sig`, fakeSignature("tampered"));
    const second = await check(
      tampered,
      published.map((p) => (p === victim ? wrongSize : p)),
    );
    expect(second.problems.map((p) => p.path).sort()).toEqual(
      [`x86_64/${built[42]!.filename}`, `x86_64/${built[43]!.filename}.sig`].sort(),
    );
  });

  test("a changed member is read again; an entry named unlike its desc is reported", async () => {
    const filename = built[0]!.filename;
    const sha = published[0]!.sha256;
    const pkgs = [published[0]!];
    const a = descTar(built[0]!.spec.name, built[0]!.spec.version, filename, sha);
    const end = new Uint8Array(1024);
    const good = new Map([["x86_64/m.db", membersDb([a, end])]]);
    expect((await check(good, pkgs)).problems).toEqual([]);
    // The same first member bytes would be reused; this one says another version.
    const bad = descTar(built[0]!.spec.name, "9.9-9", filename, sha);
    const renamed = Buffer.from(bad);
    renamed.set(a.subarray(0, 100), 0); // the entry keeps its old directory name...
    renamed.set(a.subarray(512, 612), 512);
    const fixChecksums = (tar: Buffer) => {
      for (const at of [0, 512]) {
        tar.fill(0x20, at + 148, at + 156);
        let sum = 0;
        for (let i = at; i < at + 512; i++) sum += tar[i]!;
        tar.write(`${sum.toString(8).padStart(6, "0")}\0 `, at + 148, "latin1");
      }
      return tar;
    };
    const r = await check(
      new Map([["x86_64/m.db", membersDb([fixChecksums(renamed), end])]]),
      pkgs,
    );
    expect(r.problems.map((p) => p.problem)).toEqual([
      `entry is named ${built[0]!.spec.name}-${built[0]!.spec.version}, desc says ${built[0]!.spec.name}-9.9-9`,
    ]);
  });

  test("entries after the end-of-archive member are not read, as pacman does not read them", async () => {
    const p = (i: number) =>
      descTar(
        built[i]!.spec.name,
        built[i]!.spec.version,
        built[i]!.filename,
        published[i]!.sha256,
      );
    const end = new Uint8Array(1024);
    const pkgs = [published[0]!, published[1]!];
    // First teach the memo the end member as the last one...
    expect((await check(new Map([["x86_64/e.db", membersDb([p(0), end])]]), pkgs)).packages).toBe(
      1,
    );
    // ...then put a member after it: the whole-file reading stops at the end blocks too.
    const r = await check(new Map([["x86_64/e.db", membersDb([p(0), end, p(1)])]]), pkgs);
    expect(r.problems).toEqual([]);
    expect(r.packages).toBe(1);
  });

  test("members that split entries read like the whole archive", async () => {
    const whole = Buffer.concat([
      descTar(built[0]!.spec.name, built[0]!.spec.version, built[0]!.filename, "0".repeat(64)),
      descTar(
        built[1]!.spec.name,
        built[1]!.spec.version,
        built[1]!.filename,
        published[1]!.sha256,
      ),
      new Uint8Array(1024),
    ]);
    const pkgs = [published[0]!, published[1]!];
    const split = await check(
      new Map([["x86_64/s.db", membersDb([whole.subarray(0, 700), whole.subarray(700)])]]),
      pkgs,
    );
    const one = await check(new Map([["x86_64/s.db", gzipSync(whole)]]), pkgs);
    expect(split).toEqual(one);
    expect(split.packages).toBe(2);
    expect(split.problems.map((p) => p.path)).toEqual([`x86_64/${built[0]!.filename}`]);
  });

  test("a member with a bad CRC-32 is refused", async () => {
    const a = descTar(built[0]!.spec.name, built[0]!.spec.version, built[0]!.filename, "0");
    const gz = Buffer.from(gzipSync(a));
    gz[gz.length - 8]! ^= 1;
    const r = await check(
      new Map([["x86_64/c.db", Buffer.concat([gz, gzipSync(new Uint8Array(1024))])]]),
      [],
    );
    expect(r.problems.map((p) => p.path)).toEqual(["x86_64/c.db"]);
    expect(r.problems[0]!.problem).toMatch(/cannot be read as a database: .*check/);
  });
});

describe("self-check of signatures", () => {
  test("a db verified before, as the same objects, is not hashed again; new bytes are", async () => {
    const { createSignatureVerifier } = await import("../../src/signing/verify.js");
    const real = await createSignatureVerifier(signer.publicKeyArmored());
    let calls = 0;
    const verifier = {
      verifyCleartext: real.verifyCleartext.bind(real),
      verifyDetached: (data: Uint8Array, sig: Uint8Array) => {
        calls++;
        return real.verifyDetached(data, sig);
      },
    };
    const rendered = await pacmanLayout.render(input("sigs", published.slice(0, 20)));
    const files = new Map(rendered.files.map((f) => [f.path, f.content]));
    const run = (tree: ReadonlyMap<string, Uint8Array>) =>
      checkPacmanRepo({
        reader: {
          read: (rel) => Promise.resolve(tree.get(rel) ?? null),
          packageInfo: (rel) => {
            const p = published.find((q) => q.paths.includes(rel));
            return Promise.resolve(p ? { size: p.size, sha256: p.sha256 } : null);
          },
        },
        metadataPaths: [...tree.keys()],
        verifier,
      });
    expect((await run(files)).problems).toEqual([]);
    expect(calls).toBe(2); // .db and .files
    expect((await run(files)).problems).toEqual([]);
    expect(calls).toBe(2);

    // The same bytes as new objects (read from disk) are verified again.
    const copies = new Map([...files].map(([k, v]) => [k, new Uint8Array(v)]));
    expect((await run(copies)).problems).toEqual([]);
    expect(calls).toBe(4);

    // Another signature over other bytes fails, and a long name's .sig must match the short one.
    const tampered = new Map(files);
    const wrong = await signer.signDetachedBinary(new TextEncoder().encode("not the db"));
    tampered.set("x86_64/extra.db.sig", wrong);
    tampered.set("x86_64/extra.files.tar.gz.sig", wrong);
    expect((await run(tampered)).problems.map((p) => p.path).sort()).toEqual([
      "x86_64/extra.db.sig",
      "x86_64/extra.db.tar.gz.sig",
      "x86_64/extra.files.tar.gz.sig",
    ]);
  });
});

describe("tar entries", () => {
  test("tarSlice writes writeTar's bytes (without the end blocks) for any entries", () => {
    const name = fc.oneof(
      fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 100 }),
      fc.stringMatching(/^[a-z0-9@._+-]{1,60}\/(desc|files)?$/),
      fc.string({ minLength: 90, maxLength: 220 }),
      fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }),
    );
    const entry = fc.record(
      {
        name,
        content: fc.option(fc.uint8Array({ maxLength: 1500 }), { nil: undefined }),
        mtime: fc.oneof(fc.integer({ min: 0, max: 8 ** 11 - 1 }), fc.constant(1700000000)),
        mode: fc.option(fc.constantFrom(0o600, 0o644, 0o755), { nil: undefined }),
      },
      { requiredKeys: ["name", "mtime"] },
    );
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 6 }), (entries) => {
        const whole = writeTar(entries);
        expect(Buffer.from(tarSlice(entries))).toEqual(
          Buffer.from(whole.subarray(0, whole.length - 1024)),
        );
      }),
      { numRuns: 400 },
    );
  });
});
