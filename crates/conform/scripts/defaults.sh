#!/bin/sh
# Kernel settings the scripts in this directory assume (run inside the run's private namespace).
sysctl -q net.ipv4.tcp_timestamps=1
sysctl -q net.ipv4.tcp_sack=1
sysctl -q net.ipv4.tcp_ecn=0
sysctl -q net.ipv4.tcp_fastopen=0
sysctl -q net.ipv4.tcp_rfc1337=0
sysctl -q net.ipv4.tcp_fin_timeout=60
exit 0
