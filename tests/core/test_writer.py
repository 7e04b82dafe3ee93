"""AsyncS3Writer against a real moto server (and FaultProxy where requests must be counted)."""

from __future__ import annotations

import array
import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core._planning import (
    MiB,
    upload_concurrency_for,
    upload_window_reach,
)
from s3torch_async._core.writer import (
    AsyncS3Writer,
    PartAssembler,
    as_byte_view,
    part_capacity,
)
from s3torch_async._errors import INVALID_PART_SIZE
from tests._faultproxy import Fault, FaultProxy, FaultRule, RequestRecord

REGION = "us-east-1"
PART = 5 * MiB
CONFIG = S3ClientConfig(part_size=PART, max_attempts=1)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def classify(record: RequestRecord) -> str:
    method, path, _ = record
    query = path.split("?", 1)[1] if "?" in path else ""
    if method == "PUT" and "partNumber=" in query:
        return "UploadPart"
    if method == "PUT":
        return "PutObject"
    if method == "POST" and "uploads" in query.split("&"):
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId=" in query:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId=" in query:
        return "AbortMultipartUpload"
    return f"{method} {path}"


def operations(proxy: FaultProxy) -> list[str]:
    return [classify(r) for r in proxy.requests]


def object_data(boto_s3: Any, bucket: str, key: str) -> bytes:
    return bytes(boto_s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def assert_no_object(boto_s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as info:
        boto_s3.head_object(Bucket=bucket, Key=key)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def pending_uploads(boto_s3: Any, bucket: str) -> list[Any]:
    return list(boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@pytest.fixture
async def client(endpoint: str) -> AsyncIterator[AsyncS3Client]:
    async with AsyncS3Client(REGION, endpoint=endpoint, s3client_config=CONFIG) as c:
        yield c


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as p:
        yield p


def proxied(proxy: FaultProxy, config: S3ClientConfig = CONFIG) -> AsyncS3Client:
    return AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config)


# -- pure helpers ------------------------------------------------------------------------------


def test_byte_view_flattens_any_buffer():
    ints = array.array("i", [1, 2, 3])
    assert as_byte_view(ints).tobytes() == ints.tobytes()
    grid = memoryview(bytearray(range(12))).cast("B", shape=[3, 4])
    assert as_byte_view(grid).tobytes() == bytes(range(12))
    strided = memoryview(bytes(range(10)))[::2]
    assert as_byte_view(strided).tobytes() == bytes(range(0, 10, 2))
    with pytest.raises(TypeError, match="bytes-like object is required, not 'str'"):
        as_byte_view("text")


def test_part_capacity_grows_after_part_1000_and_stops_at_10000():
    assert part_capacity(1, PART) == PART
    assert part_capacity(1000, PART) == PART
    assert part_capacity(1001, PART) == 2 * PART
    assert part_capacity(10_000, PART) > part_capacity(5_000, PART)
    with pytest.raises(S3Exception, match="at most 10000 parts"):
        part_capacity(10_001, PART)


SMALL = PART  # the smallest part S3 allows
BLOB = random.Random(7).randbytes(5 * SMALL + 100)  # enough for any drawn sizes


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=SMALL + 10), max_size=4),
    st.sampled_from([0, 1, SMALL // 3, SMALL - 1]),
)
def test_assembler_cuts_full_parts_and_keeps_every_byte(
    sizes: list[int], extra: int
) -> None:
    sizes = [*sizes, extra]
    data = memoryview(BLOB)[: sum(sizes)]
    parts = PartAssembler(SMALL)
    out: list[bytes] = []
    pos = 0
    for size in sizes:
        view = data[pos : pos + size]
        assert len(view) == size
        at = 0
        while at < size:
            if parts.held is not None:
                full = parts.take_held()
                assert len(full) == SMALL
                out.append(bytes(full))
                parts.recycle(full)
            at = parts.feed(view, at)
        pos += size
    rest = parts.drain()
    assert all(len(p) == SMALL for p in rest[:-1])
    assert all(0 < len(p) <= SMALL for p in rest)
    assert b"".join(out) + b"".join(bytes(p) for p in rest) == data
    assert parts.parts == len(data) // SMALL


def test_assembler_reuses_recycled_buffers_only() -> None:
    parts = PartAssembler(SMALL)
    parts.feed(memoryview(bytearray(b"a" * SMALL)), 0)  # exactly one part: held
    first = parts.take_held()
    parts.feed(memoryview(bytearray(b"b" * SMALL)), 0)
    second = parts.take_held()
    assert first.obj is not second.obj  # first is still owned by its upload
    parts.recycle(first)
    parts.feed(memoryview(bytearray(b"c" * SMALL)), 0)
    third = parts.take_held()
    assert third.obj is first.obj
    assert bytes(third) == b"c" * SMALL


def test_assembler_hands_over_whole_parts_of_bytes_uncopied() -> None:
    data = BLOB[: 3 * SMALL + 10]
    parts = PartAssembler(SMALL)
    # Not at a part boundary: the first part is completed by copying.
    assert parts.feed(memoryview(data)[:10], 0) == 10
    assert parts.feed(memoryview(data), 10) == SMALL
    first = parts.take_held()
    assert first.obj is not data
    assert bytes(first) == data[:SMALL]
    # At a boundary, a whole part of bytes is a view of them (immutable: nothing to copy)...
    assert parts.feed(memoryview(data), SMALL) == 2 * SMALL
    second = parts.take_held()
    assert second.obj is data
    assert bytes(second) == data[SMALL : 2 * SMALL]
    parts.recycle(second)  # ...which never joins the buffer pool
    assert parts.feed(memoryview(data), 2 * SMALL) == 3 * SMALL
    assert parts.take_held().obj is data
    # ...while less than a part, or a mutable buffer, is copied.
    assert parts.feed(memoryview(data), 3 * SMALL) == len(data)
    mutable = bytearray(data)
    assert parts.feed(memoryview(mutable), 0) == SMALL - 10
    mutable[:] = bytes(len(mutable))
    rest = parts.drain()
    assert [bytes(p) for p in rest] == [data[3 * SMALL :] + data[: SMALL - 10]]


def test_assembler_refuses_to_overwrite_a_held_part() -> None:
    parts = PartAssembler(SMALL)
    parts.feed(memoryview(b"x" * (SMALL + 1)), 0)
    with pytest.raises(RuntimeError, match="held part"):
        parts.feed(memoryview(b"y"), 0)


# -- functional --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, PART - 1, PART, PART + 1, 2 * PART + 123],
    ids=["empty", "one", "part-1", "part", "part+1", "two-parts+"],
)
async def test_roundtrip_for_sizes_around_part_boundaries(
    client, bucket, boto_s3, size
):
    data = payload(size, seed=size)
    async with client.put_object(bucket, "obj") as writer:
        for start in range(0, size, 700_001):
            assert await writer.write(data[start : start + 700_001]) == len(
                data[start : start + 700_001]
            )
        assert writer.tell() == size
    assert writer.closed
    assert object_data(boto_s3, bucket, "obj") == data
    assert pending_uploads(boto_s3, bucket) == []


