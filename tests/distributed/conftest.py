"""Fixtures for the multi-rank tests: the moto endpoint reaches every process via the environment."""

from __future__ import annotations

import pytest


@pytest.fixture
def endpoint_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Export ``AWS_ENDPOINT_URL`` (inherited by spawned ranks and their workers)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint
