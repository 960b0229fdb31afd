#!/usr/bin/env python3
"""Socket load for bench/host.sh, run inside a private network namespace (loopback only).

    host_load.py EST CW TW CONTROL_IN CONTROL_OUT [PER_PROCESS]

- EST established pairs (both ends held), CW CLOSE_WAIT sockets (the client calls
  shutdown(SHUT_WR) and keeps its end, a FIN_WAIT_2 full socket with an fd; the server
  never closes its end), spread over worker processes holding at most PER_PROCESS fds each
  (default 16000; the hard RLIMIT_NOFILE of the VM is 20000 per process);
- TW TIME_WAIT sockets (the client closes first, then the server) made by this process.
  TIME_WAIT lasts 60 s (TCP_TIMEWAIT_LEN), so the count is kept up on demand: each line
  `top` read from CONTROL_IN makes as many new TIME_WAIT sockets as expired since (those
  made more than 59 s ago), then `ok N` is written to CONTROL_OUT. bench/timeit.py sends
  `top` before every timed run (not timed), so the load stands still while a command runs.

Connections go to listeners on 127.0.0.1-127.0.0.8 (several destinations, so the
ephemeral port range is not exhausted: a local port is unique per destination). Prints
READY on stdout once everything is made.
"""
import collections, os, resource, socket, sys, time

est, cw, tw = (int(a) for a in sys.argv[1:4])
ctl_in, ctl_out = sys.argv[4:6]
per_process = int(sys.argv[6]) if len(sys.argv) > 6 else 16000

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
per_process = min(per_process, hard - 64)


def listeners(first_ip):
    out = []
    for i in range(4):
        l = socket.socket()
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((f"127.0.0.{(first_ip + i - 1) % 8 + 1}", 0))
        l.listen(4096)
        out.append(l)
    return out


def pair(ls, i):
    l = ls[i % len(ls)]
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    return c, s


def worker(kind, n, first_ip, ready_w):
    """A child holding n pairs (2n fds): established, or CLOSE_WAIT/FIN_WAIT_2."""
    ls = listeners(first_ip)
    held = []
    for i in range(n):
        c, s = pair(ls, i)
        if kind == "cw":
            c.shutdown(socket.SHUT_WR)  # FIN to the server: it is now in CLOSE_WAIT
        held += (c, s)
    os.write(ready_w, b"r")
    while True:
        time.sleep(3600)


children = []
ready_r, ready_w = os.pipe()
jobs = []
per_pairs = max(1, per_process // 2)
for kind, total in (("est", est), ("cw", cw)):
    left = total
    while left > 0:
        n = min(per_pairs, left)
        jobs.append((kind, n))
        left -= n
for j, (kind, n) in enumerate(jobs):
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        worker(kind, n, j + 1, ready_w)
        os._exit(0)
    children.append(pid)
os.close(ready_w)
for _ in jobs:
    if os.read(ready_r, 1) != b"r":
        sys.exit("a load worker died")

tw_ls = listeners(5)
made = collections.deque()  # creation times of the TIME_WAIT sockets still alive
k = 0


def top_up():
    global k
    now = time.monotonic()
    while made and now - made[0] > 59:
        made.popleft()
    while len(made) < tw:
        c, s = pair(tw_ls, k)
        k += 1
        c.close()  # active close: the client ends in TIME_WAIT
        s.recv(1)
        s.close()
        made.append(time.monotonic())
    return len(made)


top_up()
# O_RDWR: the fifos never see EOF or block on open while the bench opens and closes them.
fin = os.fdopen(os.open(ctl_in, os.O_RDWR), "r")
fout = os.open(ctl_out, os.O_RDWR)
print("READY", flush=True)
try:
    for line in fin:
        if line.strip() == "top":
            n = top_up()
            os.write(fout, f"ok {n}\n".encode())
finally:
    for pid in children:
        os.kill(pid, 9)
