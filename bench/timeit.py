#!/usr/bin/env python3
"""Times commands (stdout to /dev/null): mean and stddev of wall time over RUNS runs after
one warm-up, and peak RSS per command (wait4 rusage). Prints a markdown table with the
ratio of each command to the first command of its group."""
import os, statistics, subprocess, sys, time

runs = int(sys.argv[1])
cmds = sys.argv[2:]

def once(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    return dt, ru.ru_maxrss, os.waitstatus_to_exitcode(status)

res = []
for c in cmds:
    once(c)
    times, rss, codes = [], 0, set()
    for _ in range(runs):
        dt, m, code = once(c)
        times.append(dt * 1000)
        rss = max(rss, m)
        codes.add(code)
    res.append((c, statistics.mean(times), statistics.pstdev(times), rss / 1024, codes))
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
