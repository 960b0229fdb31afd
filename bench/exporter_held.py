#!/usr/bin/env python3
"""Unhashed TCP sockets for bench/exporter.sh, run inside its private namespace (loopback
only). Holds N of one kind until killed, prints READY when they exist:

    exporter_held.py dead N    connections reset by the peer (it closed with unread data,
                               so the kernel sent RST) whose fds this process keeps: dead
                               sockets, which the exporter confirms at every scrape
    exporter_held.py fresh N   socket() never connected: in no table, not dead, so the
                               exporter's counts cannot rule a dead socket out and it
                               searches at every scrape
"""
import socket, sys, time

kind, n = sys.argv[1], int(sys.argv[2])
held = []
if kind == "fresh":
    held = [socket.socket() for _ in range(n)]
elif kind == "dead":
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(n)
    for _ in range(n):
        c = socket.create_connection(l.getsockname())
        c.sendall(b"x")
        s, _ = l.accept()
        s.recv(1, socket.MSG_PEEK)  # wait until the byte is there, without reading it
        held.append(c)
        s.close()  # the byte is unread: RST
    l.close()
else:
    sys.exit("kind: dead or fresh")
time.sleep(0.5)
print("READY", flush=True)
while True:
    time.sleep(3600)
