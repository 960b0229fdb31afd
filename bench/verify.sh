#!/usr/bin/env bash
# tcpstate verify: states explored per second and peak memory (GNU time), default suite and
# the variants. No peer tool runs the same world, so this reports absolute numbers.
# Usage: bench/verify.sh [path/to/tcpstate]   (default: builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p tcpstate
  bin=${CARGO_TARGET_DIR:-target}/release/tcpstate
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time)"; exit 2; }
printf '| variant | states | complete | seconds | states/s | peak RSS |\n|---|---|---|---|---|---|\n'
run() {
  local json mem
  mem=$(mktemp)
  json=$(/usr/bin/time -f '%M' -o "$mem" "$bin" verify --json "$@" || true)
  printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
kb = int(open(sys.argv[1]).read().strip().splitlines()[-1])
s, t, name, done = d["states"], d["elapsed_s"], sys.argv[2] or "default", d["complete"]
print(f"| {name} | {s} | {done} | {t:.2f} | {s/t:,.0f} | {kb/1024:.0f} MB |")
' "$mem" "$*"
  rm -f "$mem"
}
run
run --profile linux
run --no-reack
run --server-never-closes
run --time-wait 0 --max-states 1000000
run --rst-kills-time-wait --max-states 1000000
run --time-wait 0 --max-states 20000000
