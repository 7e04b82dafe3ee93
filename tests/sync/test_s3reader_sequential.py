"""SequentialS3Reader: request counts (through a pass-through FaultProxy), buffering, memory."""

from __future__ import annotations

import io
import logging
import os
import traceback

import pytest

from s3torch_async import ObjectInfo, S3ClientConfig, S3Exception
from s3torch_async._runner import LoopRunner, get_runner
from s3torch_async._s3client import S3Client
from s3torch_async._s3client._s3client import _Constant, _GetStream, _HeadObject
from s3torch_async.s3reader import S3ReaderConstructor, SequentialS3Reader
from tests._faultproxy import FaultProxy

REGION = "us-east-1"
PART = 32 * 1024


@pytest.fixture(scope="module")
def shared_proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def proxy(shared_proxy):
    """A pass-through proxy whose request log starts empty for each test."""
    shared_proxy.clear()
    return shared_proxy


@pytest.fixture
def client(proxy):
    return S3Client(
        REGION, endpoint=proxy.url, s3client_config=S3ClientConfig(max_attempts=1)
    )


def _checksum_heads_only(proxy, key):
    """The number of HEADs for ``key``, all of them asking for the object's checksum."""
    heads = _requests(proxy, "HEAD", key)
    assert all(h.get("x-amz-checksum-mode") == "ENABLED" for h in heads)
    return len(heads)


def _requests(proxy, method, key):
    return [
        h
        for m, p, h in proxy.requests
        if m == method and p.split("?")[0].endswith("/" + key)
    ]


def _ranges(proxy, key):
    out = []
    for headers in _requests(proxy, "GET", key):
        value = {k.lower(): v for k, v in headers.items()}["range"]
        start, end = value.removeprefix("bytes=").split("-")
        out.append((int(start), int(end) + 1))
    return sorted(out)


def _reader(client, bucket, key, *, size=None, part_size=PART):
    info = (
        _Constant(ObjectInfo(key, "", size, 0))
        if size is not None
        else _HeadObject(client, bucket, key)
    )
    stream = _GetStream(client, bucket, key, part_size=part_size)
    return SequentialS3Reader(bucket, key, info, stream)


def test_get_object_sends_nothing_until_the_first_read(client, proxy, bucket, put):
    put("obj", b"hello")
    reader = client.get_object(bucket, "obj")
    assert isinstance(reader, SequentialS3Reader)
    assert proxy.requests == []
    assert reader.read(1) == b"h"
    assert len(_requests(proxy, "GET", "obj")) == 1


def test_get_object_logs_at_debug(client, bucket, caplog):
    with caplog.at_level(logging.DEBUG, logger="s3torch_async"):
        client.get_object(bucket, "k")
        client.get_object(bucket, "k", object_info=ObjectInfo("k", "", 1, 0))
    assert f"GetObject s3://{bucket}/k, object_info is None=True" in caplog.text
    assert f"GetObject s3://{bucket}/k, object_info is None=False" in caplog.text


@pytest.mark.parametrize(
    "constructor",
    [S3ReaderConstructor.sequential(), S3ReaderConstructor.range_based(100)],
    ids=["sequential", "range_based"],
)
def test_reader_from_listing_never_sends_head(client, proxy, bucket, put, constructor):
    data = os.urandom(3000)
    put("obj", data)
    info = ObjectInfo("obj", "", len(data), 0)
    reader = client.get_object(
        bucket, "obj", object_info=info, reader_constructor=constructor
    )
    assert reader.seek(0, io.SEEK_END) == len(data)
    assert reader.seek(-5, io.SEEK_END) == len(data) - 5
    assert reader.read() == data[-5:]
    assert reader.seek(5000) == len(data)
    reader.seek(3)
    assert reader.read(2) == data[3:5]
    assert _requests(proxy, "HEAD", "obj") == []


def test_seek_end_without_object_info_sends_one_head_and_no_get(
    client, proxy, bucket, put, caplog
):
    put("obj", b"0123456789")
    reader = client.get_object(bucket, "obj")
    with caplog.at_level(logging.DEBUG, logger="s3torch_async"):
        assert reader.seek(0, io.SEEK_END) == 10
        assert reader.seek(-3, io.SEEK_END) == 7
    assert len(_requests(proxy, "HEAD", "obj")) == 1
    assert _requests(proxy, "GET", "obj") == []
    assert f"HeadObject s3://{bucket}/obj" in caplog.text


