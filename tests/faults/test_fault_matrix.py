"""The fault matrix (issue 12) through the real fault proxy, on both transports where both apply.

Each test names the fault, the entry point and the behaviour required. Bit flips (uploads and
downloads) live in ``test_checksums.py``; resets and truncation of reader bodies in
``test_reader_faults.py``; failing parts in ``test_writer_faults.py``. Every entry point against
every fault, table-driven: ``test_fault_matrix_entry_points.py``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._s3client import S3Client
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.faults._helpers import assert_nothing_left, payload

REGION = "us-east-1"
PART = 5 * 1024 * 1024
READ_TIMEOUT = 0.5  # seconds, via S3TORCH_ASYNC_READ_TIMEOUT
SILENCE = 4.0  # how long the proxy goes silent: well past the read timeout


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3TORCH_ASYNC_READ_TIMEOUT", str(READ_TIMEOUT))


def config(max_attempts: int = 1, part_size: int = PART) -> S3ClientConfig:
    return S3ClientConfig(part_size=part_size, max_attempts=max_attempts)


def client(proxy: FaultProxy, max_attempts: int = 1) -> AsyncS3Client:
    return AsyncS3Client(
        REGION, endpoint=proxy.url, s3client_config=config(max_attempts)
    )


@pytest.fixture
def obj(put: Any) -> bytes:
    data = payload(200_000, 3)
    put("obj", data)
    return data


# -- slow first byte, stalled body: a timeout within the bound, then a retry ------------------


@pytest.mark.usefixtures("short_read_timeout")
@pytest.mark.parametrize(
    "fault",
    [Fault.delay(SILENCE), Fault.stall(1000, SILENCE)],
    ids=["first-byte", "stall"],
)
async def test_silent_get_times_out_then_retries(transport, proxy, bucket, obj, fault):
    proxy.add_fault(FaultRule(fault, method="GET", path_contains="/obj"))
    async with client(proxy, max_attempts=2) as c:
        started = time.monotonic()
        data = (await c.get_range(bucket, "obj")).data
        elapsed = time.monotonic() - started
    assert data == obj
    assert elapsed < SILENCE  # the timeout fired: nobody waited for the silent peer
    assert sum(m == "GET" for m, _, _ in proxy.requests) == 2


@pytest.mark.usefixtures("short_read_timeout")
@pytest.mark.parametrize(
    "fault",
    [Fault.delay(SILENCE), Fault.stall(1000, SILENCE)],
    ids=["first-byte", "stall"],
)
async def test_silent_get_without_attempts_left_is_an_error(
    transport, proxy, bucket, obj, fault
):
    proxy.add_fault(FaultRule(fault, method="GET", path_contains="/obj"))
    async with client(proxy, max_attempts=1) as c:
        started = time.monotonic()
        with pytest.raises(S3Exception) as info:
            await c.get_range(bucket, "obj")
        elapsed = time.monotonic() - started
    assert elapsed < SILENCE
    assert info.value.key == "obj"


@pytest.mark.usefixtures("short_read_timeout")
def test_sync_reader_survives_a_stalled_body(transport, proxy, bucket, obj):
    proxy.add_fault(
        FaultRule(Fault.stall(5000, SILENCE), method="GET", path_contains="/obj")
    )
    s3 = S3Client(REGION, endpoint=proxy.url, s3client_config=config(max_attempts=2))
    started = time.monotonic()
    assert s3.get_object(bucket, "obj").read() == obj
    assert time.monotonic() - started < SILENCE


@pytest.mark.usefixtures("short_read_timeout")
async def test_slow_upload_answer_times_out_and_the_part_is_retried(
    transport, proxy, bucket, boto_s3
):
    # The proxy forwards the part after the delay, so it may land twice: same bytes, same part
    # number, no harm; the object must be exactly what was written.
    proxy.add_fault(
        FaultRule(Fault.delay(SILENCE), method="PUT", query_contains="partNumber=1")
    )
    data = payload(PART + 100, 8)
    async with client(proxy, max_attempts=2) as c, c.put_object(bucket, "k") as w:
        await w.write(data)
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


# -- Content-Length larger than the body: resumed or an error, never short data --------------


async def test_short_body_whole_get_is_resumed(transport, proxy, bucket, obj):
    proxy.add_fault(FaultRule(Fault.truncate(70_000), method="GET"))
    async with client(proxy, max_attempts=2) as c:
        assert (await c.get_range(bucket, "obj")).data == obj


async def test_short_body_without_attempts_left_is_an_error(
    transport, proxy, bucket, obj
):
    proxy.add_fault(FaultRule(Fault.truncate(70_000), method="GET"))
    async with client(proxy, max_attempts=1) as c:
        with pytest.raises(S3Exception):
            await c.get_range(bucket, "obj")


def test_short_body_sync_readers_never_return_short_data(proxy, bucket, obj):
    from s3torch_async.s3reader import S3ReaderConstructor

    for constructor in (
        S3ReaderConstructor.sequential(),
        S3ReaderConstructor.range_based(),
    ):
        proxy.add_fault(FaultRule(Fault.truncate(70_000), method="GET"))
        s3 = S3Client(
            REGION, endpoint=proxy.url, s3client_config=config(max_attempts=1)
        )
        reader = s3.get_object(bucket, "obj", reader_constructor=constructor)
        with pytest.raises(S3Exception):
            reader.read()
        proxy.clear()


# -- CompleteMultipartUpload failing: retried, then aborted; nothing left --------------------

COMPLETE = {"method": "POST", "query_contains": "uploadId="}
# S3 can answer CompleteMultipartUpload with 200 OK and an <Error> body.
COMPLETE_FAULTS = {
    "500": Fault.status(500, "InternalError"),
    "200-with-error": Fault.status(200, "InternalError"),
}


@pytest.mark.parametrize("kind", list(COMPLETE_FAULTS))
async def test_failed_complete_is_retried(transport, proxy, bucket, boto_s3, kind):
    proxy.add_fault(FaultRule(COMPLETE_FAULTS[kind], times=1, **COMPLETE))
    data = payload(PART + 1, 5)
    async with client(proxy, max_attempts=3) as c, c.put_object(bucket, "k") as w:
        await w.write(data)
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("kind", list(COMPLETE_FAULTS))
async def test_complete_failing_every_time_aborts(
    transport, proxy, bucket, boto_s3, kind
):
    proxy.add_fault(FaultRule(COMPLETE_FAULTS[kind], times=None, **COMPLETE))
    async with client(proxy, max_attempts=2) as c:
        writer = c.put_object(bucket, "k")
        await writer.write(payload(PART + 1, 5))
        with pytest.raises(S3Exception) as info:
            await writer.aclose()
    assert info.value.operation == "CompleteMultipartUpload"
    assert sum(m == "POST" and "uploadId=" in p for m, p, _ in proxy.requests) == 2
    assert_nothing_left(boto_s3, bucket, "k")


def test_checkpoint_save_with_failing_complete_leaves_nothing(proxy, bucket, boto_s3):
    from s3torch_async import S3Checkpoint

    proxy.add_fault(
        FaultRule(Fault.status(500, "InternalError"), times=None, **COMPLETE)
    )
    checkpoint = S3Checkpoint(REGION, endpoint=proxy.url, s3client_config=config())

    def save() -> None:
        with checkpoint.writer(f"s3://{bucket}/model.ckpt") as writer:
            writer.write(payload(PART + 1))

    with pytest.raises(S3Exception):
        save()
    assert_nothing_left(boto_s3, bucket, "model.ckpt")


# -- ListObjectsV2 page 2 failing: retried, no key duplicated or dropped ---------------------

KEYS = [f"list/{i:03d}" for i in range(7)]
PAGE_2 = {"method": "GET", "query_contains": "continuation-token="}


@pytest.fixture
def listed(put: Any) -> list[str]:
    for key in KEYS:
        put(key, b"x")
    return KEYS


async def test_failed_second_page_is_retried(transport, proxy, bucket, listed):
    proxy.add_fault(FaultRule(Fault.status(500, "InternalError"), times=1, **PAGE_2))
    async with client(proxy, max_attempts=2) as c:
        keys = [
            o.key async for o in c.list_objects(bucket, "list/", max_keys=3).objects()
        ]
    assert keys == listed
    assert proxy.faults_injected == 1


async def test_second_page_failing_past_the_budget_resumes_where_it_stopped(
    transport, proxy, bucket, listed
):
    proxy.add_fault(FaultRule(Fault.status(500, "InternalError"), times=1, **PAGE_2))
    async with client(proxy, max_attempts=1) as c:
        pager = c.list_objects(bucket, "list/", max_keys=3)
        keys: list[str] = []

        async def drain() -> None:
            async for page in pager:
                keys.extend(o.key for o in page.object_info)

        with pytest.raises(S3Exception):
            await drain()
        await drain()  # the pager kept its continuation token
    assert keys == listed


def test_sync_listing_and_dataset_survive_a_failed_second_page(proxy, bucket, listed):
    from s3torch_async import S3IterableDataset

    proxy.add_fault(FaultRule(Fault.status(503, "SlowDown"), times=1, **PAGE_2))
    s3 = S3Client(REGION, endpoint=proxy.url, s3client_config=config(max_attempts=2))
    keys = [
        o.key
        for page in s3.list_objects(bucket, "list/", max_keys=3)
        for o in page.object_info
    ]
    assert keys == listed
    # The dataset lists 1000 keys a page: one page here, failing once.
    proxy.add_fault(
        FaultRule(
            Fault.status(500, "InternalError"), times=1, query_contains="list-type=2"
        )
    )
    dataset = S3IterableDataset.from_prefix(
        f"s3://{bucket}/list/",
        region=REGION,
        endpoint=proxy.url,
        s3client_config=config(max_attempts=2),
        transform=lambda r: r.key,
    )
    assert list(dataset) == listed


# -- 503 SlowDown with Retry-After -----------------------------------------------------------


async def test_slowdown_with_retry_after_is_retried(transport, proxy, bucket, obj):
    # Retry-After is not honoured (nor by botocore): the standard backoff (full jitter, capped)
    # applies, so a large Retry-After never stalls a training step.
    proxy.add_fault(
        FaultRule(Fault.status(503, "SlowDown", retry_after=30), times=2, method="GET")
    )
    async with client(proxy, max_attempts=3) as c:
        started = time.monotonic()
        assert (await c.get_range(bucket, "obj")).data == obj
        assert time.monotonic() - started < 30
    assert proxy.faults_injected == 2


async def test_slowdown_on_upload_with_retry_after_is_retried(
    transport, proxy, bucket, boto_s3
):
    proxy.add_fault(
        FaultRule(Fault.status(503, "SlowDown", retry_after=1), times=1, method="PUT")
    )
    async with client(proxy, max_attempts=2) as c, c.put_object(bucket, "k") as w:
        await w.write(b"payload")
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


# -- a DataLoader worker SIGKILLed mid-read --------------------------------------------------


@pytest.mark.process
def test_worker_killed_mid_read_surfaces_in_parent_and_parent_keeps_working(
    proxy, bucket, put
):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from s3torch_async import S3IterableDataset

    objects = {f"w/{i}": payload(1000, i) for i in range(6)}
    for key, data in objects.items():
        put(key, data)
    s3 = S3Client(REGION, endpoint=proxy.url, s3client_config=config(max_attempts=1))
    assert (
        s3.get_object(bucket, "w/0").read() == objects["w/0"]
    )  # the parent's loop is up

    def dataset() -> Any:
        return S3IterableDataset.from_prefix(
            f"s3://{bucket}/w/",
            region=REGION,
            endpoint=proxy.url,
            s3client_config=config(max_attempts=1),
            transform=lambda r: (r.key, r.read()),
            enable_sharding=True,
            prefetch_bytes=0,
        )

    # Every object GET hangs long enough for the kill to land mid-read.
    proxy.add_fault(
        FaultRule(Fault.delay(30), method="GET", path_contains="/w/", times=None)
    )
    loader = DataLoader(
        dataset(),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=0,
    )
    it = iter(loader)
    deadline = time.monotonic() + 20
    while sum("/w/" in p and m == "GET" for m, p, _ in proxy.requests) < 2:
        assert time.monotonic() < deadline, "workers never started reading"
        time.sleep(0.05)
    victim = it._workers[0].pid  # type: ignore[attr-defined]
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"DataLoader worker \\(pid.*{victim}"):
        next(it)
    assert time.monotonic() - started < 20
    del it
    proxy.clear()
    # The parent's own client, loop and pool still work, and so do new workers.
    assert s3.get_object(bucket, "w/1").read() == objects["w/1"]
    got = dict(
        DataLoader(
            dataset(), batch_size=None, num_workers=2, multiprocessing_context="fork"
        )
    )
    assert got == objects
    assert torch is not None
