#!/usr/bin/env python3
"""Socket load for bench/host.sh, run inside a private network namespace (loopback only).

Makes EST established pairs, CW CLOSE_WAIT sockets (the clients close, the server keeps
its end: the client ends become orphaned FIN_WAIT_2), TW TIME_WAIT sockets (the client
closes first, then the server), then prints READY and sleeps holding everything.
"""
import os, socket, sys, time

est, cw, tw = (int(a) for a in sys.argv[1:4])
ports = []
listeners = []
for _ in range(4):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 0))
    l.listen(4096)
    listeners.append(l)
    ports.append(l.getsockname()[1])

held = []
def pair(i):
    c = socket.create_connection(("127.0.0.1", ports[i % 4]))
    s, _ = listeners[i % 4].accept()
    return c, s

for i in range(est):
    held.extend(pair(i))
for i in range(cw):
    c, s = pair(i)
    c.close()
    held.append(s)
for i in range(tw):
    c, s = pair(i)
    c.close()
    s.recv(1)
    s.close()
print("READY", flush=True)
time.sleep(3600)
