"""S3Writer (sync) against a real moto server: reference semantics, background parts, aborts."""

from __future__ import annotations

import io
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from botocore.exceptions import ClientError
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async._core._planning import MiB
from s3torch_async._errors import INVALID_PART_SIZE
from s3torch_async._runner import LoopRunner
from s3torch_async._s3client import S3Client
from s3torch_async.s3writer import S3Writer
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"
PART = 5 * MiB
CONFIG = S3ClientConfig(part_size=PART, max_attempts=1)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def client(endpoint: str) -> S3Client:
    return S3Client(REGION, endpoint=endpoint, s3client_config=CONFIG)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as p:
        yield p


def object_data(boto_s3: Any, bucket: str, key: str) -> bytes:
    return bytes(boto_s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def exists(boto_s3: Any, bucket: str, key: str) -> bool:
    try:
        boto_s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
    else:
        return True
    assert status == 404
    return False


def pending_uploads(boto_s3: Any, bucket: str) -> list[Any]:
    return list(boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def operations(proxy: FaultProxy) -> list[str]:
    ops = []
    for method, path, _ in proxy.requests:
        query = path.split("?", 1)[1] if "?" in path else ""
        if method == "PUT":
            ops.append("UploadPart" if "partNumber=" in query else "PutObject")
        elif method == "POST":
            ops.append("Complete" if "uploadId=" in query else "Create")
        else:
            ops.append(method)
    return ops


# -- reference semantics (§1.10) ---------------------------------------------------------------


def test_file_object_semantics(client, bucket, boto_s3):
    writer = client.put_object(bucket, "k")
    assert writer.stream.bucket == bucket
    assert writer.stream.key == "k"
    assert isinstance(writer, io.BufferedIOBase)
    assert not writer.readable()
    assert writer.writable()
    assert not writer.seekable()
    assert not writer.closed
    with pytest.raises(io.UnsupportedOperation):
        writer.seek(0)
    with pytest.raises(io.UnsupportedOperation):
        writer.read()
    assert writer.write(b"abc") == 3
    assert writer.write(bytearray(b"de")) == 2
    assert writer.write(memoryview(b"fgh")) == 3
    assert writer.tell() == 8
    writer.flush()
    writer.close()
    assert writer.closed
    assert not writer.writable()
    assert writer.tell() == 8
    writer.flush()  # still a no-op when closed
    writer.close()  # idempotent
    with pytest.raises(ValueError, match=r"^I/O operation on closed file\.$"):
        writer.write(b"x")
    assert object_data(boto_s3, bucket, "k") == b"abcdefgh"


def test_empty_writer_creates_empty_object(client, bucket, boto_s3):
    with client.put_object(bucket, "empty"):
        pass
    assert object_data(boto_s3, bucket, "empty") == b""


def test_enter_keeps_position(client, bucket, boto_s3):
    writer = client.put_object(bucket, "k")
    writer.write(b"12345")
    with writer as entered:
        assert entered is writer
        assert writer.tell() == 5  # the reference reset this to 0
        writer.write(b"6")
        assert writer.tell() == 6
    assert object_data(boto_s3, bucket, "k") == b"123456"


def test_put_object_logs_and_sends_nothing_until_data(proxy, bucket, caplog):
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=CONFIG)
    with caplog.at_level(logging.DEBUG, logger="s3torch_async"):
        writer = client.put_object(bucket, "a/b")
    assert f"PutObject s3://{bucket}/a/b" in caplog.text
    writer.write(b"small")
    assert proxy.requests == []
    writer.close()
    assert operations(proxy) == ["PutObject"]


def test_put_object_rejects_bad_names(client):
    with pytest.raises(ValueError, match="key"):
        client.put_object("bucket", "")
    with pytest.raises(TypeError, match="bucket"):
        client.put_object(1, "k")


def test_invalid_part_size_fails_on_first_write(endpoint, bucket, boto_s3):
    bad = S3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(part_size=1024)
    )
    writer = bad.put_object(bucket, "k")  # building it is fine, as in the reference
    with pytest.raises(S3Exception, match=INVALID_PART_SIZE):
        writer.write(b"x")
    with pytest.raises(S3Exception, match=INVALID_PART_SIZE):
        writer.close()
    assert not exists(boto_s3, bucket, "k")


