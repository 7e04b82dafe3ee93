"""Issue 16 (readlat): the reader's GET plan in virtual time, over a modelled link.

The link is the one of tests/core/test_read_widening.py (deterministic: no CPU, no load, only
latency and rates).

Run from a checkout's root: ``PYTHONPATH=$PWD python benchmarks/results/readlat-model.py``
(in the base tree too, to compare). Prints, per case, the read's end in ms of virtual time
and the number of GETs; parts are 64 KiB and times are scaled so that one part's body takes
93 ms at one stream's rate, as 8 MiB at 90 MB/s does (S3-like), with 20 ms +/- 20 % to the
first byte; limit 18 (reach 36) as at the defaults. "loopback-like": no per-stream cap, one
shared rate (the CPU), tiny latency.
"""

from __future__ import annotations

import os
import random
from typing import Any

from tests.core.test_read_widening import MB, PART, _Link, _read


class _JitterLink(_Link):
    """The test link with each GET's first-byte latency drawn from base * U(0.8, 1.2)."""

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rng = random.Random(seed)
        self._base = self.latency

    async def get_range_into(self, *args: Any, **kwargs: Any) -> Any:
        self.latency = self._base * self._rng.uniform(0.8, 1.2)
        return await super().get_range_into(*args, **kwargs)


def main() -> None:
    per_stream = PART / 0.093
    total = gets = 0.0
    cells = []
    for parts in (20, 50, 100, 128, 200, 320, 77):
        for known in (True, False):
            for seed in range(3):
                data = os.urandom(parts * PART)
                link = _JitterLink(
                    data,
                    limit=18,
                    target_bytes_per_s=18 * per_stream * 0.8,
                    latency=0.02,
                    per_stream=per_stream,
                    seed=seed,
                )
                got, _ = _read(link, known_size=known)
                assert got == data
                end = max(done for _, _, done in link.times)
                total += end
                gets += len(link.times)
                if seed == 0:
                    cells.append(f"{parts}{'k' if known else 'u'} {end * 1e3:.0f}")
    print(f"s3-like: all reads {total * 1e3:.0f} ms, {gets:.0f} GETs")
    print("  seed 0, parts + k(nown size)/u(nknown), ms:", ", ".join(cells))
    total = gets = 0.0
    for parts in (20, 50, 128, 77):
        for known in (True, False):
            for latency, shared in (
                (1e-5, 1400 * MB),
                (1e-4, 2000 * MB),
                (1e-5, 300 * MB),
            ):
                data = os.urandom(parts * PART)
                link = _Link(
                    data,
                    limit=18,
                    target_bytes_per_s=1250 * MB,
                    latency=latency,
                    shared=shared,
                )
                got, _ = _read(link, known_size=known)
                assert got == data
                total += max(done for _, _, done in link.times)
                gets += len(link.times)
    print(f"loopback-like: all reads {total * 1e3:.1f} ms, {gets:.0f} GETs")


if __name__ == "__main__":
    main()
