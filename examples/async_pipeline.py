"""An asyncio pipeline: download with AsyncS3Dataset, hash in threads, write a manifest.

Stages, connected by a bounded queue so that memory stays flat however large the prefix:

1. ``AsyncS3Dataset`` lists the prefix and downloads objects ahead (bounded window);
2. ``--consumers`` tasks hash each object in a worker thread (CPU work off the event loop);
3. the results are written back to S3 as one JSON manifest with ``AsyncS3Client.put_object``.

    python examples/async_pipeline.py --bucket my-bucket [--endpoint http://127.0.0.1:9000]

The bucket must exist. The endpoint defaults to ``AWS_ENDPOINT_URL`` (else AWS).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from typing import Optional

from s3torch_async import AsyncS3Client, AsyncS3Dataset, S3Object

_DONE = None


async def upload_inputs(
    client: AsyncS3Client, bucket: str, prefix: str, count: int, size: int
) -> None:
    """Write ``count`` objects concurrently (at most 16 requests at once)."""
    limit = asyncio.Semaphore(16)

    async def put(i: int) -> None:
        async with limit:
            data = (f"object {i} ".encode() * size)[:size]
            await client.put_object_bytes(bucket, f"{prefix}{i:05d}.bin", data)

    await asyncio.gather(*(put(i) for i in range(count)))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def consume(
    queue: asyncio.Queue[Optional[S3Object]], results: dict[str, str]
) -> None:
    while (obj := await queue.get()) is not _DONE:
        results[obj.key] = await asyncio.to_thread(digest, obj.data)


async def run(args: argparse.Namespace) -> None:
    prefix = f"{args.prefix.strip('/')}/inputs/"
    async with AsyncS3Client(args.region, endpoint=args.endpoint) as client:
        if not args.skip_upload:
            await upload_inputs(client, args.bucket, prefix, args.objects, args.size)

        started = time.perf_counter()
        queue: asyncio.Queue[Optional[S3Object]] = asyncio.Queue(maxsize=8)
        results: dict[str, str] = {}
        consumers = [
            asyncio.create_task(consume(queue, results)) for _ in range(args.consumers)
        ]
        # The dataset shares our client (and its connection pool); we still own the client.
        dataset = AsyncS3Dataset.from_prefix(
            f"s3://{args.bucket}/{prefix}", region=args.region, client=client
        )
        async with dataset:
            async for obj in dataset:
                await queue.put(obj)  # waits while the consumers are behind
        for _ in consumers:
            await queue.put(_DONE)
        await asyncio.gather(*consumers)
        elapsed = time.perf_counter() - started

        manifest_key = f"{args.prefix.strip('/')}/manifest.json"
        async with client.put_object(args.bucket, manifest_key) as writer:
            await writer.write(json.dumps(results, sort_keys=True, indent=1).encode())
        check = json.loads((await client.get_range(args.bucket, manifest_key)).data)

    print(
        f"hashed {len(results)} objects in {elapsed:.2f} s "
        f"({len(results) / elapsed:.0f} objects/s); manifest s3://{args.bucket}/{manifest_key}"
    )
    if check != results or (not args.skip_upload and len(results) != args.objects):
        raise SystemExit("the manifest does not match what was read")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="my-bucket")
    parser.add_argument("--prefix", default="examples/pipeline")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--endpoint",
        default=None,
        help="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument(
        "--skip-upload",
        action="store_true",
        help="process what is already under the prefix",
    )
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
