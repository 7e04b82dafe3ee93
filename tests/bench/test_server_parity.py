"""The benchmark server must look like S3 to our client: same answers as moto on a smoke set.

Every observation the client can make (bytes, sizes, ETags, listing pages, multipart state,
error codes and messages) is collected against both servers, on both transports, and compared.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import pytest

from benchmarks.s3server import S3Server
from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception

REGION = "us-east-1"
MiB = 1 << 20

# benchmarks/s3server.py stores a flag on the aiohttp request under a str key; aiohttp 3.14
# warns (NotAppKeyWarning) and, with warnings as errors, the server would answer 500.
pytestmark = pytest.mark.filterwarnings(
    "ignore:It is recommended to use web.RequestKey:UserWarning"
)


@pytest.fixture(scope="module")
def bench_server() -> Iterator[str]:
    with S3Server() as srv:  # md5 ETags, as S3 and moto compute them
        yield srv.url


@pytest.fixture(params=["fast-path", "botocore-path"])
def transport(request, monkeypatch):
    monkeypatch.setenv(
        "S3TORCH_ASYNC_FAST_PATH", "1" if request.param == "fast-path" else "0"
    )
    return request.param


def _fresh_bucket(url: str) -> str:
    s3 = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=url,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    name = f"parity-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def _data(size: int, seed: int) -> bytes:
    block = bytes((i * 131 + seed) % 251 for i in range(4099))
    return (block * (size // len(block) + 1))[:size]


def _error(exc: S3Exception) -> tuple[Any, ...]:
    return (str(exc), exc.code, exc.status, exc.operation)


async def _observe(client: AsyncS3Client, bucket: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    one = _data(100_000, 1)
    seen["put_etag"] = await client.put_object_bytes(bucket, "a/one", one)
    head = await client.head_object(bucket, "a/one")
    seen["head"] = (head.size, head.etag, head.storage_class)

    whole = await client.get_range(bucket, "a/one")
    seen["get"] = (whole.data == one, whole.etag, whole.object_size)
    part = await client.get_range(bucket, "a/one", 10, 1000)
    seen["range"] = (part.data == one[10:1000], part.object_size)
    view = bytearray(64)
    meta = await client.get_range_into(bucket, "a/one", 99_990, view)
    seen["range_past_end"] = (meta.nbytes, bytes(view[: meta.nbytes]) == one[99_990:])
    with pytest.raises(S3Exception) as info:
        await client.get_range(bucket, "a/one", 0, 10, if_match='"0000"')
    seen["if_match_mismatch"] = (info.value.status, info.value.code)

    for i in range(5):
        await client.put_object_bytes(bucket, f"list/k{i}", _data(10 + i, i))
    await client.put_object_bytes(bucket, "list/sub/deep", b"d")
    pages = [p async for p in client.list_objects(bucket, "list/", max_keys=2)]
    seen["pages"] = [
        [(o.key, o.size, o.etag, o.storage_class) for o in p.object_info] for p in pages
    ]
    delimited = [p async for p in client.list_objects(bucket, "list/", "/")]
    seen["delimited"] = [
        ([o.key for o in p.object_info], p.common_prefixes) for p in delimited
    ]

    parts = [_data(5 * MiB, 7), _data(1000, 8)]
    upload_id = await client.create_multipart_upload(bucket, "mpu/obj")
    seen["pending"] = await client.list_multipart_uploads(bucket) == [
        ("mpu/obj", upload_id)
    ]
    etags = [
        await client.upload_part(bucket, "mpu/obj", upload_id, n, chunk)
        for n, chunk in enumerate(parts, 1)
    ]
    seen["part_etags"] = etags
    seen["mpu_etag"] = await client.complete_multipart_upload(
        bucket, "mpu/obj", upload_id, list(enumerate(etags, 1))
    )
    boundary = await client.get_range(bucket, "mpu/obj", 5 * MiB - 5, 5 * MiB + 5)
    seen["mpu_read"] = (
        boundary.data == (parts[0] + parts[1])[5 * MiB - 5 : 5 * MiB + 5],
        boundary.object_size,
        boundary.etag,
    )
    aborted = await client.create_multipart_upload(bucket, "mpu/aborted")
    await client.abort_multipart_upload(bucket, "mpu/aborted", aborted)
    seen["after_abort"] = await client.list_multipart_uploads(bucket)

    await client.copy_object(bucket, "a/one", bucket, "a/copy")
    copied = await client.get_range(bucket, "a/copy")
    seen["copy"] = (copied.data == one, copied.etag)

    await client.delete_object(bucket, "a/copy")
    await client.delete_object(bucket, "a/copy")  # deleting a missing key is fine
    with pytest.raises(S3Exception) as info:
        await client.head_object(bucket, "a/copy")
    seen["head_missing"] = _error(info.value)
    with pytest.raises(S3Exception) as info:
        await client.get_range(bucket, "a/copy")
    seen["get_missing"] = _error(info.value)[1:]  # the message names the bucket
    with pytest.raises(S3Exception) as info:
        [p async for p in client.list_objects(bucket + "-missing")]
    seen["list_missing_bucket"] = _error(info.value)[1:]
    return seen


async def _run(url: str, bucket: str) -> dict[str, Any]:
    async with AsyncS3Client(
        REGION,
        endpoint=url,
        s3client_config=S3ClientConfig(force_path_style=True, max_attempts=1),
    ) as client:
        return await _observe(client, bucket)


async def test_bench_server_answers_like_moto_on_the_smoke_set(
    transport, moto_endpoint, bench_server
):
    on_moto = await _run(moto_endpoint, _fresh_bucket(moto_endpoint))
    on_bench = await _run(bench_server, _fresh_bucket(bench_server))
    assert on_bench.keys() == on_moto.keys()
    for name in on_moto:
        assert on_bench[name] == on_moto[name], name


async def test_smoke_set_observations_are_the_expected_ones(transport, bench_server):
    seen = await _run(bench_server, _fresh_bucket(bench_server))
    assert seen["get"][0]
    assert seen["range"][0]
    assert seen["copy"][0]
    assert seen["range_past_end"] == (10, True)
    assert seen["if_match_mismatch"][0] == 412
    assert [len(p) for p in seen["pages"]] == [2, 2, 2]
    assert seen["delimited"] == [([f"list/k{i}" for i in range(5)], ["list/sub/"])]
    assert seen["pending"] is True
    assert seen["mpu_etag"].endswith('-2"')
    assert seen["mpu_read"][:2] == (True, 5 * MiB + 1000)
    assert seen["after_abort"] == []
    assert seen["head_missing"][2] == 404
