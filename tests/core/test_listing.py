"""Partitioned listing: the same keys in the same order as a plain listing, fewer waits.

Against moto (an independent S3 for the answers) and the bench server (to count the listing
requests it receives while they are in flight). The key-range algorithm (``partitioned``) is
driven both by pages that aiobotocore requests with ``StartAfter`` (an independent client) and,
through ``list_partitioned``, by our own client's ``list_objects(..., start_after=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, List

import boto3
import pytest
from aiobotocore.session import get_session

from benchmarks.s3server import Profile, S3Server
from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core.listing import (
    KeySpace,
    PageFn,
    list_partitioned,
    partitioned,
)
from s3torch_async._core.prefetch import list_ahead
from s3torch_async._types import ObjectInfo

REGION = "us-east-1"


@pytest.fixture
async def client(endpoint):
    """Our client on moto, failing at the first error."""
    config = S3ClientConfig(max_attempts=1)
    async with AsyncS3Client(REGION, endpoint=endpoint, s3client_config=config) as c:
        yield c


async def _keys(gen: Any) -> List[str]:
    return [info.key async for info in gen]


def _put_many(boto_s3: Any, bucket: str, keys: List[str]) -> None:
    for key in keys:
        boto_s3.put_object(Bucket=bucket, Key=key, Body=b"x")


@contextlib.asynccontextmanager
async def _pages(url: str, bucket: str, prefix: str) -> AsyncIterator[PageFn]:
    """ListObjectsV2 pages after a key, requested by aiobotocore with ``StartAfter``."""
    async with get_session().create_client(
        "s3",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as s3:

        async def page(
            start_after: str, max_keys: int
        ) -> tuple[list[ObjectInfo], bool]:
            params = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
            if start_after:
                params["StartAfter"] = start_after
            resp = await s3.list_objects_v2(**params)
            infos = [ObjectInfo(c["Key"], "", 0, 0) for c in resp.get("Contents", ())]
            return infos, bool(resp["IsTruncated"])

        yield page


async def _partitioned_keys(
    url: str, bucket: str, prefix: str, partitions: int, max_keys: int
) -> List[str]:
    async with _pages(url, bucket, prefix) as page:
        return await _keys(partitioned(page, prefix, partitions, max_keys))


@pytest.mark.parametrize("partitions", [1, 3, 8])
async def test_evenly_numbered_keys_come_out_as_a_plain_listing_does(
    client, endpoint, bucket, boto_s3, partitions
):
    keys = [f"data/{i:05d}.bin" for i in range(120)]
    _put_many(boto_s3, bucket, [*keys, "dat", "data0", "other/1"])
    got = await _partitioned_keys(endpoint, bucket, "data/", partitions, 10)
    assert got == keys
    assert got == await _keys(list_ahead(client, bucket, "data/", max_keys=10))


async def test_clustered_and_unusual_keys_come_out_in_order_exactly_once(
    client, endpoint, bucket, boto_s3
):
    keys = (
        [f"a/{i:03d}" for i in range(40)]
        + [f"m/{i}" for i in range(0, 900, 15)]
        + ["m/~tilde", "n", "z/\u00e9t\u00e9", "z/\u4e2d", "z/\u4e2d\u6587/deep/key"]
        + [f"zz/{i:04d}" for i in range(30)]
    )
    _put_many(boto_s3, bucket, keys)
    plain = await _keys(list_ahead(client, bucket, "", max_keys=15))
    got = await _partitioned_keys(endpoint, bucket, "", 5, 15)
    assert got == plain
    # the public function, on our own client's StartAfter: same keys
    assert await _keys(list_partitioned(client, bucket, "", max_keys=15)) == plain
    assert sorted(got) == sorted(keys)


async def test_a_prefix_of_one_page_or_none(endpoint, bucket, boto_s3):
    _put_many(boto_s3, bucket, ["p/1", "p/2"])
    assert await _partitioned_keys(endpoint, bucket, "p/", 4, 5) == ["p/1", "p/2"]
    assert await _partitioned_keys(endpoint, bucket, "q/", 4, 5) == []


async def test_missing_bucket_raises_the_reference_error(client):
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        await _keys(list_partitioned(client, "no-such-bucket-s3torch-async"))


async def test_bad_arguments_are_rejected_before_any_request(client):
    with pytest.raises(ValueError, match="partitions must be >= 1, got 0"):
        await _keys(list_partitioned(client, "b", partitions=0))
    with pytest.raises(TypeError, match="partitions must be an int"):
        await _keys(list_partitioned(client, "b", partitions="4"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_keys"):
        await _keys(list_partitioned(client, "b", max_keys=0))


# -- concurrency, seen by the server ----------------------------------------------------------


@pytest.fixture(scope="module")
def slow_lists() -> Iterator[tuple[str, dict[str, int]]]:
    """A bench server whose listing pages take 50 ms, counting listings in flight."""
    seen = {"now": 0, "most": 0, "total": 0}
    # any active profile routes requests through backend.handle at call time
    profile = Profile(name="shaped", latency=1e-4)
    with S3Server(etag_mode="fast", profile=profile) as srv:
        s3 = boto3.client(
            "s3",
            endpoint_url=srv.url,
            region_name=REGION,
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
        s3.create_bucket(Bucket="b")
        _put_many(s3, "b", [f"k/{i:04d}" for i in range(600)])
        handle = srv.backend.handle

        async def counting(request: Any) -> Any:
            listing = request.method == "GET" and "list-type" in request.query
            if listing:
                seen["now"] += 1
                seen["total"] += 1
                seen["most"] = max(seen["most"], seen["now"])
            try:
                if listing:
                    await asyncio.sleep(0.05)
                return await handle(request)
            finally:
                if listing:
                    seen["now"] -= 1

        srv.backend.handle = counting  # type: ignore[method-assign]
        yield srv.url, seen


async def test_ranges_are_listed_concurrently_after_the_first_page(slow_lists):
    url, seen = slow_lists
    seen.update(most=0, total=0)
    async with _pages(url, "b", "k/") as page:
        gen = partitioned(page, "k/", 4, 50)
        first = await gen.__anext__()
        # the first key is out after exactly one page
        assert first.key == "k/0000"
        assert seen["total"] == 1
        rest = [info.key async for info in gen]
    assert [first.key, *rest] == [f"k/{i:04d}" for i in range(600)]
    assert seen["most"] > 1
    # a plain listing of the same prefix never has two pages in flight (once the ranges
    # cancelled past the end have left the server)
    for _ in range(100):
        if not seen["now"]:
            break
        await asyncio.sleep(0.02)
    seen.update(most=0, total=0)
    async with AsyncS3Client(REGION, endpoint=url) as c:
        assert len(await _keys(list_ahead(c, "b", "k/", max_keys=50))) == 600
    assert seen["most"] == 1


async def test_list_partitioned_lists_ranges_concurrently_through_our_client(
    slow_lists,
):
    url, seen = slow_lists
    seen.update(most=0, total=0)
    async with AsyncS3Client(REGION, endpoint=url) as c:
        gen = list_partitioned(c, "b", "k/", partitions=4, max_keys=50)
        first = await gen.__anext__()
        assert first.key == "k/0000"
        assert seen["total"] == 1
        rest = [info.key async for info in gen]
    assert [first.key, *rest] == [f"k/{i:04d}" for i in range(600)]
    assert seen["most"] > 1


async def test_start_after_lists_only_later_keys(client, bucket, boto_s3):
    _put_many(boto_s3, bucket, ["a", "b", "c", "d"])
    pager = client.list_objects(bucket, start_after="b")
    assert [i.key async for i in pager.objects()] == ["c", "d"]
    with pytest.raises(TypeError, match="start_after must be a str"):
        client.list_objects(bucket, start_after=3)  # type: ignore[arg-type]


async def test_abandoned_partitioned_listing_cancels_its_ranges(slow_lists):
    url, seen = slow_lists
    async with _pages(url, "b", "k/") as page:
        gen = partitioned(page, "k/", 4, 50)
        await gen.__anext__()
        await gen.aclose()
        await asyncio.sleep(0.2)
    assert seen["now"] == 0


# -- the key space ----------------------------------------------------------------------------


def test_key_space_keeps_key_order_and_bounds_stay_after_their_start():
    keys = ["p/", "p/0", "p/00", "p/01", "p/1", "p/A", "p/a", "p/~"]
    space = KeySpace("p/", 6, keys)
    positions = [space.position(k) for k in keys]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(keys)
    assert [space.key_at(p) for p in positions] == keys
    space.learn(100, "p/0000", "p/0100")
    step = space.step(1000)
    bound = space.bound("p/0100", step)
    assert bound is not None
    assert bound > "p/0100"
    assert bound.startswith("p/")
    assert all(0x20 <= ord(ch) <= 0x7E for ch in bound)
    assert space.bound("p/~~~~~~", space.end) is None


def test_key_space_estimates_decimal_counters_within_a_factor_of_two():
    sample = [f"k/{i:06d}" for i in range(1000)]
    space = KeySpace("k/", 8, sample)
    space.learn(999, sample[0], sample[-1])
    bound = space.bound(sample[-1], space.step(1000))
    assert bound is not None
    # about 900 keys past k/000999 (0.9 of a page): between 450 and 1,800
    assert "k/001449" <= bound <= "k/002799"
