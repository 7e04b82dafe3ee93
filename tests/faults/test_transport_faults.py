"""Retries, resumes and headers of both transports, against a real faulty proxy in front of moto."""

from __future__ import annotations

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


def _client(proxy, **config):
    return AsyncS3Client(
        REGION, endpoint=proxy.url, s3client_config=S3ClientConfig(**config)
    )


def _gets(proxy):
    return [
        (m, p, h) for m, p, h in proxy.requests if m == "GET" and "list-type" not in p
    ]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_slowdown_is_retried_within_max_attempts(
    s3_transport, proxy, bucket, put, method
):
    put("k", b"payload")
    proxy.add_fault(
        FaultRule(
            Fault.status(503, "SlowDown"), method=method, path_contains="/k", times=2
        )
    )
    async with _client(proxy, max_attempts=3) as c:
        if method == "GET":
            assert (await c.get_range(bucket, "k")).data == b"payload"
        else:
            assert (await c.head_object(bucket, "k")).size == 7
    assert proxy.faults_injected == 2


async def test_listing_slowdown_is_retried(s3_transport, proxy, bucket, put):
    put("k", b"x")
    proxy.add_fault(
        FaultRule(Fault.status(503, "SlowDown"), query_contains="list-type=2", times=1)
    )
    async with _client(proxy, max_attempts=2) as c:
        keys = [o.key async for o in c.list_objects(bucket).objects()]
    assert keys == ["k"]
    assert proxy.faults_injected == 1


async def test_slowdown_beyond_max_attempts_raises_s3exception(
    s3_transport, proxy, bucket, put
):
    put("k", b"payload")
    proxy.add_fault(
        FaultRule(
            Fault.status(503, "SlowDown"), method="GET", path_contains="/k", times=5
        )
    )
    async with _client(proxy, max_attempts=2) as c:
        with pytest.raises(S3Exception) as info:
            await c.get_range(bucket, "k")
    assert info.value.code == "SlowDown"
    assert info.value.status == 503
    assert (info.value.bucket, info.value.key, info.value.operation) == (
        bucket,
        "k",
        "GetObject",
    )
    assert proxy.faults_injected == 2


@pytest.mark.parametrize("fault", [Fault.reset_after(100_000), Fault.truncate(100_000)])
async def test_broken_body_resumes_from_last_byte_with_if_match(
    s3_transport, proxy, bucket, put, fault
):
    data = bytes(range(256)) * 2048  # 512 KiB
    put("big", data)
    proxy.add_fault(FaultRule(fault, method="GET", path_contains="/big", times=1))
    async with _client(proxy, max_attempts=3) as c:
        buf = bytearray(len(data))
        meta = await c.get_range_into(bucket, "big", 0, buf)
    assert bytes(buf) == data
    assert meta.nbytes == len(data)
    gets = _gets(proxy)
    assert len(gets) == 2
    resume_headers = {k.lower(): v for k, v in gets[1][2].items()}
    received = int(resume_headers["range"].split("=")[1].split("-")[0])
    # aiohttp drops bytes still buffered when the reset is seen, so the resume point is
    # anywhere between 0 and what the proxy sent; the request must still be a pinned range.
    assert 0 <= received <= 100_000
    assert resume_headers["range"] == f"bytes={received}-{len(data) - 1}"
    assert resume_headers["if-match"] == meta.etag


async def test_broken_body_with_one_attempt_fails(s3_transport, proxy, bucket, put):
    put("big", b"z" * 300_000)
    proxy.add_fault(
        FaultRule(Fault.reset_after(1000), method="GET", path_contains="/big", times=1)
    )
    async with _client(proxy, max_attempts=1) as c:
        with pytest.raises(S3Exception, match="GetObject"):
            await c.get_range(bucket, "big")


async def test_get_headers_name_package_and_requester_pays(
    s3_transport, proxy, bucket, put
):
    put("k", b"x")
    async with _client(proxy, requester_pays=True) as c:
        await c.get_range(bucket, "k", 0, 1)
    headers = {k.lower(): v for k, v in _gets(proxy)[-1][2].items()}
    assert "s3torch-async/" in headers["user-agent"]
    assert headers["x-amz-request-payer"] == "requester"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")


async def test_unsigned_get_sends_no_authorization(
    s3_transport, proxy, bucket, boto_s3
):
    boto_s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    async with _client(proxy, unsigned=True) as c:
        assert (await c.get_range(bucket, "k")).data == b"x"
    headers = {k.lower() for k in _gets(proxy)[-1][2]}
    assert "authorization" not in headers


async def test_anonymous_access_denied_is_the_same_error_on_both_paths(
    s3_transport, proxy, bucket, put
):
    put("private", b"x")
    async with _client(proxy, unsigned=True) as c:
        with pytest.raises(S3Exception) as info:
            await c.get_range(bucket, "private")
    assert info.value.status == 403
    assert str(info.value).startswith(
        f"Service error: GetObject s3://{bucket}/private failed: "
    )
    assert str(info.value).endswith("Forbidden") or "AccessDenied" in str(info.value)