async def test_empty_writer_commits_empty_object(client, bucket, boto_s3):
    writer = client.put_object(bucket, "empty")
    await writer.aclose()
    assert object_data(boto_s3, bucket, "empty") == b""


async def test_object_invisible_until_commit(client, bucket, boto_s3):
    data = payload(2 * PART + 10)
    writer = client.put_object(bucket, "late")
    await writer.write(data)
    assert_no_object(boto_s3, bucket, "late")
    await writer.aclose()
    assert object_data(boto_s3, bucket, "late") == data


async def test_write_copies_so_caller_may_reuse_its_buffer(client, bucket, boto_s3):
    buf = bytearray(b"a" * 1000)
    async with client.put_object(bucket, "reuse") as writer:
        await writer.write(buf)
        buf[:] = b"b" * 1000
        await writer.write(memoryview(buf)[:10])
    assert object_data(boto_s3, bucket, "reuse") == b"a" * 1000 + b"b" * 10


async def test_write_accepts_any_buffer_protocol_object(client, bucket, boto_s3):
    ints = array.array("i", range(100))
    grid = memoryview(bytearray(range(12))).cast("B", shape=[3, 4])
    async with client.put_object(bucket, "buffers") as writer:
        assert await writer.write(b"ab") == 2
        assert await writer.write(bytearray(b"cd")) == 2
        assert await writer.write(ints) == ints.itemsize * 100
        assert await writer.write(grid) == 12
        assert await writer.write(memoryview(b"0123456789")[::3]) == 4
    expected = b"abcd" + ints.tobytes() + bytes(range(12)) + b"0369"
    assert object_data(boto_s3, bucket, "buffers") == expected


