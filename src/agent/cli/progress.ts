/**
 * Progress for `sync`: downloads as a bar (files, bytes, rate, ETA) on a terminal, a plain line
 * per 10% otherwise, so logs stay readable when run from cron or CI; and on a terminal only, a
 * bar (packages, rate, ETA) while a publish reads many packages for the first time (a cold
 * publish of a new or re-created repo).
 */
import cliProgress from "cli-progress";
import type { EngineDeps } from "../../sync/engine.js";

export interface Progress {
  hooks: NonNullable<EngineDeps["progress"]>;
  stop(): void;
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** A publish reading fewer new packages than this is quick: no bar flashes by. */
export const INDEX_BAR_MIN_FILES = 100;

export function createProgress(stream: NodeJS.WriteStream): Progress {
  let total = 0;
  let done = 0;
  let bytes = 0;
  let started = 0;
  let bar: cliProgress.SingleBar | null = null;
  let lastTenth = -1;
  const tty = stream.isTTY === true;
  let indexBar: cliProgress.SingleBar | null = null;
  let indexed = 0;
  let indexStarted = 0;

  const render = () => {
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = bytes / secs;
    if (bar) {
      bar.update(done, { bytes: formatBytes(bytes), rate: `${formatBytes(rate)}/s` });
    } else if (total > 0) {
      const tenth = Math.floor((done / total) * 10);
      if (tenth !== lastTenth) {
        lastTenth = tenth;
        stream.write(
          `downloads: ${done}/${total} files, ${formatBytes(bytes)}, ${formatBytes(rate)}/s\n`,
        );
      }
    }
  };

  return {
    hooks: {
      onPlan(files) {
        total = files;
        done = 0;
        started = Date.now();
        if (files === 0) return;
        if (tty) {
          bar = new cliProgress.SingleBar(
            {
              stream,
              format:
                "downloading [{bar}] {value}/{total} files | {bytes} | {rate} | ETA {eta_formatted}",
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(files, 0, { bytes: "0 B", rate: "0 B/s" });
        }
      },
      onBytes(n) {
        bytes += n;
        if (bar) render();
      },
      onFile() {
        done++;
        render();
      },
      onIndexPlan(repo, files) {
        if (!tty || files < INDEX_BAR_MIN_FILES) return;
        // The download bar is done by now (a pass downloads, then publishes).
        bar?.stop();
        bar = null;
        indexed = 0;
        indexBar = new cliProgress.SingleBar(
          {
            stream,
            format: `indexing ${repo} [{bar}] {value}/{total} packages | {speed}/s | ETA {eta_formatted}`,
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        );
        indexBar.start(files, 0, { speed: "0" });
        indexStarted = Date.now();
      },
      onIndexed() {
        if (!indexBar) return;
        indexed++;
        const secs = Math.max(0.001, (Date.now() - indexStarted) / 1000);
        indexBar.update(indexed, { speed: (indexed / secs).toFixed(0) });
      },
      onIndexDone() {
        indexBar?.stop();
        indexBar = null;
      },
    },
    stop() {
      bar?.stop();
      bar = null;
      indexBar?.stop();
      indexBar = null;
    },
  };
}
