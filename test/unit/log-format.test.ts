import { describe, expect, it } from "vitest";
import { compactStream, createLogger, formatCompact } from "../../src/log.js";

function capture() {
  const lines: string[] = [];
  return { lines, write: (s: string) => lines.push(s) };
}

describe("compact log lines", () => {
  it("prints time, level, message and at most three key fields, repo and file first", () => {
    const time = new Date(2026, 0, 2, 3, 4, 5).getTime();
    const line = JSON.stringify({
      level: 40,
      time,
      pid: 1,
      hostname: "h",
      name: "packrat-agent",
      packages: 7,
      extra: "x",
      file: "pool/a b.deb",
      repo: "apt",
      msg: "not listed",
    });
    expect(formatCompact(line)).toBe(
      `03:04:05 WARN  not listed  repo=apt file="pool/a b.deb" packages=7`,
    );
  });

  it("shows an error's message, skips other objects, and colours warnings only when asked", () => {
    const line = JSON.stringify({
      level: 50,
      time: 0,
      err: { type: "Error", message: "disk full", stack: "..." },
      detail: { a: 1 },
      msg: "publish failed",
    });
    expect(formatCompact(line)).toMatch(/^\d\d:\d\d:\d\d ERROR publish failed {2}err="disk full"$/);
    expect(formatCompact(line, { color: true })).toContain("\x1b[31mERROR\x1b[0m");
    expect(
      formatCompact(JSON.stringify({ level: 30, time: 0, msg: "hi" }), { color: true }),
    ).toMatch(/^\d\d:\d\d:\d\d INFO {2}hi$/);
  });

  it("passes through a line that is not JSON", () => {
    expect(formatCompact("plain text")).toBeNull();
    const out = capture();
    compactStream(out).write("plain text\n");
    expect(out.lines).toEqual(["plain text\n"]);
    const tty = capture();
    compactStream(tty, { clearLine: true }).write(
      `${JSON.stringify({ level: 30, time: 0, msg: "hi" })}\n`,
    );
    expect(tty.lines[0]?.startsWith("\r\x1b[K")).toBe(true);
    expect(tty.lines[0]?.slice(4)).toMatch(/^\d\d:\d\d:\d\d INFO {2}hi\n$/);
  });

  it("is what createLogger writes with format compact, one line per event, secrets redacted", () => {
    const out = capture();
    const log = createLogger({ format: "compact", destination: out });
    log.info({ repo: "yum", psk: "secret" }, "published");
    log.debug("not shown at info");
    expect(out.lines).toHaveLength(1);
    expect(out.lines[0]).toMatch(
      /^\d\d:\d\d:\d\d INFO {2}published {2}repo=yum psk=\[redacted\]\n$/,
    );
    const json = capture();
    createLogger({ destination: json }).info({ repo: "yum" }, "published");
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ level: 30, repo: "yum", msg: "published" });
  });
});
