"""Endpoint, addressing, credentials and botocore configuration: resolved in exactly one place.

Precedence of the endpoint: the ``endpoint=`` argument, else ``AWS_ENDPOINT_URL_S3``, else
``AWS_ENDPOINT_URL``, else AWS's own endpoint for the region.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

import botocore
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.loaders import JSONFileLoader, Loader
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from .._config import S3ClientConfig
from .._errors import S3Exception
from ._planning import MAX_WINDOW_ITEMS, concurrency_for

__all__ = [
    "ResolvedSettings",
    "build_aio_config",
    "check_endpoint",
    "client_fingerprint",
    "first_answer_timeout",
    "make_session",
    "resolve",
    "resolve_endpoint",
    "timeouts",
    "warm_models",
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
    if endpoint is None or is_valid_endpoint_url(endpoint):
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


class _PlainJSONFileLoader(JSONFileLoader):  # type: ignore[misc]
    """Parses botocore's JSON into plain dicts (ordered too), not ``OrderedDict``.

    botocore's ``object_pairs_hook=OrderedDict`` runs Python code for every JSON object and
    makes parsing the S3 models about twice as slow; nothing depends on the type.
    """

    def load_file(self, file_path: str) -> Any:
        for ext, opener in ((".json", open), (".json.gz", gzip.open)):
            if os.path.isfile(file_path + ext):
                with opener(file_path + ext, "rb") as f:
                    return json.loads(f.read().decode("utf-8"))
        return None


class _KnownServices:
    """The answer to ``Loader.list_available_services``, scanned only when listed.

    botocore asks for the list only to check that a service exists before loading its model;
    scanning all ~400 service folders for that costs ~20 ms per model type at start-up.
    """

    def __init__(self, loader: _FastLoader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, service: object) -> bool:
        if not isinstance(service, str):
            return False
        for base in self._loader.search_paths:
            folder = os.path.join(base, service)
            try:
                versions = os.listdir(folder)
            except OSError:
                continue
            for version in versions:
                path = os.path.join(folder, version, self._type_name)
                if self._loader.file_loader.exists(path):
                    return True
        return False

    def _all(self) -> list[str]:
        return list(self._loader.scan_services(self._type_name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class _FastLoader(Loader):  # type: ignore[misc]
    """botocore's data loader with a faster start-up (same files, same results)."""

    def __init__(self, extra_search_paths: Optional[list[str]] = None) -> None:
        super().__init__(
            extra_search_paths=extra_search_paths, file_loader=_PlainJSONFileLoader()
        )

    def list_available_services(self, type_name: str) -> Any:
        return _KnownServices(self, type_name)

    def scan_services(self, type_name: str) -> list[str]:
        """The full scan botocore does (for callers that iterate the list)."""
        return list(Loader.list_available_services(self, type_name))


def _create_loader(data_path: Optional[str]) -> Loader:
    # As botocore's create_loader (AWS_DATA_PATH: os.pathsep-separated, ~ and $VARS expanded).
    if data_path is None:
        return _FastLoader()
    paths = [
        os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)
    ]
    return _FastLoader(extra_search_paths=paths)


# botocore parses its JSON models (service, endpoint rules, partitions) per session, ~0.1 s
# of CPU per client; one loader per data path shares them across every client in the process
# (and, once warmed, with forked DataLoader workers).
_loaders: dict[Optional[str], Any] = {}
_loaders_lock = threading.Lock()


def _shared_loader(data_path: Optional[str]) -> Any:
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = _create_loader(data_path)
        return loader


def make_session(settings: ResolvedSettings) -> AioSession:
    session = (
        AioSession(profile=settings.config.profile)
        if settings.config.profile
        else AioSession()
    )
    session.register_component(
        "data_loader", _shared_loader(session.get_config_variable("data_path"))
    )
    return session


def warm_models() -> None:
    """Parse botocore's S3 models now, so that clients (and forked workers) start fast."""
    loader = _shared_loader(os.environ.get("AWS_DATA_PATH"))
    loader.load_service_model("s3", "service-2")
    loader.load_service_model("s3", "endpoint-rule-set-1")
    loader.load_data("endpoints")
    loader.load_data("partitions")


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


def build_aio_config(
    settings: ResolvedSettings,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    http_session_cls: Optional[type] = None,
) -> AioConfig:
    kwargs: dict[str, Any] = {
        "region_name": settings.region,
        # One attempt per call: retries are _retry.Attempts' (one budget on both transports).
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "max_pool_connections": settings.pool_size,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "user_agent_extra": settings.user_agent,
        # botocore computes and checks no checksum of its own: ours (CRC32, see _checksum)
        # are added explicitly on both transports, under the user's own botocore setting.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "s3": {"addressing_style": "path" if settings.path_style else "auto"},
    }
    if http_session_cls is not None:
        kwargs["http_session_cls"] = http_session_cls
    if settings.config.unsigned:
        kwargs["signature_version"] = botocore.UNSIGNED
    return AioConfig(**kwargs)


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
