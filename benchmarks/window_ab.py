"""Two (or more) checkouts of s3torch-async side by side on case 2, interleaved.

A change to the prefetch window or the pool is judged on a shared, loaded machine by running
the old and the new code alternately against one server, each run in a fresh process (cold
client, as case 2 measures), so load drifts hit both alike. One bench server serves the same
objects on a loopback port and an S3-like port (``--latency-ms``). Run::

    PYTHONPATH=$PWD python -m benchmarks.window_ab --roots /path/to/old,$PWD --repeat 5

(``--latency-ms 20``, ``--count 2000``, ``--size 131072`` are the defaults.)

Prints every run (with the load average) and the medians per profile and checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Tuple

_CHILD = "--child"


def _child(url: str) -> None:
    # Runs with PYTHONPATH set to one checkout: only that checkout's package is imported.
    from s3torch_async import S3ClientConfig
    from s3torch_async.s3iterable_dataset import S3IterableDataset

    started = time.perf_counter()
    dataset = S3IterableDataset.from_prefix(
        "s3://bench/small/",
        region="us-east-1",
        endpoint=url,
        s3client_config=S3ClientConfig(force_path_style=True),
    )
    count = sum(1 for obj in dataset if obj.read() is not None)
    print(f"{count / (time.perf_counter() - started):.1f}")


def main() -> None:
    """CLI entry point."""
    if len(sys.argv) == 3 and sys.argv[1] == _CHILD:
        _child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.window_ab")
    parser.add_argument("--roots", required=True, help="comma-separated checkouts")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128 * 1024)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    roots = [r for r in args.roots.split(",") if r]

    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    shaping = ["--also-s3like", "--latency-ms", str(args.latency_ms)]
    with ServerProcess(extra_args=shaping) as server:
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        body = os.urandom(args.size)
        for i in range(args.count):
            s3.put_object(Bucket="bench", Key=f"small/{i:06d}", Body=body)
        rates: Dict[Tuple[str, str], List[float]] = {}
        for rep in range(args.repeat):
            for profile, url in zip(("loopback", "s3like"), server.urls):
                for root in roots:
                    out = subprocess.run(
                        [sys.executable, os.path.abspath(__file__), _CHILD, url],
                        env={**os.environ, "PYTHONPATH": root},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    rate = float(out.stdout.split()[-1])
                    rates.setdefault((profile, root), []).append(rate)
                    load = os.getloadavg()[0]
                    print(
                        f"{rep} {profile:8} {root}  {rate:8.1f} obj/s  load {load:.1f}"
                    )
    print("medians (obj/s):")
    for (profile, root), values in rates.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {profile:8} {root}  {statistics.median(values):8.0f}  [{runs}]")


if __name__ == "__main__":
    main()
