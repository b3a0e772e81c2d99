/**
 * Turns poll answers into a few incremental syncs. Per repo: a set of dirty package names and a
 * debounce timer. The first answer after a quiet spell (no pass for the debounce window) starts
 * a pass at once, so a lone tag is applied without waiting; answers that arrive while that
 * pass runs, or within the window after it, mark the repo dirty and are applied together by
 * one more pass once the window has passed (ftpsync's "update required" flag, FIELD_NOTES §3).
 * A burst thus costs two passes, the first of them immediate.
 */
export type RepoRunner = (repo: string, packages: string[]) => Promise<void>;

interface RepoTrigger {
  pending: Set<string>;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  /** When the last pass ended (performance.now()), or null if none has run. */
  lastEnded: number | null;
}

export class TriggerCoalescer {
  private readonly repos = new Map<string, RepoTrigger>();
  private stopped = false;

  constructor(
    private readonly debounceMs: number,
    private readonly run: RepoRunner,
    private readonly onError: (repo: string, err: unknown) => void,
  ) {}

  /** Record that these packages changed in this repo; a pass follows after the debounce. */
  notify(repo: string, packages: readonly string[]): void {
    if (this.stopped || packages.length === 0) return;
    const t = this.state(repo);
    for (const p of packages) t.pending.add(p);
    if (t.running !== null || t.timer !== null) return;
    const quietFor = t.lastEnded === null ? Infinity : performance.now() - t.lastEnded;
    // At once when quiet; setTimeout 0 still gathers answers handled in this same turn.
    this.arm(repo, t, quietFor >= this.debounceMs ? 0 : this.debounceMs - quietFor);
  }

  /** Wait for every scheduled and running pass to end (tests, graceful stop). */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [...this.repos.values()].filter((t) => t.running !== null || t.timer !== null);
      if (busy.length === 0) return;
      await Promise.all(
        busy.map((t) => t.running ?? new Promise((r) => setTimeout(r, this.debounceMs + 5))),
      );
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.repos.values()) {
      if (t.timer) clearTimeout(t.timer);
      t.timer = null;
    }
  }

  private state(repo: string): RepoTrigger {
    let t = this.repos.get(repo);
    if (!t)
      this.repos.set(
        repo,
        (t = { pending: new Set(), timer: null, running: null, lastEnded: null }),
      );
    return t;
  }

  private arm(repo: string, t: RepoTrigger, delayMs: number = this.debounceMs): void {
    t.timer = setTimeout(() => {
      t.timer = null;
      this.fire(repo, t);
    }, delayMs);
  }

  private fire(repo: string, t: RepoTrigger): void {
    if (this.stopped) return;
    const packages = [...t.pending].sort();
    t.pending.clear();
    t.running = this.run(repo, packages)
      .catch((err: unknown) => this.onError(repo, err))
      .finally(() => {
        t.running = null;
        t.lastEnded = performance.now();
        if (t.pending.size > 0 && !this.stopped) this.arm(repo, t);
      });
  }
}