async def test_write_rejects_str(client, bucket):
    writer = client.put_object(bucket, "k")
    with pytest.raises(TypeError):
        await writer.write("text")
    await writer.abort()


async def test_closed_writer_rejects_writes_and_close_is_idempotent(
    client, bucket, boto_s3
):
    writer = client.put_object(bucket, "k")
    await writer.write(b"data")
    await writer.aclose()
    await writer.aclose()
    with pytest.raises(ValueError, match=r"^I/O operation on closed file\.$"):
        await writer.write(b"more")
    await writer.abort()  # after a commit: nothing to undo
    assert object_data(boto_s3, bucket, "k") == b"data"
    assert writer.tell() == 4


async def test_concurrent_acloses_commit_once(client, bucket, boto_s3):
    writer = client.put_object(bucket, "k")
    await writer.write(payload(PART + 5))
    await asyncio.gather(*(writer.aclose() for _ in range(5)))
    assert object_data(boto_s3, bucket, "k") == payload(PART + 5)


@pytest.mark.parametrize("size", [10, PART + 10], ids=["single-put", "multipart"])
async def test_storage_class_is_applied(client, bucket, boto_s3, size):
    async with client.put_object(bucket, "cold", storage_class="STANDARD_IA") as w:
        await w.write(payload(size))
    head = boto_s3.head_object(Bucket=bucket, Key="cold")
    assert head["StorageClass"] == "STANDARD_IA"


async def test_invalid_part_size_fails_on_first_use_naming_the_value(
    endpoint, bucket, boto_s3
):
    c = AsyncS3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(part_size=1024)
    )
    writer = c.put_object(bucket, "k")  # constructing is fine
    with pytest.raises(S3Exception, match=INVALID_PART_SIZE):
        await writer.write(b"x")
    with pytest.raises(S3Exception, match=INVALID_PART_SIZE):
        await writer.aclose()
    await c.aclose()
    assert_no_object(boto_s3, bucket, "k")


def test_put_object_validates_names_without_io():
    c = AsyncS3Client(REGION, endpoint="http://127.0.0.1:9")  # nothing listens there
    assert isinstance(c.put_object("b", "k"), AsyncS3Writer)
    with pytest.raises(ValueError, match="key"):
        c.put_object("b", "")
    with pytest.raises(TypeError, match="bucket"):
        c.put_object(None, "k")  # type: ignore[arg-type]


# -- conditional create ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, PART + 10], ids=["single-put", "multipart"])
async def test_if_none_match_refuses_to_overwrite(client, bucket, boto_s3, put, size):
    put("exists", b"original")
    writer = client.put_object(bucket, "exists", if_none_match=True)
    await writer.write(payload(size))
    with pytest.raises(S3Exception) as info:
        await writer.aclose()
    assert info.value.status == 412
    assert info.value.key == "exists"
    assert object_data(boto_s3, bucket, "exists") == b"original"
    assert pending_uploads(boto_s3, bucket) == []
    with pytest.raises(S3Exception):  # the failure sticks
        await writer.aclose()


@pytest.mark.parametrize("size", [10, PART + 10], ids=["single-put", "multipart"])
async def test_if_none_match_creates_missing_key(client, bucket, boto_s3, size):
    async with client.put_object(bucket, "fresh", if_none_match=True) as writer:
        await writer.write(payload(size))
    assert object_data(boto_s3, bucket, "fresh") == payload(size)


