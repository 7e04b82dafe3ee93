"""Load without leaks: one client, 64 concurrent readers and 16 concurrent writers.

Runs for ``S3TORCH_ASYNC_LOAD_SECONDS`` seconds (3 by default, so it fits in CI; ``nox -s soak
-- <seconds>`` runs it longer) against a moto server in its own process (so that this process's
file descriptors and memory are the client's alone), then requires: no errors, every object
read back intact, no task left behind (``asyncio.all_tasks()``), no file descriptor left open
(``/proc/self/fd``), resident memory growth within what the configuration allows (the
writers' part buffers plus the readers' bodies), and no leak: once the run is over and the
allocator has handed its free pages back (``malloc_trim``), RSS is back near where it started.

Why the peak grows with the duration although nothing leaks: glibc keeps freed heap pages
(its mmap threshold rises to the largest block freed, so later multi-MiB bodies come from the
heap and fragment it), and the peak drifts up to the workload's high-water mark. In a 30 s run
(as ``nox -s soak -- 30``): peak +370 MiB, after ``gc.collect()`` +280 MiB, after ``malloc_trim(0)``
+6 MiB. With glibc's threshold pinned (``MALLOC_MMAP_THRESHOLD_=131072``), a 16 s run peaks at
+145 MiB instead of +350 MiB and is +37 MiB after ``gc.collect()`` (docs/process-model.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import random
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig

REGION = "us-east-1"
READERS = 64
WRITERS = 16
PART = 5 * 1024 * 1024
MiB = 1024 * 1024
SOURCE_SIZES = [1, 100_000, 300_000, 2 * MiB]
WRITE_SIZES = [0, 1000, 200_000, PART + 1234]  # the last one is a multipart upload

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd"
)

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("%s:%d" % server.get_host_and_port(), flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""


@pytest.fixture(scope="module")
def own_endpoint() -> Iterator[str]:
    """A moto server in its own process (the hermetic AWS environment is inherited)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        address = proc.stdout.readline().strip()
        assert address, "moto server did not start"
        yield f"http://{address}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture
def own_s3(own_endpoint: str) -> Any:
    import boto3
    import botocore.config

    return boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=own_endpoint,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def duration() -> float:
    return float(os.environ.get("S3TORCH_ASYNC_LOAD_SECONDS", "3"))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def trim_allocator() -> bool:
    """Hand glibc's free heap pages back to the system; ``False`` where that is unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_many_readers_and_writers_leave_nothing_behind(
    own_endpoint: str, own_s3: Any
) -> None:
    bucket = f"load-{uuid.uuid4().hex[:16]}"
    own_s3.create_bucket(Bucket=bucket)
    rng = random.Random(12)
    sources = {f"src/{i}": rng.randbytes(size) for i, size in enumerate(SOURCE_SIZES)}
    for key, data in sources.items():
        own_s3.put_object(Bucket=bucket, Key=key, Body=data)
    gc.collect()
    tasks_before = asyncio.all_tasks()
    fds_before = open_fds()
    rss_before = rss()
    rss_peak = rss_before
    stop_at = time.monotonic() + duration()
    errors: list[BaseException] = []
    counts = {"reads": 0, "writes": 0}
    written: dict[str, int] = {}  # key -> CRC32 (keeping the bytes would skew RSS)
    config = S3ClientConfig(part_size=PART, max_attempts=3)

    async def reader(client: AsyncS3Client, seed: int) -> None:
        r = random.Random(seed)
        while time.monotonic() < stop_at:
            key = r.choice(list(sources))
            data = sources[key]
            if r.random() < 0.5:
                got = (await client.get_range(bucket, key)).data
            else:
                start = r.randrange(len(data))
                async with client.get_object(bucket, key) as stream:
                    stream.seek(start)
                    got = data[:start] + await stream.read(r.randrange(1, 70_000))
                data = data[: len(got)]
            assert got == data, key
            counts["reads"] += 1

    async def writer(client: AsyncS3Client, seed: int) -> None:
        r = random.Random(seed)
        n = 0
        while time.monotonic() < stop_at:
            key = f"out/{seed}/{n}"
            data = r.randbytes(r.choice(WRITE_SIZES))
            async with client.put_object(bucket, key) as w:
                for i in range(0, len(data), 256 * 1024):
                    await w.write(data[i : i + 256 * 1024])
            written[key] = zlib.crc32(data)
            del data
            counts["writes"] += 1
            n += 1

    async def sample_memory() -> None:
        nonlocal rss_peak
        while time.monotonic() < stop_at:
            rss_peak = max(rss_peak, rss())
            await asyncio.sleep(0.1)

    async def guarded(coro: Any) -> None:
        try:
            await coro
        except BaseException as exc:
            errors.append(exc)

    async with AsyncS3Client(
        REGION, endpoint=own_endpoint, s3client_config=config
    ) as c:
        await asyncio.gather(
            *(guarded(reader(c, i)) for i in range(READERS)),
            *(guarded(writer(c, 1000 + i)) for i in range(WRITERS)),
            sample_memory(),
        )
        window = c.max_concurrency
    # A writer holds at most min(window, parts) part buffers plus the one filling; a reader
    # of a whole object its chunks and their join; plus interpreter and allocator slack.
    parts = -(-max(WRITE_SIZES) // PART)
    allowed = (
        WRITERS * (min(window, parts) + 1) * PART
        + READERS * max(SOURCE_SIZES) * 2
        + 64 * MiB
    )
    print(  # noqa: T201 (shown with -s, as the soak session runs it)
        f"load: {counts['reads']} reads, {counts['writes']} writes in {duration():.0f} s;"
        f" RSS +{(rss_peak - rss_before) / MiB:.0f} MiB at peak"
        f" (allowed {allowed / MiB:.0f} MiB)"
    )
    assert errors == []
    assert counts["reads"] >= READERS
    assert counts["writes"] >= WRITERS
    assert rss_peak - rss_before < allowed
    assert asyncio.all_tasks() == tasks_before
    gc.collect()
    left = open_fds() - fds_before
    assert not left, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in left}
    for key in rng.sample(sorted(written), min(20, len(written))):
        body = own_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert zlib.crc32(body) == written[key], key
    del body
    gc.collect()
    if trim_allocator():
        retained = rss() - rss_before
        print(f"load: RSS +{retained / MiB:.0f} MiB after malloc_trim")  # noqa: T201
        # What is left is the client's caches and interpreter state, not the bodies.
        assert retained < 64 * MiB
