/**
 * Download progress for `sync`: a bar (files, bytes, rate, ETA) on a terminal, a plain line per
 * 10% otherwise, so logs stay readable when run from cron or CI.
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

export function createProgress(stream: NodeJS.WriteStream): Progress {
  let total = 0;
  let done = 0;
  let bytes = 0;
  let started = 0;
  let bar: cliProgress.SingleBar | null = null;
  let lastTenth = -1;
  const tty = stream.isTTY === true;

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
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