# -- abort paths -------------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("size", [10, 2 * PART + 10], ids=["buffered", "multipart"])
async def test_exception_inside_async_with_aborts_and_keeps_old_object(
    client, bucket, boto_s3, put, size, caplog
):
    caplog.set_level(logging.INFO, logger="s3torch_async")
    put("k", b"old")
    writer = client.put_object(bucket, "k")

    async def write_then_fail() -> None:
        async with writer:
            await writer.write(payload(size))
            raise Boom("stop")

    with pytest.raises(Boom):
        await write_then_fail()
    assert writer.closed
    assert object_data(boto_s3, bucket, "k") == b"old"
    assert pending_uploads(boto_s3, bucket) == []
    assert "Exception occurred before closing stream: Boom: stop" in caplog.text
    with pytest.raises(ValueError, match="closed file"):
        await writer.write(b"x")


async def test_caller_cut_parts_upload_in_order_and_buffers_return_to_its_assembler(
    client, bucket, boto_s3
):
    # The sync writer's path: it owns the assembler, hands full parts to put_part() and the
    # rest to commit(); uploaded parts' buffers come back to that assembler for reuse.
    data = payload(3 * PART + 17, seed=3)
    parts = PartAssembler(PART)
    writer = client.put_object(bucket, "cut", assembler=parts)
    view = memoryview(bytearray(data))  # mutable: copied into the assembler's buffers
    pos = 0
    sent = []
    while pos < len(view):
        if parts.held is not None:
            part = parts.take_held()
            sent.append(part.obj)
            await writer.put_part(part)
        pos = parts.feed(view, pos)
    await writer.commit(parts.drain())
    assert object_data(boto_s3, bucket, "cut") == data
    assert writer.closed
    parts.feed(memoryview(bytearray(b"z" * PART)), 0)
    assert parts.take_held().obj in sent  # a recycled buffer, not a new one
    await writer.commit([])  # idempotent once committed


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
async def test_a_cold_clients_multipart_upload_needs_no_botocore(
    s3_transport, endpoint, bucket, boto_s3, commit
):
    # Create, Complete and Abort go out on the lean transport, like the parts: a client's
    # first multipart upload does not wait for botocore to open (~0.1-0.2 s before part 1).
    if s3_transport == "botocore":
        pytest.skip("the direct start is the lean transport's")
    data = payload(2 * PART + 1)
    async with AsyncS3Client(REGION, endpoint=endpoint, s3client_config=CONFIG) as c:
        writer = c.put_object(bucket, "cold")
        await writer.write(data)
        assert writer.upload_id is not None
        if commit:
            await writer.aclose()
        else:
            await writer.abort()
        assert c._start == "direct"
        assert c._transport._side is None  # type: ignore[attr-defined]
    if commit:
        assert object_data(boto_s3, bucket, "cold") == data
    else:
        assert pending_uploads(boto_s3, bucket) == []
        assert_no_object(boto_s3, bucket, "cold")


async def test_put_part_refuses_a_short_part_and_aborts(client, bucket, boto_s3):
    writer = client.put_object(bucket, "short")
    await writer.put_part(memoryview(bytearray(PART)))
    with pytest.raises(ValueError, match="at least"):
        await writer.put_part(memoryview(bytearray(10)))
    assert writer.closed
    assert pending_uploads(boto_s3, bucket) == []
    assert_no_object(boto_s3, bucket, "short")


async def test_abort_discards_multipart_upload(client, bucket, boto_s3):
    writer = client.put_object(bucket, "k")
    await writer.write(payload(2 * PART + 1))
    assert writer.upload_id is not None
    assert len(pending_uploads(boto_s3, bucket)) == 1
    await writer.abort()
    await writer.abort()
    assert pending_uploads(boto_s3, bucket) == []
    assert_no_object(boto_s3, bucket, "k")


async def test_cancelling_writer_task_aborts_upload(proxy, bucket, boto_s3):
    proxy.add_fault(
        FaultRule(Fault.delay(30), query_contains="partNumber=", times=None)
    )
    started = asyncio.Event()

    async def produce(c: AsyncS3Client) -> None:
        async with c.put_object(bucket, "k") as writer:
            await writer.write(payload(2 * PART + 1))
            started.set()
            await writer.write(b"more")
            await asyncio.sleep(60)

    async with proxied(proxy) as c:
        task = asyncio.ensure_future(produce(c))
        await started.wait()
        for _ in range(2000):  # until a part is on the wire
            if "UploadPart" in operations(proxy):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "AbortMultipartUpload" in operations(proxy)
    assert pending_uploads(boto_s3, bucket) == []
    assert_no_object(boto_s3, bucket, "k")


