"""The retry policy's classification and budget, on real exception objects (no I/O)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from s3torch_async._core import _retry
from s3torch_async._core._http import NoResponseError
from s3torch_async._core._retry import Attempts, Failure, classify
from s3torch_async._core._session import first_answer_timeout, timeouts


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


def _wrapped(inner: BaseException) -> BaseException:
    # As our HTTP client raises them: a ConnectionError whose cause is the OS error.
    try:
        try:
            raise inner
        except OSError as exc:
            raise ConnectionError("cannot connect") from exc
    except ConnectionError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error(503, "SlowDown"), Failure.TRANSIENT),
        (_client_error(500, "InternalError"), Failure.TRANSIENT),
        (_client_error(429, "TooManyRequests"), Failure.TRANSIENT),
        (_client_error(400, "RequestTimeout"), Failure.TRANSIENT),
        (_client_error(403, "AccessDenied"), Failure.FATAL),
        (_client_error(404, "NoSuchKey"), Failure.FATAL),
        (_client_error(412, "PreconditionFailed"), Failure.FATAL),
        (_wrapped(ConnectionRefusedError(111, "refused")), Failure.SLOW),
        (_wrapped(socket.gaierror(-2, "Name or service not known")), Failure.SLOW),
        (_wrapped(ssl.SSLCertVerificationError("bad cert")), Failure.FATAL),
        (
            EndpointConnectionError(
                endpoint_url="http://x", error=ConnectionRefusedError(111, "refused")
            ),
            Failure.SLOW,
        ),
        (
            SSLError(endpoint_url="https://x", error=ssl.SSLError("wrong version")),
            Failure.FATAL,
        ),
        (ReadTimeoutError(endpoint_url="http://x", error="t"), Failure.NO_ANSWER),
        (asyncio.TimeoutError(), Failure.NO_ANSWER),
        (ConnectionResetError(104, "reset"), Failure.TRANSIENT),
        (ValueError("misuse"), Failure.FATAL),
    ],
)
def test_classification(exc, kind):
    assert classify(exc) is kind


def test_broken_body_is_transient_even_for_a_timeout():
    assert classify(asyncio.TimeoutError(), in_body=True) is Failure.TRANSIENT
    assert classify(ValueError("x"), in_body=True) is Failure.FATAL


async def test_budget_counts_every_request(monkeypatch):
    monkeypatch.setattr(_retry.random, "random", lambda: 0.0)
    calls = 0

    async def always_503():
        nonlocal calls
        calls += 1
        raise _client_error(503, "SlowDown")

    budget = Attempts(4, "GetObject", "s3://b/k", "http://e")
    with pytest.raises(ClientError):
        await budget.run(always_503)
    assert calls == 4
    assert budget.used == 4


async def test_slow_failures_stop_within_the_slow_budget(monkeypatch):
    waits: list[float] = []

    async def fake_sleep(seconds):
        waits.append(seconds)

    monkeypatch.setattr(_retry.asyncio, "sleep", fake_sleep)
    budget = Attempts(100, "GetObject", "s3://b/k", "http://e")

    async def refused():
        raise _wrapped(ConnectionRefusedError(111, "refused"))

    with pytest.raises(ConnectionError):
        await budget.run(refused)
    assert sum(waits) <= _retry.SLOW_BUDGET
    assert budget.used == len(waits) + 1 < 100


def test_timeouts_from_environment():
    assert timeouts({}) == (10.0, 60.0)
    env = {"S3TORCH_ASYNC_CONNECT_TIMEOUT": "2.5", "S3TORCH_ASYNC_READ_TIMEOUT": " 7 "}
    assert timeouts(env) == (2.5, 7.0)
    with pytest.raises(ValueError, match=r"S3TORCH_ASYNC_READ_TIMEOUT.*'soon'"):
        timeouts({"S3TORCH_ASYNC_READ_TIMEOUT": "soon"})


def test_first_answer_timeout_from_environment():
    assert first_answer_timeout({}) == 2.0
    assert first_answer_timeout({"S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT": "0.5"}) == 0.5
    # Never longer than the read timeout.
    assert first_answer_timeout({"S3TORCH_ASYNC_READ_TIMEOUT": "1"}) == 1.0
    with pytest.raises(ValueError, match=r"S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT.*'-2'"):
        first_answer_timeout({"S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT": "-2"})


@pytest.mark.parametrize(
    ("exc", "retries"),
    [
        (NoResponseError("no HTTP response"), _retry.FIRST_ANSWER_RETRIES),
        (asyncio.TimeoutError("no data received"), _retry.NO_ANSWER_RETRIES),
    ],
)
async def test_an_endpoint_that_never_answered_is_retried_once(
    monkeypatch, exc, retries
):
    async def no_sleep(seconds):
        pass

    monkeypatch.setattr(_retry.asyncio, "sleep", no_sleep)
    budget = Attempts(10, "GetObject", "s3://b/k", "http://e")

    async def silent():
        raise exc

    with pytest.raises(asyncio.TimeoutError):
        await budget.run(silent)
    assert budget.used == 1 + retries
    assert _retry.FIRST_ANSWER_RETRIES == 1
