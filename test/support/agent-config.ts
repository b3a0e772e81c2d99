/** A mirror.conf for a MirrorFixture, for tests that run the real CLI. */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { MIRROR, type MirrorFixture } from "./mirror-fixture.js";

export async function writeAgentConfig(
  fx: MirrorFixture,
  extra: Record<string, string> = {},
): Promise<string> {
  const mirror: Record<string, string> = {
    description: "test mirror",
    root_dir: fx.root,
    state_db: fx.stateDb,
    full_sync_interval: "600",
    trigger_debounce_ms: "100",
    watch_tree: "yes",
    ...extra,
  };
  const text = [
    "[packrat]",
    `host: ${fx.master.url}`,
    `name: ${MIRROR}`,
    "",
    "[mirror]",
    ...Object.entries(mirror).map(([k, v]) => `${k}: ${v}`),
    "",
  ].join("\n");
  const file = path.join(fx.dir, "mirror.conf");
  await writeFile(file, text);
  return file;
}
