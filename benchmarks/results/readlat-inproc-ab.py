"""Issue 16 (readlat): in-process A/B of the 1 GiB read, the new reader against the base's plan.

The base's plan (main 2b71373) is emulated in the same process by undoing this branch's three
reader changes at run time: the probe GET back to a quarter part (``PROBE_DIVISOR = 4``),
GETs in whole parts (``round_piece`` returns the part), and the first widening step stopping
at the planned concurrency (``StreamWidth.reach`` held at ``limit`` during the first
measurement). Everything else (transport, result allocation, checksums) is the branch's, so
the comparison isolates the plan. Variants alternate within each round, in alternating order,
against one local server (``--also-s3like``: loopback and S3-like ports on the same data),
so both see the same machine load.

Run from the branch's root, ``PYTHONPATH=$PWD``:

* ``python benchmarks/results/readlat-inproc-ab.py peer s3like 6 unsized``: new, base,
  ``download_fileobj`` (10 threads) per round; ``peer loopback ...`` compares with boto3
  ``get_object``;
* ``python benchmarks/results/readlat-inproc-ab.py ratio 8 unsized``: new and base on each
  profile per round, and each one's S3-like rate over its loopback rate.

``sized`` passes the object's size (listing information); ``unsized`` reads without it.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from typing import Any, Callable, Dict, List

from benchmarks import read_micro as rm
from benchmarks.s3server import ServerProcess
from s3torch_async._core import reader as R
from s3torch_async._core._planning import StreamWidth

_NEW_RECORD = StreamWidth.record
_NEW_ROUND = R.round_piece


def _base_record(self: StreamWidth, epoch: int, nbytes: int, seconds: float) -> None:
    if self.history or self.width >= self.limit:
        _NEW_RECORD(self, epoch, nbytes, seconds)
        return
    reach, self.reach = self.reach, self.limit  # the first step stops at the plan
    try:
        _NEW_RECORD(self, epoch, nbytes, seconds)
    finally:
        self.reach = reach


def _whole(left: int, streams: int, length: int, least: int) -> int:
    return min(length, left)


def _mode(name: str) -> None:
    if name == "new":
        R.PROBE_DIVISOR, R.round_piece = 16, _NEW_ROUND
        StreamWidth.record = _NEW_RECORD  # type: ignore[method-assign]
    else:
        R.PROBE_DIVISOR, R.round_piece = 4, _whole
        StreamWidth.record = _base_record  # type: ignore[method-assign]


def _timed(read: Callable[[], int]) -> float:
    t0 = time.perf_counter()
    nbytes = read()
    return nbytes / (time.perf_counter() - t0) / 1e6


def _median(xs: List[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> None:
    kind = sys.argv[1]
    if kind == "peer":
        profile, rounds, sized = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "sized"
    else:
        profile, rounds, sized = "both", int(sys.argv[2]), sys.argv[3] == "sized"
    rm._env()
    res: Dict[str, List[float]] = {}
    with ServerProcess(extra_args=["--also-s3like"]) as server:
        setup = rm._boto3(server.urls[0])
        setup.create_bucket(Bucket=rm.BUCKET)
        setup.upload_fileobj(io.BytesIO(os.urandom(1 << 20) * 1024), rm.BUCKET, rm.KEY)
        loop = asyncio.new_event_loop()
        if kind == "peer":
            url = server.urls[0] if profile == "loopback" else server.urls[1]
            s3 = rm._boto3(url)
            peer = "boto3" if profile == "loopback" else "dlfo"

            def peer_read() -> int:
                if peer == "boto3":
                    body = s3.get_object(Bucket=rm.BUCKET, Key=rm.KEY)["Body"]
                    return len(body.read())
                buf = io.BytesIO()
                config = rm.TransferConfig(max_concurrency=10)
                s3.download_fileobj(rm.BUCKET, rm.KEY, buf, Config=config)
                return len(buf.getbuffer())

            order: List[Any] = [("new", url), ("base", url), (peer, None)]
        else:
            order = [
                (f"{n}@{p}", server.urls[i])
                for n in ("new", "base")
                for i, p in ((1, "s3like"), (0, "loopback"))
            ]
        for r in range(rounds):
            for name, url in order if r % 2 == 0 else order[::-1]:
                if url is None:
                    rate = _timed(peer_read)
                else:
                    _mode(name.split("@")[0])
                    rate = _timed(rm._ours(url, 0, sized, loop))
                res.setdefault(name, []).append(rate)
                print(
                    f"round {r} {name:15s} {rate:7.0f} MB/s  load "
                    f"{os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        loop.close()
    for name, xs in res.items():
        print(
            f"{name:15s} median {_median(xs):6.0f}  per round {[round(x) for x in xs]}"
        )
    if kind == "peer":
        pairs = {
            "new/base": ("new", "base"),
            f"new/{peer}": ("new", peer),
            f"base/{peer}": ("base", peer),
        }
    else:
        pairs = {
            f"{n}: s3like/loopback": (f"{n}@s3like", f"{n}@loopback")
            for n in ("new", "base")
        }
    for label, (a, b) in pairs.items():
        ratios = [x / y for x, y in zip(res[a], res[b])]
        print(
            f"{label} per round {[round(x, 2) for x in ratios]} median "
            f"{_median(ratios):.2f}"
        )


if __name__ == "__main__":
    main()
