/**
 * Turns poll answers into a few incremental syncs. Per repo: a set of dirty package names and a
 * debounce timer. A burst of answers within the debounce window becomes one pass; answers that
 * arrive while that repo's pass runs mark it dirty again, so another pass follows (ftpsync's
 * "update required" flag, FIELD_NOTES §3).
 */
export type RepoRunner = (repo: string, packages: string[]) => Promise<void>;

interface RepoTrigger {
  pending: Set<string>;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
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
    if (t.running === null && t.timer === null) this.arm(repo, t);
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
    if (!t) this.repos.set(repo, (t = { pending: new Set(), timer: null, running: null }));
    return t;
  }

  private arm(repo: string, t: RepoTrigger): void {
    t.timer = setTimeout(() => {
      t.timer = null;
      this.fire(repo, t);
    }, this.debounceMs);
  }

  private fire(repo: string, t: RepoTrigger): void {
    if (this.stopped) return;
    const packages = [...t.pending].sort();
    t.pending.clear();
    t.running = this.run(repo, packages)
      .catch((err: unknown) => this.onError(repo, err))
      .finally(() => {
        t.running = null;
        if (t.pending.size > 0 && !this.stopped) this.arm(repo, t);
      });
  }
}
