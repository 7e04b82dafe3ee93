"""Issue 16 (readtail): tail figures of ``benchmarks.seqread_timeline`` output files.

Usage: ``python benchmarks/results/readtail-tail-summary.py TIMELINE.txt ...``. Per profile and
tree: the GETs per read (with counts), the streams in flight in the read's last tenth and last
two tenths, how long it ran below its widest count at its end, and the wave's median head time.
"""

from __future__ import annotations

import collections
import re
import statistics
import sys

for path in sys.argv[1:]:
    cur = None
    found: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    with open(path) as f:
        for line in f:
            m = re.match(r"(\S+)@(\S+)\[(\S+)\]\s+(\d+) MB/s", line)
            if m:
                cur = (m.group(2), m.group(3))
                continue
            if cur is None:
                continue
            m = re.search(r"(\d+) GETs .*per tenth \[(.*)\]", line)
            if m:
                tenths = [int(x) for x in m.group(2).split(",")]
                found[cur]["GETs"].append(int(m.group(1)))
                found[cur]["last tenth"].append(tenths[-1])
                found[cur]["last two tenths"].append(tenths[-2] + tenths[-1])
            m = re.search(
                r"tail: fewer than \d+ in flight for the last\s+([\d.]+) ms", line
            )
            if m:
                found[cur]["below widest ms"].append(float(m.group(1)))
            m = re.search(r"widening wave of \d+: sent .* heads.*median ([\d.]+)", line)
            if m:
                found[cur]["wave heads median ms"].append(float(m.group(1)))
    print(path)
    for key, figures in found.items():
        parts = []
        for name, xs in figures.items():
            extra = (
                f" {sorted(collections.Counter(xs).items())}" if name == "GETs" else ""
            )
            parts.append(f"{name}: median {statistics.median(xs):g}{extra}")
        print(" ", key, "; ".join(parts))
