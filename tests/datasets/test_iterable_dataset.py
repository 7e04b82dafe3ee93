from __future__ import annotations

import functools
import logging
import pickle

import pytest

from s3torch_async import S3Exception
from s3torch_async._runner import get_runner
from s3torch_async._s3bucket_key_data import S3BucketKeyData
from s3torch_async._s3dataset_common import get_objects_from_prefix
from s3torch_async.s3iterable_dataset import S3IterableDataset
from s3torch_async.s3reader import S3ReaderConstructor, SequentialS3Reader
from tests._faultproxy import Fault, FaultRule
from tests.datasets._helpers import (
    CONFIG,
    REGION,
    heads,
    key_of,
    listings,
    object_gets,
    read_all,
)


def from_prefix(uri, endpoint, **kwargs):
    kwargs.setdefault("s3client_config", CONFIG)
    return S3IterableDataset.from_prefix(
        uri, region=REGION, endpoint=endpoint, **kwargs
    )


def from_objects(uris, endpoint, **kwargs):
    kwargs.setdefault("s3client_config", CONFIG)
    return S3IterableDataset.from_objects(
        uris, region=REGION, endpoint=endpoint, **kwargs
    )


# -- reference behaviour ----------------------------------------------------------------------


def test_from_prefix_yields_every_object_in_listing_order(
    endpoint, bucket, objects, caplog
):
    made = objects(12)
    objects(2, prefix="other/")
    with caplog.at_level(logging.INFO, logger="s3torch_async"):
        ds = from_prefix(f"s3://{bucket}/data/", endpoint, transform=read_all)
    assert f"Building S3IterableDataset from_prefix s3_uri='s3://{bucket}/data/'" in (
        caplog.text
    )
    assert list(ds) == list(made.items())
    assert ds.region == REGION
    assert ds.endpoint == endpoint


def test_default_reader_is_sequential_and_user_agent_names_the_dataset(endpoint):
    ds = from_prefix("s3://b/p", endpoint)
    assert S3ReaderConstructor.get_reader_type_string(ds._reader_constructor) == (
        "sequential"
    )
    ranged = S3ReaderConstructor.range_based()
    ds2 = from_prefix("s3://b/p", endpoint, reader_constructor=ranged)
    assert ds2._reader_constructor is ranged
    assert ds2._get_client().user_agent_prefix.endswith(
        "(md/dataset#iterable md/reader_type#range_based)"
    )


def test_from_objects_keeps_the_given_order_and_logs(endpoint, bucket, objects, caplog):
    made = objects(5)
    order = [f"data/{i:03d}" for i in (3, 0, 4, 1, 2)]
    with caplog.at_level(logging.INFO, logger="s3torch_async"):
        ds = from_objects([f"s3://{bucket}/{k}" for k in order], endpoint)
    assert "Building S3IterableDataset from_objects" in caplog.text
    got = [(r.bucket, r.key, r.read()) for r in ds]
    assert got == [(bucket, k, made[k]) for k in order]


def test_single_uri_string_is_one_object(endpoint, bucket, objects):
    objects(2)
    ds = from_objects(f"s3://{bucket}/data/001", endpoint, transform=key_of)
    assert list(ds) == ["data/001"]


def test_dataset_is_reiterable_and_one_shot_generator_is_consumed_by_first_epoch(
    endpoint, bucket, objects
):
    objects(4)
    ds = from_prefix(f"s3://{bucket}/data/", endpoint, transform=key_of)
    assert list(ds) == list(ds)
    gen = (f"s3://{bucket}/data/{i:03d}" for i in range(4))
    one_shot = from_objects(gen, endpoint, transform=key_of)
    assert len(list(one_shot)) == 4
    assert list(one_shot) == []


def test_transform_is_applied_to_each_reader(endpoint, bucket, objects):
    made = objects(3)
    ds = from_prefix(
        f"s3://{bucket}/data/", endpoint, transform=lambda r: len(r.read())
    )
    assert list(ds) == [len(v) for v in made.values()]


def test_prefix_without_trailing_slash_matches_as_string_prefix(endpoint, bucket, put):
    for key in ("obj1", "obj2", "objects/x", "test"):
        put(key, b"x")
    ds = from_prefix(f"s3://{bucket}/obj", endpoint, transform=key_of)
    assert list(ds) == ["obj1", "obj2", "objects/x"]
    assert len(list(from_prefix(f"s3://{bucket}", endpoint))) == 4


# -- errors where the reference raises them ---------------------------------------------------


@pytest.mark.parametrize("uri", ["", "s3a://bucket/p", "bucket/p"])
def test_non_s3_uri_raises_value_error_at_iteration_not_construction(uri, endpoint):
    ds = from_prefix(uri, endpoint)
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
        iter(ds)
    bad = from_objects([uri], endpoint)
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
        iter(bad)


