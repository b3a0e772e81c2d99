/**
 * The real pacman (6.0.2) against a rendered, signed pacman repo: private --config, --dbpath,
 * --root, --cachedir and --gpgdir (pacman-key --init, the test key imported and locally
 * signed), SigLevel = Required. Never touches /etc/pacman.conf or /var/lib/pacman.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gunzipSync, inflateRawSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { pacmanLayout } from "../../src/layout/pacman.js";
import type { PacmanPublishedPackage } from "../../src/layout/pacman.js";
import type { RenderedFile } from "../../src/layout/types.js";
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { Signer } from "../../src/signing/signer.js";
import { buildPacmanPackage, pacmanRepo, publishedPacman } from "../support/pacman-builder.js";
import type { BuiltPacmanPackage, PacmanPackageSpec } from "../support/pacman-builder.js";
import { startStaticServer } from "../support/static-server.js";
import type { StaticServer } from "../support/static-server.js";
import { makeTestSigner } from "../support/test-signer.js";
import { writeTree } from "../support/write-tree.js";
import { readTarStream } from "../../src/layout/formats/tar.js";
import { pacmanKeyring, runPacman } from "../support/clients.js";

const run = promisify(execFile);

let work: string;
let gpgdir: string;
let signer: Signer;
let built: BuiltPacmanPackage[];
const signatures = new Map<BuiltPacmanPackage, Uint8Array>();

const PACKAGES: PacmanPackageSpec[] = [
  {
    name: "hello",
    version: "1.0-1",
    compression: "zst" as const,
    files: { "usr/bin/hello": "#!/bin/sh\necho hello\n" },
  },
  {
    name: "world-data",
    version: "1:2.0-1",
    arch: "any",
    compression: "xz" as const,
    files: { "usr/share/world/a.txt": "a\n" },
  },
  { name: "gzpkg", version: "0.5-2", compression: "gz", files: { "usr/lib/gz/x": "x" } },
  { name: "armonly", version: "1.0-1", arch: "aarch64", files: { "usr/bin/arm": "arm" } },
];

interface Served {
  root: string;
  server: StaticServer;
  files: RenderedFile[];
}

/** Render the repo (optionally with tampering) into a fresh dir and serve it. */
async function serve(
  options: { badPackageSig?: string; extra?: BuiltPacmanPackage[] } = {},
): Promise<Served> {
  const all = [...built, ...(options.extra ?? [])];
  const published: PacmanPublishedPackage[] = [];
  const repoArches = [
    ...new Set(
      all.map((b) =>
        b.spec.arch === "any"
          ? "all"
          : b.spec.arch === "aarch64"
            ? "arm64"
            : (b.spec.arch ?? "x86_64"),
      ),
    ),
  ];
  for (const b of all) {
    const meta = await pacmanLayout.parse(bufferSource(b.bytes), b.filename);
    const file = publishedPacman(b, meta, []).file;
    const paths = pacmanLayout.placePackage({
      repo: pacmanRepo(),
      file,
      distroVersion: publishedPacman(b, meta, []).distroVersion,
      repoArches,
      options: DEFAULT_LAYOUT_OPTIONS,
    });
    // A "tampered" package signature: a valid signature, but over other bytes.
    const sigData =
      options.badPackageSig === b.spec.name ? new TextEncoder().encode("other") : b.bytes;
    // One signature per package, as the engine keeps them: a second render of the same
    // packages then takes the layout's warm path.
    let sig = sigData === b.bytes ? signatures.get(b) : undefined;
    if (!sig) {
      sig = await signer.signDetachedBinary(sigData);
      if (sigData === b.bytes) signatures.set(b, sig);
    }
    published.push(publishedPacman(b, meta, paths, sig));
  }
  const result = await pacmanLayout.render({
    repo: pacmanRepo(),
    distroVersions: new Map(),
    packages: published,
    signer,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date(0),
  });
  const root = await mkdtemp(path.join(work, "tree-"));
  await writeTree(
    root,
    result.files,
    published.map((p, i) => ({ paths: p.paths, content: all[i]!.bytes })),
  );
  return { root, server: await startStaticServer(root), files: result.files };
}

/** How many gzip members (RFC 1952 §2.2) `gz` is made of. */
function gzipMemberCount(gz: Uint8Array): number {
  const buf = Buffer.from(gz);
  let count = 0;
  for (let pos = 0; pos < buf.length; count++) {
    expect(buf[pos + 3], "gzip FLG").toBe(0);
    const r = inflateRawSync(buf.subarray(pos + 10), { info: true }) as unknown as {
      engine: { bytesWritten: number };
    };
    pos += 10 + r.engine.bytesWritten + 8;
  }
  return count;
}

/** A private pacman (its own config, db, root, cache and keyring) against the served repo. */
function pacman(served: Served, args: string[], more: string[][] = []) {
  return runPacman({
    work,
    gpgdir,
    repo: "testrepo",
    server: `${served.server.url}/$arch`,
    commands: [args, ...more].filter((a) => a.length > 0),
  });
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "packrat-pacman-"));
  ({ signer } = await makeTestSigner());
  built = PACKAGES.map((p) => buildPacmanPackage(p));
  gpgdir = await pacmanKeyring(work, signer.publicKeyArmored(), signer.primaryFingerprint);
}, 120_000);

