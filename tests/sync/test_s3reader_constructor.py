"""S3ReaderConstructor, the protocols, S3Client.get_object and prefetched readers."""

from __future__ import annotations

import io
import pickle
import sys
from functools import partial

import pytest

import s3torch_async.s3reader as s3reader_pkg
from s3torch_async import ObjectInfo, S3ClientConfig
from s3torch_async._s3client import S3Client
from s3torch_async.s3reader import (
    DCPOptimizedConstructor,
    DCPOptimizedS3Reader,
    DCPS3ReaderConstructorProtocol,
    GetStreamCallable,
    ItemRange,
    RangedS3Reader,
    RangeGroup,
    S3Reader,
    S3ReaderConstructor,
    S3ReaderConstructorProtocol,
    SequentialS3Reader,
)
from s3torch_async.s3reader.dcp_optimized import DEFAULT_MAX_GAP_SIZE
from s3torch_async.s3reader.ranged import DEFAULT_BUFFER_SIZE
from tests._faultproxy import FaultProxy

REGION = "us-east-1"


def test_s3reader_all_matches_the_reference():
    assert sorted(s3reader_pkg.__all__) == sorted(
        [
            "S3Reader",
            "S3ReaderConstructor",
            "SequentialS3Reader",
            "RangedS3Reader",
            "DCPOptimizedS3Reader",
        ]
    )
    for name in (
        "DCPOptimizedConstructor",
        "ItemRange",
        "RangeGroup",
        "GetStreamCallable",
        "S3ReaderConstructorProtocol",
        "DCPS3ReaderConstructorProtocol",
    ):
        assert hasattr(s3reader_pkg, name)


def test_module_constants():
    assert DEFAULT_BUFFER_SIZE == 8 * 1024 * 1024
    assert DEFAULT_MAX_GAP_SIZE == 32 * 1024 * 1024


def test_sequential_and_default_are_partials_of_sequential():
    for constructor in (
        S3ReaderConstructor.sequential(),
        S3ReaderConstructor.default(),
    ):
        assert isinstance(constructor, partial)
        assert constructor.func is SequentialS3Reader
        assert isinstance(constructor, S3ReaderConstructorProtocol)


@pytest.mark.parametrize("buffer_size", [None, 0, 1024])
def test_range_based_is_a_partial_with_buffer_size(buffer_size):
    constructor = S3ReaderConstructor.range_based(buffer_size)
    assert isinstance(constructor, partial)
    assert constructor.func is RangedS3Reader
    assert constructor.keywords["buffer_size"] == buffer_size


@pytest.mark.parametrize("gap", [float("inf"), sys.maxsize, 0.5, 0])
def test_dcp_optimized_returns_a_dcp_constructor(gap):
    constructor = S3ReaderConstructor.dcp_optimized(gap)
    assert isinstance(constructor, DCPOptimizedConstructor)
    assert isinstance(constructor, DCPS3ReaderConstructorProtocol)
    assert isinstance(constructor, S3ReaderConstructorProtocol)
    assert not isinstance(
        S3ReaderConstructor.sequential(), DCPS3ReaderConstructorProtocol
    )


@pytest.mark.parametrize(
    ("constructor", "expected"),
    [
        (None, "sequential"),
        (S3ReaderConstructor.sequential(), "sequential"),
        (S3ReaderConstructor.default(), "sequential"),
        (S3ReaderConstructor.range_based(), "range_based"),
        (S3ReaderConstructor.range_based(0), "range_based"),
        (S3ReaderConstructor.dcp_optimized(), "dcp_optimized"),
        (partial(DCPOptimizedS3Reader), "unknown"),
        (lambda bucket, key, get_object_info, get_stream: None, "unknown"),
    ],
)
def test_reader_type_string(constructor, expected):
    assert S3ReaderConstructor.get_reader_type_string(constructor) == expected


def test_dataclasses_and_protocols():
    assert ItemRange(1, 5) == ItemRange(1, 5)
    group = RangeGroup(1, 9, [ItemRange(1, 5), ItemRange(6, 9)])
    assert group.item_ranges[1].end == 9
    assert GetStreamCallable.__call__ is not None
    assert issubclass(SequentialS3Reader, S3Reader)
    assert issubclass(S3Reader, io.BufferedIOBase)


