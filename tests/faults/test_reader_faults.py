"""Readers against a real faulty peer: bodies that break mid-transfer, throttling, overwrites."""

from __future__ import annotations

import os

import pytest

from s3torch_async import AsyncS3Client, ObjectInfo, S3ClientConfig, S3Exception
from s3torch_async._core.reader import AsyncS3Reader
from s3torch_async._s3client import S3Client
from s3torch_async._s3client._s3client import _Constant, _GetStream, _HeadObject
from s3torch_async.s3reader import (
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    SequentialS3Reader,
)
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"
PART = 64 * 1024
DATA = os.urandom(4 * PART + 321)  # 5 parts


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


def _gets(proxy):
    return [
        {k.lower(): v for k, v in h.items()}
        for m, p, h in proxy.requests
        if m == "GET" and p.split("?")[0].endswith("/obj")
    ]


def _break_second_part(proxy, fault, start=PART):
    """Apply ``fault`` to the GET of the second part (its Range starts at ``start``)."""
    rule = FaultRule(fault, method="GET", path_contains="/obj", header_present="Range")
    # FaultRule has no header-value criterion: match the second part's request by order.
    original = rule.matches
    seen = []

    def matches(method, path, query, headers):
        if not original(method, path, query, headers):
            return False
        value = {k.lower(): v for k, v in headers.items()}.get("range", "")
        seen.append(value)
        return value.startswith(f"bytes={start}-")

    rule.matches = matches  # type: ignore[method-assign]
    proxy.add_fault(rule)
    return rule


@pytest.mark.parametrize(
    "fault", [Fault.reset_after(1000), Fault.truncate(1000)], ids=["reset", "truncate"]
)
async def test_core_whole_read_resumes_a_broken_part(proxy, bucket, put, fault):
    put("obj", DATA)
    _break_second_part(proxy, fault)
    config = S3ClientConfig(max_attempts=3)
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config) as c:
        reader = AsyncS3Reader(c, bucket, "obj", part_size=PART)
        assert await reader.read() == DATA
    assert proxy.faults_injected == 1
    gets = _gets(proxy)
    assert len(gets) == 6  # five parts and one resume
    second = [g for g in gets if g["range"].endswith(f"-{2 * PART - 1}")]
    assert len(second) == 2  # the broken request and its resume
    resume_start = int(second[1]["range"].removeprefix("bytes=").split("-")[0])
    assert PART <= resume_start <= PART + 1000  # from the last byte received
    assert second[1]["if-match"] == reader.etag


@pytest.mark.parametrize(
    "fault", [Fault.reset_after(1000), Fault.truncate(1000)], ids=["reset", "truncate"]
)
async def test_core_read_fails_without_attempts_left(proxy, bucket, put, fault):
    put("obj", DATA)
    _break_second_part(proxy, fault)
    config = S3ClientConfig(max_attempts=1)
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config) as c:
        reader = AsyncS3Reader(c, bucket, "obj", part_size=PART)
        with pytest.raises(S3Exception):
            await reader.read()
    assert proxy.faults_injected == 1


@pytest.mark.parametrize("attempts", [1, 3])
async def test_core_whole_read_with_a_broken_first_part_while_the_rest_is_fetched(
    proxy, bucket, put, attempts
):
    # Size unknown: the first part's head tells it, and the other parts are fetched while
    # that part's body flows. Its body breaks: resumed when attempts are left, else the
    # read fails (and the parts in flight are given up, nothing left hanging).
    put("obj", DATA)
    _break_second_part(proxy, Fault.reset_after(1000), start=0)
    config = S3ClientConfig(max_attempts=attempts)
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config) as c:
        reader = AsyncS3Reader(c, bucket, "obj", part_size=PART)
        if attempts == 1:
            with pytest.raises(S3Exception):
                await reader.read()
            assert reader.tell() == 0
        else:
            assert await reader.read() == DATA
            assert reader.tell() == len(DATA)
    assert proxy.faults_injected == 1


def _sync_client(proxy, max_attempts):
    return S3Client(
        REGION,
        endpoint=proxy.url,
        s3client_config=S3ClientConfig(max_attempts=max_attempts),
    )


