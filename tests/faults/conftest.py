"""Fixtures shared by the fault tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["fast-path", "botocore-path"])
def transport(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on the lean transport and once on botocore's."""
    monkeypatch.setenv(
        "S3TORCH_ASYNC_FAST_PATH", "1" if request.param == "fast-path" else "0"
    )
    return str(request.param)
