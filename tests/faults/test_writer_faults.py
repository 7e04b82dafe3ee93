"""Writer failures against a real faulty peer: every failure aborts, nothing is left behind."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core._planning import MiB
from s3torch_async._s3client import S3Client
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.faults._helpers import assert_nothing_left

REGION = "us-east-1"
PART = 5 * MiB


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as p:
        yield p


def config(max_attempts: int = 1, gbps: float = 10.0) -> S3ClientConfig:
    return S3ClientConfig(
        part_size=PART, max_attempts=max_attempts, throughput_target_gbps=gbps
    )


def seen(proxy: FaultProxy, fragment: str) -> int:
    return sum(fragment in path for _, path, _ in proxy.requests)


# -- async core --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
async def test_failed_part_aborts_upload_and_error_sticks(
    proxy, bucket, boto_s3, status
):
    proxy.add_fault(
        FaultRule(
            Fault.status(status, "InternalError" if status == 500 else "SlowDown"),
            query_contains="partNumber=2",
            times=1,
        )
    )
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config()) as c:
        writer = c.put_object(bucket, "k")

        async def write_and_close() -> None:
            await writer.write(payload(3 * PART + 1))
            await writer.aclose()

        with pytest.raises(S3Exception) as info:
            await write_and_close()
        assert info.value.status == status
        assert info.value.operation == "UploadPart"
        with pytest.raises(S3Exception) as again:
            await writer.write(b"more")
        assert again.value is info.value
        with pytest.raises(S3Exception) as on_close:
            await writer.aclose()
        assert on_close.value is info.value
    assert seen(proxy, "uploadId=") >= 1
    assert_nothing_left(boto_s3, bucket, "k")


async def test_part_error_is_retried_within_max_attempts(proxy, bucket, boto_s3):
    proxy.add_fault(
        FaultRule(Fault.status(503), query_contains="partNumber=1", times=2)
    )
    data = payload(PART + 1)
    async with (
        AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config(3)) as c,
        c.put_object(bucket, "k") as writer,
    ):
        await writer.write(data)
    assert proxy.faults_injected == 2
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize(
    ("rule", "operation"),
    [
        (
            FaultRule(
                Fault.status(500, "InternalError"),
                method="POST",
                query_contains="uploads",
            ),
            "CreateMultipartUpload",
        ),
        (
            FaultRule(
                Fault.status(500, "InternalError"),
                method="POST",
                query_contains="uploadId=",
            ),
            "CompleteMultipartUpload",
        ),
        (FaultRule(Fault.status(500, "InternalError"), method="PUT"), "PutObject"),
    ],
    ids=["create", "complete", "put"],
)
async def test_failed_control_request_leaves_nothing(
    proxy, bucket, boto_s3, rule, operation
):
    proxy.add_fault(rule)
    size = 10 if operation == "PutObject" else PART + 10
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config()) as c:
        writer = c.put_object(bucket, "k")
        with pytest.raises(S3Exception) as info:
            async with writer:
                await writer.write(payload(size))
        assert info.value.operation == operation
        assert info.value.status == 500
        assert writer.closed
    assert_nothing_left(boto_s3, bucket, "k")


@pytest.mark.parametrize("attempts", [1, 2])
async def test_complete_answered_200_with_an_error_document_is_a_failure(
    proxy, bucket, boto_s3, attempts
):
    # S3 may answer CompleteMultipartUpload "200 OK" and then an <Error> body: it failed.
    # Both transports read it as a 500 (botocore's rule): retried if attempts remain, else
    # the upload is aborted and nothing is left.
    proxy.add_fault(
        FaultRule(
            Fault.status(200, "InternalError"),
            method="POST",
            query_contains="uploadId=",
        )
    )
    data = payload(PART + 10)
    cfg = config(attempts)
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=cfg) as c:
        writer = c.put_object(bucket, "k")
        if attempts == 1:
            with pytest.raises(S3Exception) as info:
                async with writer:
                    await writer.write(data)
            assert info.value.operation == "CompleteMultipartUpload"
            assert "InternalError" in str(info.value)
        else:
            async with writer:
                await writer.write(data)
    assert proxy.faults_injected == 1
    if attempts == 1:
        assert_nothing_left(boto_s3, bucket, "k")
    else:
        assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


# -- sync writer -------------------------------------------------------------------------------


def test_sync_failed_part_raises_and_aborts(proxy, bucket, boto_s3):
    proxy.add_fault(
        FaultRule(
            Fault.status(500, "InternalError"), query_contains="partNumber=", times=1
        )
    )
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=config())
    writer = client.put_object(bucket, "k")

    def write_parts() -> None:
        with writer:
            for _ in range(4):
                writer.write(payload(PART))

    with pytest.raises(S3Exception) as info:
        write_parts()
    assert info.value.status == 500
    assert writer.closed
    assert_nothing_left(boto_s3, bucket, "k")


def _interrupt_when(condition: Any, stop: threading.Event) -> threading.Thread:
    """SIGINT the main thread once ``condition()`` holds (unless ``stop`` is set first)."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            if condition():
                time.sleep(0.2)  # let the main thread block on the slowed request
                if not stop.is_set():
                    os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="SIGINT is delivered to the main thread",
)
@pytest.mark.parametrize("where", ["write", "close"])
def test_keyboard_interrupt_during_sync_write_or_close_aborts(
    proxy, bucket, boto_s3, where, default_sigint
):
    # Parts hang for 30 s in the proxy. With two parts in flight at most, the third part's
    # handoff blocks inside write(); in the close case, close() blocks waiting for part 1.
    proxy.add_fault(
        FaultRule(Fault.delay(30), query_contains="partNumber=", times=None)
    )
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=config(gbps=0.5))
    closing = threading.Event()
    if where == "write":
        ready = lambda: seen(proxy, "partNumber=") >= 2  # noqa: E731
    else:
        ready = lambda: closing.is_set() and seen(proxy, "partNumber=") >= 1  # noqa: E731
    stop = threading.Event()
    killer = _interrupt_when(ready, stop)
    writer = client.put_object(bucket, "k")
    started = time.monotonic()

    def produce() -> None:
        with writer:
            if where == "write":
                writer.write(payload(3 * PART + 1))
                pytest.fail("write() should have been interrupted")
            writer.write(payload(PART + 1))
            closing.set()
            writer.close()

    try:
        with pytest.raises(KeyboardInterrupt):
            produce()
    finally:
        stop.set()
        killer.join()
    assert time.monotonic() - started < 25, "the interrupt did not cut the wait short"
    assert writer.closed
    assert seen(proxy, "uploadId=") >= 1
    assert_nothing_left(boto_s3, bucket, "k")
