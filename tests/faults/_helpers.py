"""Helpers shared by the fault tests."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError


def assert_nothing_left(boto_s3: Any, bucket: str, key: str) -> None:
    """No object at ``key`` and no pending multipart upload in ``bucket``."""
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as info:
        boto_s3.head_object(Bucket=bucket, Key=key)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)