def test_missing_bucket_raises_at_first_item(endpoint):
    ds = from_prefix("s3://no-such-bucket-s3torch-async/p", endpoint)
    it = iter(ds)
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        next(it)


def test_empty_prefix_is_an_empty_dataset_and_warns(endpoint, bucket, objects, caplog):
    objects(2)
    with caplog.at_level(logging.WARNING, logger="s3torch_async"):
        assert list(from_prefix(f"s3://{bucket}/nothing-here/", endpoint)) == []
    assert f"s3://{bucket}/nothing-here/ lists no objects" in caplog.text


def test_an_empty_shard_of_a_full_prefix_does_not_warn(
    monkeypatch, endpoint, bucket, objects, caplog
):
    from s3torch_async import _s3dataset_common

    objects(1)
    monkeypatch.setattr(_s3dataset_common, "get_rank_and_world_size", lambda: (1, 2))
    ds = from_prefix(f"s3://{bucket}/data/", endpoint, enable_sharding=True)
    with caplog.at_level(logging.WARNING, logger="s3torch_async"):
        assert list(ds) == []  # rank 1 of 2 gets nothing of one object
    assert "lists no objects" not in caplog.text


def test_missing_object_from_uris_raises_when_read_not_when_yielded(
    endpoint, bucket, objects
):
    objects(1)
    ds = from_objects([f"s3://{bucket}/data/000", f"s3://{bucket}/missing"], endpoint)
    readers = list(ds)  # prefetch failures are left to the reader
    assert readers[0].read() == b"data/000:" * 3 + b"data/"
    with pytest.raises(
        S3Exception, match=r"^Service error: The key does not exist(\n|$)"
    ):
        readers[1].read()


# -- prefetching ------------------------------------------------------------------------------


def test_prefetch_fetches_each_object_once_in_listing_order_and_never_heads(
    proxy, bucket, objects
):
    made = objects(20)
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=read_all)
    assert list(ds) == list(made.items())
    gets = object_gets(proxy, bucket)
    assert sorted(gets) == sorted(made)
    assert len(gets) == len(made)
    assert heads(proxy) == 0


def test_prefetch_downloads_ahead_of_the_consumer(proxy, bucket, objects):
    # The proxy holds the first object GETs until two wait together (or 5 s pass): only a
    # dataset that asks for the next object before the first is delivered brings them
    # together, whatever the load.
    objects(10)
    proxy.add_fault(
        FaultRule(Fault.meet(2, 5.0), method="GET", path_contains="/data/", times=2)
    )
    ds = from_prefix(
        f"s3://{bucket}/data/", proxy.url, transform=key_of, prefetch_count=4
    )
    it = iter(ds)
    assert next(it) == "data/000"
    assert proxy.most_held == 2
    rest = list(it)
    assert rest == [f"data/{i:03d}" for i in range(1, 10)]
    assert len(object_gets(proxy, bucket)) == 10


def test_objects_over_the_threshold_are_not_prefetched(proxy, bucket, put):
    put("a-small", b"s" * 100)
    put("b-big", b"b" * 3000)
    put("c-small", b"t" * 100)
    # threshold = prefetch_bytes // 4 = 1024 bytes
    ds = from_prefix(
        f"s3://{bucket}/", proxy.url, transform=lambda r: r, prefetch_bytes=4096
    )
    readers = list(ds)
    assert sorted(object_gets(proxy, bucket)) == ["a-small", "c-small"]
    assert [r.key for r in readers] == ["a-small", "b-big", "c-small"]
    assert readers[1].read() == b"b" * 3000
    assert "b-big" in object_gets(proxy, bucket)
    assert readers[0].read() == b"s" * 100
    assert object_gets(proxy, bucket).count("a-small") == 1


def test_from_objects_prefetches_with_one_get(proxy, bucket, objects):
    made = objects(6)
    uris = [f"s3://{bucket}/{k}" for k in made]
    assert list(from_objects(uris, proxy.url, transform=read_all)) == list(made.items())
    assert sorted(object_gets(proxy, bucket)) == sorted(made)
    assert heads(proxy) == 0


def custom_constructor(bucket, key, get_object_info, get_stream):
    return SequentialS3Reader(bucket, key, get_object_info, get_stream)


@pytest.mark.parametrize(
    "constructor",
    [
        pytest.param(lambda: S3ReaderConstructor.dcp_optimized(), id="dcp_optimized"),
        pytest.param(lambda: custom_constructor, id="unknown"),
        pytest.param(lambda: None, id="prefetch_disabled"),
    ],
)
def test_no_prefetch_for_other_readers_or_when_disabled(
    proxy, bucket, put, constructor
):
    # ".metadata" keys: the DCP-optimized constructor reads them without item ranges
    keys = [f"d/{i}.metadata" for i in range(5)]
    for key in keys:
        put(key, b"m" * 10)
    rc = constructor()
    kwargs = {"reader_constructor": rc} if rc is not None else {"prefetch_bytes": 0}
    ds = from_prefix(f"s3://{bucket}/d/", proxy.url, transform=lambda r: r, **kwargs)
    readers = list(ds)
    assert [r.key for r in readers] == keys
    assert object_gets(proxy, bucket) == []
    assert readers[2].read() == b"m" * 10
    assert object_gets(proxy, bucket) == [keys[2]]


