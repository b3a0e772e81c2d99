/**
 * The crash soak: the CI crash test (test/integration/crash.test.ts) at more points and with
 * random kill moments. SIGKILLs the real agent during initial syncs, `run` applying master
 * changes, and cleanups; after each kill checks that no partial file sits at a final path,
 * restarts `sync`, and runs verify --deep. Prints kills, recoveries and time to recover.
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && node dist/bench/soak-crash.js [kills] [seed]
 *
 * Exits 1 if any round leaves a partial file or a tree that verify rejects. On a machine where
 * other builds rewrite dist/ meanwhile, run it from a copy (dist/, bin/, package.json and a
 * node_modules symlink): a half-written module otherwise shows up as a failed restart.
 */
import {
  crashRound,
  wipeAgent,
  type KillAt,
  type KillOutcome,
} from "../test/integration/crash-harness.js";
import { startCliMirror, TAG, type CliMirror } from "../test/support/cli-mirror.js";

const targetKills = Number(process.argv[2] ?? "100");
let seed = Number(process.argv[3] ?? "1");

/** mulberry32: the same seed gives the same kill points. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

const initialPoints = (): KillAt => {
  const r = random();
  if (r < 0.3) return { onLog: /"msg":"master request"/, nth: 1 + Math.floor(random() * 10) };
  if (r < 0.7) return { onLog: /^downloads: \d+\//, nth: 1 + Math.floor(random() * 40) };
  if (r < 0.85)
    return {
      onLog: /"msg":"(self-check passed|published)"/,
      nth: 1 + Math.floor(random() * 3),
      extraMs: Math.floor(random() * 20),
    };
  return { afterMs: 300 + Math.floor(random() * 2500) };
};

async function changeSome(m: CliMirror, round: number): Promise<void> {
  for (let t = 0; t < 200 && m.master.openPolls < 2; t++)
    await new Promise((r) => setTimeout(r, 10));
  for (let k = 0; k < 6; k++) {
    const pkg = `pkg${String(Math.floor(random() * 40)).padStart(2, "0")}`;
    m.addDeb(pkg, `1.${round}.${k}`);
    const victim = pick([...m.ids.keys()].filter((f) => f.endsWith(".deb")));
    if (random() < 0.5) m.master.untag(m.ids.get(victim)!, TAG);
    else m.master.tag(m.ids.get(victim)!, TAG);
    m.addJson(`tool${Math.floor(random() * 10)}`, `1.${round}.${k}`);
    await new Promise((r) => setTimeout(r, Math.floor(random() * 40)));
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

async function main(): Promise<number> {
  const m = await startCliMirror();
  for (let i = 0; i < 40; i++) m.addDeb(`pkg${String(i).padStart(2, "0")}`, "1.0");
  for (let i = 0; i < 10; i++) m.addJson(`tool${i}`, "1.0");
  m.master.faults.add({ kind: "delay", ms: 10, uri: "/files/" });
  await m.writeConfig({ metadata_grace_seconds: 0, download_concurrency: 3 });
  const outcomes: (KillOutcome & { phase: string })[] = [];
  const started = Date.now();
  try {
    for (let round = 1; outcomes.filter((o) => o.killed).length < targetKills; round++) {
      const phase = pick(["initial", "run", "cleanup"]);
      let o: KillOutcome;
      if (phase === "initial") {
        await wipeAgent(m);
        o = await crashRound(m, ["sync", "--log-level", "debug"], initialPoints());
      } else if (phase === "run") {
        o = await crashRound(m, ["run"], {
          after: { log: /"msg":"full sync finished"/, action: () => changeSome(m, round) },
          onLog: /"msg":"(applying changes from the master|published)"/,
          nth: 1 + Math.floor(random() * 4),
          extraMs: Math.floor(random() * 60),
        });
      } else {
        const ids = [0, 1, 2, 3].map((k) => m.addDeb(`gone${round}-${k}`, "1.0"));
        await m.cli(["sync"]);
        for (const id of ids) m.master.untag(id, TAG);
        o = await crashRound(m, ["sync"], {
          onLog: /"msg":"removing a file nothing names"/,
          nth: 1 + Math.floor(random() * 5),
        });
      }
      outcomes.push({ ...o, phase });
      const bad = o.partial.length + o.problems.length;
      process.stdout.write(
        `${phase.padEnd(8)} killed=${o.killed ? "yes" : "no "} recover=${o.recoverMs}ms${bad ? ` PROBLEMS: ${[...o.partial, ...o.problems].join("; ")}` : ""}\n`,
      );
    }
  } finally {
    await m.close();
  }
  const killed = outcomes.filter((o) => o.killed);
  const failed = outcomes.filter((o) => o.partial.length + o.problems.length > 0);
  const rec = killed.map((o) => o.recoverMs);
  const byPhase = ["initial", "run", "cleanup"]
    .map((p) => `${p} ${killed.filter((o) => o.phase === p).length}`)
    .join(", ");
  process.stdout.write(
    [
      "",
      `soak-crash: ${outcomes.length} rounds in ${Math.round((Date.now() - started) / 1000)} s`,
      `  kills: ${killed.length} (${byPhase}); rounds that finished before the kill point: ${outcomes.length - killed.length}`,
      `  recoveries (restart sync exit 0 and verify --deep clean): ${killed.length - failed.filter((o) => o.killed).length} of ${killed.length}`,
      `  partial files at final paths: ${outcomes.reduce((n, o) => n + o.partial.length, 0)}`,
      `  time to recover (restart to finished sync): median ${quantile(rec, 0.5)} ms, p95 ${quantile(rec, 0.95)} ms, max ${Math.max(0, ...rec)} ms`,
      "",
    ].join("\n"),
  );
  return failed.length === 0 ? 0 : 1;
}

process.exitCode = await main();
