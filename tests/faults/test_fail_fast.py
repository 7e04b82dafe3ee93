"""Wrong endpoints fail fast and say why, on both transports (issue 14).

Each case used to take one to ten minutes of silent retries. Bounds on wall time here are
generous (the requirement is < 5 s; the measured times are about 2 s or less).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from tests._scripted import HANG, ScriptedServer

REGION = "us-east-1"
BOUND = 8.0


def _client(url: str, **config) -> AsyncS3Client:
    return AsyncS3Client(REGION, endpoint=url, s3client_config=S3ClientConfig(**config))


async def _fails(url: str, **config) -> tuple[S3Exception, float]:
    start = time.monotonic()
    async with _client(url, **config) as c:
        with pytest.raises(S3Exception) as info:
            await c.get_range("bkt", "k")
    return info.value, time.monotonic() - start


async def test_nothing_listening_fails_fast_naming_the_cause(s3_transport, caplog):
    caplog.set_level(logging.DEBUG, logger="s3torch_async")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        exc, elapsed = await _fails(url)
    assert "connection refused" in str(exc)
    assert str(exc).startswith("Client error: GetObject s3://bkt/k failed")
    assert elapsed < BOUND
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "s3torch_async.retry" and r.levelno == logging.WARNING
    ]
    assert warnings, "retries beyond the first few must warn"
    assert "GetObject s3://bkt/k" in warnings[0]
    assert url in warnings[0]
    assert "attempt 3 of 10" in warnings[0]
    assert "connection refused" in warnings[0]


async def test_unresolvable_host_fails_fast(s3_transport, monkeypatch):
    # Test-only resolver hook: the machine's DNS resolver is off loopback and tests must not
    # query it. Names are "resolved" with AI_NUMERICHOST, which makes glibc raise a real
    # socket.gaierror for any name without sending a query; both transports resolve through
    # the loop's getaddrinfo (asyncio's create_connection, aiohttp's ThreadedResolver).
    loop = asyncio.get_running_loop()

    async def no_dns(host, port, *, family=0, type=0, proto=0, flags=0):
        return socket.getaddrinfo(
            host, port, family, type, proto, flags | socket.AI_NUMERICHOST
        )

    monkeypatch.setattr(loop, "getaddrinfo", no_dns)
    exc, elapsed = await _fails("http://no-such-host.invalid:9000")
    assert "DNS lookup failed" in str(exc)
    assert elapsed < BOUND


async def test_https_against_an_http_server_fails_at_once(s3_transport, moto_endpoint):
    url = moto_endpoint.replace("http://", "https://")
    exc, elapsed = await _fails(url)
    assert "TLS error" in str(exc)
    assert elapsed < BOUND


async def test_server_that_never_answers_fails_after_the_read_timeout(
    s3_transport, monkeypatch
):
    monkeypatch.setenv("S3TORCH_ASYNC_READ_TIMEOUT", "0.5")
    with ScriptedServer(lambda req: HANG) as srv:
        exc, elapsed = await _fails(srv.url)
        requests = len(srv.requests)
    assert "no response within the timeout" in str(exc)
    assert requests == 3  # the first attempt and at most two retries
    assert elapsed < BOUND


@pytest.mark.parametrize(
    "name", ["S3TORCH_ASYNC_READ_TIMEOUT", "S3TORCH_ASYNC_CONNECT_TIMEOUT"]
)
@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
async def test_bad_timeout_variable_is_a_value_error_naming_it(
    monkeypatch, name, value
):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        async with _client("http://127.0.0.1:9"):
            pass
