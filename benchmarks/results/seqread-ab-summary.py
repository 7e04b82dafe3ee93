"""Issue 16 (seqread): summarise ``benchmarks.run --cases 1`` result files side by side.

Usage: ``python benchmarks/results/seqread-ab-summary.py RUN.json ...``. Per run: the load
average at its end, medians of the case-1 figures that the brief's targets use, and the ratios
(S3-like over own loopback, loopback over boto3 ``get_object``, S3-like over ``download_fileobj``).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

rows = []
for path in sys.argv[1:]:
    with open(path) as f:
        run = json.load(f)
    rates = defaultdict(list)
    cpu = defaultdict(list)
    for r in run["runs"]:
        if r.get("status") == "ok" and r["bench"] in ("1", "1@s3like"):
            key = (r["bench"], r["variant"])
            rates[key].append(r["nbytes"] / r["wall_s"] / 1e6)
            cpu[key].append(r["cpu_s"] / (r["nbytes"] / 1e9))

    def med(bench: str, variant: str) -> float:
        return statistics.median(rates[(bench, variant)])

    seq, asy = "s3torch-async/sequential", "s3torch-async/AsyncS3Client"
    lo, s3 = med("1", seq), med("1@s3like", seq)
    per_rep = [
        b / a for a, b in zip(rates[("1", seq)], rates[("1@s3like", seq)])
    ]
    rows.append(
        (
            path.rsplit("/", 1)[-1].removesuffix(".json"),
            f"{run.get('load_average_at_end', ['?'])[0]}",
            f"{lo:,.0f}",
            f"{s3:,.0f}",
            f"**{s3 / lo:.2f}** ({', '.join(f'{x:.2f}' for x in per_rep)})",
            f"{med('1@s3like', asy) / med('1', asy):.2f}",
            f"{med('1@s3like', 's3torch-async/range_based') / med('1', 's3torch-async/range_based'):.2f}",
            f"{lo / med('1', 'boto3/get_object'):.2f}x",
            f"{s3 / med('1@s3like', 'boto3/download_fileobj'):.2f}x",
            f"{statistics.median(cpu[('1', seq)]) / statistics.median(cpu[('1', 's3torchconnector/sequential')]):.2f}x",
        )
    )
print(
    "| run | load at end | loopback MB/s | S3-like MB/s | S3-like / loopback (per rep) |"
    " AsyncS3Client | range_based | loopback / get_object | S3-like / download_fileobj |"
    " CPU/GB vs s3tc |"
)
print("|" + "---|" * 10)
for row in rows:
    print("| " + " | ".join(row) + " |")
