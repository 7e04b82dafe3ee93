"""Checksums end to end, through a real faulty peer: a flipped bit is caught, never stored or
delivered.

moto (5.2) stores the ``x-amz-checksum-*`` values it is sent but never checks them against the
body (``test_moto_does_not_verify_upload_checksums`` pins that), so the fault proxy plays S3's
part with ``verify_checksums=True``: it checks each request's ``x-amz-checksum-crc32`` against the
bytes it received and answers ``400 BadDigest`` as S3 does.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torch_async import AsyncS3Client, AsyncS3Dataset, S3ClientConfig, S3Exception
from s3torch_async._s3client import S3Client
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.faults._helpers import assert_nothing_left, crc, part_config, payload

REGION = "us-east-1"
PART = 5 * 1024 * 1024


@pytest.fixture
def proxy(checking_proxy: FaultProxy) -> FaultProxy:
    return checking_proxy


def config(max_attempts: int = 1) -> S3ClientConfig:
    return part_config(PART, max_attempts)


def client(proxy: FaultProxy, max_attempts: int = 1) -> AsyncS3Client:
    return AsyncS3Client(
        REGION, endpoint=proxy.url, s3client_config=config(max_attempts)
    )


def put_headers(proxy: FaultProxy) -> list[dict[str, str]]:
    return [
        {k.lower(): v for k, v in headers.items()}
        for method, _, headers in proxy.requests
        if method == "PUT"
    ]


def stored_checksum(boto_s3: Any, bucket: str, key: str) -> Any:
    return boto_s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get(
        "ChecksumCRC32"
    )


def test_moto_does_not_verify_upload_checksums(boto_s3: Any, bucket: str) -> None:
    # Why the proxy verifies: moto accepts a body that contradicts its checksum. If this
    # starts failing, moto verifies by itself and the proxy's emulation can go.
    boto_s3.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumCRC32=crc(b"abd"))
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"


def test_proxy_rejects_a_wrong_crc32_like_s3(
    proxy: FaultProxy, boto_s3: Any, bucket: str
) -> None:
    import boto3
    import botocore.config

    raw = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=proxy.url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        raw.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumCRC32=crc(b"abd"))
    assert info.value.response["Error"]["Code"] == "BadDigest"
    raw.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumCRC32=crc(b"abc"))
    assert proxy.rejected_checksums == 1


# -- uploads carry checksums S3 stores -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, PART])
async def test_single_put_carries_crc32(transport, proxy, bucket, boto_s3, size):
    data = payload(size)
    async with client(proxy) as c, c.put_object(bucket, "k") as writer:
        await writer.write(data)
    (headers,) = put_headers(proxy)
    assert headers["x-amz-checksum-crc32"] == crc(data)
    # Ours only: botocore adds no checksum (or trailer) of its own on its transport.
    assert "x-amz-trailer" not in headers
    assert "aws-chunked" not in headers.get("content-encoding", "")
    assert "content-md5" not in headers
    assert stored_checksum(boto_s3, bucket, "k") == crc(data)
    assert proxy.rejected_checksums == 0


async def test_multipart_parts_and_complete_carry_crc32(
    transport, proxy, bucket, boto_s3
):
    parts = [payload(PART, 1), payload(PART, 2), payload(123, 3)]
    async with client(proxy) as c, c.put_object(bucket, "k") as writer:
        for part in parts:
            await writer.write(part)
    sent = sorted(
        h["x-amz-checksum-crc32"]
        for h in put_headers(proxy)
        if "x-amz-checksum-crc32" in h
    )
    assert sent == sorted(crc(p) for p in parts)
    create = [
        {k.lower(): v for k, v in h.items()}
        for m, path, h in proxy.requests
        if m == "POST" and path.endswith("?uploads")
    ]
    assert create[0]["x-amz-checksum-algorithm"] == "CRC32"
    assert create[0]["x-amz-checksum-type"] == "FULL_OBJECT"
    # A FULL_OBJECT upload: the stored checksum is the whole object's CRC32 (which the
    # proxy, playing S3, checked against the parts' bytes at CompleteMultipartUpload).
    assert stored_checksum(boto_s3, bucket, "k") == crc(b"".join(parts))
    assert proxy.rejected_checksums == 0
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"".join(parts)


def test_sync_writer_and_checkpoint_carry_crc32(proxy, bucket, boto_s3):
    from s3torch_async import S3Checkpoint

    data = payload(2 * PART + 7)
    with S3Client(REGION, endpoint=proxy.url, s3client_config=config()).put_object(
        bucket, "w"
    ) as writer:
        writer.write(data)
    with S3Checkpoint(REGION, endpoint=proxy.url, s3client_config=config()).writer(
        f"s3://{bucket}/c"
    ) as writer:
        writer.write(b"small")
    assert stored_checksum(boto_s3, bucket, "w") == crc(data)  # FULL_OBJECT
    assert stored_checksum(boto_s3, bucket, "c") == crc(b"small")


@pytest.mark.parametrize("where", ["environment", "profile"])
async def test_when_required_sends_no_checksum(
    transport, proxy, bucket, boto_s3, where, monkeypatch, tmp_path
):
    if where == "environment":
        monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    else:
        cfg = tmp_path / "config"
        cfg.write_text(
            "[default]\nrequest_checksum_calculation = when_required\n"
            "response_checksum_validation = when_required\n"
        )
        monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    async with client(proxy) as c:
        async with c.put_object(bucket, "small") as writer:
            await writer.write(b"x" * 100)
        async with c.put_object(bucket, "big") as writer:
            await writer.write(payload(PART + 1))
        await c.get_range(bucket, "small")
    for _, _, headers in proxy.requests:
        assert not any("checksum" in name.lower() for name in headers), headers
    assert stored_checksum(boto_s3, bucket, "small") is None


async def test_invalid_checksum_setting_is_a_clear_error(monkeypatch, proxy, bucket):
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "sometimes")
    c = client(proxy)
    with pytest.raises(ValueError, match=r"request_checksum_calculation.*'sometimes'"):
        await c.head_object(bucket, "k")
    await c.aclose()


# -- a bit flipped on the way up: S3 rejects it, nothing is stored ---------------------------


@pytest.mark.parametrize("size", [1000, 3 * PART])
async def test_flipped_upload_bit_is_rejected_and_aborted(
    transport, proxy, bucket, boto_s3, size
):
    rule = "partNumber=2" if size > PART else None
    proxy.add_fault(
        FaultRule(Fault.flip_request_bit(7), method="PUT", query_contains=rule)
    )
    async with client(proxy) as c:
        with pytest.raises(S3Exception) as info:
            async with c.put_object(bucket, "k") as writer:
                await writer.write(payload(size))
    assert info.value.code == "BadDigest"
    assert info.value.status == 400
    assert proxy.rejected_checksums == 1
    assert_nothing_left(boto_s3, bucket, "k")


def test_flipped_upload_bit_in_checkpoint_save_leaves_nothing(proxy, bucket, boto_s3):
    from s3torch_async import S3Checkpoint

    proxy.add_fault(FaultRule(Fault.flip_request_bit(0), method="PUT"))
    checkpoint = S3Checkpoint(REGION, endpoint=proxy.url, s3client_config=config())

    def save() -> None:
        with checkpoint.writer(f"s3://{bucket}/model.ckpt") as writer:
            writer.write(payload(PART + 10))

    with pytest.raises(S3Exception, match="BadDigest"):
        save()
    assert_nothing_left(boto_s3, bucket, "model.ckpt")


async def test_without_checksums_a_flipped_bit_would_be_stored(
    proxy, bucket, boto_s3, monkeypatch
):
    # The control experiment: the same fault, checksums off, stores corrupted data.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    proxy.add_fault(FaultRule(Fault.flip_request_bit(7), method="PUT"))
    data = payload(1000)
    async with client(proxy) as c, c.put_object(bucket, "k") as writer:
        await writer.write(data)
    stored = boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert stored != data
    assert len(stored) == len(data)


# -- a bit flipped on the way down: never delivered ------------------------------------------


@pytest.fixture
def stored(boto_s3: Any, bucket: str) -> bytes:
    data = payload(300_000, 9)
    # boto3's default (when_supported) stores a CRC32 with the object.
    boto_s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert stored_checksum(boto_s3, bucket, "obj") == crc(data)
    return data


async def test_whole_get_is_checked(transport, proxy, bucket, stored):
    async with client(proxy) as c:
        assert (await c.get_range(bucket, "obj")).data == stored
        proxy.add_fault(FaultRule(Fault.flip_response_bit(150_000), method="GET"))
        with pytest.raises(S3Exception, match="does not match") as info:
            await c.get_range(bucket, "obj")
    assert info.value.code == "ChecksumMismatch"
    assert info.value.key == "obj"
    get_headers = [h for m, _, h in proxy.requests if m == "GET"]
    assert all(h.get("x-amz-checksum-mode") == "ENABLED" for h in get_headers)


async def test_resumed_whole_get_is_checked_over_every_piece(
    transport, proxy, bucket, stored
):
    async with client(proxy, max_attempts=3) as c:
        proxy.add_fault(FaultRule(Fault.reset_after(100_000), method="GET"))
        assert (await c.get_range(bucket, "obj")).data == stored
        # The resumed request (a Range GET, no checksum of its own) carries the flip.
        proxy.add_fault(FaultRule(Fault.reset_after(100_000), method="GET"))
        proxy.add_fault(
            FaultRule(Fault.flip_response_bit(10), method="GET", header_present="Range")
        )
        with pytest.raises(S3Exception, match="does not match"):
            await c.get_range(bucket, "obj")


async def test_resumed_whole_get_without_validation_returns_exact_bytes(
    transport, proxy, bucket, stored, monkeypatch
):
    # Regression: bytes read before a break were kept *and* fetched again on the resume.
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    proxy.add_fault(FaultRule(Fault.reset_after(100_000), method="GET"))
    async with client(proxy, max_attempts=3) as c:
        assert (await c.get_range(bucket, "obj")).data == stored


async def test_validation_off_sends_no_checksum_mode(
    proxy, bucket, stored, monkeypatch
):
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    proxy.add_fault(FaultRule(Fault.flip_response_bit(5), method="GET"))
    async with client(proxy) as c:
        data = (await c.get_range(bucket, "obj")).data
    assert data != stored  # delivered unchecked, as asked
    assert all("x-amz-checksum-mode" not in h for _, _, h in proxy.requests)


async def test_own_multipart_object_is_checked_whole(proxy, bucket, boto_s3):
    # Our multipart uploads store a FULL_OBJECT CRC32, so a whole GET can check them (a
    # COMPOSITE one cannot: test_whole_read_checksums covers that it is left alone).
    parts = [payload(PART, 4), payload(10, 5)]
    async with client(proxy) as c:
        async with c.put_object(bucket, "mp") as writer:
            await writer.write(b"".join(parts))
        assert (await c.get_range(bucket, "mp")).data == b"".join(parts)
        proxy.add_fault(FaultRule(Fault.flip_response_bit(PART + 3), method="GET"))
        with pytest.raises(S3Exception, match="does not match"):
            await c.get_range(bucket, "mp")


async def test_dataset_never_yields_a_corrupted_object(proxy, bucket, stored):
    proxy.add_fault(
        FaultRule(Fault.flip_response_bit(1), path_contains="/obj", times=None)
    )
    dataset = AsyncS3Dataset.from_prefix(
        f"s3://{bucket}/", region=REGION, endpoint=proxy.url, s3client_config=config()
    )
    delivered = []

    async def consume() -> None:
        async with dataset:
            async for obj in dataset:
                delivered.append(obj.key)  # noqa: PERF401 (keeps what came before the error)

    with pytest.raises(S3Exception, match="does not match"):
        await consume()
    assert delivered == []
