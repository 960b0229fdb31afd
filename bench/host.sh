#!/usr/bin/env bash
# Benchmark: `tcpstate ls`, `tcpstate ls --no-process` and `tcpstate` (doctor) against
# `ss -tanp`, `ss -tan` and `netstat -tanp`, in the same run, on the same sockets, inside a
# private network namespace (loopback only). Needs root, python3, iproute2, net-tools.
#
#   bench/host.sh                 # the issue's load: 20k established pairs, 10k CLOSE_WAIT,
#                                 # 60k TIME_WAIT, 100 processes holding 1000 fds each
#   EST=5000 CW=5000 TW=30000 HOLDERS=100 FDS=1000 HOLDER_USER=nobody RUNS=5 bench/host.sh
#
# The sockets are held by several worker processes (bench/host_load.py, at most 16000 fds
# each: this VM's hard RLIMIT_NOFILE is 20000 per process). TIME_WAIT lasts 60 s, so the
# load tops it up before every timed run (not timed; BEFORE_EACH of bench/timeit.py).
# HOLDER_USER: the uid of the fd-holding processes (root = the same uid as the sockets'
# owners, the worst case for tcpstate's uid-first scan).
set -euo pipefail
cd "$(dirname "$0")/.."
EST=${EST:-20000} CW=${CW:-10000} TW=${TW:-60000}
HOLDERS=${HOLDERS:-100} FDS=${FDS:-1000} RUNS=${RUNS:-5} HOLDER_USER=${HOLDER_USER:-root}
NS=tcpstate-bench-$$
BIN=${CARGO_TARGET_DIR:-target}/release/tcpstate
CTL=$(mktemp -d)

cargo build --release -q -p tcpstate
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$CTL"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=0
ulimit -n "$(ulimit -Hn)"

for i in $(seq "$HOLDERS"); do
  if [ "$HOLDER_USER" = root ]; then python3 bench/fd_holder.py "$FDS" >/dev/null &
  else runuser -u "$HOLDER_USER" -- bash -c "exec python3 bench/fd_holder.py $FDS" >/dev/null & fi
  pids+=($!)
done
mkfifo "$CTL/ready" "$CTL/in" "$CTL/out"
ip netns exec "$NS" python3 bench/host_load.py "$EST" "$CW" "$TW" "$CTL/in" "$CTL/out" >"$CTL/ready" &
pids+=($!)
read -r _ <"$CTL/ready"
TOP="echo top >$CTL/in && read -r _ <$CTL/out"
bash -c "$TOP"
fds=$(ls /proc/[0-9]*/fd 2>/dev/null | grep -c '^[0-9]' || true)
echo "## host: $(date -u +%F) $(uname -r), $(nproc) CPUs"
echo
echo "Sockets in the namespace (ss -tan): $(ip netns exec "$NS" ss -tanH | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
echo "Open fds on the host: $fds; fd holders run as $HOLDER_USER"
echo "Command: \`EST=$EST CW=$CW TW=$TW HOLDERS=$HOLDERS FDS=$FDS HOLDER_USER=$HOLDER_USER RUNS=$RUNS bench/host.sh\`"
echo
X="ip netns exec $NS"
BEFORE_EACH="$TOP" \
RATIOS="$BIN ls / ss -tanp; $BIN ls --no-process / ss -tan; $BIN / ss -tanp; $BIN ls / netstat -tanp" \
python3 bench/timeit.py "$RUNS" \
  "$X ss -tanp" "$X ss -tan" "$X netstat -tanp" \
  "$X $BIN ls" "$X $BIN ls --no-process" "$X $BIN"
echo
# Counts per state, ss and tcpstate back to back (TIME_WAIT may differ by the few that
# expire between the two dumps; every other state must be equal).
bash -c "$TOP"
ss_counts=$($X ss -tanH | awk '{print $1}' | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')
ts_counts=$($X "$BIN" ls --no-process --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["counts"]; print(", ".join(f"{k} {v}" for k,v in sorted(d.items())))')
echo "Counts, ss -tan: ${ss_counts%, }"
echo "Counts, tcpstate ls: $ts_counts"
