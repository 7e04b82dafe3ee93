"""Whole objects read through ranged GETs are checked against their full-object CRC32.

S3 returns no checksum for a range, so a reader learns the object's CRC32 from a HEAD sent
alongside its first GET at offset 0, hashes every range it receives and compares once the
ranges cover the object (``_core/_wholecheck.py``). The fault proxy flips one bit of one range
on the way down; moto stores the CRC32 that boto3 (and we) upload and reports it on HEAD.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._s3client import S3Client
from s3torch_async.s3reader import S3ReaderConstructor
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests._scripted import HANG, ScriptedServer
from tests.faults._helpers import crc, part_config, payload

REGION = "us-east-1"
PART = 5 * 1024 * 1024
SIZE = 3 * PART + 123


@pytest.fixture
def proxy(checking_proxy: FaultProxy) -> FaultProxy:
    return checking_proxy


def config(max_attempts: int = 1) -> S3ClientConfig:
    return part_config(PART, max_attempts)


def client(proxy: FaultProxy) -> AsyncS3Client:
    return AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config())


def sync_client(proxy: FaultProxy) -> S3Client:
    return S3Client(REGION, endpoint=proxy.url, s3client_config=config())


def stored_checksum(boto_s3: Any, bucket: str, key: str) -> Any:
    head = boto_s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return head.get("ChecksumCRC32"), head.get("ChecksumType")


def flip_range(proxy: FaultProxy, start: int, offset: int = 100) -> None:
    """Flip one bit of the response to the ranged GET that starts at ``start``."""
    proxy.add_fault(
        FaultRule(
            Fault.flip_response_bit(offset),
            method="GET",
            header_contains=("Range", f"bytes={start}-"),
        )
    )


def checksum_heads(proxy: FaultProxy) -> int:
    return sum(
        1
        for method, _, headers in proxy.requests
        if method == "HEAD" and headers.get("x-amz-checksum-mode") == "ENABLED"
    )


@pytest.fixture
def whole(boto_s3: Any, bucket: str) -> bytes:
    data = payload(SIZE, 21)
    # boto3's default (when_supported) stores a full-object CRC32 with a single PutObject.
    boto_s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert stored_checksum(boto_s3, bucket, "obj")[0] == crc(data)
    return data


# -- the async reader ---------------------------------------------------------------------------


async def test_whole_read_is_checked_and_a_repeat_reads_clean(
    transport, proxy, bucket, whole
):
    async with client(proxy) as c:
        assert await c.get_object(bucket, "obj").read() == whole
        assert checksum_heads(proxy) == 1  # sent alongside the first GET

        reader = c.get_object(bucket, "obj")
        flip_range(proxy, 2 * PART)
        with pytest.raises(S3Exception, match="does not match") as info:
            await reader.read()
        assert info.value.code == "ChecksumMismatch"
        assert info.value.key == "obj"
        # The error is not sticky and the bad bytes are not kept: read again, checked again.
        reader.seek(0)
        assert await reader.read() == whole


async def test_streaming_read_raises_before_the_last_part(proxy, bucket, whole):
    delivered = bytearray()
    flip_range(proxy, PART)

    async def stream(c: AsyncS3Client) -> None:
        async for chunk in c.get_object(bucket, "obj"):
            delivered.extend(chunk)

    async with client(proxy) as c:
        with pytest.raises(S3Exception, match="does not match"):
            await stream(c)
    assert len(delivered) < SIZE
    assert len(delivered) <= 3 * PART  # the last part never came out


async def test_a_flip_in_the_first_range_is_caught(proxy, bucket, whole):
    flip_range(proxy, 0, offset=7)
    async with client(proxy) as c:
        with pytest.raises(S3Exception, match="does not match"):
            await c.get_object(bucket, "obj").read()


async def test_partial_read_is_not_checked(proxy, bucket, whole):
    # Documented limit: with part of the object there is nothing to compare with.
    flip_range(proxy, 0, offset=7)
    async with client(proxy) as c:
        head = await c.get_object(bucket, "obj").read(1000)
    assert len(head) == 1000
    assert head != whole[:1000]


async def test_validation_off_sends_no_head_and_checks_nothing(
    proxy, bucket, whole, monkeypatch
):
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    flip_range(proxy, PART)
    async with client(proxy) as c:
        data = await c.get_object(bucket, "obj").read()
    assert data != whole
    assert len(data) == SIZE
    assert checksum_heads(proxy) == 0


async def test_object_without_checksum_is_read_unchecked(
    proxy, bucket, boto_s3, monkeypatch
):
    data = payload(SIZE, 3)
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    async with client(proxy) as c, c.put_object(bucket, "plain") as writer:
        await writer.write(data)
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION")
    assert stored_checksum(boto_s3, bucket, "plain")[0] is None
    async with client(proxy) as c:
        assert await c.get_object(bucket, "plain").read() == data


async def test_composite_multipart_object_is_not_falsely_rejected(
    proxy, bucket, boto_s3
):
    # moto reports a COMPOSITE CRC32 bare on HEAD (no "-<parts>" and no type): the
    # multipart ETag tells it apart, so it is not compared with the bytes' CRC32.
    parts = [payload(PART, 4), payload(77, 5)]
    upload = boto_s3.create_multipart_upload(
        Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32"
    )
    listed = []
    for number, part in enumerate(parts, 1):
        resp = boto_s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=part,
            ChecksumAlgorithm="CRC32",
        )
        listed.append(
            {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": crc(part)}
        )
    boto_s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": listed},
    )
    assert stored_checksum(boto_s3, bucket, "mp")[0] != crc(b"".join(parts))
    async with client(proxy) as c:
        assert await c.get_object(bucket, "mp").read() == b"".join(parts)


# -- the sync readers and S3Checkpoint -----------------------------------------------------------


@pytest.mark.parametrize("constructor", ["sequential", "range_based"])
def test_sync_reader_whole_read_is_checked(proxy, bucket, whole, constructor):
    make = getattr(S3ReaderConstructor, constructor)()
    s3 = sync_client(proxy)
    assert s3.get_object(bucket, "obj", reader_constructor=make).read() == whole
    # The first read may have settled the client's width: the next one then cuts its GETs
    # in rounds from offset 0, so only its first GET's start is known.
    flip_range(proxy, 0)
    with pytest.raises(S3Exception, match="does not match"):
        s3.get_object(bucket, "obj", reader_constructor=make).read()


def test_sync_reader_small_reads_raise_before_the_end(proxy, bucket, whole):
    flip_range(proxy, 2 * PART)
    reader = sync_client(proxy).get_object(bucket, "obj")
    delivered = []

    def consume() -> None:
        while chunk := reader.read(64 * 1024):
            delivered.append(len(chunk))

    with pytest.raises(S3Exception, match="does not match"):
        consume()
    assert sum(delivered) < SIZE


def test_checkpoint_torch_load_is_checked(proxy, bucket):
    torch = pytest.importorskip("torch")
    from s3torch_async import S3Checkpoint

    checkpoint = S3Checkpoint(REGION, endpoint=proxy.url, s3client_config=config())
    state = {"w": torch.arange(3 * PART // 8, dtype=torch.float64)}
    with checkpoint.writer(f"s3://{bucket}/model.pt") as writer:
        torch.save(state, writer)
    with checkpoint.reader(f"s3://{bucket}/model.pt") as reader:
        assert torch.equal(torch.load(reader)["w"], state["w"])
    flip_range(proxy, PART)
    with pytest.raises(S3Exception, match="does not match"):  # noqa: SIM117
        with checkpoint.reader(f"s3://{bucket}/model.pt") as reader:
            torch.load(reader)


# -- our multipart uploads carry a FULL_OBJECT CRC32, so they can be checked whole ---------------


def complete_headers(proxy: FaultProxy) -> list[dict[str, str]]:
    return [
        {k.lower(): v for k, v in headers.items()}
        for method, path, headers in proxy.requests
        if method == "POST" and "uploadId=" in path
    ]


async def test_multipart_upload_carries_full_object_crc32(
    transport, proxy, bucket, boto_s3
):
    data = payload(SIZE, 8)
    async with client(proxy) as c, c.put_object(bucket, "ckpt") as writer:
        await writer.write(data)
    (complete,) = complete_headers(proxy)
    assert complete["x-amz-checksum-crc32"] == crc(data)
    assert complete["x-amz-checksum-type"] == "FULL_OBJECT"
    assert (
        proxy.rejected_checksums == 0
    )  # the proxy checked it against the parts' bytes
    assert stored_checksum(boto_s3, bucket, "ckpt") == (crc(data), "FULL_OBJECT")

    flip_range(proxy, 3 * PART, offset=5)
    async with client(proxy) as c:
        with pytest.raises(S3Exception, match="does not match"):
            await c.get_object(bucket, "ckpt").read()


def test_proxy_rejects_a_wrong_full_object_crc32(proxy, bucket):
    import boto3
    import botocore.config

    raw = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=proxy.url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    upload = raw.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )
    part = raw.upload_part(
        Bucket=bucket,
        Key="k",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"abc",
        ChecksumCRC32=crc(b"abc"),
    )
    with pytest.raises(Exception, match="BadDigest"):
        raw.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload["UploadId"],
            ChecksumCRC32=crc(b"abd"),
            ChecksumType="FULL_OBJECT",
            MultipartUpload={
                "Parts": [
                    {
                        "PartNumber": 1,
                        "ETag": part["ETag"],
                        "ChecksumCRC32": crc(b"abc"),
                    }
                ]
            },
        )
    assert proxy.rejected_checksums == 1


def test_sync_writer_and_checkpoint_upload_reads_back_checked(proxy, bucket, boto_s3):
    data = payload(2 * PART + 7, 6)
    with sync_client(proxy).put_object(bucket, "w") as writer:
        writer.write(data)
    assert stored_checksum(boto_s3, bucket, "w") == (crc(data), "FULL_OBJECT")
    reader = sync_client(proxy).get_object(bucket, "w")
    assert io.BytesIO(reader.read()).getvalue() == data


# -- objects one GET holds --------------------------------------------------------------------


async def test_small_object_of_known_size_is_one_get_without_range(
    proxy, bucket, boto_s3
):
    from s3torch_async import ObjectInfo

    data = payload(100_000, 12)
    boto_s3.put_object(Bucket=bucket, Key="small", Body=data)
    info = ObjectInfo(key="small", etag="", size=len(data), last_modified=0)
    async with client(proxy) as c:
        assert await c.get_object(bucket, "small", object_info=info).read() == data
        (get,) = [h for m, _, h in proxy.requests if m == "GET"]
        assert "Range" not in get  # S3 sends no checksum with a ranged GET
        assert get["x-amz-checksum-mode"] == "ENABLED"
        assert checksum_heads(proxy) == 0  # the checksum came with the GET
        proxy.add_fault(FaultRule(Fault.flip_response_bit(99_000), method="GET"))
        with pytest.raises(S3Exception, match="does not match"):
            await c.get_object(bucket, "small", object_info=info).read()


@pytest.mark.parametrize("validation", ["when_supported", "when_required"])
async def test_object_larger_than_listed_reads_as_before(
    proxy, bucket, boto_s3, monkeypatch, validation
):
    # Replaced by a larger object since it was listed: the GET without Range would bring more
    # than the reader made room for, so that part is fetched with a ranged GET instead.
    from s3torch_async import ObjectInfo

    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", validation)
    data = payload(3000, 13)
    boto_s3.put_object(Bucket=bucket, Key="grown", Body=data)
    info = ObjectInfo(key="grown", etag="", size=1000, last_modified=0)
    async with client(proxy) as c:
        reader = c.get_object(bucket, "grown", object_info=info)
        first = await reader.read()
        rest = await reader.read()
    assert first == data[:1000]
    assert rest == data[1000:]


def test_small_checkpoint_of_unknown_size_is_checked(proxy, bucket):
    # One ranged GET holds the whole object (its size was unknown): the HEAD for the checksum
    # follows it, and the check runs before torch.load sees a byte.
    torch = pytest.importorskip("torch")
    from s3torch_async import S3Checkpoint

    checkpoint = S3Checkpoint(REGION, endpoint=proxy.url, s3client_config=config())
    state = {"w": torch.arange(10_000, dtype=torch.float64)}
    with checkpoint.writer(f"s3://{bucket}/small.pt") as writer:
        torch.save(state, writer)
    with checkpoint.reader(f"s3://{bucket}/small.pt") as reader:
        assert torch.equal(torch.load(reader)["w"], state["w"])
    assert checksum_heads(proxy) == 1
    proxy.add_fault(FaultRule(Fault.flip_response_bit(5000), method="GET"))
    with pytest.raises(S3Exception, match="does not match"):  # noqa: SIM117
        with checkpoint.reader(f"s3://{bucket}/small.pt") as reader:
            torch.load(reader)


@pytest.mark.parametrize("times", [1, None], ids=["once", "always"])
def test_dataset_from_uris_never_yields_a_corrupted_object(
    proxy, bucket, boto_s3, times
):
    # Objects built from URIs (size unknown) are prefetched with one whole GET, so S3 sends
    # their checksum: a flipped bit is caught; the reader then asks again.
    from s3torch_async import S3IterableDataset

    data = payload(100_000, 31)
    boto_s3.put_object(Bucket=bucket, Key="u/small", Body=data)
    proxy.add_fault(
        FaultRule(
            Fault.flip_response_bit(5), method="GET", path_contains="/u/", times=times
        )
    )
    dataset = S3IterableDataset.from_objects(
        [f"s3://{bucket}/u/small"],
        region=REGION,
        endpoint=proxy.url,
        s3client_config=config(),
        transform=lambda r: r.read(),
    )
    if times == 1:
        assert list(dataset) == [data]  # the reader's own GET came clean
    else:
        with pytest.raises(S3Exception, match="does not match"):
            list(dataset)


# -- a whole read of unknown size asks for the checksum alongside its first GET ----------------


def hold_first_get_and_head(proxy: FaultProxy, key: str) -> FaultRule:
    """Hold the first two requests for ``key`` until both wait together (or 3 s pass).

    They meet only if the checksum HEAD leaves while the first GET is still unanswered: a
    HEAD sent after the GET would wait alone.
    """
    return proxy.add_fault(
        FaultRule(Fault.meet(2, 3.0), path_contains=f"/{key}", times=2)
    )


async def test_whole_read_of_unknown_size_sends_its_head_with_the_first_get(
    proxy, bucket, boto_s3
):
    data = payload(1000, 22)  # one ranged GET holds it, so only the HEAD can meet it
    boto_s3.put_object(Bucket=bucket, Key="small", Body=data)
    async with client(proxy) as c:
        await c.head_object(bucket, "small")  # the endpoint has answered
        hold_first_get_and_head(proxy, "small")
        assert await c.get_object(bucket, "small").read() == data
    assert proxy.most_held == 2
    assert checksum_heads(proxy) == 1


async def test_a_clients_first_read_sends_its_head_with_the_first_get(
    proxy, bucket, boto_s3
):
    # The client has never had an answer from the endpoint: its first request goes alone
    # until answered (the first-answer turn), but the checksum HEAD accompanies it (one
    # round trip for a cold read, not two).
    data = payload(1000, 24)
    boto_s3.put_object(Bucket=bucket, Key="small", Body=data)
    hold_first_get_and_head(proxy, "small")
    async with client(proxy) as c:
        assert await c.get_object(bucket, "small").read() == data
    assert proxy.most_held == 2
    assert sorted(m for m, _, _ in proxy.requests) == ["GET", "HEAD"]


async def test_a_first_read_from_a_silent_endpoint_fails_fast_head_included(
    s3_transport, monkeypatch
):
    # The HEAD that skips the first-answer turn keeps the first-answer timeout: against an
    # endpoint that accepts connections and never answers, it fails as the GET does (after
    # the shared probe), instead of waiting out the 60 s read timeout.
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.5")
    with ScriptedServer(lambda req: HANG) as srv:
        async with AsyncS3Client(REGION, endpoint=srv.url) as c:
            reader = c.get_object("bkt", "k")
            with pytest.raises(S3Exception, match="no HTTP response from"):
                await reader.read()
            head = reader._whole_check._head  # the HEAD the read sent alongside
            with pytest.raises(S3Exception, match="no HTTP response from"):
                await asyncio.wait_for(asyncio.shield(head), 8.0)
        requests = sorted((r.method, r.path) for r in srv.requests)
    assert requests == [("GET", "/bkt/k"), ("HEAD", "/"), ("HEAD", "/bkt/k")]


def test_sync_clients_first_read_sends_its_head_with_the_first_get(
    proxy, bucket, boto_s3
):
    data = payload(1000, 25)
    boto_s3.put_object(Bucket=bucket, Key="small", Body=data)
    hold_first_get_and_head(proxy, "small")
    assert sync_client(proxy).get_object(bucket, "small").read() == data
    assert proxy.most_held == 2
    assert sorted(m for m, _, _ in proxy.requests) == ["GET", "HEAD"]


def test_sync_whole_read_of_unknown_size_sends_its_head_with_the_first_get(
    proxy, bucket, boto_s3
):
    data = payload(1000, 23)
    boto_s3.put_object(Bucket=bucket, Key="small", Body=data)
    c = sync_client(proxy)
    c.head_object(bucket, "small")  # the endpoint has answered
    hold_first_get_and_head(proxy, "small")
    assert c.get_object(bucket, "small").read() == data
    assert proxy.most_held == 2
    assert checksum_heads(proxy) == 1
