"""Fixtures for the dataset tests: a request-logging proxy in front of moto, object helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from tests._faultproxy import FaultProxy


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A pass-through proxy whose ``requests`` log shows what the code under test sent."""
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def objects(put: Callable[..., None]) -> Callable[..., dict[str, bytes]]:
    """Upload ``n`` small objects ``{prefix}{i:03d}`` with distinct contents."""

    def _objects(n: int, prefix: str = "data/", size: int = 32) -> dict[str, bytes]:
        made = {}
        for i in range(n):
            key = f"{prefix}{i:03d}"
            data = (f"{key}:".encode() * size)[:size]
            put(key, data)
            made[key] = data
        return made

    return _objects
