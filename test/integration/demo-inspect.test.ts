import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { sampleDeb } from "../support/mirror-fixture.js";
import { buildPacmanPackage } from "../support/pacman-builder.js";
import { buildWheel } from "../support/python-builder.js";
import { buildSyntheticRpm, syntheticRpmFilename } from "../support/rpm-builder.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-demo-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("demo", () => {
  it("`demo --once` syncs every format from the bundled master, signs, verifies and exits 0", async () => {
    const res = await runCli(["demo", "--once", "--dir", path.join(dir, "demo")], {
      timeoutMs: 120_000,
    });
    expect(res.stderr).not.toMatch(/"level":50/);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/synced \d+ package files/);
    for (const line of [
      /^ {2}apt +deb \[signed-by=.*repo-key\.gpg\] http:\/\/127\.0\.0\.1:\d+\/apt bookworm main$/m,
      /^ {2}dnf +baseurl=/m,
      /^ {2}pacman +Server = /m,
      /^ {2}pip +pip download --index-url /m,
    ]) {
      expect(res.stdout).toMatch(line);
    }
    expect(res.stdout).toMatch(/verify: ok/);
  });
});

describe("inspect", () => {
  it("prints the index entry for a .deb, an .rpm, a pacman package and a wheel", async () => {
    const deb = sampleDeb("inspectme", "1.2-3");
    const rpmInput = {
      name: "inspectme",
      version: "1.2",
      release: "3",
      arch: "noarch",
      summary: "s",
      description: "d",
    };
    const pac = buildPacmanPackage({
      name: "inspectme",
      version: "1.2-3",
      arch: "x86_64",
      desc: "d",
    });
    const wheel = buildWheel({ name: "inspect-me", version: "1.2", requiresPython: ">=3.9" });
    const files: [string, Uint8Array, RegExp][] = [
      [
        deb.filename,
        deb.content,
        /^Package: inspectme\nVersion: 1\.2-3\n[\s\S]*^SHA256: [0-9a-f]{64}$/m,
      ],
      [
        syntheticRpmFilename(rpmInput),
        buildSyntheticRpm(rpmInput),
        /<name>inspectme<\/name>[\s\S]*<version epoch="0" ver="1\.2" rel="3"\/>/,
      ],
      [pac.filename, pac.bytes, /%NAME%\ninspectme\n[\s\S]*%VERSION%\n1\.2-3\n/],
      [wheel.filename, wheel.bytes, /inspect-me|inspect_me/],
    ];
    for (const [name, bytes, expected] of files) {
      const file = path.join(dir, name);
      await writeFile(file, bytes);
      const res = await runCli(["inspect", file]);
      expect(res.stderr, name).toBe("");
      expect(res.code, name).toBe(0);
      expect(res.stdout, name).toMatch(expected);
    }
  });

  it("names the file and what is wrong for a corrupt package, and refuses unknown types", async () => {
    const bad = path.join(dir, "broken_1.0_all.deb");
    await writeFile(bad, "!<arch>\nnot really a deb");
    const res = await runCli(["inspect", bad]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/broken_1\.0_all\.deb/);
    const unknown = await runCli(["inspect", path.join(dir, "notes.txt")]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/not a package type this agent reads/);
  });
});
