"""Wrong endpoints fail fast and say why, on both transports (issue 14).

Each case used to take one to ten minutes of silent retries. Bounds on wall time here are
generous (the requirement is < 5 s; the measured times are about 2 s or less).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from tests._forwardproxy import ForwardProxy
from tests._scripted import HANG, ScriptedServer, response

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


async def test_server_that_never_answers_fails_fast_naming_the_cause(s3_transport):
    # Default timeouts: the endpoint has never answered, so the short first-answer timeout
    # (2 s) applies instead of the 60 s read timeout; a probe gets no answer either, and
    # that is not retried.
    with ScriptedServer(lambda req: HANG) as srv:
        exc, elapsed = await _fails(srv.url)
        requests = [(r.method, r.path) for r in srv.requests]
    assert str(exc).startswith(
        f"Client error: GetObject s3://bkt/k failed: no HTTP response from {srv.url} "
        "within 2 s, to the request or to a probe: is this an S3 endpoint?"
    )
    assert requests == [("GET", "/bkt/k"), ("HEAD", "/")]  # the request and the probe
    assert elapsed < BOUND


async def test_slow_first_answer_of_a_live_server_is_waited_for(
    s3_transport, monkeypatch
):
    # The first request takes 1 s, over the 0.3 s first-answer timeout, but the server
    # answers the probe at once: it is alive, so the request is waited for, not failed.
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.3")

    def handler(req):
        if req.method == "HEAD":
            return response(403)
        time.sleep(1.0)
        return _get_answer(req)

    with ScriptedServer(handler) as srv:
        async with _client(srv.url) as c:
            assert (await c.get_range("bkt", "k")).data == b"abc"
        requests = [(r.method, r.path) for r in srv.requests]
    assert requests == [("GET", "/bkt/k"), ("HEAD", "/")]  # no retry


def _get_answer(req):
    return response(200, b"abc", {"ETag": '"e"', "Content-Type": "binary/octet-stream"})


async def test_endpoint_that_answered_gets_the_read_timeout(s3_transport, monkeypatch):
    # Once the endpoint has answered, a slower answer (here 1 s, over the 0.3 s first-answer
    # timeout) is waited for; a silence past the read timeout (1.5 s) still fails, after the
    # usual two retries.
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.3")
    monkeypatch.setenv("S3TORCH_ASYNC_READ_TIMEOUT", "1.5")
    answers = iter([0.0, 1.0])

    def handler(req):
        delay = next(answers, None)
        if delay is None:
            return HANG
        time.sleep(delay)
        return _get_answer(req)

    with ScriptedServer(handler) as srv:
        async with _client(srv.url) as c:
            assert (await c.get_range("bkt", "k")).data == b"abc"
            assert (await c.get_range("bkt", "k")).data == b"abc"  # answered after 1 s
            with pytest.raises(S3Exception) as info:
                await c.get_range("bkt", "k")
        requests = len(srv.requests)
    assert "no response within the timeout" in str(info.value)
    assert "is this an S3 endpoint" not in str(info.value)
    assert requests == 2 + 3  # the third call: the first attempt and two retries


async def test_burst_of_first_requests_to_a_busy_endpoint_all_succeed(
    s3_transport, monkeypatch
):
    # A busy endpoint shares its CPU between the requests it holds (each needs 0.1 s of it),
    # as moto does on a loaded machine; the first-answer timeout is 0.3 s. Eight first
    # requests at once would all be answered after ~0.8 s, every one over the timeout. The
    # first one goes alone instead, is answered in 0.1 s and proves the endpoint; the others
    # then wait as long as the read timeout allows.
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.3")
    lock = threading.Lock()
    inflight = [0]

    def handler(req):
        with lock:
            inflight[0] += 1
        done = 0.0
        while done < 0.1:
            time.sleep(0.01)
            with lock:
                done += 0.01 / inflight[0]
        with lock:
            inflight[0] -= 1
        return _get_answer(req)

    with ScriptedServer(handler) as srv:
        async with _client(srv.url, max_attempts=1) as c:
            results = await asyncio.gather(*(c.get_range("bkt", "k") for _ in range(8)))
        gets = [r for r in srv.requests if r.method == "GET"]
    assert [r.data for r in results] == [b"abc"] * 8
    # None failed and was retried (a liveness probe, HEAD /, may go out under load).
    assert len(gets) == 8


async def test_burst_of_first_requests_to_a_silent_endpoint_fails_together(
    s3_transport, monkeypatch
):
    # Requests queued behind an unanswered probe fail with its error at once: a burst costs
    # one first-answer timeout, not one per request.
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.5")
    with ScriptedServer(lambda req: HANG) as srv:
        start = time.monotonic()
        async with _client(srv.url, max_attempts=1) as c:
            results = await asyncio.gather(
                *(c.get_range("bkt", "k") for _ in range(6)), return_exceptions=True
            )
        elapsed = time.monotonic() - start
        requests = [(r.method, r.path) for r in srv.requests]
    for exc in results:
        assert isinstance(exc, S3Exception)
        assert f"no HTTP response from {srv.url} within 0.5 s" in str(exc)
    # Only the first request and the liveness probe went out.
    assert sorted(requests) == [("GET", "/bkt/k"), ("HEAD", "/")]
    assert elapsed < BOUND


async def test_https_to_a_server_that_never_answers_fails_fast(s3_transport):
    # A port that accepts connections and stays silent, reached over https: the TLS
    # handshake gets the first-answer timeout too (it took 3 x the 10 s connect timeout).
    if s3_transport != "lean":
        pytest.skip(
            "aiohttp's handshake keeps the connect timeout on the botocore transport"
        )
    with ScriptedServer(lambda req: HANG) as srv:
        url = srv.url.replace("http://", "https://")
        exc, elapsed = await _fails(url)
    assert "no TLS answer from 127.0.0.1:" in str(exc)
    assert "within 2 s: is this an https S3 endpoint?" in str(exc)
    assert elapsed < BOUND


async def test_first_answer_timeout_is_settable(s3_transport, monkeypatch):
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.25")
    with ScriptedServer(lambda req: HANG) as srv:
        exc, _ = await _fails(srv.url)
    assert f"no HTTP response from {srv.url} within 0.25 s, to the" in str(exc)


@pytest.mark.parametrize(
    "name",
    [
        "S3TORCH_ASYNC_READ_TIMEOUT",
        "S3TORCH_ASYNC_CONNECT_TIMEOUT",
        "S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT",
    ],
)
@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
async def test_bad_timeout_variable_is_a_value_error_naming_it(
    monkeypatch, name, value
):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        async with _client("http://127.0.0.1:9"):
            pass


async def test_requests_through_a_proxy_keep_the_read_timeout(
    s3_transport, monkeypatch
):
    # Through HTTP_PROXY a probe (a direct connection) would prove nothing, so a slow
    # first answer is waited for. The endpoint here answers GET after 1 s (over the 0.3 s
    # first-answer timeout) and never answers a direct probe.
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT", "0.3")

    def handler(req):
        if req.method == "HEAD":
            return HANG
        time.sleep(1.0)
        return _get_answer(req)

    with ScriptedServer(handler) as srv, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with _client(srv.url) as c:
            assert (await c.get_range("bkt", "k")).data == b"abc"
        requests = [(r.method, r.path) for r in srv.requests]
    assert requests == [("GET", "/bkt/k")]  # no probe, no retry
