"""benchmarks.write_ceiling uploads a real object, so its rate is a real write's rate."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from benchmarks.s3server import S3Server
from benchmarks.write_ceiling import upload

boto3 = pytest.importorskip("boto3")

pytestmark = pytest.mark.filterwarnings(
    "ignore:It is recommended to use web.RequestKey:UserWarning"
)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with S3Server(etag_mode="fast", min_part_size=1 << 20) as srv:
        boto3.client("s3", endpoint_url=srv.url, region_name="us-east-1").create_bucket(
            Bucket="bench"
        )
        yield srv.url


def test_parts_over_several_connections_make_the_object(server_url: str) -> None:
    data = os.urandom((3 << 20) * 5 + 12345)  # five 3 MiB parts and a short tail
    asyncio.run(upload(server_url, "bench", "ceiling", memoryview(data), 3 << 20, 4))
    s3 = boto3.client("s3", endpoint_url=server_url, region_name="us-east-1")
    assert s3.get_object(Bucket="bench", Key="ceiling")["Body"].read() == data


def test_a_refused_upload_fails_loudly(server_url: str) -> None:
    with pytest.raises(RuntimeError, match="CreateMultipartUpload: HTTP 404"):
        asyncio.run(upload(server_url, "no-bucket", "k", memoryview(b"x"), 1, 1))
