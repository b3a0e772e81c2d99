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
      replicasNow: true,
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
    let bucketFailed = false;
    for (const b of report.buckets) {
      process.stdout.write(
        `bucket ${b.target}: ${b.uploaded} uploaded (${b.uploadedBytes} bytes), ${b.deleted} deleted` +
          (b.drift > 0 ? `, ${b.drift} repaired after someone else changed them` : "") +
          `, ${b.failed.length} failed\n`,
      );
      if (b.error) process.stdout.write(`  bucket not updated: ${b.error}\n`);
      for (const f of b.failed.slice(0, 20))
        process.stdout.write(`  upload failed: ${f.key}: ${f.error}\n`);
      if (b.behind.length > 0)
        process.stdout.write(
          `  the bucket still serves the previous generation of: ${b.behind.join(", ")}\n`,
        );
      bucketFailed ||= b.error !== null || b.failed.length > 0;
    }
    return report.failed.length > 0 || report.skipped.length > 0 || report.refused || bucketFailed
      ? 1
      : 0;
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
