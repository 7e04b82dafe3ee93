"""Loopback listing of 10,000 keys: checkouts of s3torch-async and obstore, interleaved.

Case 4 measures one listing per worker process, so one scheduling hiccup on a shared machine
moves a whole sample. This runs the same listing (``S3Client.list_objects`` pages, a warm
client, a fresh process each time, as case 4 does) alternately for each checkout and for
obstore against one bench server, so load drifts hit every one alike. Run::

    PYTHONPATH=$PWD python -m benchmarks.listing_ab --roots /path/to/old,$PWD --repeat 7

``--torch`` imports torch in each child first (the harness's workers do: a larger heap makes
the garbage collector's full passes dearer). ``--collect`` runs ``gc.collect()`` just before
the timed listing, as the harness does (without it, the first listing after ``import torch``
pays the full collection that torch's import left pending). ``--cold`` times the client's
creation and first request too (no warm-up request; the issue's "client start included").
``--async`` also lists each checkout through ``AsyncS3Client.list_objects`` on the main
thread's own loop (as case 4's async row does), to see what the sync path adds. obstore is skipped when it is not installed.
Prints every run and the medians of keys/s, client CPU-us/key and the listing's voluntary
context switches (each a thread of the client that blocked and was woken: the hand-offs
between the caller's thread and the loop's, and the waits for the server).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

_CHILD = "--child"
_BUCKET, _PREFIX = "bench", "l/"
_ASYNC = "+async"  # suffix of a root listed through AsyncS3Client


def _child(url: str, who: str, keys: int) -> None:
    # Runs with PYTHONPATH set to one checkout: only that checkout's package is imported.
    if os.environ.get("LISTING_AB_TORCH"):
        import torch  # noqa: F401
    collect = bool(os.environ.get("LISTING_AB_COLLECT"))
    cold = bool(os.environ.get("LISTING_AB_COLD"))
    if who == "obstore":
        import obstore
        from obstore.store import S3Store

        def open_client() -> Any:
            return S3Store(
                _BUCKET,
                region="us-east-1",
                endpoint=url,
                allow_http=True,
                virtual_hosted_style_request=False,
            )

        def warm(store: Any) -> None:
            obstore.head(store, f"{_PREFIX}000000")

        def listing(store: Any) -> int:
            return sum(len(batch) for batch in obstore.list(store, _PREFIX))

    elif who == "async":
        from s3torch_async import AsyncS3Client, S3ClientConfig

        loop = asyncio.new_event_loop()

        def open_client() -> Any:
            config = S3ClientConfig(force_path_style=True)

            async def make() -> Any:
                return AsyncS3Client("us-east-1", endpoint=url, s3client_config=config)

            return loop.run_until_complete(make())

        def warm(client: Any) -> None:
            loop.run_until_complete(client.head_object(_BUCKET, f"{_PREFIX}000000"))

        async def pages(client: Any) -> int:
            count = 0
            async for page in client.list_objects(_BUCKET, _PREFIX):
                count += len(page.object_info)
            return count

        def listing(client: Any) -> int:
            return int(loop.run_until_complete(pages(client)))

    else:
        from s3torch_async import S3ClientConfig
        from s3torch_async._s3client import S3Client

        def open_client() -> Any:
            config = S3ClientConfig(force_path_style=True)
            return S3Client("us-east-1", endpoint=url, s3client_config=config)

        def warm(client: Any) -> None:
            client.head_object(_BUCKET, f"{_PREFIX}000000")

        def listing(client: Any) -> int:
            pages = client.list_objects(_BUCKET, _PREFIX)
            return sum(len(page.object_info) for page in pages)

    client = None if cold else open_client()
    if client is not None:
        warm(client)
    if collect:
        gc.collect()
    switches = _switches()
    started, cpu = time.perf_counter(), time.process_time()
    count = listing(open_client() if client is None else client)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    switches = _switches() - switches
    if count != keys:
        raise SystemExit(f"listed {count} keys, not {keys}")
    print(f"{wall} {cpu} {switches}")


def _switches() -> int:
    """Voluntary context switches of this process so far (a thread that blocked and woke)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int(usage.ru_nvcsw)


async def _fill(url: str, keys: int) -> None:
    from s3torch_async import AsyncS3Client, S3ClientConfig

    config = S3ClientConfig(force_path_style=True)
    async with AsyncS3Client("us-east-1", endpoint=url, s3client_config=config) as c:
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with gate:
                await c.put_object_bytes(_BUCKET, f"{_PREFIX}{i:06d}", b"x")

        await asyncio.gather(*(one(i) for i in range(keys)))


def main() -> None:
    """CLI entry point."""
    if len(sys.argv) == 5 and sys.argv[1] == _CHILD:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing_ab")
    parser.add_argument("--roots", required=True, help="comma-separated checkouts")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--torch", action="store_true", help="import torch first")
    parser.add_argument(
        "--collect", action="store_true", help="gc.collect() before the listing"
    )
    parser.add_argument(
        "--cold", action="store_true", help="the client's start is timed too"
    )
    parser.add_argument(
        "--async",
        dest="async_too",
        action="store_true",
        help="also list through AsyncS3Client.list_objects (on the main thread's loop)",
    )
    args = parser.parse_args()
    roots = [r for r in args.roots.split(",") if r]
    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    extra = {"LISTING_AB_TORCH": "1"} if args.torch else {}
    if args.collect:
        extra["LISTING_AB_COLLECT"] = "1"
    if args.cold:
        extra["LISTING_AB_COLD"] = "1"
    who = list(roots)
    if args.async_too:
        who += [root + _ASYNC for root in roots]
    try:
        import obstore  # noqa: F401

        who.append("obstore")
    except ImportError:
        print("obstore is not installed: skipped")
    with ServerProcess() as server:
        url = server.urls[0]
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket=_BUCKET)
        asyncio.run(_fill(url, args.keys))
        runs: Dict[str, List[Tuple[float, float, int]]] = {}
        for rep in range(args.repeat):
            for name in who:
                path = os.pathsep.join(p for p in sys.path if p)
                root = roots[0] if name == "obstore" else name.replace(_ASYNC, "")
                kind = "obstore" if name == "obstore" else "ours"
                if name.endswith(_ASYNC):
                    kind = "async"
                child = [sys.executable, os.path.abspath(__file__), _CHILD, url, kind]
                out = subprocess.run(
                    [*child, str(args.keys)],
                    env={**os.environ, **extra, "PYTHONPATH": root + os.pathsep + path},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                wall_text, cpu_text, switch_text = out.stdout.split()
                wall, cpu = float(wall_text), float(cpu_text)
                runs.setdefault(name, []).append(
                    (args.keys / wall, cpu / args.keys, int(switch_text))
                )
                load = os.getloadavg()[0]
                print(
                    f"{rep} {name:30} {args.keys / wall:>10,.0f} keys/s  load {load:.1f}"
                )
    print("medians:")
    for name, got in runs.items():
        rate = statistics.median(r for r, _, _ in got)
        cpu = statistics.median(c for _, c, _ in got) * 1e6
        switches = statistics.median(s for _, _, s in got)
        print(
            f"  {name:30} {rate:>10,.0f} keys/s  {cpu:.2f} CPU-us/key  "
            f"{switches:.0f} voluntary context switches"
        )


if __name__ == "__main__":
    main()
