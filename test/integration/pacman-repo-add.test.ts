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
import { bufferSource } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import {
  buildPacmanPackage,
  buildPacmanPackageWithBsdtar,
  buildPacmanPackageWithMakepkg,
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

const MAKEPKG_ALPHA = `pkgname=mk-alpha
pkgver=3.1
pkgrel=2
epoch=1
pkgdesc="Built   by makepkg"
arch=('x86_64')
url="https://packrat.invalid/mk"
license=('GPL' 'MIT')
groups=('mk-group')
depends=('bash' 'glibc>=2.30')
makedepends=('gcc')
checkdepends=('check')
optdepends=('python: scripts' 'perl')
provides=('mk-alpha-impl=3.1')
conflicts=('mk-alpha-git')
replaces=('mk-old')
backup=('etc/mk-alpha.conf')
package() {
  mkdir -p "$pkgdir/usr/bin" "$pkgdir/etc" "$pkgdir/usr/share/mk alpha"
  printf '#!/bin/sh\\necho hi\\n' > "$pkgdir/usr/bin/mk-alpha"
  chmod 755 "$pkgdir/usr/bin/mk-alpha"
  echo conf > "$pkgdir/etc/mk-alpha.conf"
  echo data > "$pkgdir/usr/share/mk alpha/data file.txt"
  ln -s mk-alpha "$pkgdir/usr/bin/mka"
}
`;
const MAKEPKG_BETA = `pkgname=mk-beta
pkgver=0.1
pkgrel=1
pkgdesc="any-arch package"
arch=('any')
license=('MIT')
package() {
  mkdir -p "$pkgdir/usr/share/mk-beta"
  echo x > "$pkgdir/usr/share/mk-beta/x"
}
`;
const MAKEPKG = [
  [MAKEPKG_ALPHA, ".pkg.tar.zst", "mk-alpha", "1:3.1-2", "x86_64"],
  [MAKEPKG_BETA, ".pkg.tar.xz", "mk-beta", "0.1-1", "any"],
] as const;

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
  // The same specs packed by bsdtar (pax headers, bsdtar's own ordering), renamed, and two
  // made by the real makepkg (.BUILDINFO, makepkg's .MTREE, its .PKGINFO writer).
  const external = await Promise.all([
    ...SPECS.map((spec) => buildPacmanPackageWithBsdtar({ ...spec, name: `${spec.name}-bsd` })),
    ...MAKEPKG.map(async ([pkgbuild, ext, name, version, arch]) => ({
      ...(await buildPacmanPackageWithMakepkg(pkgbuild, ext)),
      spec: { name, version, arch },
    })),
  ]);
  built.push(...external);

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
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("pacman database entries equal repo-add's", () => {
  test("the same entries", () => {
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    expect(ours.size).toBe((SPECS.length * 2 + MAKEPKG.length) * 2);
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
    expect(theirs.get("mk-alpha-1:3.1-2/files")).toContain("usr/share/mk alpha/data file.txt\n");
    expect(theirs.get("mk-alpha-1:3.1-2/desc")).toContain("%GROUPS%\nmk-group\n");
    expect(theirs.get("beta-tool-2:0.9+git20240101-3/desc")).toContain(
      "%DESC%\na description with runs of whitespace\n",
    );
  });
});
