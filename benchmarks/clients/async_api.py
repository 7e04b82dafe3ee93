"""s3torch-async's asyncio API: ``AsyncS3Client`` and ``AsyncS3Dataset``.

Sync code drives one event loop that lives from setup (client opened, warm-up request) to the
end of the run. Large results are handed out through a holder, never as a task's return value
(on CPython 3.11 returning a 1 GiB buffer from ``asyncio.run`` is ~20x slower).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List

from .._model import Job, Outcome
from ._common import (
    LoopHolder,
    list_outcome,
    many_outcome,
    read_outcome,
    slices,
    write_payload,
)


def _config() -> Any:
    from s3torch_async import S3ClientConfig

    return S3ClientConfig(force_path_style=True)


def _open(job: Job, holder: LoopHolder) -> Any:
    from s3torch_async import AsyncS3Client

    client = AsyncS3Client(
        job.target.region, endpoint=job.target.endpoint, s3client_config=_config()
    )

    async def open_and_warm() -> None:
        await client.__aenter__()
        await client.head_object(job.target.bucket, job.keys.warmup_object)

    holder.run(open_and_warm())
    return client


def read(job: Job) -> Callable[[], Outcome]:
    """Case 1: ``await AsyncS3Client.get_object(...).read()``."""
    holder = LoopHolder()
    client = _open(job, holder)
    bucket, key = job.target.bucket, job.keys.read_object
    box: List[bytes] = []

    async def go() -> None:
        reader = client.get_object(bucket, key)
        box.append(await reader.read())
        await reader.aclose()

    def run() -> Outcome:
        holder.run(go())
        outcome = read_outcome(box.pop(), job)
        outcome.cleanup = holder.closer(client.aclose)
        return outcome

    return run


def write(job: Job) -> Callable[[], Outcome]:
    """Case 3: ``AsyncS3Client.put_object`` writer, fed 8 MiB slices."""
    holder = LoopHolder()
    client = _open(job, holder)
    data = write_payload(job)
    pieces = slices(data)
    bucket, key = job.target.bucket, job.keys.write_object

    async def go() -> None:
        async with client.put_object(bucket, key) as writer:
            for piece in pieces:
                await writer.write(piece)

    def run() -> Outcome:
        holder.run(go())
        return Outcome(
            nbytes=len(data), nobjects=1, cleanup=holder.closer(client.aclose)
        )

    return run


def list_keys(job: Job, partitioned: bool = False) -> Callable[[], Outcome]:
    """Case 4: ``async for page in AsyncS3Client.list_objects(...)``.

    With ``partitioned=True``: ``list_partitioned`` (key ranges listed concurrently).
    """
    holder = LoopHolder()
    client = _open(job, holder)
    bucket, prefix = job.target.bucket, job.keys.list_prefix

    async def go() -> int:
        count = 0
        if partitioned:
            from s3torch_async._core.listing import list_partitioned

            async for _ in list_partitioned(client, bucket, prefix):
                count += 1
            return count
        async for page in client.list_objects(bucket, prefix):
            count += len(page.object_info)
        return count

    def run() -> Outcome:
        outcome = list_outcome(holder.run(go()), job)
        outcome.cleanup = holder.closer(client.aclose)
        return outcome

    return run


def dataset(job: Job) -> Callable[[], Outcome]:
    """Case 2: ``async for obj in AsyncS3Dataset.from_prefix(...)`` (cold client)."""
    from s3torch_async.async_dataset import AsyncS3Dataset

    uri = job.target.uri(job.keys.small_prefix)

    async def go() -> tuple[int, int]:
        total = count = 0
        async with AsyncS3Dataset.from_prefix(
            uri,
            region=job.target.region,
            endpoint=job.target.endpoint,
            s3client_config=_config(),
        ) as ds:
            async for obj in ds:
                total += len(obj.data)
                count += 1
        return total, count

    def run() -> Outcome:
        total, count = asyncio.run(go())
        return many_outcome(total, count, job)

    return run
