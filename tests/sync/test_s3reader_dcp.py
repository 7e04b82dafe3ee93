"""DCPOptimizedS3Reader and DCPOptimizedConstructor (reference §1.8 and §2.1)."""

from __future__ import annotations

import io
import math
import os
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch_async import S3ClientConfig
from s3torch_async._s3client import S3Client
from s3torch_async._s3client._s3client import _GetStream, _HeadObject
from s3torch_async.s3reader import (
    DCPOptimizedConstructor,
    DCPOptimizedS3Reader,
    ItemRange,
    RangeGroup,
    S3ReaderConstructor,
    SequentialS3Reader,
)
from s3torch_async.s3reader.dcp_optimized import (
    DEFAULT_MAX_GAP_SIZE,
    FALLBACK_GUIDANCE,
    FIND_ITEM_ERROR_PREFIX,
    _ItemViewBuffer,
    validate_and_coalesce_ranges,
)
from tests._faultproxy import FaultProxy

REGION = "us-east-1"
DATA = os.urandom(8000)


def _memory_stream(data=DATA, chunk=700, log=None):
    def get_stream(start=None, end=None):
        if log is not None:
            log.append((start, end))
        start = start or 0
        stop = len(data) if end is None else min(end, len(data))
        return iter(data[i : min(i + chunk, stop)] for i in range(start, stop, chunk))

    return get_stream


def _reader(ranges, max_gap_size=DEFAULT_MAX_GAP_SIZE, **kw):
    items = [ItemRange(s, e) for s, e in ranges]
    stream = kw.pop("get_stream", None) or _memory_stream()
    return DCPOptimizedS3Reader(
        "bucket", "key", items, lambda: None, stream, max_gap_size=max_gap_size
    )


# -- construction and validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("", "k", [], "x"), ValueError, "Bucket should be specified"),
        (("b", "", [], "x"), ValueError, "Key should be specified"),
        (
            ("b", "k", [], "x"),
            ValueError,
            "item_ranges must be a non-empty List[ItemRange] object",
        ),
        (
            ("b", "k", [(5, 1)], "x"),
            TypeError,
            "max_gap_size must be int or float, got str",
        ),
        (
            ("b", "k", [(0, 1)], []),
            TypeError,
            "max_gap_size must be int or float, got list",
        ),
        (
            ("b", "k", [(0, 1)], None),
            TypeError,
            "max_gap_size must be int or float, got NoneType",
        ),
        (("b", "k", [(-1, 5)], -1), ValueError, "max_gap_size must be non-negative"),
        (
            ("b", "k", [(3, 3), (7, 7)], 0),
            ValueError,
            "No non-empty ranges to read (all ranges were length 0)",
        ),
        (("b", "k", [(-1, 10)], 0), ValueError, "Invalid range: -1-10"),
        (("b", "k", [(0, 10), (10, 5)], 0), ValueError, "Invalid range: 10-5"),
        (
            ("b", "k", [(10, 20), (5, 10)], 0),
            ValueError,
            "Unsorted ranges: 10-20 and 5-10",
        ),
        (
            ("b", "k", [(0, 10), (5, 15)], 0),
            ValueError,
            "Overlapping ranges: 0-10 and 5-15",
        ),
    ],
)
def test_construction_validates_in_reference_order(args, error, message):
    bucket, key, ranges, gap = args
    items = [ItemRange(s, e) for s, e in ranges]
    with pytest.raises(error) as info:
        DCPOptimizedS3Reader(bucket, key, items, lambda: None, _memory_stream(), gap)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("ranges", "gap", "groups"),
    [
        ([(0, 10), (20, 30)], 10, [(0, 30)]),
        ([(0, 10), (20, 30)], 9, [(0, 10), (20, 30)]),
        ([(0, 10), (20, 30), (100, 110)], 50, [(0, 30), (100, 110)]),
        ([(0, 10), (10, 20), (25, 30)], 0, [(0, 20), (25, 30)]),  # adjacent coalesce
        ([(0, 10), (10**9, 10**9 + 1)], math.inf, [(0, 10**9 + 1)]),
        ([(0, 10), (20, 30)], 0.5, [(0, 10), (20, 30)]),
    ],
)
def test_coalescing_examples(ranges, gap, groups):
    result = validate_and_coalesce_ranges([ItemRange(s, e) for s, e in ranges], gap)
    assert [(g.start, g.end) for g in result] == groups
    assert all(isinstance(g, RangeGroup) for g in result)


@st.composite
def sorted_disjoint_ranges(draw, min_size=1, max_size=12, max_gap=300, max_len=300):
    count = draw(st.integers(min_size, max_size))
    pos = draw(st.integers(0, max_gap))
    out = []
    for _ in range(count):
        length = draw(st.integers(1, max_len))
        out.append((pos, pos + length))
        pos += length + draw(st.integers(0, max_gap))
    return out


