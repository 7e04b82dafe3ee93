"""One retry policy and one attempt budget per operation, for both transports.

Every request made for one user call (request retries, resumes of a broken body, a request on
a kept-alive connection the server had closed) draws on one :class:`Attempts` budget of
``S3ClientConfig.max_attempts`` requests. Transports make exactly one attempt per call; the
retrying happens here, so botocore runs with ``total_max_attempts=1``.

Failures are classified (:func:`classify`) by how likely a retry is to help:

* ``FATAL``: cannot heal on retry (TLS certificate or protocol errors, 4xx other than
  throttling and request timeouts, misuse): raised at once.
* ``SLOW``: rarely heals in seconds (DNS failure, connection refused): retried quickly, for
  at most :data:`SLOW_BUDGET` seconds of waiting in total.
* ``NO_ANSWER``: nothing came back within the connect or read timeout: at most
  :data:`NO_ANSWER_RETRIES` retries (each costs a full timeout); an endpoint that has never
  answered the client (``NoResponseError``: silent to the request and to a probe, each for
  the short first-answer timeout) gets :data:`FIRST_ANSWER_RETRIES` (none).
* ``TRANSIENT``: 5xx, throttling, resets, broken bodies: botocore's standard policy
  (exponential backoff with full jitter, base 1 s, capped at 20 s).

Each retry is logged at DEBUG; from the :data:`WARN_FROM`-th failed attempt on, at WARNING,
naming the operation, the endpoint, the attempt count and the cause (never credentials).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import ssl
import sys
from collections.abc import Awaitable
from typing import Any, Callable, Optional, TypeVar

from ._http import NoResponseError, StaleConnectionError

__all__ = [
    "Attempts",
    "Failure",
    "aiohttp_errors",
    "botocore_error",
    "classify",
    "client_error_response",
    "describe",
]

T = TypeVar("T")
logger = logging.getLogger("s3torch_async.retry")

MAX_BACKOFF = 20.0
SLOW_BUDGET = 2.0
NO_ANSWER_RETRIES = 2
FIRST_ANSWER_RETRIES = 0  # NoResponseError already means two silences (request, probe)
WARN_FROM = 3

# botocore.retries.standard's classification of service errors, kept identical.
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)


def aiohttp_errors(name: str) -> tuple[type[BaseException], ...]:
    """``(aiohttp.<name>,)`` once aiohttp is loaded, else ``()``.

    aiohttp is imported only with botocore's transport (see ``_direct``): before that, no
    aiohttp error can exist, and classifying one must not import it.
    """
    module = sys.modules.get("aiohttp")
    cls = getattr(module, name, None) if module is not None else None
    return (cls,) if isinstance(cls, type) else ()


class _NeverRaised(Exception):
    """Stands for a botocore error class while botocore is not loaded (no instance exists)."""


def botocore_error(name: str) -> type[BaseException]:
    """``botocore.exceptions.<name>``; a class nothing is an instance of until it is loaded.

    The lean transport reaches S3 without botocore; its errors module (and the vendored
    requests/urllib3 it imports, ~5 ms) is loaded only when one is raised.
    """
    module = sys.modules.get("botocore.exceptions")
    cls = getattr(module, name, None) if module is not None else None
    return cls if isinstance(cls, type) else _NeverRaised


def client_error_response(exc: BaseException) -> Optional[dict[str, Any]]:
    """The parsed response of a botocore ``ClientError``; ``None`` for any other error."""
    if isinstance(exc, botocore_error("ClientError")):
        response: dict[str, Any] = exc.response  # type: ignore[attr-defined]
        return response
    return None


def _tls_errors() -> tuple[type[BaseException], ...]:
    return (
        ssl.SSLError,
        ssl.CertificateError,
        botocore_error("SSLError"),
        *aiohttp_errors("ClientSSLError"),
    )


def _dns_errors() -> tuple[type[BaseException], ...]:
    return (socket.gaierror, *aiohttp_errors("ClientConnectorDNSError"))


def _slow_errors() -> tuple[type[BaseException], ...]:
    return (*_dns_errors(), ConnectionRefusedError)


def _body_errors() -> tuple[type[BaseException], ...]:
    return (
        ConnectionError,
        asyncio.TimeoutError,
        *aiohttp_errors("ClientError"),
        botocore_error("BotoCoreError"),
    )


class Failure(enum.Enum):
    """How likely a retry is to help (see the module docstring)."""

    FATAL = "fatal"
    SLOW = "slow"
    NO_ANSWER = "no answer"
    TRANSIENT = "transient"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it wraps (``__cause__``/``__context__``, botocore's ``error``)."""
    seen: list[BaseException] = []
    todo: list[Optional[BaseException]] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen) or len(seen) > 16:
            continue
        seen.append(e)
        inner = getattr(e, "kwargs", None)
        if isinstance(inner, dict) and isinstance(inner.get("error"), BaseException):
            todo.append(inner["error"])
        os_error = getattr(e, "os_error", None)
        if isinstance(os_error, BaseException):
            todo.append(os_error)
        todo.extend((e.__cause__, e.__context__))
    return seen


