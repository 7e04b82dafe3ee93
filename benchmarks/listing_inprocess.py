"""Sync and async listings of 10,000 keys interleaved in one warm process, hand-offs per thread.

Fresh processes (``listing_ab``) show what the harness sees; this shows what one listing costs
once everything is warm, with the blocking of each thread counted apart: the caller's thread
(``main``) and the event loop's (``loop``), as voluntary / involuntary context switches from
``/proc/self/task``. Against one bench server, every round runs each variant once::

    PYTHONPATH=$PWD python -m benchmarks.listing_inprocess [--rounds 20] [--torch]

``--interval S`` also runs the sync listing with ``sys.setswitchinterval(S)`` (restored
after each listing), to see whether the interpreter's switch interval moves the hand-offs.
Prints medians of wall ms, process CPU ms and the switches of each thread per listing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Tuple


def _switches(native_id: int) -> Tuple[int, int]:
    """Voluntary and involuntary context switches of one thread of this process."""
    found: Dict[str, int] = {}
    with open(f"/proc/self/task/{native_id}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name.endswith("ctxt_switches"):
                found[name] = int(value)
    return found["voluntary_ctxt_switches"], found["nonvoluntary_ctxt_switches"]


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing_inprocess")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--torch", action="store_true", help="import torch first")
    parser.add_argument("--interval", type=float, default=None)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    if args.torch:
        import torch  # noqa: F401
    import boto3

    from benchmarks.listing_ab import _BUCKET, _PREFIX, _fill
    from benchmarks.s3server import ServerProcess
    from s3torch_async import AsyncS3Client, S3ClientConfig
    from s3torch_async._runner import get_runner
    from s3torch_async._s3client import S3Client

    config = S3ClientConfig(force_path_style=True)
    with ServerProcess() as server:
        url = server.urls[0]
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(
            Bucket=_BUCKET
        )
        asyncio.run(_fill(url, args.keys))
        sync_client = S3Client("us-east-1", endpoint=url, s3client_config=config)
        sync_client.head_object(_BUCKET, f"{_PREFIX}000000")
        loop = asyncio.new_event_loop()

        async def make() -> Any:
            return AsyncS3Client("us-east-1", endpoint=url, s3client_config=config)

        async_client = loop.run_until_complete(make())
        loop.run_until_complete(async_client.head_object(_BUCKET, f"{_PREFIX}000000"))

        async def pages() -> int:
            count = 0
            async for page in async_client.list_objects(_BUCKET, _PREFIX):
                count += len(page.object_info)
            return count

        def sync_listing() -> int:
            listing = sync_client.list_objects(_BUCKET, _PREFIX)
            return sum(len(page.object_info) for page in listing)

        def async_listing() -> int:
            return int(loop.run_until_complete(pages()))

        variants: Dict[str, Callable[[], int]] = {
            "sync": sync_listing,
            "async": async_listing,
        }
        if args.interval is not None:
            interval = args.interval

            def with_interval() -> int:
                old = sys.getswitchinterval()
                sys.setswitchinterval(interval)
                try:
                    return sync_listing()
                finally:
                    sys.setswitchinterval(old)

            variants[f"sync, switch interval {interval:g} s"] = with_interval
        main_id = threading.get_native_id()
        thread = getattr(get_runner(), "_thread", None)
        loop_id = thread.native_id if thread is not None else None
        runs: Dict[str, List[Tuple[float, ...]]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, listing in variants.items():
                gc.collect()
                ids = [main_id] + ([loop_id] if loop_id is not None else [])
                before = [_switches(i) for i in ids]
                started, cpu = time.perf_counter(), time.process_time()
                count = listing()
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu
                after = [_switches(i) for i in ids]
                if count != args.keys:
                    raise SystemExit(f"{name}: listed {count} keys, not {args.keys}")
                deltas = [a[k] - b[k] for a, b in zip(after, before) for k in (0, 1)]
                runs[name].append((wall, cpu, *deltas))
    print(f"medians of {args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
    for name, got in runs.items():
        wall = statistics.median(r[0] for r in got) * 1e3
        cpu = statistics.median(r[1] for r in got) * 1e3
        main_v, main_nv, loop_v, loop_nv = (
            statistics.median(r[i] for r in got) for i in range(2, 6)
        )
        print(
            f"  {name:34} {wall:6.1f} ms  {cpu:5.1f} CPU-ms  switches main "
            f"{main_v:.0f}/{main_nv:.0f}  loop {loop_v:.0f}/{loop_nv:.0f} (vol/invol)"
        )


if __name__ == "__main__":
    main()
