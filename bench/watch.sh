#!/usr/bin/env bash
# Benchmark: `tcpstate watch --summary` under a loopback connect/accept/close loop at full
# speed (bench/watch_load.c) in a private network namespace, against the load alone, a plain
# `cat trace_pipe` reader of an equivalent tracefs instance, the tracepoint enabled with nobody
# reading (its cost in the kernel alone), and bcc's tcpstates when it can
# run here. Needs root, gcc, python3, iproute2, tracefs.
#
#   bench/watch.sh                       # SECS=10 RUNS=3
#   SECS=10 RUNS=5 bench/watch.sh --no-owners
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10} RUNS=${RUNS:-3}
NS=tcpstate-bench-watch-$$
BIN=${CARGO_TARGET_DIR:-target}/release/tcpstate
TMP=$(mktemp -d)
cargo build --release -q -p tcpstate
gcc -O2 -o "$TMP/watch_load" bench/watch_load.c
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
[ -d /sys/kernel/tracing/instances ] || mount -t tracefs nodev /sys/kernel/tracing
# watch_bench.py makes a fresh namespace $NS-<n> per run and removes it.
echo "kernel $(uname -r), $(nproc) CPUs, ${SECS}s per run, ${RUNS} runs per consumer"
python3 bench/watch_bench.py "$NS" "$TMP/watch_load" "$BIN" "$SECS" "$RUNS" "$@"
