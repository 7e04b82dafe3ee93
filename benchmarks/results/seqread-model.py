"""Issue 16 (seqread): the 1 GiB read's GET plan in virtual time, S3-like against loopback-like.

The link of tests/core/test_read_widening.py (deterministic: latency and rates, no CPU), with
both limits a real read meets: each connection at most 90 MB/s (S3-like) and all of them
together at most what the host's CPU moves (2.3 GB/s, our quiet loopback rate). Parts are
64 KiB standing for 8 MiB (rates scaled by 1/128); 128 parts is the 1 GiB read. Each GET's
first-byte wait is drawn from 20 ms +/- 20 % (S3-like) and, per GET, its connection's rate
from 90 MB/s x U(0.7, 1.0) (connections do not share a host's CPU evenly); loopback-like is
0.3 ms to the first byte, no per-connection cap. Limit 18, reach 36 as at the defaults.

Run from a checkout's root: ``PYTHONPATH=$PWD python benchmarks/results/seqread-model.py``
(in the base tree too, to compare). Prints per case the read's end (ms of virtual time, as
if at full scale), S3-like over loopback-like rate, and the GETs.
"""

from __future__ import annotations

import os
import random
import statistics
from typing import Any

from tests.core.test_read_widening import MB, PART, _Link, _read

SCALE = 8 * 1024 * 1024 / PART  # one model part stands for 8 MiB


class _Host(_Link):
    """The test link with per-GET jitter of the first-byte wait and of the connection's rate."""

    def __init__(
        self, *args: Any, seed: int = 0, rate_spread: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._rng = random.Random(seed)
        self._spread = rate_spread

    def first_byte(self) -> float:
        return self.latency * self._rng.uniform(0.8, 1.2)

    def stream_rate(self) -> float:
        return self.per_stream * self._rng.uniform(1 - self._spread, 1.0)


def _one(parts: int, known: bool, s3like: bool, seed: int) -> tuple[float, int, int]:
    data = os.urandom(parts * PART)
    shared = 2300 * MB / SCALE
    if s3like:
        link = _Host(
            data,
            limit=18,
            target_bytes_per_s=1250 * MB / SCALE,
            latency=0.020,
            per_stream=90 * MB / SCALE,
            shared=shared,
            seed=seed,
            rate_spread=0.3,
        )
    else:
        link = _Host(
            data,
            limit=18,
            target_bytes_per_s=1250 * MB / SCALE,
            latency=0.0003,
            shared=shared,
            seed=seed,
        )
    got, _ = _read(link, known_size=known)
    assert got == data
    return max(done for _, _, done in link.times), link.gets, link.peak


def main() -> None:
    for parts in (128, 64, 300):
        for known in (False, True):
            ends = {}
            for s3like in (False, True):
                runs = [_one(parts, known, s3like, seed) for seed in range(5)]
                ends[s3like] = statistics.median(r[0] for r in runs)
                gets = statistics.median(r[1] for r in runs)
                peak = max(r[2] for r in runs)
                print(
                    f"{parts:4d} parts, size {'known  ' if known else 'unknown'}"
                    f" {'S3-like ' if s3like else 'loopback'}: {ends[s3like] * 1e3:6.1f} ms,"
                    f" {gets:.0f} GETs, at most {peak} in flight"
                )
            ideal = parts * PART / (2300 * MB / SCALE)
            print(
                f"     S3-like / loopback rate {ends[False] / ends[True]:.3f}"
                f" (CPU-bound ideal {ideal * 1e3:.0f} ms: S3-like at"
                f" {ideal / ends[True]:.2f} of it)"
            )


if __name__ == "__main__":
    main()
