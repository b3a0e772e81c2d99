/** `packrat-agent sync [--full] [--deep] [--force]`: one pass, exit code says how it went. */
import { describeError } from "../../errors.js";
import { createContext } from "../context.js";
import { parseCommandArgs, settingsAndLogger } from "./common.js";
import { createProgress } from "./progress.js";

export async function syncCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("sync", argv, {
    full: { type: "boolean" },
    deep: { type: "boolean" },
    force: { type: "boolean" },
  });
  const { settings, log } = await settingsAndLogger(values);
  const progress = createProgress(process.stderr);
  const ctx = await createContext(settings, log, { engine: { progress: progress.hooks } });
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const report = await ctx.engine.fullSync({
      deep: values.deep === true,
      force: values.force === true,
      signal: controller.signal,
    });
    progress.stop();
    const summary =
      `synced ${report.repos} repo(s), ${report.packageFiles} file(s): ${report.downloaded} downloaded, ` +
      `${report.linked} linked, ${report.repaired} repaired, ${report.removed} removed, ` +
      `${report.published.length} republished, ${report.failed.length} failed` +
      (report.skipped.length > 0 ? `, ${report.skipped.length} skipped` : "");
    process.stdout.write(`${summary}\n`);
    for (const f of report.failed) process.stdout.write(`  failed: ${f.file}: ${f.error}\n`);
    // A file the master lists that the agent cannot use is not mirrored: say so, and exit 1.
    for (const f of report.skipped) process.stdout.write(`  skipped: ${f.uri}: ${f.error}\n`);
    if (report.refused) process.stdout.write(`  refused: ${report.refused}\n`);
    return report.failed.length > 0 || report.skipped.length > 0 || report.refused ? 1 : 0;
  } catch (err) {
    progress.stop();
    log.error(`sync failed: ${describeError(err)}`);
    throw err;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await ctx.close();
  }
}
