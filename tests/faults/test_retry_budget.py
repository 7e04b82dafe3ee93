"""One retry budget per operation: requests counted through the real fault proxy.

``max_attempts`` bounds every request made for one operation (request retries and resumes of
a broken body alike), on both transports.
"""

from __future__ import annotations

import logging

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"
DATA = bytes(range(256)) * 1200  # 300 KiB


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


def _client(proxy, max_attempts):
    return AsyncS3Client(
        REGION,
        endpoint=proxy.url,
        s3client_config=S3ClientConfig(max_attempts=max_attempts),
    )


def _count(proxy, method, path_part, query_part=""):
    return sum(
        1
        for m, p, _ in proxy.requests
        if m == method and path_part in p.split("?")[0] and query_part in p
    )


async def test_body_that_always_breaks_makes_exactly_max_attempts_gets(
    proxy, bucket, put
):
    put("big", DATA)
    proxy.add_fault(
        FaultRule(
            Fault.reset_after(1000), method="GET", path_contains="/big", times=None
        )
    )
    async with _client(proxy, 3) as c:
        with pytest.raises(S3Exception, match="GetObject"):
            await c.get_range(bucket, "big")
    assert _count(proxy, "GET", "/big") == 3


async def test_resumes_and_request_retries_share_one_budget(proxy, bucket, put):
    # The first GET breaks mid-body; every resume is answered 503. One budget of 3 requests:
    # the broken GET and two resumes (before: a fresh request budget per resume, 4 GETs).
    put("big", DATA)
    proxy.add_fault(
        FaultRule(Fault.reset_after(1000), method="GET", path_contains="/big", times=1)
    )
    proxy.add_fault(
        FaultRule(
            Fault.status(503, "SlowDown"),
            method="GET",
            path_contains="/big",
            header_present="If-Match",
            times=None,
        )
    )
    async with _client(proxy, 3) as c:
        with pytest.raises(S3Exception) as info:
            await c.get_range_into(bucket, "big", 0, bytearray(len(DATA)))
    assert info.value.code == "SlowDown"
    assert _count(proxy, "GET", "/big") == 3


async def test_resume_after_a_retried_request_succeeds_within_budget(
    proxy, bucket, put
):
    put("big", DATA)
    proxy.add_fault(
        FaultRule(Fault.status(503, "SlowDown"), method="GET", path_contains="/big")
    )
    proxy.add_fault(
        FaultRule(Fault.truncate(5000), method="GET", path_contains="/big", times=1)
    )
    async with _client(proxy, 3) as c:
        buf = bytearray(len(DATA))
        meta = await c.get_range_into(bucket, "big", 0, buf)
    assert bytes(buf) == DATA
    assert meta.nbytes == len(DATA)
    assert _count(proxy, "GET", "/big") == 3


async def _call(c, operation, bucket):
    if operation == "GetObject":
        await c.get_range(bucket, "k")
    elif operation == "HeadObject":
        await c.head_object(bucket, "k")
    elif operation == "PutObject":
        await c.put_object_bytes(bucket, "k", b"new")
    else:
        await c.list_objects(bucket).__anext__()


@pytest.mark.parametrize("operation", ["GetObject", "HeadObject", "List", "PutObject"])
async def test_503_every_time_makes_exactly_max_attempts_requests(
    proxy, bucket, put, operation
):
    put("k", b"payload")
    method = {"HeadObject": "HEAD", "PutObject": "PUT"}.get(operation, "GET")
    query = "list-type=2" if operation == "List" else ""
    proxy.add_fault(
        FaultRule(
            Fault.status(503, "SlowDown"),
            method=method,
            path_contains="/k" if not query else None,
            query_contains=query or None,
            times=None,
        )
    )
    async with _client(proxy, 3) as c:
        with pytest.raises(S3Exception) as info:
            await _call(c, operation, bucket)
    assert info.value.status == 503
    assert proxy.faults_injected == 3


async def test_access_denied_is_not_retried(proxy, bucket, put):
    put("k", b"payload")
    proxy.add_fault(
        FaultRule(
            Fault.status(403, "AccessDenied"),
            method="GET",
            path_contains="/k",
            times=None,
        )
    )
    async with _client(proxy, 5) as c:
        with pytest.raises(S3Exception) as info:
            await c.get_range(bucket, "k")
    assert info.value.status == 403
    assert proxy.faults_injected == 1


async def test_retries_are_logged_debug_then_warning(proxy, bucket, put, caplog):
    put("k", b"payload")
    proxy.add_fault(
        FaultRule(
            Fault.status(500, "InternalError"),
            method="HEAD",
            path_contains="/k",
            times=3,
        )
    )
    caplog.set_level(logging.DEBUG, logger="s3torch_async")
    async with _client(proxy, 4) as c:
        assert (await c.head_object(bucket, "k")).size == 7
    records = [r for r in caplog.records if r.name == "s3torch_async.retry"]
    assert [r.levelname for r in records] == ["DEBUG", "DEBUG", "WARNING"]
    warning = records[-1].getMessage()
    assert f"HeadObject s3://{bucket}/k" in warning
    assert proxy.url in warning
    assert "attempt 3 of 4" in warning
    assert "HTTP 500" in warning
