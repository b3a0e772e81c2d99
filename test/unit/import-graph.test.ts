/**
 * The product's import graph (issue 17): no module imports one that imports it back, however
 * far round (a cycle makes load order matter and hides which layer owns what).
 */
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const SRC = path.resolve(import.meta.dirname, "../../src");

/** Relative imports of every .ts file under `dir`, static and dynamic, as repo paths. */
export function importGraph(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const spec =
    /(?:import|export)\s[^;]*?from\s+["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;
  const visit = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) visit(full);
      else if (entry.name.endsWith(".ts")) {
        const text = readFileSync(full, "utf8");
        const deps = [...text.matchAll(spec)].map((m) =>
          path.resolve(path.dirname(full), (m[1] ?? m[2])!).replace(/\.js$/, ".ts"),
        );
        graph.set(full, deps);
      }
    }
  };
  visit(dir);
  return graph;
}

/** Every cycle found by a depth-first walk, each as the list of files around it. */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const found: string[][] = [];
  const walk = (u: string) => {
    state.set(u, "open");
    stack.push(u);
    for (const v of graph.get(u) ?? []) {
      if (!graph.has(v)) continue;
      if (state.get(v) === "open") found.push([...stack.slice(stack.indexOf(v)), v]);
      else if (!state.has(v)) walk(v);
    }
    stack.pop();
    state.set(u, "done");
  };
  for (const u of graph.keys()) if (!state.has(u)) walk(u);
  return found;
}

describe("import graph of src/", () => {
  it("finds a cycle when there is one (the check can fail)", () => {
    const g = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a"]],
      ["d", ["a"]],
    ]);
    expect(cycles(g)).toEqual([["a", "b", "c", "a"]]);
  });

  it("never imports test code (the product ships no test/)", () => {
    const graph = importGraph(SRC);
    const outside = [...graph].flatMap(([from, deps]) =>
      deps
        .filter((d) => !d.startsWith(SRC + path.sep))
        .map((d) => `${path.relative(SRC, from)} -> ${path.relative(SRC, d)}`),
    );
    expect(outside).toEqual([]);
  });

  it("has no import cycles", () => {
    const graph = importGraph(SRC);
    expect(graph.size).toBeGreaterThan(50);
    const rel = (p: string) => path.relative(SRC, p);
    expect(cycles(graph).map((c) => c.map(rel).join(" -> "))).toEqual([]);
  });
});
