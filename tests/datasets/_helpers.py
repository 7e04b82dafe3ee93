"""Helpers for the dataset tests (module-level so spawn workers can import them)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from s3torch_async import S3ClientConfig
from tests._faultproxy import FaultProxy

REGION = "us-east-1"
CONFIG = S3ClientConfig(max_attempts=1)


def object_gets(proxy: FaultProxy, bucket: str) -> list[str]:
    """Keys of the GetObject requests the proxy saw for ``bucket``, in order."""
    keys = []
    for method, raw, _headers in proxy.requests:
        path, _, query = raw.partition("?")
        prefix = f"/{bucket}/"
        if method == "GET" and path.startswith(prefix) and "list-type" not in query:
            keys.append(unquote(path[len(prefix) :]))
    return keys


def listings(proxy: FaultProxy, bucket: str) -> int:
    """Number of ListObjectsV2 requests the proxy saw for ``bucket``."""
    return sum(
        1
        for method, raw, _h in proxy.requests
        if method == "GET" and raw.startswith(f"/{bucket}") and "list-type=2" in raw
    )


def heads(proxy: FaultProxy) -> int:
    """Number of HEAD requests the proxy saw."""
    return sum(1 for method, _raw, _h in proxy.requests if method == "HEAD")


def read_all(reader: Any) -> tuple[str, bytes]:
    """Transform returning ``(key, bytes)``."""
    return reader.key, reader.read()


def key_of(reader: Any) -> str:
    """Transform that reads nothing."""
    return str(reader.key)
