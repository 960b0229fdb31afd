#!/usr/bin/env python3
"""Socket load for bench/exporter.sh, run inside a private network namespace (loopback only).

Spreads the sockets over WORKERS processes, because one process may not hold 100k fds
(RLIMIT_NOFILE's hard limit is often 20k in containers). Each worker makes its share of
PAIRS established pairs and CW CLOSE_WAIT sockets (the client closes, the worker keeps its
end: the client end becomes an orphaned FIN_WAIT_2), then holds everything. Prints READY
when every worker is ready.

    exporter_load.py PAIRS CW WORKERS
"""
import os, resource, socket, sys, time

pairs, cw, workers = (int(a) for a in sys.argv[1:4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def work(n_pairs, n_cw, ready_w):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 0))
    l.listen(4096)
    port = l.getsockname()[1]
    held = []
    for _ in range(n_pairs):
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = l.accept()
        held += [c, s]
    for _ in range(n_cw):
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = l.accept()
        c.close()
        held.append(s)
    os.write(ready_w, b"x")
    while True:
        time.sleep(3600)

r, w = os.pipe()
for i in range(workers):
    if os.fork() == 0:
        os.close(r)
        work(pairs // workers + (i < pairs % workers), cw // workers + (i < cw % workers), w)
        os._exit(0)
os.close(w)
got = 0
while got < workers:
    b = os.read(r, workers)
    if not b:
        sys.exit("a worker died")
    got += len(b)
print("READY", flush=True)
try:
    os.wait()
except KeyboardInterrupt:
    pass
