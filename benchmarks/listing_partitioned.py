"""A large prefix listed plain, partitioned (8 and 16 ranges) and by obstore, both profiles.

One bench server serves the same bucket on a loopback port and an S3-like port; it is filled
with ``--keys`` empty objects (``big/000000``...), then each way of listing runs in turn,
``--repeat`` interleaved rounds, medians reported with the client's CPU time. Run::

    PYTHONPATH=$PWD python -m benchmarks.listing_partitioned --keys 100000 --repeat 3

obstore is skipped when it is not installed (it is in the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Callable, Dict, List, Tuple

from s3torch_async import AsyncS3Client, S3ClientConfig
from s3torch_async._core.listing import list_partitioned
from s3torch_async._core.prefetch import list_ahead

_BUCKET, _PREFIX = "bench", "big/"
Measure = Callable[[str], Tuple[int, float, float]]


def _client(url: str) -> AsyncS3Client:
    config = S3ClientConfig(force_path_style=True)
    return AsyncS3Client("us-east-1", endpoint=url, s3client_config=config)


async def _fill(url: str, keys: int) -> None:
    async with _client(url) as client:
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with gate:
                await client.put_object_bytes(_BUCKET, f"{_PREFIX}{i:06d}", b"")

        await asyncio.gather(*(one(i) for i in range(keys)))


def _ours(partitions: int) -> Measure:
    async def run(url: str) -> Tuple[int, float, float]:
        async with _client(url) as client:
            await client.head_object(_BUCKET, f"{_PREFIX}000000")  # warm client
            started, cpu = time.perf_counter(), time.process_time()
            count = 0
            if partitions:
                listing = list_partitioned(
                    client, _BUCKET, _PREFIX, partitions=partitions
                )
            else:
                listing = list_ahead(client, _BUCKET, _PREFIX)
            async for _ in listing:
                count += 1
            return count, time.perf_counter() - started, time.process_time() - cpu

    return lambda url: asyncio.run(run(url))


def _obstore(url: str) -> Tuple[int, float, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        _BUCKET,
        region="us-east-1",
        endpoint=url,
        allow_http=True,
        virtual_hosted_style_request=False,
    )
    obstore.head(store, f"{_PREFIX}000000")  # warm client
    started, cpu = time.perf_counter(), time.process_time()
    count = sum(len(batch) for batch in obstore.list(store, _PREFIX))
    return count, time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing_partitioned")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    ways: List[Tuple[str, Measure]] = [
        ("plain", _ours(0)),
        ("part8", _ours(8)),
        ("part16", _ours(16)),
    ]
    try:
        import obstore  # noqa: F401

        ways.append(("obstore", _obstore))
    except ImportError:
        print("obstore is not installed: skipped")
    with ServerProcess(extra_args=["--also-s3like"]) as server:
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket=_BUCKET)
        asyncio.run(_fill(server.urls[0], args.keys))
        results: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
        for _ in range(args.repeat):
            for profile, url in zip(("loopback", "s3like"), server.urls):
                for name, measure in ways:
                    count, wall, cpu = measure(url)
                    if count != args.keys:
                        raise SystemExit(f"{name} listed {count} keys, not {args.keys}")
                    results.setdefault((profile, name), []).append((count / wall, cpu))
    for (profile, name), runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{profile:8} {name:8} {rate:>10,.0f} keys/s  client CPU {cpu:.2f} s")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
