"""Edge semantics shared by the sequential and range-based readers (reference table §1.5)."""

from __future__ import annotations

import io
import pickle
import sys

import pytest

from s3torch_async import ObjectInfo, S3ClientConfig
from s3torch_async._s3client import S3Client
from s3torch_async._s3client._s3client import _GetStream, _HeadObject
from s3torch_async.s3reader import (
    RangedS3Reader,
    S3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)

REGION = "us-east-1"
DATA = bytes(range(256)) * 40 + b"tail"  # 10244 bytes
SIZE = len(DATA)

CONSTRUCTORS = {
    "sequential": S3ReaderConstructor.sequential(),
    "range_based": S3ReaderConstructor.range_based(buffer_size=1000),
    "range_based_unbuffered": S3ReaderConstructor.range_based(buffer_size=0),
}


@pytest.fixture
def client(endpoint):
    return S3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(max_attempts=1)
    )


@pytest.fixture(params=list(CONSTRUCTORS))
def reader_type(request):
    return request.param


def _open(client, bucket, put, reader_type, with_info):
    put("obj", DATA)
    info = ObjectInfo("obj", "", SIZE, 0) if with_info else None
    return client.get_object(
        bucket, "obj", object_info=info, reader_constructor=CONSTRUCTORS[reader_type]
    )


@pytest.fixture
def reader(client, bucket, put, reader_type):
    """A reader that learns the size by itself (HEAD or first response)."""
    return _open(client, bucket, put, reader_type, with_info=False)


def _memory_stream(start=None, end=None):
    start = start or 0
    stop = SIZE if end is None else min(end, SIZE)
    return iter(DATA[i : min(i + 4096, stop)] for i in range(start, stop, 4096))


@pytest.fixture
def offline_reader(reader_type):
    """A reader over an in-memory ``get_stream`` (argument validation needs no server)."""
    info = ObjectInfo("obj", "", SIZE, 0)
    return CONSTRUCTORS[reader_type]("bucket", "obj", lambda: info, _memory_stream)


@pytest.fixture(params=[False, True], ids=["head", "listing"])
def any_reader(request, client, bucket, put, reader_type):
    """Built without and with listing information (size known up front)."""
    return _open(client, bucket, put, reader_type, with_info=request.param)


@pytest.mark.parametrize("cls", [SequentialS3Reader, RangedS3Reader])
@pytest.mark.parametrize("bucket_name", ["", None])
def test_falsy_bucket_is_rejected(cls, bucket_name):
    with pytest.raises(ValueError, match=r"^Bucket should be specified$"):
        cls(bucket_name, "key", lambda: None, lambda *a: iter(()))


def test_empty_key_is_not_validated_at_construction():
    reader = SequentialS3Reader("bucket", "", lambda: None, lambda *a: iter(()))
    assert reader.key == ""


def test_reader_reports_bucket_key_and_capabilities(reader, bucket):
    assert isinstance(reader, S3Reader)
    assert (reader.bucket, reader.key) == (bucket, "obj")
    assert reader.seekable()
    assert reader.readable()
    assert not reader.writable()
    assert not reader.isatty()


@pytest.mark.parametrize("size", [None, -1, -5])
def test_read_all_returns_rest(any_reader, size):
    assert any_reader.read(size) == DATA
    assert any_reader.tell() == SIZE
    assert any_reader.read(size) == b""
    any_reader.seek(100)
    assert any_reader.read(size) == DATA[100:]


@pytest.mark.parametrize("position", [0, 100, SIZE])
def test_read_zero_returns_empty_and_keeps_position(any_reader, position):
    any_reader.seek(position)
    assert any_reader.read(0) == b""
    assert any_reader.tell() == position


def test_read_past_end_returns_available_bytes(any_reader):
    any_reader.seek(SIZE - 3)
    assert any_reader.read(10) == DATA[-3:]
    assert any_reader.tell() == SIZE
    any_reader.seek(0)
    assert any_reader.read(SIZE + 10**12) == DATA
    assert any_reader.tell() == SIZE


def test_bool_size_is_an_int(offline_reader):
    assert offline_reader.read(True) == DATA[:1]


@pytest.mark.parametrize("size", [2.5, "test", [], b"1"])
def test_read_non_int_is_type_error(offline_reader, size):
    with pytest.raises(TypeError) as info:
        offline_reader.read(size)
    assert str(info.value) == f"argument should be integer or None, not {type(size)!r}"


