#!/usr/bin/env python3
"""Holds N open fds (of /dev/null) and sleeps: the /proc/*/fd load for bench/host.sh."""
import os, sys, time
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print("READY", flush=True)
time.sleep(3600)
