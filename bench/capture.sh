#!/usr/bin/env bash
# Benchmark `tcpstate capture` against tshark (-z conv,tcp) and tcptrace on a loopback
# capture of real connections made in a private network namespace.
#
#   sudo bench/capture.sh [CONNECTIONS]      (default 100000: about 1M packets)
#
# Needs root (netns), tcpdump, tshark, tcptrace, python3, /usr/bin/time. Prints packets/s,
# peak memory and the ratios; paste them into BENCHMARKS.md with this command line.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-100000}
NS=tcpstate-bench-$$
WORK=$(mktemp -d)
PCAP=$WORK/loopback.pcap
cleanup() {
  [ -n "${DUMP_PID:-}" ] && kill "$DUMP_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in tcpdump tshark tcptrace python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install tcpdump tshark tcptrace time)"; exit 2; }
done
if [ -z "${TCPSTATE_BIN:-}" ]; then
  cargo build --release -q -p tcpstate
fi
BIN=${TCPSTATE_BIN:-${CARGO_TARGET_DIR:-target}/release/tcpstate}

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# Small snap length: the benchmark is about headers; the file stays small.
ip netns exec "$NS" tcpdump -i lo -s 96 -w "$PCAP" -U -q 2>/dev/null &
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
PACKETS=$(tcpdump -r "$PCAP" -nn -q 2>/dev/null | wc -l)
echo "capture: $PACKETS packets, $(stat -c %s "$PCAP") bytes, $CONNS connections"

measure() { # name, command...
  local name=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { echo "$name failed:"; cat "$WORK/err"; exit 1; }
  t1=$(date +%s.%N)
  rss=$(tail -1 "$WORK/rss")
  echo "$name $(echo "$t1 - $t0" | bc -l) $rss"
}
{
  measure tcpstate "$BIN" capture "$PCAP"
  measure tcpstate_zeek "$BIN" capture --zeek -C "$PCAP"
  measure tshark tshark -r "$PCAP" -q -z conv,tcp
  measure tcptrace tcptrace -n "$PCAP"
} > "$WORK/results"
python3 - "$WORK/results" "$PACKETS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
pk = int(sys.argv[2])
res = {r[0]: (float(r[1]), int(r[2])) for r in rows}
ts, tm = res["tshark"]
print(f"{'tool':<14} {'seconds':>8} {'packets/s':>12} {'peak RSS':>10}  vs tshark: speed, memory")
for name, (s, kb) in res.items():
    print(f"{name:<14} {s:8.2f} {pk/s:12.0f} {kb/1024:8.1f}MiB  {ts/s:6.1f}x  {kb/tm*100:5.1f}%")
PY