@pytest.mark.parametrize("whence", [io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
def test_seek_past_end_is_clamped_to_size(any_reader, whence):
    assert any_reader.seek(SIZE + 50, whence) == SIZE
    assert any_reader.tell() == SIZE
    assert any_reader._size == SIZE
    assert any_reader.read() == b""


def test_seek_end(any_reader):
    assert any_reader.seek(0, io.SEEK_END) == SIZE
    assert any_reader.seek(5, io.SEEK_END) == SIZE
    assert any_reader.seek(-4, io.SEEK_END) == SIZE - 4
    assert any_reader.read() == b"tail"


def test_seek_cur_is_relative_and_a_no_op_forward_at_end(any_reader):
    any_reader.seek(10)
    assert any_reader.seek(5, io.SEEK_CUR) == 15
    assert any_reader.seek(-15, io.SEEK_CUR) == 0
    any_reader.seek(0, io.SEEK_END)
    assert any_reader.seek(7, io.SEEK_CUR) == SIZE
    assert any_reader.seek(-4, io.SEEK_CUR) == SIZE - 4
    assert any_reader.read() == b"tail"


@pytest.mark.parametrize(
    ("start", "offset", "whence", "result"),
    [
        (0, -1, io.SEEK_SET, -1),
        (2, -5, io.SEEK_CUR, -3),
        (0, -SIZE - 1, io.SEEK_END, -1),
    ],
)
def test_negative_seek_is_value_error(any_reader, start, offset, whence, result):
    any_reader.seek(start)
    with pytest.raises(ValueError, match=f"^negative seek value {result}$"):
        any_reader.seek(offset, whence)
    assert any_reader.tell() == start


@pytest.mark.parametrize("whence", [3, -1, 10])
def test_unknown_int_whence_is_value_error(offline_reader, whence):
    with pytest.raises(
        ValueError, match=r"^Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END$"
    ):
        offline_reader.seek(0, whence)


@pytest.mark.parametrize("whence", ["foo", None, 1.5])
def test_non_int_whence_is_type_error(offline_reader, whence):
    with pytest.raises(TypeError) as info:
        offline_reader.seek(0, whence)
    assert str(info.value) == f"integer argument expected, got {type(whence)!r}"


@pytest.mark.parametrize("offset", [0.0, 1.0, "1", None])
def test_non_int_offset_is_type_error(offline_reader, offset):
    with pytest.raises(TypeError) as info:
        offline_reader.seek(offset)
    assert str(info.value) == f"integer argument expected, got {type(offset)!r}"


@pytest.mark.parametrize("make", [bytearray, lambda n: memoryview(bytearray(n))])
def test_readinto_fills_writable_buffers(any_reader, make):
    buf = make(100)
    assert any_reader.readinto(buf) == 100
    assert bytes(buf) == DATA[:100]
    assert any_reader.tell() == 100
    assert any_reader.readinto(make(0)) == 0
    any_reader.seek(SIZE - 10)
    big = make(50)
    assert any_reader.readinto(big) == 10
    assert bytes(big[:10]) == DATA[-10:]
    assert any_reader.readinto(make(5)) == 0
    assert any_reader.tell() == SIZE


def test_read_and_readinto_mix(reader):
    reader.seek(SIZE - 300)
    buf = bytearray(7)
    out = bytearray()
    while True:
        chunk = reader.read(13)
        if not chunk:
            break
        out += chunk
        n = reader.readinto(buf)
        out += buf[:n]
    assert bytes(out) == DATA[-300:]


def test_readinto_typed_memoryview_counts_bytes(offline_reader):
    import array

    arr = array.array("i", [0] * 4)
    assert offline_reader.readinto(memoryview(arr)) == 16
    assert arr.tobytes() == DATA[:16]


@pytest.mark.parametrize("buf", [b"bytes", memoryview(b"ro"), 1, "str", None])
def test_readinto_non_writable_buffer_is_type_error(offline_reader, reader_type, buf):
    name = type(buf).__name__
    if reader_type == "sequential":
        name = "None" if buf is None else name
        expected = (
            f"readinto() argument must be read-write bytes-like object, not {name}"
        )
    else:
        expected = f"argument must be a writable bytes-like object, not {name}"
    with pytest.raises(TypeError) as info:
        offline_reader.readinto(buf)
    assert str(info.value) == expected


def test_closed_reader_rejects_io_but_tells(reader):
    reader.read(10)
    reader.close()
    reader.close()  # idempotent
    assert reader.closed
    assert reader.tell() == 10
    calls = [
        lambda: reader.read(),
        lambda: reader.readinto(bytearray(1)),
        lambda: reader.seek(0),
        lambda: reader.readline(),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^I/O operation on closed file\.$"):
            call()
    with pytest.raises(ValueError, match=r"^I/O operation on closed file\.$"):
        reader.__enter__()


def test_context_manager_closes(reader):
    with reader as r:
        assert r is reader
        assert r.read(4) == DATA[:4]
    assert reader.closed


def test_read1_and_fileno_are_unsupported(offline_reader):
    with pytest.raises(io.UnsupportedOperation):
        offline_reader.read1(1)
    with pytest.raises(io.UnsupportedOperation):
        offline_reader.fileno()


def test_lines_and_iteration(client, bucket, put, reader_type):
    text = b"first line\nsecond\n\nlast without newline"
    put("lines", text)
    reader = client.get_object(
        bucket, "lines", reader_constructor=CONSTRUCTORS[reader_type]
    )
    assert reader.readline() == b"first line\n"
    assert reader.readline(3) == b"sec"
    assert reader.readlines() == [b"ond\n", b"\n", b"last without newline"]
    reader.seek(0)
    assert b"".join(reader) == text


@pytest.mark.parametrize("after_read", [False, True])
def test_reader_pickles(any_reader, after_read):
    if after_read:
        assert any_reader.read(100) == DATA[:100]
    position = any_reader.tell()
    clone = pickle.loads(pickle.dumps(any_reader))
    assert clone.tell() == position
    assert clone.read() == DATA[position:]
    assert any_reader.read() == DATA[position:]


def test_size_beyond_maxsize_reads_the_rest(reader):
    # Unsupported by the reference (BytesIO overflow); here it is just "more than is left".
    reader.seek(SIZE - 4)
    assert reader.read(sys.maxsize + 1) == b"tail"


def test_missing_object_fails_on_first_read_not_before(client, bucket, reader_type):
    reader = client.get_object(
        bucket, "missing", reader_constructor=CONSTRUCTORS[reader_type]
    )
    from s3torch_async import S3Exception

    with pytest.raises(S3Exception, match=r"^Service error: The"):
        reader.read()


def test_reader_from_explicit_get_stream_with_small_parts(client, bucket, put):
    data = bytes(range(256)) * 1000  # 256000 bytes, 8 parts of 32 KiB
    put("parts", data)
    reader = SequentialS3Reader(
        bucket,
        "parts",
        _HeadObject(client, bucket, "parts"),
        _GetStream(client, bucket, "parts", part_size=32 * 1024),
    )
    assert reader.read(5) == data[:5]
    assert reader.read() == data[5:]
    reader.seek(100_000)
    assert reader.read(70_000) == data[100_000:170_000]


def test_plain_get_stream_callable_works():
    """A user's own ``get_stream`` returning chunks (no client attached) is honoured."""
    data = bytes(range(200)) * 10

    def get_stream(start=None, end=None):
        start = start or 0
        stop = len(data) if end is None else min(end, len(data))
        return iter(data[i : min(i + 300, stop)] for i in range(start, stop, 300))

    info = ObjectInfo("k", "", len(data), 0)
    for constructor in CONSTRUCTORS.values():
        reader = constructor("bucket", "k", lambda: info, get_stream)
        assert reader.read(10) == data[:10]
        reader.seek(-5, io.SEEK_END)
        assert reader.read() == data[-5:]
        reader.seek(1000)
        assert reader.read(700) == data[1000:1700]
        reader.seek(0)
        assert reader.read() == data


@pytest.mark.parametrize(
    "name", ["SequentialS3Reader", "RangedS3Reader", "DCPOptimizedS3Reader"]
)
def test_close_works_on_a_reader_whose_init_did_not_finish(name):
    # io.IOBase's finalizer calls close() even when __init__ raised.
    import s3torch_async.s3reader as readers

    cls = getattr(readers, name)
    half_built = cls.__new__(cls)
    half_built.close()
    assert half_built.closed