def test_custom_source_callable_is_prefetched_in_its_order(proxy, bucket, objects):
    made = objects(8)
    wanted = [f"data/{i:03d}" for i in (7, 2, 5, 0)]

    def source(client):
        return (S3BucketKeyData(bucket, k) for k in wanted)

    ds = S3IterableDataset(
        REGION, source, proxy.url, transform=read_all, s3client_config=CONFIG
    )
    assert list(ds) == [(k, made[k]) for k in wanted]
    assert sorted(object_gets(proxy, bucket)) == sorted(wanted)


def test_partial_of_reference_prefix_helper_behaves_like_from_prefix(
    endpoint, bucket, objects
):
    objects(3)
    ds = S3IterableDataset(
        REGION,
        functools.partial(get_objects_from_prefix, f"s3://{bucket}/data/"),
        endpoint,
        transform=key_of,
    )
    assert list(ds) == ["data/000", "data/001", "data/002"]


def test_abandoned_iteration_leaves_the_dataset_usable(proxy, bucket, objects):
    objects(
        30
    )  # 32 bytes each: a 128-byte budget holds the window to 4 objects, however
    # far the adaptive window would grow on its own
    ds = from_prefix(
        f"s3://{bucket}/data/",
        proxy.url,
        transform=key_of,
        prefetch_count=4,
        prefetch_bytes=128,
    )
    it = iter(ds)
    assert [next(it) for _ in range(3)] == ["data/000", "data/001", "data/002"]
    it.close()  # type: ignore[attr-defined]
    del it
    # at most a window's worth was downloaded for the abandoned pass
    assert len(object_gets(proxy, bucket)) <= 3 + 4 + 2
    assert len(list(ds)) == 30


@pytest.mark.parametrize("source", ["prefix", "callable"])
def test_iteration_survives_a_runner_restart(endpoint, bucket, objects, source):
    made = objects(15)
    if source == "prefix":
        ds = from_prefix(
            f"s3://{bucket}/data/", endpoint, transform=read_all, prefetch_count=4
        )
    else:

        def items(client):
            return (S3BucketKeyData(bucket, k) for k in made)

        ds = S3IterableDataset(
            REGION, items, endpoint, transform=read_all, prefetch_count=4
        )
    it = iter(ds)
    first = [next(it) for _ in range(5)]
    get_runner().close()  # what a fork does to an idle runner in the parent
    rest = list(it)
    assert first + rest == list(made.items())


# -- pickling ---------------------------------------------------------------------------------


def test_dataset_pickles_as_configuration_and_unpickled_copy_iterates(
    endpoint, bucket, objects
):
    objects(4)
    ds = from_prefix(f"s3://{bucket}/data/", endpoint, transform=key_of)
    before = list(ds)
    assert ds._client is not None
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._client is None
    assert copy._progress is None
    assert list(copy) == before


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefetch_bytes": -1},
        {"prefetch_count": -1},
        {"shuffle_buffer_size": -1},
        {"shuffle": True, "shuffle_buffer_size": 0},
    ],
)
def test_bad_options_raise_value_error_naming_the_option(kwargs):
    name = next(k for k in kwargs if k != "shuffle")
    with pytest.raises(ValueError, match=name):
        S3IterableDataset.from_prefix("s3://b/p", region=REGION, **kwargs)


def test_listing_is_not_repeated_within_one_pass(proxy, bucket, objects):
    objects(5)
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=key_of)
    list(ds)
    assert listings(proxy, bucket) == 1
    list(ds)
    assert listings(proxy, bucket) == 2


@pytest.mark.parametrize("prefetch_bytes", [0, 1 << 20])
def test_items_reach_the_consumer_without_a_call_to_the_loop(
    monkeypatch, endpoint, bucket, objects, prefetch_bytes
):
    objects(40, size=1)
    ds = from_prefix(
        f"s3://{bucket}/data/",
        endpoint,
        transform=key_of,
        prefetch_bytes=prefetch_bytes,
    )
    runner = get_runner()
    calls = []
    real_run = runner.run

    def counting_run(fn, *args, **kwargs):
        calls.append(fn)
        return real_run(fn, *args, **kwargs)

    monkeypatch.setattr(runner, "run", counting_run)
    assert len(list(ds)) == 40
    assert len(calls) == 2  # open and close: every item came without a call