@given(
    ranges=sorted_disjoint_ranges(),
    gap=st.one_of(st.integers(0, 400), st.just(math.inf)),
)
def test_coalescing_properties(ranges, gap):
    items = [ItemRange(s, e) for s, e in ranges]
    groups = validate_and_coalesce_ranges(items, gap)
    assert [r for g in groups for r in g.item_ranges] == items
    for g in groups:
        assert (g.start, g.end) == (g.item_ranges[0].start, g.item_ranges[-1].end)
        for a, b in zip(g.item_ranges, g.item_ranges[1:]):
            assert b.start - a.end <= gap
    for a, b in zip(groups, groups[1:]):
        assert b.start - a.end > gap


def test_duplicate_ranges_are_read_once():
    reader = _reader([(0, 100), (0, 100), (100, 100), (200, 300)], 0)
    assert reader.read(100) == DATA[:100]
    reader.seek(0)  # the second ReadItem of the same range
    assert reader.read(100) == DATA[:100]
    reader.seek(200)
    assert reader.read(100) == DATA[200:300]


# -- _ItemViewBuffer --------------------------------------------------------------------------


@given(
    segments=st.lists(st.binary(max_size=40), max_size=6),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["read", "readinto", "seek"]),
            st.integers(0, 120),
            st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END]),
        ),
        max_size=20,
    ),
)
def test_item_view_buffer_matches_bytesio(segments, ops):
    buffer = _ItemViewBuffer()
    for seg in segments:
        buffer.append_view(memoryview(seg))
    oracle = io.BytesIO(b"".join(segments))
    assert buffer.size == len(oracle.getvalue())
    for op, n, whence in ops:
        if op == "read":
            assert buffer.read(n) == oracle.read(n)
        elif op == "readinto":
            a, b = bytearray(n), bytearray(n)
            assert buffer.readinto(a) == oracle.readinto(b)
            assert a == b
        else:
            offset = n if whence == io.SEEK_SET else n - 60
            if oracle.tell() + offset < 0 and whence == io.SEEK_CUR:
                continue
            if whence == io.SEEK_END and len(oracle.getvalue()) + offset < 0:
                continue
            assert buffer.seek(offset, whence) == oracle.seek(offset, whence)
        assert buffer.tell() == oracle.tell()


def test_item_view_buffer_rejects_misuse():
    buffer = _ItemViewBuffer()
    buffer.append_view(memoryview(b"abcdef"))
    buffer.append_view(memoryview(b""))
    assert buffer.read(4) == b"abcd"
    with pytest.raises(AssertionError):
        buffer.seek(-10, io.SEEK_CUR)
    with pytest.raises(ValueError):
        buffer.seek(0, 7)
    with pytest.raises(AssertionError):
        buffer.read(-1)
    with pytest.raises(AssertionError):
        buffer.readinto(memoryview(b"readonly"))
    with pytest.raises(TypeError):
        buffer.readinto(5)


# -- reading ---------------------------------------------------------------------------------


RANGES = [(0, 100), (200, 300), (5000, 5100)]


def test_items_read_in_order_return_their_bytes():
    reader = _reader(RANGES)
    for start, end in RANGES:
        reader.seek(start)
        assert reader.read(50) == DATA[start : start + 50]
        buf = bytearray(end - start - 50)
        assert reader.readinto(buf) == len(buf)
        assert bytes(buf) == DATA[start + 50 : end]
        assert reader.tell() == end


def test_random_access_within_the_current_item_is_free():
    log = []
    reader = _reader(RANGES, get_stream=_memory_stream(log=log))
    assert reader.read(100) == DATA[:100]  # items cannot be skipped
    reader.seek(200)
    assert reader.read(100) == DATA[200:300]
    requests = len(log)
    for offset in (250, 201, 299, 200):
        reader.seek(offset)
        assert reader.read(1) == DATA[offset : offset + 1]
    assert len(log) == requests


def _message(detail):
    return f"{FIND_ITEM_ERROR_PREFIX}{detail}\n{FALLBACK_GUIDANCE}"