def _sequential(client, bucket, with_info):
    info = (
        _Constant(ObjectInfo("obj", "", len(DATA), 0))
        if with_info
        else _HeadObject(client, bucket, "obj")
    )
    return SequentialS3Reader(
        bucket, "obj", info, _GetStream(client, bucket, "obj", part_size=PART)
    )


def _read_streaming(reader):
    out = bytearray()
    while chunk := reader.read(10_000):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize(
    "fault", [Fault.reset_after(1000), Fault.truncate(1000)], ids=["reset", "truncate"]
)
@pytest.mark.parametrize("pattern", ["whole", "streaming"])
def test_sequential_reader_survives_a_broken_body(proxy, bucket, put, fault, pattern):
    put("obj", DATA)
    _break_second_part(proxy, fault)
    reader = _sequential(_sync_client(proxy, 3), bucket, with_info=pattern == "whole")
    got = reader.read() if pattern == "whole" else _read_streaming(reader)
    assert got == DATA
    assert proxy.faults_injected == 1


@pytest.mark.parametrize("pattern", ["whole", "streaming"])
def test_sequential_reader_fails_with_one_attempt(proxy, bucket, put, pattern):
    put("obj", DATA)
    _break_second_part(proxy, Fault.reset_after(1000))
    reader = _sequential(_sync_client(proxy, 1), bucket, with_info=True)
    with pytest.raises(S3Exception):
        reader.read() if pattern == "whole" else _read_streaming(reader)


def test_sequential_whole_read_of_unknown_size_goes_on_once_the_size_is_known(
    proxy, bucket, put
):
    # The first GET's head arrives, then its body stalls for 2 s (and breaks): the rest of
    # the object is requested during that stall, not once the first part is in.
    put("obj", DATA)
    _break_second_part(proxy, Fault.stall(1000, 2.0), start=0)
    reader = _sequential(_sync_client(proxy, 3), bucket, with_info=False)
    assert reader.read() == DATA
    starts = [int(g["range"][6:].split("-")[0]) for g in _gets(proxy)]
    assert starts[0] == 0
    resume = [i for i, start in enumerate(starts) if start < PART][1]  # after the break
    assert starts.index(PART) < resume


def test_ranged_and_dcp_readers_survive_a_broken_body(proxy, bucket, put):
    put("obj", DATA)
    client = _sync_client(proxy, 3)
    proxy.add_fault(FaultRule(Fault.truncate(500), method="GET", times=2))
    ranged = RangedS3Reader(
        bucket,
        "obj",
        _HeadObject(client, bucket, "obj"),
        _GetStream(client, bucket, "obj", part_size=PART),
        buffer_size=0,
    )
    ranged.seek(100)
    assert ranged.read(3000) == DATA[100:3100]
    dcp = DCPOptimizedS3Reader(
        bucket,
        "obj",
        [ItemRange(0, 2000), ItemRange(3 * PART, 3 * PART + 5000)],
        lambda: None,
        _GetStream(client, bucket, "obj", part_size=PART),
        max_gap_size=0,
    )
    assert dcp.read(2000) == DATA[:2000]
    dcp.seek(3 * PART)
    assert dcp.read(5000) == DATA[3 * PART : 3 * PART + 5000]
    assert proxy.faults_injected == 2


def test_throttled_part_is_retried(proxy, bucket, put):
    put("obj", DATA)
    proxy.add_fault(
        FaultRule(Fault.status(503, "SlowDown"), method="GET", path_contains="/obj")
    )
    reader = _sequential(_sync_client(proxy, 3), bucket, with_info=True)
    assert reader.read() == DATA
    assert proxy.faults_injected == 1


def test_overwrite_while_streaming_raises_instead_of_mixing_versions(
    proxy, bucket, put, boto_s3
):
    put("obj", DATA)
    reader = _sequential(_sync_client(proxy, 1), bucket, with_info=False)
    assert reader.read(10) == DATA[:10]
    boto_s3.put_object(Bucket=bucket, Key="obj", Body=os.urandom(len(DATA)))
    with pytest.raises(S3Exception) as info:
        _read_streaming(reader)
    assert info.value.status == 412