afterAll(async () => {
  // gpg-agent/dirmngr may have been started for the private keyring; stop them.
  await run("gpgconf", ["--homedir", gpgdir, "--kill", "all"]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

describe("real pacman, SigLevel = Required", () => {
  test("-Sy and -Sw of every x86_64 and any package succeed, fetched by the short db names", async () => {
    const served = await serve();
    try {
      const names = ["hello", "world-data", "gzpkg"];
      const result = await pacman(served, ["-Sw", ...names]);
      expect(result.output, result.output).not.toMatch(/error/i);
      expect(result.ok, result.output).toBe(true);
      expect(result.output).toContain("checking package integrity");
      const fetched = served.server.requests.filter((r) => r.status === 200).map((r) => r.path);
      expect(fetched).toContain("/x86_64/testrepo.db");
      expect(fetched).toContain("/x86_64/testrepo.db.sig");
      expect(fetched.some((p) => p.endsWith(".tar.gz") && p.includes("testrepo"))).toBe(false);
      for (const b of built.filter((b) => b.spec.arch !== "aarch64")) {
        expect(fetched).toContain(`/x86_64/${b.filename}`);
      }
    } finally {
      await served.server.close();
    }
  }, 60_000);

  test("the any package sits in every arch directory; %SHA256SUM% and %CSIZE% match the files", async () => {
    const served = await serve();
    try {
      for (const arch of ["x86_64", "aarch64"]) {
        const db = gunzipSync(await readFile(path.join(served.root, arch, "testrepo.db")));
        const descs: string[] = [];
        await readTarStream([db], {
          maxContent: 1 << 20,
          maxMembers: 100,
          wantContent: (m) => m.name.endsWith("/desc"),
          onMember: (_m, c) => {
            if (c) descs.push(new TextDecoder().decode(c));
          },
        });
        const expected = built.filter(
          (b) => (b.spec.arch ?? "x86_64") === arch || b.spec.arch === "any",
        );
        expect(descs).toHaveLength(expected.length);
        for (const desc of descs) {
          const field = (f: string) => new RegExp(`%${f}%\\n(.*)\\n`).exec(desc)![1]!;
          const bytes = await readFile(path.join(served.root, arch, field("FILENAME")));
          expect(createHash("sha256").update(bytes).digest("hex")).toBe(field("SHA256SUM"));
          expect(String(bytes.length)).toBe(field("CSIZE"));
        }
        // The .db and .db.tar.gz are real files with the same bytes.
        expect(await readFile(path.join(served.root, arch, "testrepo.db.tar.gz"))).toEqual(
          await readFile(path.join(served.root, arch, "testrepo.db")),
        );
      }
    } finally {
      await served.server.close();
    }
  }, 60_000);

  test("-Fy fetches the signed files database and -F finds a package's file", async () => {
    const served = await serve();
    try {
      const result = await pacman(served, ["-Fy"], [["-F", "usr/share/world/a.txt"]]);
      expect(result.ok, result.output).toBe(true);
      expect(result.output).toContain("testrepo/world-data 1:2.0-1");
      const fetched = served.server.requests.filter((r) => r.status === 200).map((r) => r.path);
      expect(fetched).toContain("/x86_64/testrepo.files.sig");
    } finally {
      await served.server.close();
    }
  }, 60_000);

  test("a tampered database signature is rejected", async () => {
    const served = await serve();
    try {
      const other = await signer.signDetachedBinary(new TextEncoder().encode("not the db"));
      await writeFile(path.join(served.root, "x86_64", "testrepo.db.sig"), other);
      const result = await pacman(served, []);
      expect(result.ok, result.output).toBe(false);
      expect(result.output).toContain("invalid or corrupted database (PGP signature)");
    } finally {
      await served.server.close();
    }
  }, 60_000);

  test("a database of many gzip members, rendered warm after a +1, reads whole in pacman", async () => {
    const bulk = Array.from({ length: 401 }, (_, i) =>
      buildPacmanPackage({
        name: `bulk${i}`,
        version: "1.0-1",
        files: { [`usr/share/bulk${i}/README`]: `${i}\n` },
      }),
    );
    // The layout keeps its cache per repo: the second render reuses the first's gzip members.
    const before = await serve({ extra: bulk.slice(0, 400) });
    await before.server.close();
    const served = await serve({ extra: bulk });
    try {
      const db = served.files.find((f) => f.path === "x86_64/testrepo.db")!.content;
      expect(gzipMemberCount(db)).toBeGreaterThan(2);
      const result = await pacman(served, ["-Sl", "testrepo"], [["-Sw", "bulk400", "bulk0"]]);
      expect(result.ok, result.output).toBe(true);
      const listed = result.output.split("\n").filter((l) => /^testrepo bulk\d+ 1\.0-1/.test(l));
      expect(listed).toHaveLength(401);
      expect(result.output).toContain("checking package integrity");
    } finally {
      await served.server.close();
    }
  }, 60_000);

  test("a tampered package signature is rejected", async () => {
    const served = await serve({ badPackageSig: "hello" });
    try {
      const good = await pacman(served, ["-Sw", "gzpkg"]);
      expect(good.ok, good.output).toBe(true);
      const bad = await pacman(served, ["-Sw", "hello"]);
      expect(bad.ok, bad.output).toBe(false);
      expect(bad.output).toContain("invalid or corrupted package (PGP signature)");
    } finally {
      await served.server.close();
    }
  }, 60_000);
});
