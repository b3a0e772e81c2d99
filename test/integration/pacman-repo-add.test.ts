/**
 * Differential test: the real repo-add (pacman 6.0.2) and pacmanLayout.render() on the same
 * signed packages must write the same database entries, byte for byte: every desc field, its
 * order, and the files lists.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { pacmanLayout } from "../../src/layout/pacman.js";
import { DEFAULT_LAYOUT_OPTIONS, bufferSource } from "../../src/layout/types.js";
import {
  buildPacmanPackage,
  buildPacmanPackageWithBsdtar,
  pacmanRepo,
  publishedPacman,
} from "../support/pacman-builder.js";
import type { BuiltPacmanPackage, PacmanPackageSpec } from "../support/pacman-builder.js";
import { makeTestSigner } from "../support/test-signer.js";

const run = promisify(execFile);

const SPECS: PacmanPackageSpec[] = [
  {
    name: "alpha",
    version: "1.2.3-1",
    compression: "zst",
    files: { "usr/bin/alpha": "#!/bin/sh\n", "usr/share/alpha/data.txt": "data\n" },
    extra: {
      group: ["base-devel", "extras"],
      license: ["MIT", "Apache-2.0"],
      replaces: ["alpha-old"],
      conflict: ["alpha-git", "alpha-bin"],
      provides: ["alpha-impl=1.2.3", "libalpha.so=1-64"],
      depend: ["glibc>=2.36", "bash"],
      optdepend: ["python: for the alpha-py helper", "perl"],
      makedepend: ["gcc", "make"],
      checkdepend: ["check"],
      backup: ["etc/alpha.conf"],
    },
  },
  {
    name: "beta-tool",
    version: "2:0.9+git20240101-3",
    arch: "any",
    compression: "xz",
    desc: "a   description   with\truns of   whitespace",
    files: { "usr/lib/beta/x.py": "print(1)\n", "etc/beta.conf": "k=v\n" },
    extra: { depend: ["python"] },
  },
  { name: "gamma", version: "0.1-1", compression: "gz", files: {} },
  {
    name: "delta",
    version: "10.0.0-2",
    compression: "zst",
    files: { [`usr/share/delta/${"long-directory-name/".repeat(8)}file.txt`]: "long\n" },
    extra: { license: ["custom:delta"], provides: ["delta-bin"] },
  },
];

let dir: string;
let ours: Map<string, string>;
let theirs: Map<string, string>;

async function extract(tarball: string, into: string): Promise<Map<string, string>> {
  await run("mkdir", ["-p", into]);
  await run("bsdtar", ["-xf", tarball, "-C", into]);
  const out = new Map<string, string>();
  for (const entry of await readdir(into)) {
    for (const f of await readdir(path.join(into, entry))) {
      out.set(`${entry}/${f}`, await readFile(path.join(into, entry, f), "utf8"));
    }
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-repoadd-"));
  const { signer } = await makeTestSigner();
  const built: BuiltPacmanPackage[] = [];
  for (const spec of SPECS) built.push(buildPacmanPackage(spec));
  // The same specs packed by bsdtar (pax headers, bsdtar's own ordering), renamed.
  for (const spec of SPECS)
    built.push(await buildPacmanPackageWithBsdtar({ ...spec, name: `${spec.name}-bsd` }));

  const published = [];
  for (const b of built) {
    const sig = await signer.signDetachedBinary(b.bytes);
    await writeFile(path.join(dir, b.filename), b.bytes);
    await writeFile(path.join(dir, `${b.filename}.sig`), sig);
    const meta = await pacmanLayout.parse(bufferSource(b.bytes), b.filename);
    published.push(publishedPacman(b, meta, [`x86_64/${b.filename}`], sig));
  }
  await run("repo-add", [
    "-q",
    path.join(dir, "ref.db.tar.gz"),
    ...built.map((b) => path.join(dir, b.filename)),
  ]);

  const result = await pacmanLayout.render({
    repo: pacmanRepo("ref"),
    distroVersions: new Map(),
    packages: published,
    signer,
    options: DEFAULT_LAYOUT_OPTIONS,
    now: new Date(0),
  });
  const filesDb = result.files.find((f) => f.path === "x86_64/ref.files");
  expect(filesDb).toBeDefined();
  await writeFile(path.join(dir, "ours.files.tar.gz"), filesDb!.content);
  ours = await extract(path.join(dir, "ours.files.tar.gz"), path.join(dir, "ours"));
  theirs = await extract(path.join(dir, "ref.files.tar.gz"), path.join(dir, "theirs"));
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("pacman database entries equal repo-add's", () => {
  test("the same entries", () => {
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    expect(ours.size).toBe(SPECS.length * 2 * 2);
  });

  test("every desc and files entry is byte-identical", () => {
    for (const [name, text] of theirs) {
      expect(ours.get(name), name).toBe(text);
    }
  });

  test("the reference entries carry the fields under test", () => {
    const alpha = theirs.get("alpha-1.2.3-1/desc")!;
    for (const field of [
      "%FILENAME%",
      "%NAME%",
      "%BASE%",
      "%VERSION%",
      "%DESC%",
      "%GROUPS%",
      "%CSIZE%",
      "%ISIZE%",
      "%MD5SUM%",
      "%SHA256SUM%",
      "%PGPSIG%",
      "%URL%",
      "%LICENSE%",
      "%ARCH%",
      "%BUILDDATE%",
      "%PACKAGER%",
      "%REPLACES%",
      "%CONFLICTS%",
      "%PROVIDES%",
      "%DEPENDS%",
      "%OPTDEPENDS%",
      "%MAKEDEPENDS%",
      "%CHECKDEPENDS%",
    ]) {
      expect(alpha, field).toContain(`${field}\n`);
    }
    expect(theirs.get("beta-tool-2:0.9+git20240101-3/desc")).toContain(
      "%DESC%\na description with runs of whitespace\n",
    );
  });
});
