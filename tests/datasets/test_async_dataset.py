from __future__ import annotations

from collections import Counter

import pytest

from s3torch_async import AsyncS3Client, S3Exception
from s3torch_async._core.client import ClientState
from s3torch_async.async_dataset import AsyncS3Dataset, S3Object
from tests._faultproxy import Fault, FaultRule
from tests.datasets._helpers import CONFIG, REGION, object_gets


def from_prefix(uri, endpoint, **kwargs):
    kwargs.setdefault("s3client_config", CONFIG)
    return AsyncS3Dataset.from_prefix(uri, region=REGION, endpoint=endpoint, **kwargs)


async def collect(ds):
    return [obj async for obj in ds]


async def test_async_for_yields_whole_objects_in_listing_order(proxy, bucket, objects):
    made = objects(12)
    async with from_prefix(f"s3://{bucket}/data/", proxy.url) as ds:
        got = await collect(ds)
        client = ds._client
    assert [(o.bucket, o.key, o.data) for o in got] == [
        (bucket, k, v) for k, v in made.items()
    ]
    assert all(isinstance(o, S3Object) and o.object_info is not None for o in got)
    assert got[0].etag == got[0].object_info.etag
    assert sorted(object_gets(proxy, bucket)) == sorted(made)  # each fetched once
    assert client is not None
    assert client.state is ClientState.CLOSED


async def test_window_downloads_ahead_of_the_consumer(proxy, bucket, objects):
    # The proxy holds the first object GETs until two wait together (or 5 s pass): only a
    # dataset that asks for the next object before the first is delivered brings them
    # together, whatever the load.
    objects(10)
    proxy.add_fault(
        FaultRule(Fault.meet(2, 5.0), method="GET", path_contains="/data/", times=2)
    )
    async with from_prefix(f"s3://{bucket}/data/", proxy.url, prefetch_count=4) as ds:
        it = ds.__aiter__()
        first = await it.__anext__()
        assert first.key == "data/000"
        assert proxy.most_held == 2
        await it.aclose()


async def test_large_objects_are_read_when_reached(proxy, bucket, put):
    put("a", b"a" * 10)
    put("b", b"b" * 5000)
    async with from_prefix(f"s3://{bucket}/", proxy.url, prefetch_bytes=4096) as ds:
        got = await collect(ds)
    assert [(o.key, o.data) for o in got] == [("a", b"a" * 10), ("b", b"b" * 5000)]
    assert sorted(object_gets(proxy, bucket)) == ["a", "b"]


async def test_from_objects_with_a_caller_owned_client(endpoint, bucket, objects):
    made = objects(4)
    uris = [f"s3://{bucket}/{k}" for k in reversed(list(made))]
    async with AsyncS3Client(REGION, endpoint=endpoint) as client:
        ds = AsyncS3Dataset.from_objects(uris, region=REGION, client=client)
        got = await collect(ds)
        assert await collect(ds) == got  # the URI list is kept for every pass
        await ds.aclose()
        assert client.state is ClientState.OPENED  # not ours to close
    assert [o.key for o in got] == list(reversed(list(made)))
    assert [o.data for o in got] == list(reversed(list(made.values())))
    assert all(o.object_info is None for o in got)


async def test_missing_key_raises_at_its_turn(endpoint, bucket, objects):
    objects(2)
    ds = AsyncS3Dataset.from_objects(
        [
            f"s3://{bucket}/data/000",
            f"s3://{bucket}/missing",
            f"s3://{bucket}/data/001",
        ],
        region=REGION,
        endpoint=endpoint,
        s3client_config=CONFIG,
    )
    got = []
    error = ""
    async with ds:
        try:
            async for obj in ds:
                got.append(obj.key)  # noqa: PERF401 - what arrived before the error
        except S3Exception as exc:
            error = str(exc)
    assert got == ["data/000"]
    assert error == "Service error: The key does not exist"


async def test_bad_uri_and_missing_bucket(endpoint):
    async with from_prefix("s3a://b/p", endpoint) as ds:
        with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
            await collect(ds)
    async with from_prefix("s3://no-such-bucket-s3torch-async/", endpoint) as ds:
        with pytest.raises(
            S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
        ):
            await collect(ds)


async def test_empty_prefix_gives_no_items(endpoint, bucket):
    async with from_prefix(f"s3://{bucket}/none/", endpoint) as ds:
        assert await collect(ds) == []


async def test_shards_partition_the_shuffled_order(endpoint, bucket, objects):
    keys = list(objects(17, size=4))
    seen = []
    async with AsyncS3Client(REGION, endpoint=endpoint) as client:
        orders = []
        for index in range(3):
            ds = from_prefix(
                f"s3://{bucket}/data/",
                endpoint,
                client=client,
                shuffle=True,
                shuffle_buffer_size=5,
                shard_index=index,
                shard_count=3,
            )
            orders.append([o.key for o in await collect(ds)])
        whole = from_prefix(
            f"s3://{bucket}/data/",
            endpoint,
            client=client,
            shuffle=True,
            shuffle_buffer_size=5,
        )
        global_order = [o.key for o in await collect(whole)]
    for index, order in enumerate(orders):
        assert order == global_order[index::3]
        seen.extend(order)
    assert Counter(seen) == Counter(keys)
    assert global_order != keys


async def test_state_dict_resumes_the_pass(endpoint, bucket, objects):
    keys = list(objects(8, size=4))
    async with from_prefix(f"s3://{bucket}/data/", endpoint, shuffle=True) as ds:
        it = ds.__aiter__()
        head = [(await it.__anext__()).key for _ in range(3)]
        state = ds.state_dict()
        await it.aclose()
        assert state == {"epoch": 0, "yielded": 3}
        async with from_prefix(
            f"s3://{bucket}/data/", endpoint, shuffle=True
        ) as resumed:
            resumed.load_state_dict(state)
            tail = [o.key for o in await collect(resumed)]
        full = [o.key for o in await collect(ds)]
    assert head + tail == full
    assert sorted(full) == keys


def test_constructor_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        AsyncS3Dataset(REGION)
    with pytest.raises(ValueError, match="exactly one"):
        AsyncS3Dataset(REGION, s3_uri="s3://b/", object_uris=["s3://b/k"])