@pytest.mark.parametrize("with_info", [False, True])
def test_whole_read_sends_one_ranged_get_per_part(
    client, proxy, bucket, put, with_info
):
    data = os.urandom(5 * PART + 17)  # 6 parts
    put("obj", data)
    reader = _reader(client, bucket, "obj", size=len(data) if with_info else None)
    result = reader.read()
    assert result == data
    assert type(result) is bytes
    assert _ranges(proxy, "obj") == [
        (i * PART, min((i + 1) * PART, len(data))) for i in range(6)
    ]
    # One HEAD, for the full-object CRC32 the whole read is checked against (never for the
    # size: that comes with the first GET).
    assert _checksum_heads_only(proxy, "obj") == 1
    # the result is kept (no copy): backward seeks cost nothing
    reader.seek(PART + 3)
    assert reader.read(10) == data[PART + 3 : PART + 13]
    reader.seek(0)
    assert reader.read() is result
    assert len(_requests(proxy, "GET", "obj")) == 6


def test_gets_after_the_first_carry_if_match(client, proxy, bucket, put):
    put("obj", os.urandom(3 * PART))
    _reader(client, bucket, "obj").read()
    gets = [
        {k.lower(): v for k, v in h.items()} for h in _requests(proxy, "GET", "obj")
    ]
    etag = gets[1]["if-match"]
    assert etag.startswith('"')
    assert all(g.get("if-match") == etag for g in gets[1:])


def _live_views_in(tb) -> list[memoryview]:
    """The unreleased memoryviews the traceback's frames still hold in their locals."""
    live = []
    for frame, _ in traceback.walk_tb(tb):
        for value in frame.f_locals.values():
            if isinstance(value, memoryview):
                try:
                    value.nbytes  # noqa: B018 - raises ValueError once released
                except ValueError:
                    continue
                live.append(value)
    return live


@pytest.mark.parametrize("sized", [True, False], ids=["listed", "unsized"])
def test_a_failed_read_leaves_no_view_of_its_result_in_the_traceback(
    client, bucket, put, sized
):
    # A kept exception (pytest.raises, a logged error) must not keep exports of the result's
    # buffer alive: collected later, the BytesIO raised BufferError (3.13) or crashed the
    # collecting thread (3.12.1).
    old = os.urandom(4 * PART)
    put("obj", old)
    reader = _reader(client, bucket, "obj", size=len(old) if sized else None)
    assert reader.read(PART) == old[:PART]
    put("obj", os.urandom(4 * PART))  # the next GET fails with 412
    reader.seek(2 * PART)
    with pytest.raises(S3Exception) as info:
        reader.read(PART)
    assert info.value.status == 412
    assert _live_views_in(info.value.__traceback__) == []


@pytest.mark.parametrize("sized", [True, False], ids=["listed", "unsized"])
def test_reader_rebuilt_on_a_new_loop_stays_pinned_to_the_version_it_read(
    client, bucket, put, sized
):
    # After the runner restarts (what a fork does), the reader's core is rebuilt on the new
    # loop; it shares the reader's ObjectVersion, so it knows the size and keeps the ETag.
    old = os.urandom(4 * PART)
    put("obj", old)
    reader = _reader(client, bucket, "obj", size=len(old) if sized else None)
    assert reader.read(PART) == old[:PART]
    assert reader._size == len(old)
    put("obj", os.urandom(4 * PART))
    get_runner().close()
    reader.seek(2 * PART)
    with pytest.raises(S3Exception) as info:
        reader.read(PART)
    assert info.value.status == 412


def test_small_reads_cross_threads_once_per_part(client, bucket, put, monkeypatch):
    data = os.urandom(4 * PART)
    put("obj", data)
    crossings = 0
    run = LoopRunner.run

    def counting(*args, **kwargs):
        nonlocal crossings
        crossings += 1
        return run(*args, **kwargs)

    monkeypatch.setattr(LoopRunner, "run", counting)
    reader = _reader(client, bucket, "obj", size=len(data))
    got = bytearray()
    reads = 0
    while chunk := reader.read(100):
        got += chunk
        reads += 1
    assert bytes(got) == data
    assert reads > 1000
    assert crossings <= 5  # one per part, not one per read