def classify(exc: BaseException, *, in_body: bool = False) -> Failure:
    """Classify a failed attempt; ``in_body``: it broke after the response headers arrived."""
    response = client_error_response(exc)
    if response is not None:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code")
        if status in _TRANSIENT_STATUS or code in _RETRYABLE_CODES or status == 429:
            return Failure.TRANSIENT
        return Failure.FATAL
    chain = _chain(exc)
    if any(isinstance(e, _tls_errors()) for e in chain):
        return Failure.FATAL
    if any(isinstance(e, _slow_errors()) for e in chain):
        return Failure.SLOW
    if in_body:
        if isinstance(exc, _body_errors()):
            return Failure.TRANSIENT
        return Failure.FATAL
    if isinstance(
        exc,
        (
            botocore_error("ConnectTimeoutError"),
            botocore_error("ReadTimeoutError"),
            asyncio.TimeoutError,
        ),
    ):
        return Failure.NO_ANSWER
    if isinstance(
        exc,
        (
            ConnectionError,
            botocore_error("EndpointConnectionError"),
            *aiohttp_errors("ClientError"),
        ),
    ):
        return Failure.TRANSIENT
    if isinstance(exc, botocore_error("BotoCoreError")) and type(exc).__name__ in (
        "ConnectionClosedError",
        "HTTPClientError",
        "ResponseStreamingError",
        "IncompleteReadError",
    ):
        return Failure.TRANSIENT
    return Failure.FATAL


def describe(exc: BaseException) -> str:
    """A one-line cause for logs and messages: the kind of failure and its text."""
    response = client_error_response(exc)
    if response is not None:
        err = response.get("Error", {}) or {}
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"HTTP {status} {err.get('Code', '')}: {err.get('Message', '')}".rstrip(
            ": "
        )
    kind = classify(exc)
    chain = _chain(exc)
    if any(isinstance(e, _dns_errors()) for e in chain):
        what = "DNS lookup failed"
    elif any(isinstance(e, ConnectionRefusedError) for e in chain):
        what = "connection refused"
    elif any(isinstance(e, _tls_errors()) for e in chain):
        what = "TLS error"
    elif any(isinstance(e, NoResponseError) for e in chain):
        return str(exc)  # names the endpoint and the likely cause already
    elif kind is Failure.NO_ANSWER:
        what = "no response within the timeout"
    else:
        what = type(exc).__name__
    text = str(exc).strip() or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{what}: {text}"


class Attempts:
    """The request budget of one operation: at most ``max_attempts`` requests in all.

    Args:
        max_attempts: Requests allowed for the operation (``S3ClientConfig.max_attempts``).
        operation: S3 operation name, for logs.
        where: ``s3://bucket/key`` (or bucket), for logs.
        endpoint: Endpoint URL (or ``"AWS"``), for logs.
    """

    __slots__ = (
        "_no_answer",
        "_slow_waited",
        "endpoint",
        "max_attempts",
        "operation",
        "used",
        "where",
    )

    def __init__(
        self, max_attempts: int, operation: str, where: str, endpoint: str
    ) -> None:
        self.max_attempts = max_attempts
        self.operation = operation
        self.where = where
        self.endpoint = endpoint
        self.used = 0
        self._slow_waited = 0.0
        self._no_answer = 0

    def __repr__(self) -> str:
        return (
            f"Attempts({self.operation} {self.where}, "
            f"{self.used}/{self.max_attempts} used)"
        )

    def take(self) -> None:
        """Count one request about to be sent."""
        self.used += 1

    async def retry_after(self, exc: BaseException, *, in_body: bool = False) -> bool:
        """After a failed request: wait and return True to retry, or False to give up."""
        kind = classify(exc, in_body=in_body)
        if kind is Failure.FATAL or self.used >= self.max_attempts:
            return False
        if kind is Failure.SLOW:
            delay = min(0.5, 0.1 * 2 ** (self.used - 1))
            if self._slow_waited + delay > SLOW_BUDGET:
                return False
            self._slow_waited += delay
        elif kind is Failure.NO_ANSWER:
            self._no_answer += 1
            limit = NO_ANSWER_RETRIES
            if any(isinstance(e, NoResponseError) for e in _chain(exc)):
                limit = FIRST_ANSWER_RETRIES
            if self._no_answer > limit:
                return False
            delay = random.uniform(0, 0.2)
        elif any(isinstance(e, StaleConnectionError) for e in _chain(exc)):
            delay = 0.0  # a kept-alive connection the server had closed: resend at once
        else:
            delay = random.random() * min(MAX_BACKOFF, 2.0 ** (self.used - 1))
        logger.log(
            logging.WARNING if self.used >= WARN_FROM else logging.DEBUG,
            "%s %s at %s: attempt %d of %d failed (%s); retrying in %.2f s",
            self.operation,
            self.where,
            self.endpoint,
            self.used,
            self.max_attempts,
            describe(exc),
            delay,
        )
        await asyncio.sleep(delay)
        return True

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds or the budget or the policy says stop."""
        while True:
            self.take()
            try:
                return await attempt()
            except Exception as exc:
                if not await self.retry_after(exc):
                    raise
