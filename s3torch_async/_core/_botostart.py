"""Starting a client through botocore: session, shared model loader, config and the client.

Imported only when a client needs botocore (see ``_direct`` for the start without it): this
module loads aiobotocore, and with it aiohttp and botocore's client machinery (~0.3 s).
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any, Optional

import botocore
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.httpsession import get_cert_path
from botocore.loaders import JSONFileLoader, Loader

from . import _session
from ._botocore import BotocoreTransport, no_redirect_session, register_handlers

__all__ = ["BotocoreStart", "build_aio_config", "make_session", "warm_models"]


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


def make_session(settings: _session.ResolvedSettings) -> AioSession:
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


def build_aio_config(
    settings: _session.ResolvedSettings,
    *,
    connect_timeout: float = _session.CONNECT_TIMEOUT,
    read_timeout: float = _session.READ_TIMEOUT,
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


class BotocoreStart:
    """An opened aiobotocore S3 client, its session and the transport over it.

    Open with :meth:`open`; :meth:`aclose` (idempotent) closes the client.
    """

    def __init__(
        self, session: Any, s3: Any, stack: AsyncExitStack, endpoint: Optional[str]
    ) -> None:
        self.session = session
        #: The opened aiobotocore S3 client (endpoint rules, presigned URLs, every call).
        self.s3 = s3
        self.transport = BotocoreTransport(s3, endpoint)
        self._stack: Optional[AsyncExitStack] = stack

    @classmethod
    async def open(
        cls,
        session: Any,
        settings: _session.ResolvedSettings,
        *,
        connect_timeout: float,
        read_timeout: float,
        first_answer_timeout: float,
    ) -> BotocoreStart:
        """Open the S3 client for ``settings`` on ``session`` (from :func:`make_session`)."""
        stack = AsyncExitStack()
        try:
            s3 = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=settings.endpoint,
                    config=build_aio_config(
                        settings,
                        connect_timeout=connect_timeout,
                        read_timeout=read_timeout,
                        http_session_cls=no_redirect_session(first_answer_timeout),
                    ),
                )
            )
            register_handlers(s3, requester_pays=settings.config.requester_pays)
        except BaseException:
            await stack.aclose()
            raise
        return cls(session, s3, stack, settings.endpoint)

    def ca_file(self) -> Optional[str]:
        """The CA bundle botocore verifies HTTPS with (``ca_bundle``, else its default)."""
        return str(get_cert_path(self.session.get_config_variable("ca_bundle") or True))

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await self.transport.aclose()
            await stack.aclose()
