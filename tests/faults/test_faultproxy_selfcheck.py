"""Self-checks for tests/_faultproxy.py against a real moto server, using plain boto3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import pytest
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    ReadTimeoutError,
)

from tests._faultproxy import Fault, FaultProxy, FaultRule

OBJECT_SIZE = 100 * 1024


@pytest.fixture(scope="module")
def moto_url(moto_endpoint: str) -> str:
    return moto_endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "aws_config"
    creds = tmp_path / "aws_credentials"
    config.write_text("")
    creds.write_text("")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(creds),
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url) as p:
        yield p


@pytest.fixture
def s3(proxy: FaultProxy, aws_env: None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=proxy.url,
        region_name="us-east-1",
        config=botocore.config.Config(
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=10,
        ),
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"selfcheck-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _payload(size: int = OBJECT_SIZE) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def _read_partial(body: Any) -> tuple[bytes, BaseException | None]:
    """Read a StreamingBody in chunks; return what arrived and the error that ended it."""
    got = bytearray()
    try:
        for chunk in body.iter_chunks(100):
            got += chunk
    except Exception as exc:
        return bytes(got), exc
    return bytes(got), None


@pytest.mark.timeout(60)
def test_passthrough_roundtrip(s3: Any, bucket: str, proxy: FaultProxy) -> None:
    data = _payload()
    s3.put_object(Bucket=bucket, Key="dir/a b+c%.bin", Body=data)
    got = s3.get_object(Bucket=bucket, Key="dir/a b+c%.bin")["Body"].read()
    assert got == data
    ranged = s3.get_object(Bucket=bucket, Key="dir/a b+c%.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == data[10:20]
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["dir/a b+c%.bin"]
    assert proxy.faults_injected == 0
    methods = [m for m, _, _ in proxy.requests]
    assert methods == ["PUT", "PUT", "GET", "GET", "GET"]
    # Raw path bytes reach the proxy untouched (and so upstream).
    assert any("a%20b%2Bc%25.bin" in p for _, p, _ in proxy.requests)
    assert any("list-type=2" in p for _, p, _ in proxy.requests)


@pytest.mark.timeout(60)
def test_status_fault_then_passes(s3: Any, bucket: str, proxy: FaultProxy) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    proxy.add_fault(
        FaultRule(Fault.status(503, "SlowDown", retry_after=1), method="GET")
    )
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="k")
    err = info.value.response
    assert err["Error"]["Code"] == "SlowDown"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert err["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    assert err["ResponseMetadata"]["RequestId"]
    assert proxy.faults_injected == 1
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"hello"
    assert proxy.faults_injected == 1


@pytest.mark.timeout(60)
def test_status_fault_matches_query_and_header(
    s3: Any, bucket: str, proxy: FaultProxy
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    proxy.add_fault(
        FaultRule(Fault.status(500, "InternalError"), query_contains="list-type=2")
    )
    proxy.add_fault(FaultRule(Fault.status(503, "SlowDown"), header_present="range"))
    # Neither rule matches a plain GET.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"0123456789"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-3")
    assert info.value.response["Error"]["Code"] == "SlowDown"
    with pytest.raises(ClientError) as info:
        s3.list_objects_v2(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert proxy.faults_injected == 2
    assert proxy.pending_rules == []


@pytest.mark.timeout(60)
def test_reset_after_mid_body(s3: Any, bucket: str, proxy: FaultProxy) -> None:
    data = _payload()
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    proxy.add_fault(FaultRule(Fault.reset_after(1000), method="GET"))
    resp = s3.get_object(Bucket=bucket, Key="big")
    assert resp["ContentLength"] == OBJECT_SIZE  # headers arrived intact
    got, exc = _read_partial(resp["Body"])
    assert exc is not None, "body read should fail after a reset"
    assert len(got) <= 1000 < OBJECT_SIZE
    assert got == data[: len(got)]
    assert proxy.faults_injected == 1
    # The rule expired: the next GET passes.
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data


@pytest.mark.timeout(60)
def test_truncate_mid_body(s3: Any, bucket: str, proxy: FaultProxy) -> None:
    data = _payload()
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    proxy.add_fault(FaultRule(Fault.truncate(1000), method="GET"))
    resp = s3.get_object(Bucket=bucket, Key="big")
    assert resp["ContentLength"] == OBJECT_SIZE  # upstream Content-Length kept
    got, exc = _read_partial(resp["Body"])
    assert exc is not None, "body read should fail on a short body"
    assert got == data[:1000]
    assert proxy.faults_injected == 1
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data


@pytest.mark.timeout(60)
def test_fault_expires_after_times(s3: Any, bucket: str, proxy: FaultProxy) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    proxy.add_fault(FaultRule(Fault.status(503), method="HEAD", times=2))
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            s3.head_object(Bucket=bucket, Key="k")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 1
    assert proxy.faults_injected == 2
    assert proxy.pending_rules == []
    proxy.clear()
    assert proxy.requests == []
    assert proxy.faults_injected == 0


@pytest.mark.timeout(60)
def test_delay_triggers_client_read_timeout(
    proxy: FaultProxy, bucket: str, aws_env: None
) -> None:
    slow = boto3.client(
        "s3",
        endpoint_url=proxy.url,
        region_name="us-east-1",
        config=botocore.config.Config(
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path"},
            read_timeout=0.5,
        ),
    )
    proxy.add_fault(FaultRule(Fault.delay(3), method="HEAD", path_contains=bucket))
    with pytest.raises(ReadTimeoutError):
        slow.head_bucket(Bucket=bucket)
    assert proxy.faults_injected == 1
    slow.head_bucket(Bucket=bucket)


def test_stop_is_idempotent(moto_url: str) -> None:
    p = FaultProxy(moto_url)
    p.stop()
    p.start()
    assert p.url.startswith("http://127.0.0.1:")
    p.stop()
    p.stop()
    with pytest.raises(RuntimeError):
        _ = p.url
