"""Fixtures shared by the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests._faultproxy import FaultProxy


@pytest.fixture(params=["fast-path", "botocore-path"])
def transport(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on the lean transport and once on botocore's."""
    monkeypatch.setenv(
        "S3TORCH_ASYNC_FAST_PATH", "1" if request.param == "fast-path" else "0"
    )
    return str(request.param)


@pytest.fixture
def checking_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A fault proxy that checks upload CRC32s as S3 does (moto does not: see
    ``test_checksums.test_moto_does_not_verify_upload_checksums``)."""
    with FaultProxy(moto_endpoint, verify_checksums=True) as proxy:
        yield proxy