def test_constructors_accept_positional_and_keyword_arguments():
    info = ObjectInfo("k", "", 3, 0)

    def stream(start=None, end=None):
        return iter([b"abc"[start or 0 : end]])

    for constructor in (
        S3ReaderConstructor.sequential(),
        S3ReaderConstructor.range_based(),
    ):
        positional = constructor("b", "k", lambda: info, stream)
        keyword = constructor(
            bucket="b", key="k", get_object_info=lambda: info, get_stream=stream
        )
        assert positional.read() == keyword.read() == b"abc"


def test_constructors_pickle():
    for constructor in (
        S3ReaderConstructor.sequential(),
        S3ReaderConstructor.range_based(5),
        S3ReaderConstructor.dcp_optimized(7),
    ):
        clone = pickle.loads(pickle.dumps(constructor))
        assert S3ReaderConstructor.get_reader_type_string(
            clone
        ) == S3ReaderConstructor.get_reader_type_string(constructor)


# -- S3Client.get_object and prefetched readers ------------------------------------------------


@pytest.fixture(scope="module")
def shared_proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def proxy(shared_proxy):
    shared_proxy.clear()
    return shared_proxy


@pytest.fixture
def client(proxy):
    return S3Client(
        REGION, endpoint=proxy.url, s3client_config=S3ClientConfig(max_attempts=1)
    )


@pytest.mark.parametrize(
    ("constructor", "cls"),
    [
        (None, SequentialS3Reader),
        (S3ReaderConstructor.range_based(), RangedS3Reader),
    ],
)
def test_get_object_builds_the_requested_reader(
    client, proxy, bucket, put, constructor, cls
):
    put("obj", b"payload")
    reader = client.get_object(bucket, "obj", reader_constructor=constructor)
    assert type(reader) is cls
    assert proxy.requests == []
    assert reader.read() == b"payload"


PAYLOAD = bytes(range(256)) * 20


@pytest.mark.parametrize(
    "constructor",
    [
        None,
        S3ReaderConstructor.range_based(),
        S3ReaderConstructor.range_based(buffer_size=0),
        S3ReaderConstructor.range_based(buffer_size=100),
    ],
    ids=["sequential", "range_based", "unbuffered", "small_buffer"],
)
@pytest.mark.parametrize("as_view", [False, True], ids=["bytes", "memoryview"])
def test_prefetched_reader_serves_every_read_from_memory(
    client, proxy, bucket, constructor, as_view
):
    data = memoryview(PAYLOAD) if as_view else PAYLOAD
    info = ObjectInfo("obj", '"etag"', len(PAYLOAD), 0)
    reader = client.get_prefetched_object(
        bucket,
        "obj",
        object_info=info,
        data=data,
        etag='"etag"',
        reader_constructor=constructor,
    )
    assert reader.read(10) == PAYLOAD[:10]
    assert reader.seek(-5, io.SEEK_END) == len(PAYLOAD) - 5
    assert reader.read() == PAYLOAD[-5:]
    reader.seek(100)
    buf = bytearray(300)
    assert reader.readinto(buf) == 300
    assert bytes(buf) == PAYLOAD[100:400]
    reader.seek(0)
    whole = reader.read()
    assert whole == PAYLOAD
    if not as_view and constructor is None:
        assert whole is PAYLOAD  # no copy at all
    assert reader.seek(10**6) == len(PAYLOAD)
    clone = pickle.loads(pickle.dumps(reader))
    clone.seek(3)
    assert clone.read(4) == PAYLOAD[3:7]
    assert proxy.requests == []


def test_prefetched_dcp_reader_reads_items_without_requests(client, proxy, bucket):
    constructor = S3ReaderConstructor.dcp_optimized()
    constructor._item_ranges_by_file = {
        f"s3://{bucket}/f.distcp": [ItemRange(10, 20), ItemRange(30, 50)]
    }
    reader = client.get_prefetched_object(
        bucket,
        "f.distcp",
        object_info=ObjectInfo("f.distcp", "", len(PAYLOAD), 0),
        data=PAYLOAD,
        etag="",
        reader_constructor=constructor,
    )
    reader.seek(10)
    assert reader.read(10) == PAYLOAD[10:20]
    reader.seek(30)
    assert reader.read(20) == PAYLOAD[30:50]
    assert proxy.requests == []
