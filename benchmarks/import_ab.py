"""Import time of checkouts, interleaved: what case 7's ``import`` note measures, A/B.

Each run is a fresh interpreter that imports torch first (untimed, as a DataLoader worker has
it) and then times ``from s3torch_async._s3client import S3Client`` and ``from s3torch_async
import S3ClientConfig``; the checkouts take turns so load drifts hit each alike. Bytecode is
compiled once first (``PYTHONDONTWRITEBYTECODE`` is dropped for the children). Run::

    python -m benchmarks.import_ab --roots /path/to/old,$PWD [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_CODE = (
    "import torch, time\n"
    "t = time.perf_counter()\n"
    "from s3torch_async._s3client import S3Client\n"
    "from s3torch_async import S3ClientConfig\n"
    "print((time.perf_counter() - t) * 1e3)\n"
)


def _once(root: str) -> float:
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", _CODE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_ab")
    parser.add_argument("--roots", required=True, help="comma-separated checkouts")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    roots = [r for r in args.roots.split(",") if r]
    for root in roots:
        _once(root)  # writes the bytecode
    times: dict[str, list[float]] = {root: [] for root in roots}
    for _ in range(args.runs):
        for root in roots:
            times[root].append(_once(root))
    for root in roots:
        got = times[root]
        print(
            f"{root:40} median {statistics.median(got):5.1f} ms  min {min(got):5.1f} ms"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
