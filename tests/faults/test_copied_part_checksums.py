"""Checksums of parts assembled from copied writes, which are hashed while they are copied.

The writer copies mutable input (``bytearray``, views of it, small writes) into part buffers and
takes each part's CRC32 during the copy (``PartAssembler.crc_of``) instead of hashing the part
afterwards. These tests pin that the CRC32 sent is still the one of the bytes sent, for writes
of odd sizes that straddle part boundaries, when the caller reuses (overwrites) its buffer after
each ``write()``: the fault proxy plays S3 and rejects any part whose ``x-amz-checksum-crc32``
does not match its body, and CompleteMultipartUpload's full-object CRC32 must match the object.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from s3torch_async import AsyncS3Client
from s3torch_async._core.writer import PartAssembler
from s3torch_async._s3client import S3Client
from tests._faultproxy import FaultProxy
from tests.faults._helpers import crc, part_config, payload

REGION = "us-east-1"
PART = 5 * 1024 * 1024
#: Odd write sizes: several per part, one spanning two part boundaries, a tail of 3 bytes.
SIZES = [1, 777_777, 4096 * 3 + 5, 2 * PART + 12_345, 999_999, 3]


@pytest.fixture
def proxy(checking_proxy: FaultProxy) -> FaultProxy:
    return checking_proxy


def part_checksums(proxy: FaultProxy) -> list[str]:
    return [
        {k.lower(): v for k, v in headers.items()}["x-amz-checksum-crc32"]
        for method, path, headers in proxy.requests
        if method == "PUT" and "partNumber=" in path
    ]


def stored_checksum(boto_s3: Any, bucket: str, key: str) -> Any:
    return boto_s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get(
        "ChecksumCRC32"
    )


def reused_buffer_writes(data: bytes) -> list[tuple[bytearray, int]]:
    """One reusable buffer per size; ``write`` them in order, overwriting each after use."""
    out = []
    pos = 0
    for size in SIZES:
        out.append((bytearray(data[pos : pos + size]), size))
        pos += size
    assert pos == len(data)
    return out


def test_assembler_hashes_exactly_what_it_copied() -> None:
    data = payload(sum(SIZES), 5)
    assembler = PartAssembler(PART)
    parts: list[tuple[bytes, int]] = []
    for buf, size in reused_buffer_writes(data):
        view, pos = memoryview(buf), 0
        while pos < size:
            if assembler.held is not None:
                held = assembler.take_held()
                parts.append((bytes(held), assembler.crc_of(held)))  # type: ignore[arg-type]
                assert assembler.crc_of(held) is None  # handed out once, with the part
            pos = assembler.feed(view, pos)
        buf[:] = b"\xff" * size  # the caller reuses its buffer
    parts.extend((bytes(p), assembler.crc_of(p)) for p in assembler.drain())  # type: ignore[misc]
    assert b"".join(p for p, _ in parts) == data
    full, rest = divmod(len(data), PART)
    assert rest
    assert [len(p) for p, _ in parts] == [PART] * full + [rest]
    assert [c for _, c in parts] == [zlib.crc32(p) for p, _ in parts]


def test_uncopied_bytes_part_has_no_crc_from_the_assembler() -> None:
    # A whole part of ``bytes`` is sent from the caller's memory: hashed later, not here.
    assembler = PartAssembler(PART)
    data = payload(PART + 1, 6)
    assert assembler.feed(memoryview(data), 0) == PART
    assert assembler.crc_of(assembler.take_held()) is None


async def test_async_writer_copied_writes_carry_matching_crc32(
    transport: str, proxy: FaultProxy, bucket: str, boto_s3: Any
) -> None:
    data = payload(sum(SIZES), 7)
    config = part_config(PART)
    async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config) as c:
        writer = c.put_object(bucket, "k")
        async with writer:
            for buf, size in reused_buffer_writes(data):
                await writer.write(memoryview(buf))
                buf[:] = b"\xff" * size
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    assert part_checksums(proxy) == [crc(p) for p in parts]
    assert proxy.rejected_checksums == 0
    assert stored_checksum(boto_s3, bucket, "k") == crc(data)  # FULL_OBJECT, combined
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize("length", [100, None], ids=["single-put", "multipart"])
def test_sync_writer_copied_writes_carry_matching_crc32(
    proxy: FaultProxy, bucket: str, boto_s3: Any, length: Any
) -> None:
    # Multipart (odd writes spanning parts) and a single PutObject of copied bytes.
    data = payload(sum(SIZES), 8)[:length]
    with S3Client(
        REGION, endpoint=proxy.url, s3client_config=part_config(PART)
    ).put_object(bucket, "w") as writer:
        pos = 0
        for want in SIZES:
            buf = bytearray(data[pos : pos + want])
            writer.write(buf)
            buf[:] = b"\xff" * len(buf)
            pos += len(buf)
    assert proxy.rejected_checksums == 0
    assert stored_checksum(boto_s3, bucket, "w") == crc(data)
    assert boto_s3.get_object(Bucket=bucket, Key="w")["Body"].read() == data