@pytest.mark.parametrize(
    ("steps", "pos", "size", "detail"),
    [
        ([], 200, 10, "Range 200-210 not contained in current item 0-100."),
        ([(0, 10)], 90, 20, "Range 90-110 not contained in current item 0-100."),
        (
            [(0, 100), (200, 10)],
            50,
            10,
            "Range 50-60 not contained in current item 200-300.",
        ),
        (
            [(0, 100)],
            150,
            10,
            "Range 150-160 not contained in current item 0-100 nor the next item 200-300.",
        ),
        (
            [(0, 100), (200, 100)],
            5050,
            100,
            "Range 5050-5150 not contained in current item 200-300 "
            "nor the next item 5000-5100.",
        ),
        (
            [(0, 100), (200, 100), (5000, 100)],
            5100,
            1,
            "Range 5100-5101 not contained in last item with range 5000-5100.",
        ),
    ],
)
def test_out_of_order_reads_raise_with_guidance(steps, pos, size, detail):
    reader = _reader(RANGES)
    for start, n in steps:
        reader.seek(start)
        assert reader.read(n) == DATA[start : start + n]
    reader.seek(pos)
    with pytest.raises(ValueError) as info:
        reader.read(size)
    assert str(info.value) == _message(detail)
    reader.seek(pos)
    with pytest.raises(ValueError):
        reader.readinto(bytearray(size))


def test_failed_lookup_does_not_advance_state():
    reader = _reader([(0, 5), (10, 20), (30, 40)])
    assert reader.read(5) == DATA[:5]
    reader.seek(12)
    with pytest.raises(ValueError, match="nor the next item 10-20"):
        reader.read(10)
    reader.seek(12)
    assert reader.read(4) == DATA[12:16]  # the reference fails here
    reader.seek(30)
    assert reader.read(10) == DATA[30:40]


def test_read_size_rules():
    reader = _reader(RANGES)
    with pytest.raises(ValueError) as info:
        reader.read()
    assert str(info.value) == (
        f"Size cannot be None; full read not supported.\n{FALLBACK_GUIDANCE}"
    )
    with pytest.raises(ValueError) as info:
        reader.read(-1)
    assert str(info.value) == (
        f"Size cannot be negative; full read not supported.\n{FALLBACK_GUIDANCE}"
    )
    with pytest.raises(TypeError, match="argument should be integer or None"):
        reader.read(2.5)
    reader.seek(150)
    assert reader.read(0) == b""  # no lookup at all
    assert reader.tell() == 150
    reader.seek(0)
    assert reader.readinto(bytearray(0)) == 0


def test_seek_rules():
    reader = _reader(RANGES)
    assert reader.seek(10) == 10
    assert reader.seek(5, io.SEEK_CUR) == 15
    assert reader.seek(10**6) == 10**6  # allowed; the next read fails
    with pytest.raises(
        ValueError, match=r"^whence must be SEEK_CUR or SEEK_SET integers$"
    ):
        reader.seek(0, io.SEEK_END)
    with pytest.raises(ValueError, match=r"^negative seek value -5$"):
        reader.seek(-5)
    with pytest.raises(TypeError, match="integer argument expected"):
        reader.seek(1.0)


def test_close_drops_state_and_keeps_tell():
    reader = _reader(RANGES)
    assert reader.read(10) == DATA[:10]
    reader.close()
    assert reader.closed
    assert reader.tell() == 10
    with pytest.raises(ValueError, match="I/O operation on closed file"):
        reader.read(1)


def test_stream_shorter_than_the_ranges_is_an_error():
    reader = _reader([(0, 10), (9000, 9010)], 0)  # DATA has 8000 bytes
    assert reader.read(10) == DATA[:10]
    reader.seek(9000)
    with pytest.raises(ValueError, match=r"^S3 stream exhausted at position"):
        reader.read(10)


# -- against the server ------------------------------------------------------------------------


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


def _get_ranges(proxy):
    out = []
    for method, _, headers in proxy.requests:
        if method == "GET":
            value = {k.lower(): v for k, v in headers.items()}["range"]
            start, end = value.removeprefix("bytes=").split("-")
            out.append((int(start), int(end) + 1))
    return sorted(out)


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (0, [(0, 100), (200, 300), (5000, 5100)]),
        (1000, [(0, 300), (5000, 5100)]),
        (math.inf, [(0, 5100)]),
    ],
)
def test_one_get_per_coalesced_group_and_no_head(
    client, proxy, bucket, put, gap, expected
):
    put("ckpt/__0_0.distcp", DATA)
    constructor = S3ReaderConstructor.dcp_optimized(gap)
    constructor._item_ranges_by_file = {
        f"s3://{bucket}/ckpt/__0_0.distcp": [ItemRange(s, e) for s, e in RANGES]
    }
    reader = client.get_object(
        bucket, "ckpt/__0_0.distcp", reader_constructor=constructor
    )
    assert isinstance(reader, DCPOptimizedS3Reader)
    assert proxy.requests == []
    for start, end in RANGES:
        reader.seek(start)
        assert reader.read(end - start) == DATA[start:end]
    assert _get_ranges(proxy) == expected
    assert [m for m, _, _ in proxy.requests if m == "HEAD"] == []


