#!/usr/bin/env python3
"""Runs the loopback load (bench/watch_load.c) in namespace NS for SECS seconds, RUNS times
per variant: alone, under `tcpstate watch --summary --json`, under a plain `cat trace_pipe`
consumer of an equivalent tracefs instance (the cheapest possible text reader: no parsing,
no lookups), with the tracepoint enabled into an instance nobody reads (the kernel's own
cost, no consumer), and under bcc's tcpstates when it can run. Prints a markdown table: load rate,
its slowdown, transitions per second handled, events lost, CPU seconds of the consumer."""
import json, os, shutil, signal, statistics, subprocess, sys, time

prefix, load, tcpstate, secs, runs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
ns = None
extra = sys.argv[6:]  # extra tcpstate flags
TRACING = "/sys/kernel/tracing"

def run_load(port):
    out = subprocess.run(["ip", "netns", "exec", ns, load, str(secs), str(port)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())

def stop(p, sig=signal.SIGINT):
    p.send_signal(sig)
    _, status, ru = os.wait4(p.pid, 0)
    return ru.ru_utime + ru.ru_stime

def lost_in(inst):
    lost = 0
    for cpu in os.listdir(f"{inst}/per_cpu"):
        for line in open(f"{inst}/per_cpu/{cpu}/stats"):
            if line.startswith(("overrun:", "dropped events:")):
                lost += int(line.split(":")[1])
    return lost

def variant_none(port):
    return run_load(port), None, None, None

def variant_tcpstate(port):
    p = subprocess.Popen([tcpstate, "watch", "--netns", ns, "--summary-only", "--json",
                          "--require-trace", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    rate = run_load(port)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    cpu = ru.ru_utime + ru.ru_stime
    summary = [json.loads(l) for l in out.splitlines() if '"summary"' in l][-1]
    handled = sum(t["count"] for t in summary["transitions"])
    return rate, handled, summary.get("lost_events"), cpu

def make_instance(name):
    inst = f"{TRACING}/instances/{name}-{os.getpid()}"
    os.mkdir(inst)
    open(f"{inst}/trace_clock", "w").write("boot")
    open(f"{inst}/buffer_size_kb", "w").write("8192")
    ev = f"{inst}/events/sock/inet_sock_set_state"
    open(f"{ev}/filter", "w").write("protocol == 6")
    open(f"{ev}/enable", "w").write("1")
    return inst

def remove_instance(inst):
    for _ in range(50):
        try:
            os.rmdir(inst); break
        except OSError:
            time.sleep(0.05)

def variant_unread(port):
    """The tracepoint enabled into an instance nobody reads (the ring buffer overwrites):
    what the events cost the load in the kernel, without any consumer's CPU."""
    inst = make_instance("bench-unread")
    try:
        time.sleep(1.0)
        return run_load(port), None, None, None
    finally:
        remove_instance(inst)

def variant_cat(port):
    inst = make_instance("bench-cat")
    try:
        p = subprocess.Popen(["cat", f"{inst}/trace_pipe"], stdout=subprocess.PIPE)
        lines = [0]
        def count():
            for chunk in iter(lambda: p.stdout.read(1 << 16), b""):
                lines[0] += chunk.count(b"\n")
        import threading
        t = threading.Thread(target=count)
        t.start()
        time.sleep(1.0)
        rate = run_load(port)
        time.sleep(0.5)
        lost = lost_in(inst)
        p.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(p.pid, 0)
        t.join()
        return rate, lines[0], lost, ru.ru_utime + ru.ru_stime
    finally:
        remove_instance(inst)

def bcc_runs():
    exe = shutil.which("tcpstates-bpfcc")
    if not exe:
        return "not installed"
    r = subprocess.run(["timeout", "5", exe], capture_output=True, text=True)
    if "Unable to find kernel headers" in r.stderr or r.returncode not in (0, 124):
        return (r.stderr.strip().splitlines() or ["fails"])[0]
    return None

variants = [("load alone", variant_none),
            ("tracepoint on, nobody reading", variant_unread),
            ("tcpstate watch --summary", variant_tcpstate),
            ("cat trace_pipe (instance, same filter)", variant_cat)]
why_no_bcc = bcc_runs()
def fresh_ns(i):
    """A new namespace per run, so that one run's TIME_WAIT sockets never slow the next."""
    global ns
    if ns:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    ns = f"{prefix}-{i}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    # Room for the rate: every local port, TIME_WAIT reuse after 1 s.
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                    "net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"], check=True)

port = 7400
rows = [(name, []) for name, _ in variants]
try:
    # Round-robin over the variants, so that a neighbour's load on a shared machine
    # weighs on every variant alike instead of on whichever ran at that moment.
    for _ in range(runs):
        for (name, fn), (_, res) in zip(variants, rows):
            port += 1
            fresh_ns(port)
            res.append(fn(port))
finally:
    if ns:
        subprocess.run(["ip", "netns", "del", ns])

base = statistics.mean(r[0] for r in rows[0][1])
print(f"| consumer | load conn/s (mean of {runs}) | slowdown | transitions/s handled | events lost | consumer CPU s per {secs:.0f} s |")
print("|---|---|---|---|---|---|")
for name, res in rows:
    rate = statistics.mean(r[0] for r in res)
    slow = (base - rate) / base * 100
    handled = "-" if res[0][1] is None else f"{statistics.mean(r[1] for r in res) / secs:,.0f}"
    lost = "-" if res[0][2] is None else "/".join(str(r[2]) for r in res)
    cpu = "-" if res[0][3] is None else f"{statistics.mean(r[3] for r in res):.2f}"
    print(f"| {name} | {rate:,.0f} | {slow:+.1f}% | {handled} | {lost} | {cpu} |")
if why_no_bcc:
    print(f"\nbcc tcpstates not compared: {why_no_bcc}")
