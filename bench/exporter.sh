#!/usr/bin/env bash
# Load benchmark of `tcpstate exporter`: wrk against /metrics for DURATION with ~100k TCP
# sockets present in a private network namespace (loopback only), the exporter looking
# into it. Reports wrk's p50/p99 latency, the exporter's memory before, during and after,
# how many collections searched for dead sockets and how many the kernel's counts ruled
# the search out, and, as the peer, what `ss -tanp` (which script-based exporters parse)
# costs on the same sockets in the same run. Rows: the load alone; with DEAD dead sockets
# held (confirmed at each scrape); with one socket() never connected held (the counts
# cannot rule a dead socket out, so every collection searches); --no-dead-scan.
# Needs root, python3, iproute2, wrk, curl.
#
#   bench/exporter.sh                     # EST=47500 CW=5000: 100k sockets, 30 s
#   EST=5000 CW=1000 DURATION=10s bench/exporter.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EST=${EST:-47500} CW=${CW:-5000} WORKERS=${WORKERS:-8} DURATION=${DURATION:-30s} CONNS=${CONNS:-8} PORT=${PORT:-19977} DEAD=${DEAD:-100}
NS=tcpstate-bench-exp-$$
# BIN=path/to/tcpstate benchmarks that binary instead (e.g. an older build, to compare).
if [ -z "${BIN:-}" ]; then
  BIN=${CARGO_TARGET_DIR:-target}/release/tcpstate
  cargo build --release -q -p tcpstate
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The load's forked workers: every process in our own namespace.
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
# The load spreads its fds over WORKERS processes (each raises its soft limit to the hard
# one); raise the hard limit too where root may.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

# EST established pairs and CW CLOSE_WAIT sockets (each with its orphaned FIN_WAIT_2 peer).
ip netns exec "$NS" python3 bench/exporter_load.py "$EST" "$CW" "$WORKERS" > /tmp/$NS.load &
pids+=($!)
for _ in $(seq 600); do
  grep -q READY /tmp/$NS.load 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || break # the load died
  sleep 0.5
done
grep -q READY /tmp/$NS.load || { echo "socket load did not come up" >&2; exit 1; }
sockets=$(ip netns exec "$NS" ss -tanH | wc -l)
echo "sockets in $NS: $sockets"

rss() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
hwm() { awk '/^VmHWM/ {print $2}' /proc/"$1"/status; }

run() { # $1: label, rest: extra exporter flags
  local label=$1; shift
  "$BIN" exporter --netns "$NS" --listen 127.0.0.1:$PORT "$@" > /tmp/$NS.exp 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
  local one
  one=$( { /usr/bin/time -f %e curl -sf -o /tmp/$NS.scrape http://127.0.0.1:$PORT/metrics; } 2>&1 )
  local before; before=$(rss $pid)
  wrk -t2 -c"$CONNS" -d"$DURATION" --timeout 30s --latency http://127.0.0.1:$PORT/metrics > /tmp/$NS.wrk &
  local wrkpid=$! samples=""
  while kill -0 $wrkpid 2>/dev/null; do sleep 5; samples="$samples $(( $(rss $pid) / 1024 ))"; done
  wait $wrkpid
  local after; after=$(rss $pid)
  local peak; peak=$(hwm $pid)
  local p50 p99 reqs
  p50=$(awk '$1=="50%" {print $2}' /tmp/$NS.wrk)
  p99=$(awk '$1=="99%" {print $2}' /tmp/$NS.wrk)
  reqs=$(awk '/requests in/ {print $1}' /tmp/$NS.wrk)
  local final; final=$(curl -s http://127.0.0.1:$PORT/metrics)
  local scrapes; scrapes=$(awk '$1=="tcpstate_scrapes_total" {print $2}' <<<"$final")
  local searched; searched=$(awk '$1 ~ /^tcpstate_dead_socket_checks_total\{outcome="searched/ {n += $2; f = 1} END {if (f) print n}' <<<"$final")
  local uncounted; uncounted=$(awk '$1=="tcpstate_dead_socket_checks_total{outcome=\"searched_uncounted\"}" {print $2}' <<<"$final")
  local ruled; ruled=$(awk '$1=="tcpstate_dead_socket_checks_total{outcome=\"ruled_out\"}" {print $2}' <<<"$final")
  local dead; dead=$(awk '/^tcpstate_dead_sockets\{/ {n += $2} END {print n + 0}' <<<"$final")
  local errs; errs=$(awk '/Non-2xx|Socket errors/' /tmp/$NS.wrk | tr -s ' ' | tr '\n' ';')
  kill $pid; wait $pid 2>/dev/null || true
  echo "| $label | $one s | $p50 | $p99 | $reqs | $scrapes | ${searched:--} (${uncounted:--}) / ${ruled:--} | $dead | $((before/1024)) MiB | $((after/1024)) MiB | $((peak/1024)) MiB |$samples | ${errs:-none} |"
}

held() { # $1: dead|fresh, $2: how many; held in the namespace until cleanup
  ip netns exec "$NS" python3 bench/exporter_held.py "$1" "$2" > /tmp/$NS.held &
  pids+=($!)
  for _ in $(seq 100); do grep -q READY /tmp/$NS.held 2>/dev/null && return; sleep 0.1; done
  echo "exporter_held.py $1 did not come up" >&2; exit 1
}

echo
echo "| exporter | first scrape | wrk p50 | wrk p99 | requests in $DURATION | collections | searched (uncounted) / ruled out | dead sockets published | RSS before | RSS after | peak RSS | RSS every 5 s (MiB) | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
run "default"
held dead "$DEAD"
run "default, $DEAD dead sockets held"
held fresh 1
run "default, $DEAD dead + 1 never-connected socket held"
run "--no-dead-scan" --no-dead-scan

# Peer: `ss -tanp` over the same namespace, what an ss-parsing exporter pays per scrape
# for the same process attribution (it walks every /proc/PID/fd too).
PEER_RUNS=${PEER_RUNS:-2}
t0=$(date +%s.%N)
for _ in $(seq "$PEER_RUNS"); do ip netns exec "$NS" ss -tanp > /dev/null; done
t1=$(date +%s.%N)
echo
echo "peer: ss -tanp in $NS, mean of $PEER_RUNS: $(echo "($t1 - $t0) / $PEER_RUNS" | bc -l | cut -c1-5) s"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "scrape size: $(wc -c < /tmp/$NS.scrape) bytes, $(grep -vc '^#' /tmp/$NS.scrape) samples"
