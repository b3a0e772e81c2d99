/**
 * Issue 18, item 6: two-file entry points (`<repo>.db` + `<repo>.db.sig`, `repomd.xml` +
 * `repomd.xml.asc`). A client fetches the file, then its signature, in two requests; a
 * generation switched in between gives it a new file and an old signature (or the reverse).
 * What the real clients do about that decides what the publisher can do:
 *
 * - pacman 6 refuses a .sig unless every signature packet in it verifies, and dnf (librepo)
 *   checks only the first packet: a signature file valid for both the old and the new bytes
 *   (two packets) is refused by one client or the other, so no "transition" signature exists;
 * - both refuse a mismatched pair: they fail closed, never use the bytes, and the next run
 *   fetches a consistent pair.
 *
 * So the publisher writes both files to temp names first and renames them back to back
 * (src/sync/publish.ts switchIn); what remains is a client whose two requests straddle that
 * instant, and it fails closed. The last test measures that under churn with the real pacman.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as openpgp from "openpgp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Signer } from "../../src/signing/signer.js";
import { runDnf, writeDnfConfig } from "../support/dnf-client.js";
import {
  TAG,
  addPacmanRepo,
  makeEngine,
  startMirrorFixture,
  type EngineHarness,
  type MirrorFixture,
} from "../support/mirror-fixture.js";
import { buildPacmanPackage } from "../support/pacman-builder.js";
import { startStaticServer, type StaticServer } from "../support/static-server.js";
import { makeTestSigner } from "../support/test-signer.js";

const run = promisify(execFile);

let work: string;
let signer: Signer;
let gpgdir: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "packrat-pairs-"));
  ({ signer } = await makeTestSigner());
  gpgdir = path.join(work, "gnupg");
  await run("pacman-key", ["--gpgdir", gpgdir, "--init"]);
  await writeFile(path.join(work, "key.asc"), signer.publicKeyArmored());
  await run("pacman-key", ["--gpgdir", gpgdir, "--add", path.join(work, "key.asc")]);
  await run("pacman-key", ["--gpgdir", gpgdir, "--lsign-key", signer.primaryFingerprint]);
}, 120_000);

afterAll(async () => {
  await run("gpgconf", ["--homedir", gpgdir, "--kill", "all"]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

/** A private pacman reading `url`; -Sy, then -Sl of the repo. */
async function pacmanSync(
  base: string,
  url: string,
  repo: string,
): Promise<{ ok: boolean; output: string }> {
  for (const d of ["db", "root", "cache"]) await mkdir(path.join(base, d), { recursive: true });
  const config = path.join(base, "pacman.conf");
  await writeFile(
    config,
    `[options]\nArchitecture = x86_64\nSigLevel = Required\n\n[${repo}]\nServer = ${url}/$arch\n`,
  );
  const common = ["--config", config, "--dbpath", path.join(base, "db")];
  const more = ["--root", path.join(base, "root"), "--cachedir", path.join(base, "cache")];
  const gpg = ["--gpgdir", gpgdir, "--logfile", path.join(base, "log"), "--noconfirm"];
  try {
    const sy = await run("pacman", [...common, ...more, ...gpg, "--noprogressbar", "-Syy"]);
    const sl = await run("pacman", [...common, ...more, ...gpg, "-Sl", repo]);
    return { ok: true, output: sy.stdout + sy.stderr + sl.stdout };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? e.message}` };
  }
}

/** One armored signature file holding a signature over `first`, then one over `second`. */
async function armoredSignatures(first: Uint8Array, second?: Uint8Array): Promise<string> {
  const packetsOf = async (data: Uint8Array) =>
    (await openpgp.readSignature({ armoredSignature: await signer.signDetachedArmored(data) }))
      .packets;
  const packets = [...(await packetsOf(first))];
  if (second) packets.push(...(await packetsOf(second)));
  const list = new openpgp.PacketList<openpgp.SignaturePacket>();
  list.push(...packets);
  return new openpgp.Signature(list).armor();
}

describe("what the real clients do with a signature file", () => {
  let fx: MirrorFixture;
  let h: EngineHarness;
  let server: StaticServer;

  beforeAll(async () => {
    fx = await startMirrorFixture();
    addPacmanRepo(fx.master, []);
    h = makeEngine(fx, { signer });
    server = await startStaticServer(path.join(fx.root, "arch"));
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await h?.close();
    await fx?.close();
  });

  const addPkg = (name: string) => {
    const p = buildPacmanPackage({ name, version: "1.0-1", arch: "x86_64" });
    fx.master.addPackageFile({
      package: name,
      distroVersion: "arch",
      version: "1.0-1",
      type: "pkg",
      arch: "x86_64",
      filename: p.filename,
      content: p.bytes,
      tags: [TAG],
    });
  };

  it("pacman refuses a .db.sig with a second packet over other bytes, and a .sig over other bytes", async () => {
    addPkg("alpha");
    await h.engine.fullSync();
    const sigPath = path.join(fx.root, "arch/x86_64/arch.db.sig");
    const good = await readFile(sigPath);
    expect((await pacmanSync(path.join(work, "p0"), server.url, "arch")).ok).toBe(true);
    const other = await signer.signDetachedBinary(new TextEncoder().encode("other bytes"));
    for (const [label, sig] of [
      ["good, then other", Buffer.concat([good, other])],
      ["other, then good", Buffer.concat([other, good])],
      ["other only", Buffer.from(other)],
    ] as const) {
      await writeFile(sigPath, sig);
      const r = await pacmanSync(
        path.join(work, `p-${label.replace(/\W/g, "")}`),
        server.url,
        "arch",
      );
      expect(r.ok, label).toBe(false);
      expect(r.output, label).toMatch(/signature from .* is invalid|invalid or corrupted database/);
    }
    await writeFile(sigPath, good);
  });

  it("dnf checks only the first packet of repomd.xml.asc, and refuses one over other bytes", async () => {
    const repo = path.join(work, "yum");
    await mkdir(repo);
    await run("createrepo_c", ["--quiet", repo]);
    const xml = await readFile(path.join(repo, "repodata/repomd.xml"));
    const other = new TextEncoder().encode("other bytes");
    const yum = await startStaticServer(repo);
    try {
      const results: Record<string, boolean> = {};
      for (const [label, first, second] of [
        ["good, then other", xml, other],
        ["other, then good", other, xml],
        ["other only", other, undefined],
      ] as const) {
        await writeFile(
          path.join(repo, "repodata/repomd.xml.asc"),
          await armoredSignatures(first, second),
        );
        const setup = {
          base: path.join(work, `dnf-${label.replace(/\W/g, "")}`),
          repos: [{ id: "t", baseUrl: yum.url }],
          keyFile: path.join(work, "key.asc"),
        };
        await writeDnfConfig(setup);
        const r = await runDnf(setup, ["makecache"]);
        results[label] = r.ok;
        if (!r.ok) expect(r.output, label).toMatch(/GPG signature verification error/);
      }
      // Accepting "good, then other" but not "other, then good": only the first packet counts,
      // so a two-packet file cannot be valid for both the old and the new repomd.xml.
      expect(results).toEqual({
        "good, then other": true,
        "other, then good": false,
        "other only": false,
      });
    } finally {
      await yum.close();
    }
  }, 180_000);

  it("under churn, real pacman either reads a consistent signed database or fails closed", async () => {
    let churning = true;
    const outcomes = { ok: 0, failedClosed: 0, other: [] as string[] };
    let round = 0;
    const loop = (async () => {
      while ((churning || outcomes.ok === 0) && round < 300) {
        const r = await pacmanSync(path.join(work, `churn-${round++}`), server.url, "arch");
        if (r.ok) outcomes.ok++;
        else if (/signature from .* is invalid|invalid or corrupted database/.test(r.output))
          outcomes.failedClosed++;
        else outcomes.other.push(r.output.slice(0, 2000));
      }
    })();
    const names: string[] = [];
    for (let i = 0; i < 30; i++) {
      const name = `churn${String(i).padStart(2, "0")}`;
      addPkg(name);
      names.push(name);
      await h.engine.incrementalSync("prod-arch", [name], { quick: false });
    }
    churning = false;
    await loop;
    console.log(
      `pacman under churn: ${round} runs, ${outcomes.ok} consistent, ${outcomes.failedClosed} failed closed (a request pair straddled a switch)`,
    );
    expect(outcomes.other).toEqual([]);
    expect(outcomes.ok).toBeGreaterThan(0);
    const last = await pacmanSync(path.join(work, "after"), server.url, "arch");
    expect(last.ok, last.output).toBe(true);
    for (const name of names) expect(last.output).toContain(`arch ${name} 1.0-1`);
  }, 180_000);
});
