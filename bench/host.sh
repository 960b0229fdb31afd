#!/usr/bin/env bash
# Benchmark: `tcpstate ls`, `tcpstate ls --no-process` and `tcpstate` (doctor) against
# `ss -tanp`, `ss -tan` and `netstat -tanp`, in the same run, on the same sockets, inside a
# private network namespace (loopback only). Needs root, python3, iproute2, net-tools.
#
#   bench/host.sh                 # defaults below
#   EST=5000 CW=5000 TW=30000 HOLDERS=100 FDS=1000 HOLDER_USER=nobody RUNS=5 bench/host.sh
#
# HOLDER_USER: the uid of the fd-holding processes (root = the same uid as the sockets'
# owners, the worst case for tcpstate's uid-first scan).
set -euo pipefail
cd "$(dirname "$0")/.."
EST=${EST:-5000} CW=${CW:-5000} TW=${TW:-30000}
HOLDERS=${HOLDERS:-100} FDS=${FDS:-1000} RUNS=${RUNS:-5} HOLDER_USER=${HOLDER_USER:-root}
NS=tcpstate-bench-$$
BIN=${CARGO_TARGET_DIR:-target}/release/tcpstate

cargo build --release -q -p tcpstate
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; ip netns del "$NS" 2>/dev/null || true; }
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
fifo=$(mktemp -u); mkfifo "$fifo"
ip netns exec "$NS" python3 bench/host_load.py "$EST" "$CW" "$TW" >"$fifo" &
pids+=($!)
read -r ready <"$fifo"; rm -f "$fifo"
sleep 1
fds=$(ls /proc/[0-9]*/fd 2>/dev/null | grep -c '^[0-9]' || true)
echo "## host: $(date -u +%F) $(uname -r), $(nproc) CPUs"
echo
echo "Sockets in the namespace: $(ip netns exec "$NS" ss -tanH | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
echo "Open fds on the host: $fds; fd holders run as $HOLDER_USER"
echo "Command: \`EST=$EST CW=$CW TW=$TW HOLDERS=$HOLDERS FDS=$FDS HOLDER_USER=$HOLDER_USER RUNS=$RUNS bench/host.sh\`"
echo
X="ip netns exec $NS"
RATIOS="$BIN ls / ss -tanp; $BIN ls --no-process / ss -tan; $BIN / ss -tanp; $BIN ls / netstat -tanp" \
python3 bench/timeit.py "$RUNS" \
  "$X ss -tanp" "$X ss -tan" "$X netstat -tanp" \
  "$X $BIN ls" "$X $BIN ls --no-process" "$X $BIN"