def test_storage_class(client, bucket, boto_s3):
    with client.put_object(bucket, "k", storage_class="STANDARD_IA") as writer:
        writer.write(b"x")
    assert boto_s3.head_object(Bucket=bucket, Key="k")["StorageClass"] == "STANDARD_IA"


def test_close_from_five_threads_commits_exactly_once(proxy, bucket, boto_s3):
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=CONFIG)
    writer = client.put_object(bucket, "k")
    writer.write(payload(PART + 3))
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def close() -> None:
        barrier.wait()
        try:
            writer.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert operations(proxy).count("Complete") == 1
    assert object_data(boto_s3, bucket, "k") == payload(PART + 3)


def test_small_writes_cross_threads_per_part_and_upload_in_background(
    proxy, bucket, boto_s3, monkeypatch
):
    crossings = []
    real_run = LoopRunner.run

    def counting_run(self: LoopRunner, fn: Any, *args: Any, **kwargs: Any) -> Any:
        crossings.append(fn)
        return real_run(self, fn, *args, **kwargs)

    monkeypatch.setattr(LoopRunner, "run", counting_run)
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=CONFIG)
    data = payload(3 * PART + 100)
    writer = client.put_object(bucket, "k")
    for start in range(0, len(data), 4096):  # torch.save-like small writes
        writer.write(data[start : start + 4096])
    assert len(crossings) == 3  # one per full part, not one per write
    # Parts 1-3 were handed over; they upload before close() is even called.
    deadline = time.monotonic() + 20
    while operations(proxy).count("UploadPart") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert operations(proxy) == ["Create", "UploadPart", "UploadPart", "UploadPart"]
    assert not exists(boto_s3, bucket, "k")
    writer.close()
    assert operations(proxy)[-2:] == ["UploadPart", "Complete"]
    assert object_data(boto_s3, bucket, "k") == data


def test_one_large_memoryview_spanning_parts(client, bucket, boto_s3):
    data = payload(2 * PART + 17)
    with client.put_object(bucket, "k") as writer:
        assert writer.write(memoryview(data)) == len(data)
    assert object_data(boto_s3, bucket, "k") == data


# -- aborts ------------------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("size", [10, 2 * PART + 1], ids=["buffered", "multipart"])
def test_exception_in_with_aborts_logs_and_reraises(
    client, bucket, boto_s3, put, caplog, size
):
    put("k", b"original")
    caplog.set_level(logging.INFO, logger="s3torch_async")
    error = Boom("midway")
    writer = client.put_object(bucket, "k")

    def write_then_fail() -> None:
        with writer:
            writer.write(payload(size))
            raise error

    with pytest.raises(Boom) as info:
        write_then_fail()
    assert info.value is error
    assert "Exception occurred before closing stream: Boom: midway" in caplog.text
    assert writer.closed
    assert object_data(boto_s3, bucket, "k") == b"original"
    assert pending_uploads(boto_s3, bucket) == []


@pytest.mark.parametrize("size", [10, PART + 1])
def test_unclosed_writer_is_committed_in_background_when_collected(
    client, bucket, boto_s3, size
):
    # Reference parity: io objects (and s3torchconnector's writer) commit when collected, so
    # `torch.save(obj, checkpoint.writer(uri))` without `with` must still save.
    data = payload(size)
    writer = client.put_object(bucket, "k")
    writer.write(data)
    holder = [writer]
    del writer
    with pytest.warns(ResourceWarning, match=f"s3://{bucket}/k"):
        holder.clear()  # the last reference: finalized right here
    deadline = time.monotonic() + 20
    while not exists(boto_s3, bucket, "k") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert object_data(boto_s3, bucket, "k") == data
    assert pending_uploads(boto_s3, bucket) == []


