"""RangedS3Reader: the adaptive buffer's requests (reference §2.2), laziness, pickling."""

from __future__ import annotations

import io
import os
import pickle

import pytest

from s3torch_async import ObjectInfo, S3ClientConfig
from s3torch_async._s3client import S3Client
from s3torch_async.s3reader import RangedS3Reader, S3ReaderConstructor
from s3torch_async.s3reader.ranged import DEFAULT_BUFFER_SIZE
from tests._faultproxy import FaultProxy

REGION = "us-east-1"
DATA = os.urandom(1000)


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


def _ranges(proxy, key="obj"):
    out = []
    for method, path, headers in proxy.requests:
        if method == "GET" and path.split("?")[0].endswith("/" + key):
            value = {k.lower(): v for k, v in headers.items()}["range"]
            start, end = value.removeprefix("bytes=").split("-")
            out.append((int(start), int(end) + 1))
    return out


def _heads(proxy, key="obj"):
    return [p for m, p, _ in proxy.requests if m == "HEAD" and p.endswith("/" + key)]


def _open(client, bucket, *, buffer_size=100, with_info=True, key="obj"):
    info = ObjectInfo(key, "", len(DATA), 0) if with_info else None
    return client.get_object(
        bucket,
        key,
        object_info=info,
        reader_constructor=S3ReaderConstructor.range_based(buffer_size=buffer_size),
    )


@pytest.fixture
def primed(client, proxy, bucket, put):
    """A 100-byte-buffer reader whose buffer holds [100, 200) after reading [100, 110)."""
    put("obj", DATA)
    reader = _open(client, bucket)
    reader.seek(100)
    assert reader.read(10) == DATA[100:110]
    assert _ranges(proxy) == [(100, 200)]
    proxy.clear()
    return reader


@pytest.mark.parametrize(
    ("start", "end", "requested"),
    [
        (120, 180, []),  # inside the buffer
        (150, 200, []),
        (100, 200, []),  # exact match
        (150, 500, [(200, 500)]),  # forward overlap, then a large read
        (199, 201, [(200, 300)]),  # forward overlap, then a small read reloads
        (220, 230, [(220, 320)]),  # past the buffer: reload from the read position
        (200, 300, [(200, 300)]),  # starts at buffer end: no overlap, large
        (50, 150, [(50, 150)]),  # starts before the buffer: no backward reuse
        (50, 250, [(50, 250)]),
        (0, 50, [(0, 100)]),
        (0, 100, [(0, 100)]),
        (950, 990, [(950, 1000)]),  # the buffer never reads past the end
    ],
)
def test_buffer_requests_follow_the_reference_algorithm(
    primed, proxy, start, end, requested
):
    primed.seek(start)
    assert primed.read(end - start) == DATA[start:end]
    assert _ranges(proxy) == requested
    assert primed.tell() == end
    assert primed._buffer_end <= len(DATA)


def test_read_just_below_buffer_size_loads_the_buffer(client, proxy, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket)
    assert reader.read(99) == DATA[:99]
    assert reader.read(1) == DATA[99:100]
    assert _ranges(proxy) == [(0, 100)]
    assert reader.read(100) == DATA[100:200]  # == buffer_size: bypasses the buffer
    assert reader.read(150) == DATA[200:350]
    assert _ranges(proxy) == [(0, 100), (100, 200), (200, 350)]
    assert (reader._buffer_start, reader._buffer_end) == (0, 100)


def test_small_sequential_reads_share_one_request(client, proxy, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket)
    assert b"".join(reader.read(10) for _ in range(10)) == DATA[:100]
    assert _ranges(proxy) == [(0, 100)]


def test_unbuffered_reads_request_exactly_what_is_read(client, proxy, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket, buffer_size=0)
    assert reader.read(5) == DATA[:5]
    buf = bytearray(7)
    reader.seek(500)
    assert reader.readinto(buf) == 7
    assert bytes(buf) == DATA[500:507]
    assert _ranges(proxy) == [(0, 5), (500, 507)]
    assert reader._buffer is None


def test_buffer_is_allocated_lazily(client, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket, buffer_size=None)
    assert reader._buffer_size == DEFAULT_BUFFER_SIZE == 8 * 1024 * 1024
    assert reader._buffer is None
    reader.seek(10)
    assert reader._buffer is None
    assert reader.read(5) == DATA[10:15]
    assert reader._buffer is not None
    assert len(reader._buffer) == DEFAULT_BUFFER_SIZE


def test_read_zero_and_seek_send_no_request(client, proxy, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket, with_info=False)
    assert reader.read(0) == b""
    assert reader.seek(0) == 0
    assert reader.seek(0, io.SEEK_CUR) == 0
    assert proxy.requests == []


def test_first_read_learns_the_size_without_head(client, proxy, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket, with_info=False)
    assert reader.read(10) == DATA[:10]
    assert reader.seek(5000) == len(DATA)  # size known from the GET's Content-Range
    assert _heads(proxy) == []
    reader2 = _open(client, bucket, with_info=False, buffer_size=0)
    buf = bytearray(2000)
    assert reader2.readinto(buf) == len(DATA)
    assert bytes(buf[: len(DATA)]) == DATA
    # That GET held the whole object: its full-object CRC32 is then fetched to check it (the
    # reference would have sent a HEAD for the size before the GET).
    assert len(_heads(proxy)) == 1


def test_large_read_of_small_object_leaves_the_buffer_as_a_sized_read_would(
    client, proxy, bucket, put
):
    put("obj", DATA)
    reader = _open(client, bucket, with_info=False, buffer_size=2000)
    assert reader.read(5000) == DATA  # planned unbuffered: the size was unknown
    reader.seek(10)
    assert reader.read(10) == DATA[10:20]  # served from the buffer
    assert _ranges(proxy) == [(0, 5000)]


def test_seek_beyond_known_data_without_info_sends_one_head(client, proxy, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket, with_info=False)
    assert reader.seek(300) == 300
    assert reader.seek(-10, io.SEEK_END) == len(DATA) - 10
    assert len(_heads(proxy)) == 1
    assert reader.read() == DATA[-10:]


def test_reader_with_buffer_pickles_after_reading(client, bucket, put):
    put("obj", DATA)
    reader = _open(client, bucket)
    reader.seek(40)
    assert reader.read(10) == DATA[40:50]
    clone = pickle.loads(pickle.dumps(reader))
    assert isinstance(clone, RangedS3Reader)
    assert clone._buffer is None
    assert clone.tell() == 50
    assert clone.read(10) == DATA[50:60]
    assert reader.read(10) == DATA[50:60]
