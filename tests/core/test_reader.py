"""AsyncS3Reader against the moto server (requests counted by a pass-through FaultProxy)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import io
import os
import sys
import threading

import pytest
import pytest_asyncio

from s3torch_async import AsyncS3Client, ObjectInfo, S3ClientConfig, S3Exception
from s3torch_async._core import reader as reader_module
from s3torch_async._core._planning import MIN_PIECE_DIVISOR, read_reach
from s3torch_async._core.reader import (
    PREFAULT_ENV,
    PROBE_DIVISOR,
    AsyncS3Reader,
    alloc_bytes,
    finish_bytes,
)
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"
PART = 64 * 1024


@pytest.fixture(scope="module")
def shared_proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def proxy(shared_proxy):
    """A pass-through proxy whose request log starts empty for each test."""
    shared_proxy.clear()
    return shared_proxy


# One event loop and one client for the module: building a client costs more than most tests.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(shared_proxy):
    async with AsyncS3Client(
        REGION,
        endpoint=shared_proxy.url,
        s3client_config=S3ClientConfig(max_attempts=1),
    ) as c:
        yield c


def _gets(proxy, key):
    return [
        h for m, p, h in proxy.requests if m == "GET" and p.split("?")[0].endswith(key)
    ]


def _heads(proxy, key):
    return [h for m, p, h in proxy.requests if m == "HEAD" and p.endswith(key)]


def _range(headers):
    value = {k.lower(): v for k, v in headers.items()}["range"]
    start, end = value.removeprefix("bytes=").split("-")
    return int(start), int(end) + 1


def _info(key, size):
    return ObjectInfo(key=key, etag="", size=size, last_modified=0)


def test_get_object_sends_no_request(proxy):
    c = AsyncS3Client(REGION, endpoint=proxy.url)
    reader = c.get_object("bucket", "key")
    assert isinstance(reader, AsyncS3Reader)
    assert (reader.bucket, reader.key, reader.tell()) == ("bucket", "key", 0)
    assert reader.known_size is None
    assert proxy.requests == []


@module_loop
@pytest.mark.parametrize("with_info", [False, True])
async def test_whole_read_of_n_part_object_sends_ranged_gets_covering_it_once(
    client, proxy, bucket, put, with_info
):
    data = os.urandom(4 * PART + 100)  # 5 parts
    put("obj", data)
    info = _info("obj", len(data)) if with_info else None
    reader = AsyncS3Reader(client, bucket, "obj", object_info=info, part_size=PART)
    assert await reader.read() == data
    gets = _gets(proxy, "obj")
    spans = sorted(_range(h) for h in gets)
    # The first GET is one part; the rest is cut into parts, or into rounds of equal
    # shorter GETs when the measured width leaves a last round partly idle (round_piece).
    assert spans[0] == (0, PART)
    assert [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]  # each byte once
    assert spans[-1][1] == len(data)
    assert all(PART // MIN_PIECE_DIVISOR <= b - a <= PART for a, b in spans[:-1])
    # One HEAD, for the full-object CRC32 the whole read is checked against.
    heads = _heads(proxy, "obj")
    assert [h.get("x-amz-checksum-mode") for h in heads] == ["ENABLED"]
    assert reader.tell() == len(data)
    assert await reader.read() == b""


@module_loop
async def test_small_object_is_one_get(client, proxy, bucket, put):
    put("small", b"hello world")
    reader = client.get_object(bucket, "small")
    assert await reader.read() == b"hello world"
    assert len(_gets(proxy, "small")) == 1


@module_loop
async def test_gets_after_the_first_are_pinned_with_if_match(
    client, proxy, bucket, put
):
    data = os.urandom(3 * PART)
    put("obj", data)
    reader = AsyncS3Reader(client, bucket, "obj", part_size=PART)
    assert await reader.read() == data
    gets = [{k.lower(): v for k, v in h.items()} for h in _gets(proxy, "obj")]
    assert "if-match" not in gets[0]
    assert all(g["if-match"] == reader.etag for g in gets[1:])
    assert reader.etag
    assert reader.etag.startswith('"')


@module_loop
async def test_overwrite_mid_read_raises_precondition_failed(
    client, bucket, put, boto_s3
):
    put("obj", b"a" * (3 * PART))
    reader = AsyncS3Reader(client, bucket, "obj", part_size=PART)
    assert await reader.read(10) == b"a" * 10
    boto_s3.put_object(Bucket=bucket, Key="obj", Body=b"b" * (3 * PART))
    reader.seek(2 * PART)
    with pytest.raises(S3Exception) as info:
        await reader.read(10)
    assert info.value.status == 412


@module_loop
async def test_read_streams_in_order_with_read_ahead(client, proxy, bucket, put):
    data = os.urandom(6 * PART + 7)
    put("obj", data)
    reader = AsyncS3Reader(client, bucket, "obj", part_size=PART)
    chunks = [chunk async for chunk in reader]
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [PART] * 6 + [7]
    # every part fetched exactly once
    assert sorted(_range(h) for h in _gets(proxy, "obj")) == [
        (i * PART, min((i + 1) * PART, len(data))) for i in range(7)
    ]


@module_loop
async def test_small_reads_are_served_from_the_current_part(client, proxy, bucket, put):
    data = os.urandom(PART)
    put("obj", data)
    reader = AsyncS3Reader(client, bucket, "obj", part_size=PART)
    got = b"".join([await reader.read(100) for _ in range(20)])
    assert got == data[:2000]
    assert len(_gets(proxy, "obj")) == 1


@module_loop
async def test_seek_and_tell_clamp_to_known_size(client, bucket, put):
    put("obj", b"0123456789")
    reader = client.get_object(bucket, "obj", object_info=_info("obj", 10))
    assert reader.seek(4) == 4
    assert await reader.read(3) == b"456"
    assert reader.seek(-2, io.SEEK_CUR) == 5
    assert reader.seek(-3, io.SEEK_END) == 7
    assert await reader.read() == b"789"
    assert reader.seek(100) == 10
    assert await reader.read() == b""
    with pytest.raises(ValueError, match="negative seek value -1"):
        reader.seek(-11, io.SEEK_END)


@module_loop
async def test_seek_end_without_known_size_is_an_error_until_size(
    client, proxy, bucket, put
):
    put("obj", b"0123456789")
    reader = client.get_object(bucket, "obj")
    with pytest.raises(ValueError, match="await size"):
        reader.seek(0, io.SEEK_END)
    assert await reader.size() == 10
    assert len(_heads(proxy, "obj")) == 1
    assert reader.seek(-4, io.SEEK_END) == 6
    assert await reader.read() == b"6789"


@module_loop
async def test_read_past_end_with_unknown_size_returns_empty(client, bucket, put):
    put("obj", b"0123456789")
    reader = client.get_object(bucket, "obj")
    assert reader.seek(50) == 50  # size unknown: kept as is
    assert await reader.read(5) == b""
    assert reader.tell() == 10  # clamped once the size is known


@module_loop
async def test_empty_object(client, bucket, put):
    put("empty", b"")
    reader = client.get_object(bucket, "empty")
    assert await reader.read() == b""
    assert await reader.size() == 0
    assert [c async for c in client.get_object(bucket, "empty")] == []


@module_loop
async def test_readinto_large_buffer_goes_straight_to_caller(
    client, proxy, bucket, put
):
    data = os.urandom(5 * PART)
    put("obj", data)
    reader = AsyncS3Reader(
        client, bucket, "obj", object_info=_info("obj", len(data)), part_size=PART
    )
    reader.seek(10)
    buf = bytearray(4 * PART)
    assert await reader.readinto(buf) == len(buf)
    assert bytes(buf) == data[10 : 10 + len(buf)]
    assert await reader.readinto(memoryview(buf)) == 5 * PART - 10 - 4 * PART
    assert reader.tell() == 5 * PART
    with pytest.raises(TypeError):
        await reader.readinto(b"readonly")


@module_loop
async def test_missing_key_raises_reference_message(client, bucket):
    reader = client.get_object(bucket, "missing")
    with pytest.raises(
        S3Exception, match=r"^Service error: The key does not exist(\n|$)"
    ):
        await reader.read()


@module_loop
async def test_iter_ranges_fetches_spans_in_order(client, proxy, bucket, put):
    data = os.urandom(4 * PART)
    put("obj", data)
    reader = AsyncS3Reader(client, bucket, "obj", part_size=PART)
    spans = [(10, 20), (PART + 5, 3 * PART + 1)]
    pieces = [(s, bytes(d)) async for s, d in reader.iter_ranges(spans)]
    # the second span is longer than a part: two pieces
    assert [s for s, _ in pieces] == [10, PART + 5, 2 * PART + 5]
    assert pieces[0][1] == data[10:20]
    assert b"".join(d for _, d in pieces[1:]) == data[PART + 5 : 3 * PART + 1]
    assert len(_gets(proxy, "obj")) == 3


@module_loop
async def test_concurrent_parts_bounded_by_twice_max_concurrency(
    bucket, put, moto_endpoint
):
    # Each GET waits 10 ms for 1 KiB: far below the target, and every wider step pays, so
    # the read widens past max_concurrency (2) up to its bound, twice that.
    data = os.urandom(40 * 1024)
    put("obj", data)
    in_flight = peak = 0
    config = S3ClientConfig(max_attempts=1, throughput_target_gbps=0.1)  # -> 2 requests
    async with AsyncS3Client(
        REGION, endpoint=moto_endpoint, s3client_config=config
    ) as c:
        original = c.get_range_into

        async def counting(*args, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.01)
                return await original(*args, **kwargs)
            finally:
                in_flight -= 1

        c.get_range_into = counting  # type: ignore[method-assign]
        reader = AsyncS3Reader(
            c, bucket, "obj", object_info=_info("obj", len(data)), part_size=1024
        )
        assert await reader.read() == data
    assert c.max_concurrency == 2
    assert peak == read_reach(2) == 4


@module_loop
async def test_a_read_whose_first_stream_is_slow_widens_to_its_reach_at_once(
    proxy, bucket, put
):
    # The first GET takes 0.2 s to start: one stream delivers < 0.1 MB/s, far below the
    # 2 Gbit/s target, so more streams than max_concurrency (4) would be needed: the read
    # widens at once to its bound, twice that (8). The next eight GETs are held until all
    # eight wait together: they meet only if 8 are in flight.
    data = os.urandom(20 * PART)
    put("slow", data)
    proxy.add_fault(
        FaultRule(Fault.delay(0.2), method="GET", header_contains=("Range", "bytes=0-"))
    )
    met = proxy.add_fault(FaultRule(Fault.meet(8, 10.0), method="GET", times=8))
    config = S3ClientConfig(max_attempts=1, throughput_target_gbps=2.0)
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config) as c:
        assert c.max_concurrency == 4
        reader = AsyncS3Reader(
            c, bucket, "slow", object_info=_info("slow", len(data)), part_size=PART
        )
        assert await reader.read() == data
        width = reader._width  # what the reader decided
        assert width is not None
        assert [w for w, _ in width.history][:2] == [1, read_reach(4)]
    assert met.expired
    assert proxy.most_held == 8
    # A short probe first (its rate decides the width), then the parts; every byte
    # fetched once.
    spans = sorted(_range(h) for h in _gets(proxy, "slow"))
    assert spans[0] == (0, PART // PROBE_DIVISOR)
    assert [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]
    assert spans[-1][1] == len(data)


@module_loop
async def test_use_after_aclose_raises(client, bucket, put):
    put("obj", b"abc")
    async with client.get_object(bucket, "obj") as reader:
        assert await reader.read(1) == b"a"
    assert reader.closed
    with pytest.raises(ValueError, match=r"I/O operation on closed file\."):
        await reader.read()


def _bytes_data_address(data: bytes) -> int:
    # CPython: a bytes object's data starts at ob_sval, its basic size minus the NUL byte.
    return id(data) + bytes.__basicsize__ - 1


def test_alloc_bytes_builds_the_result_in_place():
    # Zero copy, checked by address (process-wide memory peaks vary with other threads):
    # the bytes returned are the very memory the view wrote into.
    size = 32 * 1024 * 1024
    bio, view = alloc_bytes(size)
    written_at = ctypes.addressof(ctypes.c_char.from_buffer(view))
    view[:4] = b"abcd"
    view[-4:] = b"wxyz"
    data = finish_bytes(bio, view, size)
    assert type(data) is bytes
    assert len(data) == size
    assert data[:4] == b"abcd"
    assert data[-4:] == b"wxyz"
    assert _bytes_data_address(data) == written_at  # one copy, not two


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE is Linux's"
)
@pytest.mark.parametrize("enabled", ["1", "0"])
def test_large_results_are_prefaulted_by_a_worker_thread(monkeypatch, enabled):
    # The pages of a large result are made resident before anything writes to them (so the
    # socket receive does not fault on each), unless turned off; the result is unchanged.
    monkeypatch.setenv(PREFAULT_ENV, enabled)
    size = 64 * 1024 * 1024
    before = _resident_bytes()
    bio, view = alloc_bytes(size)
    for thread in threading.enumerate():
        if thread.name == "s3torch-async-prefault":
            thread.join(30)
    grown = _resident_bytes() - before
    view[-3:] = b"end"
    data = finish_bytes(bio, view, size)
    assert len(data) == size
    assert data[-3:] == b"end"
    assert data[:8] == bytes(8)
    if enabled == "0":
        assert grown < size // 4
    elif not reader_module._prefault_ok:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)")
    else:
        assert grown > size * 3 // 4


def test_finish_bytes_truncates_short_results():
    bio, view = alloc_bytes(100)
    view[:3] = b"xyz"
    assert finish_bytes(bio, view, 3) == b"xyz"
    bio, view = alloc_bytes(10)
    assert finish_bytes(bio, view, 0) == b""


@module_loop
async def test_large_read_copies_the_retained_part_instead_of_fetching_it(
    client, proxy, bucket, put
):
    data = os.urandom(6 * PART)
    put("obj", data)
    reader = AsyncS3Reader(
        client, bucket, "obj", object_info=_info("obj", len(data)), part_size=PART
    )
    reader.seek(2 * PART + 10)
    assert await reader.read(5) == data[2 * PART + 10 : 2 * PART + 15]
    assert sorted(_range(h) for h in _gets(proxy, "obj")) == [
        (2 * PART + 10, 3 * PART + 10)
    ]
    proxy.clear()
    reader.seek(0)
    assert await reader.read() == data
    spans = sorted(_range(h) for h in _gets(proxy, "obj"))
    # Every byte but the retained part's fetched once, in GETs of at most a part.
    retained = (2 * PART + 10, 3 * PART + 10)
    assert all(b <= retained[0] or a >= retained[1] for a, b in spans)
    covered = sorted([*spans, retained])
    assert covered[0][0] == 0
    assert [a for a, _ in covered[1:]] == [b for _, b in covered[:-1]]
    assert covered[-1][1] == len(data)
    assert all(b - a <= PART for a, b in spans)


@module_loop
async def test_no_view_of_the_callers_buffer_outlives_a_read(client, bucket, put):
    # A bytearray cannot be resized while any memoryview of it is alive. A view kept by a
    # reference cycle (an exception's traceback holding the frames) stays alive until the
    # garbage collector runs; with BytesIO results, that collection then fails in BytesIO's
    # finalizer ("BufferError: Existing exports of data"). gc is off so that such a view
    # surely survives until the resize below; every path must release its views itself.
    data = os.urandom(3 * PART + 7)
    put("obj", data)
    gc.disable()
    try:
        buf = bytearray(PART)
        with pytest.raises(S3Exception):
            await client.get_range_into(bucket, "missing", 0, buf)
        buf.extend(b"x")  # BufferError if a view survived
        with pytest.raises(S3Exception):  # 416: the range starts past the end
            await client.get_range_into(bucket, "obj", len(data) + 5, buf)
        buf.extend(b"x")
        reader = client.get_object(bucket, "missing")
        with pytest.raises(S3Exception):
            await reader.readinto(buf)
        buf.extend(b"x")
        reader = AsyncS3Reader(client, bucket, "obj", part_size=PART)
        big = bytearray(len(data) + 10)
        assert await reader.readinto(big) == len(data)
        assert bytes(big[: len(data)]) == data
        big.extend(b"x")
        put("empty", b"")
        reader = AsyncS3Reader(client, bucket, "empty", part_size=PART)
        assert await reader.readinto(buf) == 0
        buf.extend(b"x")
    finally:
        gc.enable()
