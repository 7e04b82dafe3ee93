"""No secret key, session token or signature in our exceptions, reprs or log records."""

from __future__ import annotations

import logging
import re

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"
SECRET = "SecretKeyDoNotLeak0123456789abcdefABCDEF"
TOKEN = "SessionTokenDoNotLeak9876543210zyxwvu"


async def test_secrets_never_reach_exceptions_reprs_or_our_logs(
    s3_transport, moto_endpoint, bucket, put, monkeypatch, caplog
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    put("k", b"payload")
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with FaultProxy(moto_endpoint) as proxy:
        # Retried requests (logged), then requests that fail for good.
        proxy.add_fault(FaultRule(Fault.status(503, "SlowDown"), method="GET", times=3))
        proxy.add_fault(
            FaultRule(Fault.status(403, "AccessDenied"), method="HEAD", times=None)
        )
        proxy.add_fault(
            FaultRule(Fault.status(500, "InternalError"), method="PUT", times=None)
        )
        client = AsyncS3Client(
            REGION,
            endpoint=proxy.url,
            s3client_config=S3ClientConfig(max_attempts=4),
        )
        async with client as c:
            assert (await c.get_range(bucket, "k")).data == b"payload"
            for call in (
                lambda: c.head_object(bucket, "k"),
                lambda: c.put_object_bytes(bucket, "k2", b"x" * 10),
            ):
                with pytest.raises(S3Exception) as info:
                    await call()
                texts += [str(info.value), repr(info.value)]
                cause = info.value.__cause__
                texts += [str(cause), repr(cause)]
            texts += [repr(c), repr(c._transport), repr(c.s3client_config)]
        signatures = {
            m.group(1)
            for _, _, headers in proxy.requests
            for name, value in headers.items()
            if name.lower() == "authorization"
            for m in [re.search(r"Signature=([0-9a-f]+)", value)]
            if m
        }
    assert signatures, "requests were signed"
    ours = [r for r in caplog.records if r.name.startswith("s3torch_async")]
    assert any(r.name == "s3torch_async.retry" for r in ours)
    texts += [r.getMessage() for r in ours]
    blob = "\n".join(texts)
    for secret in (SECRET, TOKEN, *signatures):
        assert secret not in blob
