"""Endpoint, addressing and timeouts: resolved in exactly one place (botocore's set-up: _botostart).

Precedence of the endpoint: the ``endpoint=`` argument, else ``AWS_ENDPOINT_URL_S3``, else
``AWS_ENDPOINT_URL``, else AWS's own endpoint for the region.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlsplit

from .._config import S3ClientConfig
from .._errors import S3Exception
from ._planning import MAX_WINDOW_ITEMS, concurrency_for

__all__ = [
    "ResolvedSettings",
    "check_endpoint",
    "client_fingerprint",
    "first_answer_timeout",
    "resolve",
    "resolve_endpoint",
    "timeouts",
]

#: Seconds to open a connection (TCP + TLS); ``S3TORCH_ASYNC_CONNECT_TIMEOUT`` overrides it.
CONNECT_TIMEOUT = 10.0
#: Seconds without a byte from the server before a request fails (``S3TORCH_ASYNC_READ_TIMEOUT``).
READ_TIMEOUT = 60.0
#: Seconds to wait for the first response from an endpoint that has not answered the client
#: yet (``S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT``): a wrong endpoint that accepts connections but
#: never answers fails in seconds. Once it answered anything, ``READ_TIMEOUT`` applies.
FIRST_ANSWER_TIMEOUT = 2.0
CONNECT_TIMEOUT_ENV = "S3TORCH_ASYNC_CONNECT_TIMEOUT"
READ_TIMEOUT_ENV = "S3TORCH_ASYNC_READ_TIMEOUT"
FIRST_ANSWER_TIMEOUT_ENV = "S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT"
# Listing, HEADs and control calls share the pool with data transfers: leave them room.
_POOL_HEADROOM = 8


def resolve_endpoint(
    endpoint: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """Return the endpoint URL to use, or ``None`` for AWS's regional endpoint."""
    env = os.environ if environ is None else environ
    for candidate in (
        endpoint,
        env.get("AWS_ENDPOINT_URL_S3"),
        env.get("AWS_ENDPOINT_URL"),
    ):
        if candidate:
            return candidate
    return None


def check_endpoint(endpoint: Optional[str]) -> None:
    """Raise the reference's error for an endpoint botocore could not use (at first request).

    Raises:
        S3Exception: ``endpoint`` is not a valid URL.
    """
    if endpoint is None:
        return
    # botocore's own rules, loaded only for a client that starts through botocore.
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    if is_valid_endpoint_url(endpoint):
        return
    if is_valid_ipv6_endpoint_url(endpoint):
        return
    raise S3Exception(
        "Client error: Failed to construct request: Invalid S3 endpoint: endpoint could not "
        f"be resolved: Custom endpoint `{endpoint}` was not a valid URI",
        operation="CreateClient",
    )


def wants_path_style(endpoint: Optional[str], force_path_style: bool) -> bool:
    """Path-style addressing when asked, or when the endpoint host is an IP or ``localhost``."""
    if force_path_style:
        return True
    if not endpoint:
        return False
    host = (
        urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}").hostname or ""
    )
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ResolvedSettings:
    """Everything needed to build a botocore client, derived from the user's arguments."""

    region: str
    endpoint: Optional[str]
    path_style: bool
    config: S3ClientConfig
    user_agent: str
    max_concurrency: int

    @property
    def pool_size(self) -> int:
        # Room for a full prefetch window of small GETs (one connection each; connections
        # open only when used) or two transfers' worth of parts, whichever is larger.
        return max(self.max_concurrency * 2, MAX_WINDOW_ITEMS) + _POOL_HEADROOM


def resolve(
    region: str, endpoint: Optional[str], config: S3ClientConfig, user_agent: str
) -> ResolvedSettings:
    resolved = resolve_endpoint(endpoint)
    return ResolvedSettings(
        region=region,
        endpoint=resolved,
        path_style=wants_path_style(resolved, config.force_path_style),
        config=config,
        user_agent=user_agent,
        max_concurrency=concurrency_for(
            config.throughput_target_gbps, config.part_size
        ),
    )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{name} must be a positive number of seconds, got {environ[name]!r}"
        )
    return value


def timeouts(environ: Optional[Mapping[str, str]] = None) -> tuple[float, float]:
    """``(connect, read)`` timeouts in seconds, from the environment or the defaults.

    Raises:
        ValueError: ``S3TORCH_ASYNC_CONNECT_TIMEOUT`` or ``S3TORCH_ASYNC_READ_TIMEOUT`` is
            set to something other than a positive number.
    """
    env = os.environ if environ is None else environ
    return (
        _seconds(env, CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT),
        _seconds(env, READ_TIMEOUT_ENV, READ_TIMEOUT),
    )


def first_answer_timeout(environ: Optional[Mapping[str, str]] = None) -> float:
    """Seconds to wait for an endpoint's first response, never more than the read timeout.

    Raises:
        ValueError: ``S3TORCH_ASYNC_FIRST_ANSWER_TIMEOUT`` (or the read timeout variable)
            is set to something other than a positive number.
    """
    env = os.environ if environ is None else environ
    return min(
        _seconds(env, FIRST_ANSWER_TIMEOUT_ENV, FIRST_ANSWER_TIMEOUT),
        _seconds(env, READ_TIMEOUT_ENV, READ_TIMEOUT),
    )


# Environment variables read when a client opens; a shared client is only reused while they
# are unchanged (the endpoint variables are covered by resolving the endpoint).
_CLIENT_ENV = (
    "S3TORCH_ASYNC_FAST_PATH",
    CONNECT_TIMEOUT_ENV,
    READ_TIMEOUT_ENV,
    FIRST_ANSWER_TIMEOUT_ENV,
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "AWS_PROFILE",
    "AWS_CA_BUNDLE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def client_fingerprint(
    endpoint: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> tuple[Optional[str], ...]:
    """The resolved endpoint and the environment variables a client reads when it opens.

    Clients shared by configuration key on it, so a changed variable gets a new client.
    """
    env = os.environ if environ is None else environ
    return (resolve_endpoint(endpoint, env), *(env.get(name) for name in _CLIENT_ENV))