def test_large_group_is_fetched_in_parts_skipping_gap_only_parts(
    client, proxy, bucket, put
):
    put("obj", DATA)
    items = [ItemRange(0, 10), ItemRange(7000, 7010)]  # one group across a big gap
    stream = _GetStream(client, bucket, "obj", part_size=1000)
    reader = DCPOptimizedS3Reader(
        bucket, "obj", items, _HeadObject(client, bucket, "obj"), stream, math.inf
    )
    assert reader.read(10) == DATA[:10]
    reader.seek(7000)
    assert reader.read(10) == DATA[7000:7010]
    assert _get_ranges(proxy) == [(0, 1000), (7000, 7010)]


@settings(max_examples=15)
@given(ranges=sorted_disjoint_ranges(max_gap=400, max_len=500), data=st.data())
def test_sequential_item_reads_match_the_object(client, bucket, put, ranges, data):
    payload = DATA[:6000] + DATA[:3000]
    ranges = [(s, e) for s, e in ranges if e <= len(payload)] or [(0, 1)]
    put("prop", payload)
    gap = data.draw(st.sampled_from([0, 100, math.inf]), label="gap")
    part = data.draw(st.sampled_from([256, 4096]), label="part")
    reader = DCPOptimizedS3Reader(
        bucket,
        "prop",
        [ItemRange(s, e) for s, e in ranges],
        lambda: None,
        _GetStream(client, bucket, "prop", part_size=part),
        gap,
    )
    for start, end in ranges:
        reader.seek(start)
        pos = start
        while pos < end:
            n = data.draw(st.integers(1, end - pos), label="n")
            if data.draw(st.booleans(), label="readinto"):
                buf = bytearray(n)
                assert reader.readinto(buf) == n
                got = bytes(buf)
            else:
                got = reader.read(n)
            assert got == payload[pos : pos + n]
            pos += n
    reader.close()


# -- DCPOptimizedConstructor -----------------------------------------------------------------


def _plan(base, files):
    """ReadItems and storage_data (duck-typed as torch's) for ``{name: [(offset, length)]}``."""
    items, storage = [], {}
    for name, chunks in files.items():
        for i, (offset, length) in enumerate(chunks):
            index = (name, i)
            items.append(SimpleNamespace(storage_index=index))
            storage[index] = SimpleNamespace(
                relative_path=name, offset=offset, length=length
            )
    return items, storage


def test_constructor_routes_files_to_readers():
    constructor = DCPOptimizedConstructor(max_gap_size=0)
    items, storage = _plan("s3://b/ckpt", {"__0_0.distcp": [(0, 10), (10, 5)]})
    constructor.set_item_ranges_by_file(items, storage, "s3://b/ckpt")
    assert constructor._item_ranges_by_file == {
        "s3://b/ckpt/__0_0.distcp": [ItemRange(0, 10), ItemRange(10, 15)]
    }
    reader = constructor("b", "ckpt/__0_0.distcp", lambda: None, _memory_stream())
    assert isinstance(reader, DCPOptimizedS3Reader)
    assert reader.read(10) == DATA[:10]
    assert reader.read(5) == DATA[10:15]
    metadata = constructor("b", "ckpt/.metadata", lambda: None, _memory_stream())
    assert isinstance(metadata, SequentialS3Reader)
    with pytest.raises(ValueError) as info:
        constructor("b", "other/__0_0.distcp", lambda: None, _memory_stream())
    assert str(info.value) == (
        "No ranges found for s3://b/other/__0_0.distcp. Make sure range injection is "
        f"used in 'S3StorageReader.prepare_local_plan'.\n{FALLBACK_GUIDANCE}"
    )


def test_constructor_plan_edge_cases():
    constructor = DCPOptimizedConstructor()
    items, storage = _plan("s3://b/c", {"f": [(0, 1)]})
    constructor.set_item_ranges_by_file(items, storage, "s3://b/c")
    constructor.set_item_ranges_by_file([], {}, "s3://b/c")  # a rank that reads nothing
    assert dict(constructor._item_ranges_by_file) == {}
    with pytest.raises(ValueError, match=r"^storage_data must not be empty"):
        constructor.set_item_ranges_by_file(items, {}, "s3://b/c")


@pytest.mark.parametrize("gap", [math.inf, 2**63 - 1, 0.5, 0])
def test_constructor_accepts_gap_sizes(gap):
    assert DCPOptimizedConstructor(gap)._max_gap_size == gap


@pytest.mark.parametrize(
    ("gap", "error"), [(-1, ValueError), ("1", TypeError), (None, TypeError)]
)
def test_constructor_rejects_bad_gap_sizes(gap, error):
    with pytest.raises(error):
        DCPOptimizedConstructor(gap)
