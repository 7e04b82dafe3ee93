"""Large parts' CRC32 in an aws-chunked trailer, taken while the part is sent.

The lean transport sends it to AWS S3 over HTTPS (as botocore does) and, with
``S3TORCH_ASYNC_CHECKSUM_TRAILER=1``, to any endpoint: so these tests talk HTTP to the
checking fault proxy (which decodes the aws-chunked body and checks the trailer's CRC32 as S3
does) in front of moto (which decodes it and stores the checksum).
"""

from __future__ import annotations

import ssl
import zlib

import pytest

from s3torch_async import AsyncS3Client, S3Exception
from s3torch_async._core._http import HTTPPool
from s3torch_async._core._lean import _is_aws, _trailers_wanted
from s3torch_async._s3client import S3Client
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests._tls import self_signed
from tests.faults._helpers import assert_nothing_left, crc, part_config, payload

REGION = "us-east-1"
PART = 5 * 1024 * 1024


@pytest.fixture
def proxy(checking_proxy: FaultProxy) -> FaultProxy:
    return checking_proxy


@pytest.fixture(autouse=True)
def trailers_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3TORCH_ASYNC_CHECKSUM_TRAILER", "1")


def client(proxy: FaultProxy) -> AsyncS3Client:
    return AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=part_config(PART))


def part_puts(proxy: FaultProxy) -> list[dict[str, str]]:
    return [
        {k.lower(): v for k, v in headers.items()}
        for method, path, headers in proxy.requests
        if method == "PUT" and "partNumber=" in path
    ]


async def test_parts_carry_crc32_in_a_trailer_s3_checks(
    transport, proxy, bucket, boto_s3
):
    parts = [payload(PART, 1), payload(PART, 2), payload(123, 3)]
    async with client(proxy) as c, c.put_object(bucket, "k") as writer:
        for part in parts:
            await writer.write(part)
    puts = part_puts(proxy)
    assert len(puts) == 3
    trailed = [h for h in puts if "x-amz-trailer" in h]
    if transport == "fast-path":
        # The two 5 MiB parts: CRC32 in the trailer, none in the headers.
        assert len(trailed) == 2
        for headers in trailed:
            assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
            assert headers["content-encoding"] == "aws-chunked"
            assert headers["x-amz-decoded-content-length"] == str(PART)
            assert headers["x-amz-content-sha256"] == (
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            )
            assert "x-amz-checksum-crc32" not in headers
    else:
        assert trailed == []  # botocore's transport: headers, as before
    # The small last part is hashed up front and carries a header.
    assert sum("x-amz-checksum-crc32" in h for h in puts) == 3 - len(trailed)
    # The proxy, playing S3, checked every part's CRC32 (trailer or header) and the whole
    # object's at CompleteMultipartUpload, which the writer combined from the parts'.
    assert proxy.rejected_checksums == 0
    whole = b"".join(parts)
    head = boto_s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc(whole)
    assert boto_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == whole