# -- request shapes and concurrency ------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 100, PART], ids=["empty", "small", "one-part"])
async def test_object_up_to_part_size_is_one_put_object(proxy, bucket, size):
    async with proxied(proxy) as c, c.put_object(bucket, "k") as writer:
        await writer.write(payload(size))
    assert operations(proxy) == ["PutObject"]


async def test_larger_object_is_create_parts_complete_in_order(proxy, bucket, boto_s3):
    data = payload(3 * PART + 7)
    async with proxied(proxy) as c, c.put_object(bucket, "k") as writer:
        for start in range(0, len(data), 1 << 20):
            await writer.write(data[start : start + (1 << 20)])
    ops = operations(proxy)
    assert ops[0] == "CreateMultipartUpload"
    assert ops[1:-1] == ["UploadPart"] * 4
    assert ops[-1] == "CompleteMultipartUpload"
    assert object_data(boto_s3, bucket, "k") == data
    numbers = sorted(
        int(path.split("partNumber=")[1].split("&")[0])
        for _, path, _ in proxy.requests
        if "partNumber=" in path
    )
    assert numbers == [1, 2, 3, 4]
    assert boto_s3.head_object(Bucket=bucket, Key="k")["ETag"].endswith('-4"')


async def test_parts_upload_concurrently(proxy, bucket, boto_s3):
    # The proxy holds the first two UploadParts until both have arrived (or 5 s pass): a
    # sequential uploader never has two at the proxy at once, whatever the load.
    proxy.add_fault(
        FaultRule(Fault.meet(2, 5.0), query_contains="partNumber=", times=2)
    )
    data = payload(4 * PART + 1)
    async with proxied(proxy) as c, c.put_object(bucket, "k") as writer:
        await writer.write(data)
    assert proxy.most_held >= 2
    assert object_data(boto_s3, bucket, "k") == data


@pytest.mark.parametrize(("gbps", "limit"), [(0.5, 2), (1, 3)])
async def test_in_flight_parts_are_bounded_by_the_upload_concurrency(
    proxy, bucket, boto_s3, gbps, limit
):
    # The proxy holds the first limit+1 UploadParts until that many wait together (or 1.5 s
    # pass): with `limit` parts in flight at most, `limit` are ever held at once, whatever
    # the load; an unbounded writer would bring one more while the first ones wait.
    config = S3ClientConfig(part_size=PART, max_attempts=1, throughput_target_gbps=gbps)
    assert upload_concurrency_for(gbps, PART) == limit
    proxy.add_fault(
        FaultRule(
            Fault.meet(limit + 1, 1.5), query_contains="partNumber=", times=limit + 1
        )
    )
    data = payload((limit + 3) * PART + 1)
    async with proxied(proxy, config) as c:
        assert c.max_concurrency == 2  # reads: uploads keep a wider window
        async with c.put_object(bucket, "k") as writer:
            for start in range(0, len(data), PART // 2):
                await writer.write(data[start : start + PART // 2])
    assert proxy.most_held == limit
    assert object_data(boto_s3, bucket, "k") == data


async def test_slow_parts_widen_the_window_up_to_its_reach(proxy, bucket, boto_s3):
    # Every UploadPart is held until reach+1 of them wait together (never) or 1 s passes: the
    # parts take far longer than planned, so after the first ones finish the writer keeps
    # more in flight than planned (2), but never more than the reach (4). By events: how
    # many the proxy ever held at once.
    config = S3ClientConfig(part_size=PART, max_attempts=1, throughput_target_gbps=0.5)
    planned, reach = upload_concurrency_for(0.5, PART), upload_window_reach(0.5, PART)
    assert (planned, reach) == (2, 4)
    proxy.add_fault(
        FaultRule(Fault.meet(reach + 1, 1.0), query_contains="partNumber=", times=100)
    )
    data = payload(6 * PART + 1)
    async with proxied(proxy, config) as c, c.put_object(bucket, "k") as writer:
        for start in range(0, len(data), PART // 2):
            await writer.write(data[start : start + PART // 2])
    assert proxy.most_held == reach
    assert object_data(boto_s3, bucket, "k") == data
