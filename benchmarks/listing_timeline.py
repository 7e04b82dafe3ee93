"""Timeline of one sync listing of 10,000 keys: where each page's milliseconds go.

Starts a bench server, fills it, then lists through ``S3Client.list_objects`` with the lean
transport's send, body read and parse wrapped to record timestamps (this process only; the
wrappers cost a few microseconds per page). Prints one line per event, in ms from the start:
``ask``/``got`` on the caller's thread, ``send``/``headers``/``body``/``parse0``/``parse1`` on
the loop thread, ``gcN-start``/``gcN-stop`` for a garbage collection of generation N. Gaps between ``parse1`` and ``got`` (or ``send`` and ``parse0``) are thread
hand-offs waiting for a CPU. Run::

    PYTHONPATH=$PWD python -m benchmarks.listing_timeline [--keys 10000] [--runs 3] [--torch]

Prints every run's total first (the first run is a process's first listing), then the last
run's events. ``--torch`` imports torch first, as the harness's workers do.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from typing import Any, Dict, List, Tuple


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing_timeline")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--torch", action="store_true", help="import torch first")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    if args.torch:
        import torch  # noqa: F401
    import boto3

    from benchmarks.listing_ab import _BUCKET, _PREFIX, _fill
    from benchmarks.s3server import ServerProcess
    from s3torch_async import S3ClientConfig
    from s3torch_async._core import _lean
    from s3torch_async._s3client import S3Client

    events: List[Tuple[str, float]] = []
    now = time.perf_counter
    send, read, parse = (
        _lean.LeanTransport._send,
        _lean._read_capped,
        _lean.parse_listing,
    )

    async def timed_send(self: Any, *a: Any, **k: Any) -> Any:
        listing = a[-1] == "ListObjectsV2"
        if listing:
            events.append(("send", now()))
        resp = await send(self, *a, **k)
        if listing:
            events.append(("headers", now()))
        return resp

    async def timed_read(resp: Any, *a: Any) -> Any:
        body = await read(resp, *a)
        events.append(("body", now()))
        return body

    def timed_parse(body: bytes) -> Any:
        events.append(("parse0", now()))
        page = parse(body)
        events.append(("parse1", now()))
        return page

    def on_gc(phase: str, info: Dict[str, int]) -> None:
        events.append((f"gc{info['generation']}-{phase}", now()))

    gc.callbacks.append(on_gc)
    _lean.LeanTransport._send = timed_send  # type: ignore[method-assign]
    _lean._read_capped = timed_read
    _lean.parse_listing = timed_parse
    with ServerProcess() as server:
        url = server.urls[0]
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(
            Bucket=_BUCKET
        )
        asyncio.run(_fill(url, args.keys))
        config = S3ClientConfig(force_path_style=True)
        client = S3Client("us-east-1", endpoint=url, s3client_config=config)
        client.head_object(_BUCKET, f"{_PREFIX}000000")
        totals = []
        for _ in range(args.runs):
            events.clear()
            started = now()
            stream = client.list_objects(_BUCKET, _PREFIX)
            while True:
                events.append(("ask", now()))
                try:
                    next(stream)
                except StopIteration:
                    break
                events.append(("got", now()))
            total = now() - started
            totals.append(total)
        runs = " ".join(f"{t * 1e3:.1f}" for t in totals)
        print(f"runs (ms): {runs}; load average {os.getloadavg()[0]:.2f}")
        print(f"last run: {total * 1e3:.1f} ms")
        for name, at in events:
            print(f"{(at - started) * 1e3:8.2f} {name}")


if __name__ == "__main__":
    main()
