#!/usr/bin/env bash
# W1 side by side: BASE_BIN and NEW_BIN alternate (base, new, base, new, ...) so a
# noisy shared machine affects both alike; prints each run's wall time and
# executions/s and the medians of RUNS runs. Usage:
#   scripts/bench-w1-compare.sh BASE_BIN NEW_BIN [RUNS=3] [EXECUTIONS=10000]
set -euo pipefail
base="$1" new="$2" runs="${3:-3}" n="${4:-10000}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# One round per invocation (the alternation is the side by side); older binaries have no --runs.
runs_flag() { "$1" bench --help | grep -q -- '--runs' && echo "--runs 1 --no-ceiling" || true; }
for i in $(seq 1 "$runs"); do
  for which in base new; do
    bin="$base"; [ "$which" = new ] && bin="$new"
    "$bin" bench --executions "$n" --durability full --output json $(runs_flag "$bin") > "$tmp/$which-$i.json"
  done
done
python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys, pathlib
d, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def load(which):
    rows = [json.loads((d / f"{which}-{i}.json").read_text()) for i in range(1, runs + 1)]
    # Binaries before the typed report printed one flat map with human keys.
    walls = [r["rounds"][0]["wall_seconds"] if "rounds" in r else float(r["wall time"].split()[0]) for r in rows]
    eps = [r["rounds"][0]["executions_per_second"] if "rounds" in r else float(r["executions/s"]) for r in rows]
    return walls, eps
bw, be = load("base"); nw, ne = load("new")
print(f"| binary | wall time (s), runs | executions/s, runs | median executions/s |")
print(f"|---|---|---|---|")
print(f"| base | {' / '.join(f'{w:.2f}' for w in bw)} | {' / '.join(f'{e:.0f}' for e in be)} | {statistics.median(be):.0f} |")
print(f"| new | {' / '.join(f'{w:.2f}' for w in nw)} | {' / '.join(f'{e:.0f}' for e in ne)} | {statistics.median(ne):.0f} |")
print(f"\nnew / base (medians): {statistics.median(ne) / statistics.median(be):.2f}")
PY