def test_sync_writer_trailed_parts_round_trip(proxy, bucket, boto_s3, s3_transport):
    data = payload(3 * PART + 11, 4)
    with S3Client(
        REGION, endpoint=proxy.url, s3client_config=part_config(PART)
    ).put_object(bucket, "w") as writer:
        writer.write(data)  # whole parts of it are sent uncopied: hashed as sent
    assert proxy.rejected_checksums == 0
    trailed = sorted("x-amz-trailer" in h for h in part_puts(proxy))
    assert trailed == sorted([s3_transport == "lean"] * 3 + [False])
    head = boto_s3.head_object(Bucket=bucket, Key="w", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc(data)
    assert boto_s3.get_object(Bucket=bucket, Key="w")["Body"].read() == data


def test_copied_parts_keep_the_crc32_taken_while_copying(proxy, bucket, boto_s3):
    # Small writes are copied into part buffers and hashed as they are copied (cheap, from
    # the cache): those parts carry that CRC32 in a header, no trailer.
    data = payload(2 * PART + 11, 5)
    with S3Client(
        REGION, endpoint=proxy.url, s3client_config=part_config(PART)
    ).put_object(bucket, "c") as writer:
        for at in range(0, len(data), 1 << 20):
            writer.write(bytearray(data[at : at + (1 << 20)]))
    puts = part_puts(proxy)
    assert [("x-amz-trailer" in h, "x-amz-checksum-crc32" in h) for h in puts] == [
        (False, True)
    ] * 3
    assert proxy.rejected_checksums == 0
    head = boto_s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc(data)


async def test_flipped_bit_in_a_trailed_part_is_rejected_and_aborted(
    transport, proxy, bucket, boto_s3
):
    # Byte 1000 is part data whether or not the body is aws-chunked.
    proxy.add_fault(
        FaultRule(
            Fault.flip_request_bit(1000), method="PUT", query_contains="partNumber=2"
        )
    )
    async with client(proxy) as c:
        with pytest.raises(S3Exception) as info:
            async with c.put_object(bucket, "k") as writer:
                await writer.write(payload(3 * PART))
    assert info.value.code == "BadDigest"
    assert proxy.rejected_checksums == 1
    assert_nothing_left(boto_s3, bucket, "k")


@pytest.mark.parametrize("asked", [True, False])
async def test_trailers_over_https(
    moto_endpoint, bucket, boto_s3, s3_transport, monkeypatch, tmp_path, asked
):
    # The TLS send path hashes each slice as it is sent. A store other than AWS S3 gets
    # trailers only when asked, even over HTTPS: some reject aws-chunked bodies.
    if not asked:
        monkeypatch.delenv("S3TORCH_ASYNC_CHECKSUM_TRAILER")
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("AWS_CA_BUNDLE", cert)
    data = payload(2 * PART + 5, 6)
    with FaultProxy(
        moto_endpoint, verify_checksums=True, ssl_context=server_ctx
    ) as proxy:
        assert proxy.url.startswith("https://")
        async with client(proxy) as c, c.put_object(bucket, "t") as writer:
            await writer.write(data)
        trailed = sorted("x-amz-trailer" in h for h in part_puts(proxy))
        assert trailed == sorted([asked and s3_transport == "lean"] * 2 + [False])
        assert proxy.rejected_checksums == 0
    head = boto_s3.head_object(Bucket=bucket, Key="t", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc(data)
    assert boto_s3.get_object(Bucket=bucket, Key="t")["Body"].read() == data


@pytest.mark.parametrize("size", [1, 1000, 3 << 20])
async def test_pool_frames_small_and_large_bodies_with_a_trailer(
    proxy, bucket, boto_s3, size
):
    # Small bodies go out with the head in one write, large ones after it: both framed as
    # one aws-chunked chunk and a trailer the proxy checks; the CRC32 is reported back.
    data = payload(size, 7)
    headers = {
        "Host": proxy.url.split("://", 1)[1],
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(size),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    }
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=30)
    try:
        resp = await pool.request(
            "PUT", f"{proxy.url}/{bucket}/p", headers, data, trailer_crc32=True
        )
        async with resp:
            await resp.read()
            assert resp.status == 200
            assert resp.sent_crc32 == zlib.crc32(data)
    finally:
        await pool.aclose()
    assert proxy.rejected_checksums == 0
    (sent,) = [h for m, _, h in proxy.requests if m == "PUT"]
    assert (
        int(sent["Content-Length"]) == len(f"{size:x}\r\n") + size + 38
    )  # CRLF 0 CRLF, the trailer line, CRLF CRLF
    assert boto_s3.get_object(Bucket=bucket, Key="p")["Body"].read() == data


def test_trailer_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3TORCH_ASYNC_CHECKSUM_TRAILER")
    # By default only AWS S3 over HTTPS: other stores may reject aws-chunked bodies.
    assert _trailers_wanted(tls=True, aws=True) is True
    assert _trailers_wanted(tls=False, aws=True) is False
    assert _trailers_wanted(tls=True, aws=False) is False
    monkeypatch.setenv("S3TORCH_ASYNC_CHECKSUM_TRAILER", "0")
    assert _trailers_wanted(tls=True, aws=True) is False
    monkeypatch.setenv("S3TORCH_ASYNC_CHECKSUM_TRAILER", "on")
    assert _trailers_wanted(tls=False, aws=False) is True
    monkeypatch.setenv("S3TORCH_ASYNC_CHECKSUM_TRAILER", "sometimes")
    with pytest.raises(ValueError, match="S3TORCH_ASYNC_CHECKSUM_TRAILER"):
        _trailers_wanted(tls=False, aws=False)


@pytest.mark.parametrize(
    ("endpoint", "aws"),
    [
        (None, True),
        ("https://s3.us-west-2.amazonaws.com", True),
        ("https://s3.cn-north-1.amazonaws.com.cn", True),
        ("https://minio.example:9000", False),
        ("http://127.0.0.1:9000", False),
        ("https://amazonaws.com.evil.example", False),
    ],
)
def test_only_aws_endpoints_count_as_aws(endpoint, aws) -> None:
    assert _is_aws(endpoint) is aws
