"""Helpers shared by the fault tests."""

from __future__ import annotations

import base64
import random
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torch_async import S3ClientConfig


def assert_nothing_left(boto_s3: Any, bucket: str, key: str) -> None:
    """No object at ``key`` and no pending multipart upload in ``bucket``."""
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as info:
        boto_s3.head_object(Bucket=bucket, Key=key)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def crc(data: bytes) -> str:
    """``x-amz-checksum-crc32`` of ``data``, computed with zlib alone."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def part_config(part_size: int, max_attempts: int = 1) -> S3ClientConfig:
    return S3ClientConfig(part_size=part_size, max_attempts=max_attempts)
