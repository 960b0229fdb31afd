#!/usr/bin/env python3
"""Times commands (stdout to /dev/null): mean and stddev of wall time over RUNS runs after
one warm-up, and peak RSS per command (wait4 rusage). Prints a markdown table with the
ratio of each command to the first command of its group.

BEFORE_EACH (env, optional): a shell command run before every run, not timed (the host
benchmark tops its TIME_WAIT load up with it).  Runs are interleaved: round r times every
command once, so a load that drifts over the benchmark affects all commands alike."""
import os, statistics, subprocess, sys, time

runs = int(sys.argv[1])
cmds = sys.argv[2:]

def once(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    return dt, ru.ru_maxrss, os.waitstatus_to_exitcode(status)

before = os.environ.get("BEFORE_EACH")

def prepare():
    if before:
        subprocess.run(before, shell=True, check=True, stdout=subprocess.DEVNULL)

times = {c: [] for c in cmds}
rss = {c: 0 for c in cmds}
codes = {c: set() for c in cmds}
for r in range(runs + 1):
    for c in cmds:
        prepare()
        dt, m, code = once(c)
        if r == 0:
            continue  # warm-up
        times[c].append(dt * 1000)
        rss[c] = max(rss[c], m)
        codes[c].add(code)
res = [(c, statistics.mean(times[c]), statistics.pstdev(times[c]), rss[c] / 1024, codes[c]) for c in cmds]
print("| command | mean ms | ± | peak RSS MB | exit |")
print("|---|---|---|---|---|")
for c, m, sd, rss, codes in res:
    print(f"| `{c}` | {m:.1f} | {sd:.1f} | {rss:.1f} | {','.join(map(str, sorted(codes)))} |")
print()
byname = {c: m for c, m, *_ in res}
for line in os.environ.get("RATIOS", "").split(";"):
    if " / " in line:
        a, b = line.split(" / ", 1)
        a, b = a.strip(), b.strip()
        ma = next(m for c, m in byname.items() if c.endswith(a))
        mb = next(m for c, m in byname.items() if c.endswith(b))
        print(f"- `{a}` / `{b}` = **{ma / mb:.2f}×**")
