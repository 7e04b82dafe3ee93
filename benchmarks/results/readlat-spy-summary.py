"""Summarise a ``py-spy record -f raw --subprocesses`` of ``benchmarks.read_micro`` (issue 16, readlat).

Keeps the reading phase only: the client's event loop inside ``_ours.read``, the prefault
thread, and the server's GET handling (its upload handling and hashing threads, the setup's
1 GiB upload, are left out). Usage: ``python benchmarks/results/readlat-spy-summary.py spy.txt``.
"""

from __future__ import annotations

import collections
import re
import sys

path = sys.argv[1]
cats = collections.Counter()
tot = collections.Counter()
selfc = collections.defaultdict(collections.Counter)
with open(path) as f:
    lines = f.readlines()
for line in lines:
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    server = len(frames) > 1 and "s3server" in frames[1]
    s = stack
    if server:
        if (
            "concurrent/futures" in s
            or "_put_object" in s
            or "_upload_part" in s
            or "_ingest" in s
            or "md5" in s
            or "data_received" in s
        ):
            continue  # setup uploads
        proc = "server"
    else:
        if "_prefault" in s:
            proc = "client-prefault-thread"
        elif "_ours.<locals>.read" in s:
            proc = "client-event-loop"
        else:
            continue  # setup (boto3 upload), imports
    leaf = re.sub(r" \((.*?):\d+\)", r" (\1)", frames[-1])
    tot[proc] += n
    selfc[proc][leaf] += n
print("samples (200 Hz) in the reading phase:", dict(tot))
for p in ("client-event-loop", "client-prefault-thread", "server"):
    print(f"\n{p}: {tot[p]} samples, top self frames")
    for k, v in selfc[p].most_common(12):
        print(f"  {v:6d} {v / tot[p]:6.1%}  {k}")