def test_front_to_back_streaming_keeps_one_part_and_fetches_each_once(
    client, proxy, bucket, put
):
    data = os.urandom(8 * PART)
    put("obj", data)
    reader = _reader(client, bucket, "obj")
    got = bytearray()
    buf = bytearray(1000)
    while n := reader.readinto(buf):
        got += buf[:n]
        assert reader._chunk is not None
        assert len(reader._chunk) <= PART  # no growing buffer
    assert bytes(got) == data
    assert _ranges(proxy, "obj") == [(i * PART, (i + 1) * PART) for i in range(8)]


def test_backward_seek_after_streaming_refetches_from_the_seek_position(
    client, proxy, bucket, put
):
    data = os.urandom(6 * PART)
    put("obj", data)
    reader = _reader(client, bucket, "obj")
    while reader.read(PART // 2):
        pass
    before = _ranges(proxy, "obj")
    assert before == [(i * PART, (i + 1) * PART) for i in range(6)]
    reader.seek(10)
    assert reader.read(5) == data[10:15]
    after = _ranges(proxy, "obj")
    assert sorted(set(after) - set(before)) == [(10, PART + 10)]  # one part, not all
    assert reader.read(PART) == data[15 : 15 + PART]
    new = sorted(set(_ranges(proxy, "obj")) - set(before))
    # reading on from there streams the following parts (with read-ahead)
    assert new[:2] == [(10, PART + 10), (PART + 10, 2 * PART + 10)]
    assert len(new) <= 3


def test_zip_reader_pattern_loads_the_object_once(client, proxy, bucket, put):
    """torch.load: magic bytes, seek to the end, then random reads."""
    data = os.urandom(6 * PART + 5)
    put("obj", data)
    reader = _reader(client, bucket, "obj")
    assert reader.read(4) == data[:4]
    reader.seek(0)
    size = reader.seek(0, io.SEEK_END)
    assert size == len(data)
    for offset, n in [(size - 22, 22), (3 * PART, 100), (PART - 5, 10), (7, 50)]:
        reader.seek(offset)
        assert reader.read(n) == data[offset : offset + n]
    assert _ranges(proxy, "obj") == [
        (i * PART, min((i + 1) * PART, len(data))) for i in range(7)
    ]
    assert _checksum_heads_only(proxy, "obj") == 1  # the whole load is checked


def test_large_read_in_the_middle_goes_straight_to_the_result(
    client, proxy, bucket, put
):
    data = os.urandom(8 * PART)
    put("obj", data)
    reader = _reader(client, bucket, "obj", size=len(data))
    reader.seek(PART + 1)
    assert reader.read(5 * PART) == data[PART + 1 : 6 * PART + 1]
    # [PART+1, 6*PART+1) fetched in part-sized pieces, nothing twice
    ranges = _ranges(proxy, "obj")
    assert len(ranges) == 5
    assert ranges[0][0] == PART + 1
    assert ranges[-1][1] == 6 * PART + 1


def test_prefetch_starts_the_first_part(client, proxy, bucket, put):
    data = os.urandom(PART)
    put("obj", data)
    reader = _reader(client, bucket, "obj", size=len(data))
    reader.prefetch()
    reader.prefetch()  # idempotent
    assert reader.read(10) == data[:10]
    assert len(_requests(proxy, "GET", "obj")) == 1


def test_readline_serves_lines_from_the_current_part(client, proxy, bucket, put):
    lines = [b"line %d\n" % i for i in range(5000)]
    put("text", b"".join(lines))
    reader = _reader(client, bucket, "text")
    assert list(reader) == lines
    assert len(_requests(proxy, "GET", "text")) <= len(b"".join(lines)) // PART + 1


def test_object_info_is_requested_at_most_once(client, bucket, put):
    put("obj", b"0123456789")
    calls = []

    def get_object_info():
        calls.append(1)
        return client.head_object(bucket, "obj")

    reader = SequentialS3Reader(
        bucket, "obj", get_object_info, _GetStream(client, bucket, "obj")
    )
    reader.seek(0, io.SEEK_END)
    reader.seek(-1, io.SEEK_END)
    reader.seek(0)
    assert reader.read() == b"0123456789"
    assert len(calls) == 1


def test_empty_object_reads_empty(client, bucket, put):
    put("empty", b"")
    reader = client.get_object(bucket, "empty")
    assert reader.read(10) == b""
    assert reader.read() == b""
    assert reader.seek(5) == 0
    assert reader.readinto(bytearray(3)) == 0