def test_failed_close_marks_writer_closed(proxy, bucket, boto_s3):
    proxy.add_fault(FaultRule(Fault.status(500, "InternalError"), method="PUT"))
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=CONFIG)
    writer = client.put_object(bucket, "k")
    writer.write(b"abc")
    with pytest.raises(S3Exception, match="InternalError"):
        writer.close()
    assert writer.closed
    writer.close()  # idempotent: the failure was reported once
    assert not exists(boto_s3, bucket, "k")


class _ListStream:
    """A foreign stream (the reference's ``S3Writer(stream)`` constructor)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closes = 0

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> None:
        self.closes += 1


def test_writer_over_a_foreign_stream_passes_bytes():
    stream = _ListStream()
    with S3Writer(stream) as writer:
        assert writer.stream is stream
        assert writer.write(memoryview(b"abc")) == 3
        writer.write(bytearray(b"d"))
    assert stream.chunks == [b"abc", b"d"]
    assert all(type(c) is bytes for c in stream.chunks)
    assert stream.closes == 1


# -- stateful: S3Writer vs io.BytesIO ------------------------------------------------------------

SIZES = st.one_of(
    st.integers(0, 64),
    st.integers(1000, 300_000),
    st.sampled_from([PART - 1, PART, PART + 1]),
    st.integers(PART - 100, PART + 100),
)
KINDS = st.sampled_from(["bytes", "bytearray", "memoryview"])
MAX_TOTAL = 3 * PART


class WriterMachine(RuleBasedStateMachine):
    client: S3Client
    boto_s3: Any
    bucket: str

    def __init__(self) -> None:
        super().__init__()
        self.key = f"machine/{uuid.uuid4().hex}"
        self.oracle = io.BytesIO()
        self.writer: Optional[S3Writer] = None
        self.failed = False

    @initialize()
    def open_writer(self) -> None:
        self.writer = self.client.put_object(self.bucket, self.key)
        self.writer.__enter__()

    @precondition(lambda self: not self.failed and self.oracle.tell() < MAX_TOTAL)
    @rule(size=SIZES, kind=KINDS, seed=st.integers(0, 2**16))
    def write(self, size: int, kind: str, seed: int) -> None:
        assert self.writer is not None
        size = min(size, MAX_TOTAL - self.oracle.tell())
        data = payload(size, seed)
        buf: Any = {
            "bytes": data,
            "bytearray": bytearray(data),
            "memoryview": memoryview(bytearray(data)),
        }[kind]
        assert self.writer.write(buf) == size
        self.oracle.write(data)

    @precondition(lambda self: not self.failed)
    @rule()
    def raise_inside_with(self) -> None:
        assert self.writer is not None
        self.failed = True
        try:
            raise Boom("in with")
        except Boom as exc:
            self.writer.__exit__(type(exc), exc, exc.__traceback__)
        assert self.writer.closed
        assert not exists(self.boto_s3, self.bucket, self.key)
        assert pending_uploads(self.boto_s3, self.bucket) == []

    @rule()
    def flush_is_a_noop(self) -> None:
        assert self.writer is not None
        self.writer.flush()

    @invariant()
    def position_matches_oracle(self) -> None:
        if self.writer is not None and not self.failed:
            assert self.writer.tell() == self.oracle.tell()

    def teardown(self) -> None:
        if self.writer is None:
            return
        if not self.failed:
            self.writer.__exit__(None, None, None)
            got = object_data(self.boto_s3, self.bucket, self.key)
            assert got == self.oracle.getvalue()
        else:
            assert not exists(self.boto_s3, self.bucket, self.key)
        assert pending_uploads(self.boto_s3, self.bucket) == []


def test_writer_matches_bytesio_oracle(client, bucket, boto_s3):
    WriterMachine.client = client
    WriterMachine.boto_s3 = boto_s3
    WriterMachine.bucket = bucket
    run_state_machine_as_test(
        WriterMachine,
        settings=settings(
            max_examples=12, stateful_step_count=8, deadline=None, derandomize=True
        ),
    )
