"""Fixtures for the DCP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._faultproxy import FaultProxy


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's moto server."""
    with FaultProxy(moto_endpoint) as running:
        yield running
