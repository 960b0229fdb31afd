#!/usr/bin/env bash
# Benchmark: `tcpstate watch --summary` under a loopback connect/accept/close loop at full
# speed (bench/watch_load.c) in a private network namespace, against the load alone, a plain
# `cat trace_pipe` reader of an equivalent tracefs instance, and bcc's tcpstates when it can
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
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
[ -d /sys/kernel/tracing/instances ] || mount -t tracefs nodev /sys/kernel/tracing
ip netns add "$NS"
ip -n "$NS" link set lo up
# Room for ~12k connections/s: every local port, and TIME_WAIT reuse after 1 s.
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
echo "kernel $(uname -r), $(nproc) CPUs, ${SECS}s per run, ${RUNS} runs per consumer"
python3 bench/watch_bench.py "$NS" "$TMP/watch_load" "$BIN" "$SECS" "$RUNS" "$@"
