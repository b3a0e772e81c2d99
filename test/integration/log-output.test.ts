/**
 * What a person sees (issue 21): on a terminal (a real pseudo-terminal from util-linux's
 * `script`, not a mocked isTTY) one compact line per event; JSON lines when stderr is not a
 * terminal or with --log-format json; a repeated publish warning said once per process.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { INDEX_BAR_MIN_FILES } from "../../src/agent/cli/progress.js";
import { writeAgentConfig } from "../support/agent-config.js";
import { BIN, runCli } from "../support/cli.js";
import { makeEngine, startMirrorFixture } from "../support/mirror-fixture.js";

const exec = promisify(execFile);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "packrat-log-output-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Run the CLI on a pseudo-terminal; `script` copies what the terminal showed to stdout. */
async function onTerminal(args: string[]): Promise<string[]> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(" ");
  const { stdout } = await exec(
    "script",
    ["--quiet", "--return", "--command", command, "/dev/null"],
    {
      env: { ...process.env, NO_COLOR: "1", TERM: "dumb" },
      timeout: 60_000,
    },
  );
  // Compact lines start by clearing the terminal line (for the progress bar): "\r\x1b[K".
  return stdout.split(/\r?\n/).map((l) => (l.startsWith("\r\x1b[K") ? l.slice(4) : l));
}

describe("log output", () => {
  it("on a terminal: one short line per event, no JSON, then the demo's summary", async () => {
    const lines = await onTerminal(["demo", "--once", "--dir", path.join(dir, "tty")]);
    expect(lines.filter((l) => l.startsWith("{"))).toEqual([]);
    const events = lines.filter((l) => /^\d\d:\d\d:\d\d [A-Z]+ /.test(l));
    // One line per published repo and one for the end of the sync; every line short.
    expect(events).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^\d\d:\d\d:\d\d INFO {2}published {2}repo=demo-apt generation=1 files=\d+$/,
        ),
        expect.stringMatching(/^\d\d:\d\d:\d\d INFO {2}full sync finished {2}/),
      ]),
    );
    for (const l of events) expect(l.length, l).toBeLessThan(160);
    expect(lines).toContain(
      "verify: ok (6 repo(s), 6 entry point(s), 13 package reference(s), 49 file(s) checked, every one re-hashed)",
    );
  });

  it("on a terminal with --log-format json: JSON lines", async () => {
    const lines = await onTerminal([
      "demo",
      "--once",
      "--log-format",
      "json",
      "--dir",
      path.join(dir, "tty-json"),
    ]);
    const json = lines.filter((l) => l.startsWith("{"));
    expect(json.length).toBeGreaterThan(0);
    expect(JSON.parse(json[0]!)).toMatchObject({ level: 30, name: "packrat-agent" });
    expect(lines.filter((l) => /^\d\d:\d\d:\d\d INFO /.test(l))).toEqual([]);
  });

  it("not on a terminal: JSON lines on stderr; a bad --log-format is a usage error", async () => {
    const r = await runCli(["demo", "--once", "--dir", path.join(dir, "pipe")]);
    expect(r.code).toBe(0);
    const stderr = r.stderr.split("\n").filter((l) => l !== "");
    expect(stderr.length).toBeGreaterThan(0);
    for (const l of stderr) expect(() => JSON.parse(l) as unknown, l).not.toThrow();
    const bad = await runCli(["demo", "--log-format", "pretty", "--dir", path.join(dir, "bad")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--log-format pretty: expected one of auto, json, compact");
  });

  it("on a terminal, `sync` draws bars for the downloads and the cold publish; into a pipe, no bar", async () => {
    const fx = await startMirrorFixture();
    try {
      // Just over the size of publish that gets a bar.
      const n = INDEX_BAR_MIN_FILES + 20;
      for (let i = 0; i < n; i++) fx.addDeb(`pkg${i}`, "1.0");
      const conf = await writeAgentConfig(fx);
      const screen = (await onTerminal(["sync", "--config", conf])).join("\n");
      expect(screen).toMatch(
        new RegExp(`downloading \\[[^\\]]*\\] \\d+/${n} files \\| .* \\| .*/s \\| ETA`),
      );
      expect(screen).toContain(`] ${n}/${n} packages | `);
      expect(screen).toMatch(/indexing prod-apt \[[^\]]*\] \d+\/\d+ packages \| \d+\/s \| ETA/);
      expect(screen).toMatch(
        new RegExp(`^synced 2 repo\\(s\\), ${n} file\\(s\\): ${n} downloaded`, "m"),
      );
      // Again from scratch, into a pipe: the plain download lines, no bars, JSON logs.
      await rm(fx.root, { recursive: true, force: true });
      await rm(path.dirname(fx.stateDb), { recursive: true, force: true });
      const piped = await runCli(["sync", "--config", conf]);
      expect(piped.code).toBe(0);
      expect(piped.stderr).not.toMatch(/indexing|\[[\u2591\u2588]/);
      expect(piped.stderr).toMatch(new RegExp(`^downloads: ${n}/${n} files`, "m"));
    } finally {
      await fx.close();
    }
  });

  it("says a repeated publish warning once per process, not at every pass", async () => {
    const fx = await startMirrorFixture({ json: [["tool", "1"]] });
    const lines: string[] = [];
    const log = createLogger({ level: "warn", destination: { write: (s) => lines.push(s) } });
    const h = makeEngine(fx, { log });
    let closed = false;
    const closeFirst = async () => {
      if (!closed) await h.close();
      closed = true;
    };
    try {
      const first = await h.engine.fullSync();
      fx.addJson("tool", "2", "tool 2\n");
      const second = await h.engine.fullSync();
      // Both passes published the unsigned json repo, and each publish has the warning...
      expect(first.published).toContain("prod-json");
      expect(second.published).toContain("prod-json");
      // ...but the log says it once.
      const unsigned = lines.filter((l) => l.includes("manifests published unsigned"));
      expect(unsigned).toHaveLength(1);
      // Another engine (another process) says it again.
      await closeFirst();
      const again = makeEngine(fx, { log });
      fx.addJson("tool", "3", "tool 3\n");
      await again.engine.fullSync();
      await again.close();
      expect(lines.filter((l) => l.includes("manifests published unsigned"))).toHaveLength(2);
    } finally {
      await closeFirst();
      await fx.close();
    }
  });
});
