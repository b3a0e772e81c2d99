/**
 * The shipped files that list the formats hold, between their markers, exactly what the layout
 * registry generates (src/agent/generated-text.ts). With PACKRAT_UPDATE_GENERATED=1
 * (`npm run generate`) the test rewrites the blocks instead of failing.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  apacheCacheRules,
  BEGIN_MARK,
  END_MARK,
  formatOptionsExample,
  nginxCacheMap,
} from "../../src/agent/generated-text.js";

const REPO = join(import.meta.dirname, "..", "..");
const UPDATE = process.env.PACKRAT_UPDATE_GENERATED === "1";

/** The text between the line holding BEGIN_MARK (and its continuation comment) and END_MARK. */
function splitBlock(text: string, file: string): { head: string; body: string; tail: string } {
  const begin = text.indexOf(BEGIN_MARK);
  expect(begin, `${file} has no "${BEGIN_MARK}" line`).toBeGreaterThan(-1);
  // The opening comment runs to the line ending in "----".
  const open = text.indexOf("----\n", begin + BEGIN_MARK.length);
  const bodyStart = open + "----\n".length;
  const endLine = text.lastIndexOf("\n", text.indexOf(END_MARK, bodyStart)) + 1;
  expect(text.indexOf(END_MARK, bodyStart), `${file} has no end marker`).toBeGreaterThan(-1);
  return {
    head: text.slice(0, bodyStart),
    body: text.slice(bodyStart, endLine),
    tail: text.slice(endLine),
  };
}

describe.each([
  ["etc/mirror.conf.example", () => formatOptionsExample()],
  ["etc/nginx/packrat-mirror.conf", () => nginxCacheMap()],
  ["etc/apache2/packrat-mirror.conf", () => apacheCacheRules()],
])("%s", (file, generate) => {
  it("holds the block the layout registry generates", async () => {
    const path = join(REPO, file);
    const text = await readFile(path, "utf8");
    const { head, body, tail } = splitBlock(text, file);
    const expected = `${generate()}\n`;
    if (UPDATE && body !== expected) await writeFile(path, head + expected + tail);
    else expect(body, `${file} is stale: run npm run generate`).toBe(expected);
  });
});
