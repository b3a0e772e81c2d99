/**
 * Differential: for .debs built by the real dpkg-deb, every stanza we publish equals the one
 * dpkg-scanpackages writes, field for field (and, since we follow dpkg's field order, byte for
 * byte).
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { aptLayout } from "../../src/layout/apt.js";
import { parseControlStanza } from "../../src/layout/formats/deb-control.js";
import type { FixtureDeb } from "../support/deb-builder.js";
import {
  buildFixtureDebs,
  publishDeb,
  renderInput,
  testDistroVersion,
} from "../support/deb-builder.js";

const run = promisify(execFile);
let dir: string;
let debs: FixtureDeb[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-scanpkgs-"));
  debs = await buildFixtureDebs(dir);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Stanzas keyed by Filename. */
function byFilename(packages: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const stanza of packages.split(/\n\n+/).filter((s) => s.trim() !== "")) {
    const filename = /^Filename: (.*)$/m.exec(stanza)?.[1];
    if (!filename) throw new Error(`stanza without Filename:\n${stanza}`);
    map.set(filename, `${stanza.trimEnd()}\n`);
  }
  return map;
}

it("writes the stanzas dpkg-scanpackages writes", async () => {
  const dv = testDistroVersion("bookworm");
  const published = await Promise.all(debs.map((d) => publishDeb(d.bytes, d.filename, dv)));
  // Lay the files out as the agent does, and let dpkg-scanpackages index that pool.
  const repoDir = path.join(dir, "repo");
  for (const p of published) {
    await mkdir(path.dirname(path.join(repoDir, p.paths[0]!)), { recursive: true });
    await writeFile(path.join(repoDir, p.paths[0]!), p.content);
  }
  const { stdout } = await run("dpkg-scanpackages", ["--multiversion", "pool", "/dev/null"], {
    cwd: repoDir,
  });
  const theirs = byFilename(stdout);
  expect(theirs.size).toBe(debs.length);

  const result = await aptLayout.render(
    renderInput(published, [dv], {
      options: {
        ...renderInput([], []).options,
        aptArchitectures: ["amd64", "arm64"],
      },
    }),
  );
  const ours = new Map<string, string>();
  for (const f of result.files.filter((x) => /binary-[a-z0-9]+\/Packages$/.test(x.path))) {
    for (const [k, v] of byFilename(new TextDecoder().decode(f.content))) ours.set(k, v);
  }
  expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
  for (const [filename, stanza] of theirs) {
    const mine = ours.get(filename)!;
    // Field for field, order aside...
    expect(new Map(parseControlStanza(mine))).toEqual(new Map(parseControlStanza(stanza)));
    // ...and in dpkg's own order too.
    expect(mine).toBe(stanza);
    // describe() shows the same stanza for inspect.
    const p = published.find((x) => x.paths[0] === filename)!;
    expect(aptLayout.describe(p.meta, p.file.filename)).toBe(stanza);
  }
  // The fixtures cover what they claim to.
  expect(new Set(debs.map((d) => d.compression))).toEqual(new Set(["gzip", "xz", "zstd", "none"]));
  expect(stdout).toMatch(/^Description: says hello\n A longer text/m);
  expect(stdout).toMatch(/^Pre-Depends: /m);
  expect(stdout).toMatch(/^Provides: /m);
  expect(stdout).toMatch(/^Version: 1:2\.0~rc1-3$/m);
});
