#!/usr/bin/env bash
# Benchmark a commit, not the working tree: other work in progress in src/ must not change the
# figures halfway through a run. Exports COMMIT (default HEAD) to a temp dir, lays the current
# bench/ over it, builds, runs bench/run.js with the given arguments, and copies the results back
# into this tree's bench/results/.
#   bench/snapshot.sh [--commit REF] [run.js arguments...]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
commit=HEAD
if [[ "${1:-}" == "--commit" ]]; then commit="$2"; shift 2; fi
snap="$(mktemp -d "${TMPDIR:-/tmp}/packrat-bench-snap-XXXXXX")"
trap 'rm -rf "$snap"' EXIT
git -C "$here" archive "$commit" | tar -x -C "$snap"
rm -rf "$snap/bench" && cp -r "$here/bench" "$snap/bench"
ln -s "$here/node_modules" "$snap/node_modules"
(cd "$snap" && npx tsc -p bench/tsconfig.json)
BENCH_COMMIT="$(git -C "$here" rev-parse --short "$commit")" node "$snap/dist/bench/run.js" "$@"
mkdir -p "$here/bench/results"
cp "$snap"/bench/results/*.json "$snap"/bench/results/*.md "$snap"/bench/results/*.svg "$here/bench/results/"
