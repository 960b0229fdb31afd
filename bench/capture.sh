#!/usr/bin/env bash
# Benchmark `tcpstate capture --summary` against tshark (-q -z conv,tcp) and tcptrace (-n)
# on a loopback capture of real connections made in a private network namespace.
#
#   sudo bench/capture.sh [CONNECTIONS]      (default 110000: about 1M packets)
#   sudo PCAP=file.pcap bench/capture.sh     (time an existing capture instead)
#   KEEP=out.pcap ...                        (keep the generated capture)
#   CALLGRIND=1 ...                          (also count instructions per packet, one thread)
#
# Needs root (netns), tcpdump, tshark, tcptrace, python3, /usr/bin/time, bc. Each tool runs
# three times on the same file; the fastest run counts (the machine may be shared). Prints
# wall-clock and CPU (user+sys) packets/s, peak memory, and the ratios to tshark. tcpstate
# is built with the release-lto profile (set TCPSTATE_BIN to time another build). It runs
# with its default thread count (the CPU count: one reader, connections sharded over the
# workers) and with --threads 1 (everything on one core), for the two speed goals.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-110000}
NS=tcpstate-bench-$$
WORK=$(mktemp -d)
cleanup() {
  [ -n "${DUMP_PID:-}" ] && kill "$DUMP_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in tcpdump tshark tcptrace python3 /usr/bin/time bc; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install tcpdump tshark tcptrace time bc python3)"; exit 2; }
done
if [ -z "${TCPSTATE_BIN:-}" ]; then
  cargo build --profile release-lto -q -p tcpstate
fi
BIN=${TCPSTATE_BIN:-${CARGO_TARGET_DIR:-target}/release-lto/tcpstate}

if [ -n "${PCAP:-}" ]; then
  echo "capture: $PCAP (given)"
else
  PCAP=$WORK/loopback.pcap
  ip netns add "$NS"
  ip netns exec "$NS" ip link set lo up
  # Small snap length: the benchmark is about headers; the file stays small.
  ip netns exec "$NS" tcpdump -i lo -s 96 -w "$PCAP" -U -Z root -q 2>/dev/null &
  DUMP_PID=$!
  sleep 1
  # A server that answers each request and closes after the client (the client closes
  # first and holds TIME_WAIT); every 10th connection is reset by the client (SO_LINGER 0).
  ip netns exec "$NS" python3 - "$CONNS" <<'PY'
import socket, struct, sys, threading
n = int(sys.argv[1])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 8080)); srv.listen(4096)
def serve():
    while True:
        c, _ = srv.accept()
        try:
            c.recv(1024); c.sendall(b"x" * 2000); c.recv(1024)
        except OSError:
            pass
        c.close()
threading.Thread(target=serve, daemon=True).start()
for i in range(n):
    s = socket.socket()
    s.connect(("127.0.0.1", 8080))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    got = 0
    while got < 2000:
        b = s.recv(4096)
        if not b: break
        got += len(b)
    if i % 10 == 9:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
PY
  sleep 1
  kill "$DUMP_PID"; wait "$DUMP_PID" 2>/dev/null || true; DUMP_PID=
  if [ -n "${KEEP:-}" ]; then cp "$PCAP" "$KEEP"; fi
fi
PACKETS=$(tcpdump -r "$PCAP" -nn -q 2>/dev/null | wc -l)
echo "capture: $PACKETS packets, $(stat -c %s "$PCAP") bytes"
echo "tcpstate: $BIN"
if [ -n "${CALLGRIND:-}" ] && command -v valgrind >/dev/null; then
  # Instructions are repeatable where seconds are not (a shared VM): one-core cost per packet.
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" capture --threads 1 --summary "$PCAP" \
    >/dev/null 2>"$WORK/cg" || true
  IR=$(sed -n 's/.*refs: *//p' "$WORK/cg" | tr -d ,)
  [ -n "$IR" ] && echo "tcpstate capture --threads 1 --summary: $IR instructions, $((IR / PACKETS)) per packet (callgrind)"
fi

measure() { # name, command... -> "name wall cpu rss_kb" of the fastest of three runs
  local name=$1; shift
  local best="" i t0 t1 wall cpu rss
  for i in 1 2 3; do
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { echo "$name failed:"; cat "$WORK/err"; exit 1; }
    t1=$(date +%s.%N)
    wall=$(echo "$t1 - $t0" | bc -l)
    read -r u s rss < <(tail -1 "$WORK/rss")
    cpu=$(echo "$u + $s" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$wall < ${best%% *}" | bc -l)" = 1 ]; then
      best="$wall $cpu $rss"
    fi
  done
  echo "$name $best"
}
{
  measure tcpstate_summary "$BIN" capture --summary "$PCAP"
  measure tcpstate_summary_1t "$BIN" capture --threads 1 --summary "$PCAP"
  measure tcpstate_table "$BIN" capture "$PCAP"
  measure tshark tshark -r "$PCAP" -q -z conv,tcp
  measure tcptrace tcptrace -n "$PCAP"
} > "$WORK/results"
python3 - "$WORK/results" "$PACKETS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
pk = int(sys.argv[2])
res = {r[0]: (float(r[1]), float(r[2]), int(r[3])) for r in rows}
tw, tc, tm = res["tshark"]
print(f"{'tool':<17} {'wall s':>7} {'cpu s':>6} {'pkts/s wall':>12} {'pkts/s cpu':>11} {'peak RSS':>10}  vs tshark: wall, cpu speed, memory")
for name, (w, c, kb) in res.items():
    print(f"{name:<17} {w:7.2f} {c:6.2f} {pk/w:12.0f} {pk/c:11.0f} {kb/1024:8.1f}MiB  {tw/w:6.1f}x {tc/c:6.1f}x {kb/tm*100:6.1f}%")
w, c, kb = res["tcpstate_summary"]
w1, c1, _ = res["tcpstate_summary_1t"]
print(f"goals for `tcpstate capture --summary`: >= 40x tshark's throughput: {tw/w:.1f}x (wall, default threads); "
      f">= 3M packets/s on one core: {pk/c1/1e6:.2f}M (CPU time, --threads 1; {pk/w1/1e6:.2f}M wall); "
      f"memory <= 10% of tshark: {kb/tm*100:.1f}%")
PY
