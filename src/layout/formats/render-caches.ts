/**
 * What a layout keeps between renders, by repo and by a part of it (an apt dist, a dnf repo
 * root): one value per (repo, part), made on first use, dropped when the repo leaves the
 * mirror (RepoLayout.forgetRepos).
 */
export class RenderCaches<T> {
  private readonly byId = new Map<string, T>();

  constructor(private readonly make: () => T) {}

  get(repo: string, part: string): T {
    const id = `${repo}\0${part}`;
    let value = this.byId.get(id);
    if (value === undefined) this.byId.set(id, (value = this.make()));
    return value;
  }

  /** The (repo, part) pairs held. */
  keys(): [string, string][] {
    return [...this.byId.keys()].map((id) => id.split("\0") as [string, string]);
  }

  forgetRepos(keep: ReadonlySet<string>): void {
    for (const id of this.byId.keys())
      if (!keep.has(id.slice(0, id.indexOf("\0")))) this.byId.delete(id);
  }
}
