"""What a wider prefetch window costs in client CPU: 2,000 small GETs at 8 vs 256 in flight.

Starts the bench server (loopback port), writes 2,000 objects of 128 KiB, then runs the same
2,000 ``AsyncS3Client.get_range`` calls with at most ``width`` in flight under a semaphore, in
this process, and prints the client's CPU (``time.process_time``) and the server's for each.
``--warm`` first runs the same GETs once on the same client, so every connection is already
open: what is left is the cost of the concurrency itself (more responses interleaved on the
loop), not of opening connections. Run::

    PYTHONPATH=$PWD python -m benchmarks.width_cost --widths 8,256 --repeat 3 [--warm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


async def _run(url: str, width: int, count: int, warm: bool) -> float:
    from s3torch_async import S3ClientConfig
    from s3torch_async._core.client import AsyncS3Client

    client = AsyncS3Client(
        "us-east-1", endpoint=url, s3client_config=S3ClientConfig(force_path_style=True)
    )
    await client.get_range("bench", "small/000000")
    limit = asyncio.Semaphore(width)

    async def one(i: int) -> None:
        async with limit:
            await client.get_range("bench", f"small/{i % count:06d}")

    if warm:
        await asyncio.gather(*(one(i) for i in range(count)))
    started = time.process_time()
    await asyncio.gather(*(one(i) for i in range(count)))
    cpu = time.process_time() - started
    await client.aclose()
    return cpu


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.width_cost")
    parser.add_argument("--widths", default="8,256")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128 * 1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]

    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with ServerProcess() as server:
        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        body = os.urandom(args.size)
        for i in range(args.count):
            s3.put_object(Bucket="bench", Key=f"small/{i:06d}", Body=body)
        for _ in range(args.repeat):
            for width in widths:
                server0 = server.cpu_seconds()
                cpu = asyncio.run(_run(server.url, width, args.count, args.warm))
                server_cpu = server.cpu_seconds() - server0
                print(
                    f"width {width:4d}: client {cpu * 1e3:5.0f} ms CPU "
                    f"({cpu / args.count * 1e3:.3f} ms per GET), server "
                    f"{server_cpu * 1e3:5.0f} ms (with --warm: both passes), "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
