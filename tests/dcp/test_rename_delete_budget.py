"""A rename's delete shares the client's retry budget (one budget per operation)."""

from __future__ import annotations

from typing import Any

import pytest

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async.dcp import S3FileSystem
from s3torch_async.dcp import s3_file_system as s3fs_module
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.dcp._helpers import REGION

pytestmark = pytest.mark.torch


def test_failing_delete_makes_at_most_max_attempts_requests(
    proxy: FaultProxy, bucket: str, put: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the rename's 3 tries, each retried by the client: 3 x max_attempts deletes.
    monkeypatch.setattr(s3fs_module, "_sleep", lambda _: None)
    put("src", b"data")
    fs = S3FileSystem(
        REGION, s3client_config=S3ClientConfig(max_attempts=3), endpoint=proxy.url
    )
    proxy.add_fault(FaultRule(Fault.status(503), method="DELETE", times=None))
    with pytest.raises(S3Exception) as info:
        fs.rename(f"s3://{bucket}/src", f"s3://{bucket}/dst")
    assert info.value.status == 503
    assert sum(1 for method, _, _ in proxy.requests if method == "DELETE") == 3
