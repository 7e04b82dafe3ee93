"""The reference's dataset helpers: URI parsing, listing iterables and their pickling."""

from __future__ import annotations

import functools
import pickle

import pytest

from s3torch_async import (
    AsyncS3Dataset,
    S3IterableDataset,
    S3MapDataset,
    _s3_bucket_iterable,
)
from s3torch_async._dataset_source import PrefixSource, UriSource
from s3torch_async._s3_bucket_iterable import S3BucketIterable
from s3torch_async._s3bucket_key_data import S3BucketKeyData
from s3torch_async._s3client import S3Client
from s3torch_async._s3dataset_common import (
    captured_rank,
    get_objects_from_prefix,
    get_objects_from_uris,
    get_rank_and_world_size,
    get_worker_info,
    identity,
    parse_s3_uri,
    resolve_rank,
)
from tests.datasets._helpers import CONFIG, REGION, listings


@pytest.fixture
def client(endpoint):
    return S3Client(REGION, endpoint=endpoint, s3client_config=CONFIG)


def test_parse_s3_uri_matches_the_reference():
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/key//inner") == ("bucket", "key//inner")
    for bad in (None, "", "s3a://b/k"):
        with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
            parse_s3_uri(bad)
    for bad in ("s3://", "s3:///key"):
        with pytest.raises(ValueError, match=r"^Bucket name must be non-empty$"):
            parse_s3_uri(bad)


def test_get_objects_from_uris_parses_eagerly_and_accepts_one_string():
    assert list(get_objects_from_uris("s3://b/k", None)) == [S3BucketKeyData("b", "k")]
    with pytest.raises(ValueError, match="Only s3://"):
        get_objects_from_uris(["s3://b/k", "http://x"], None)


def test_identity_and_process_lookups_outside_workers():
    obj = object()
    assert identity(obj) is obj
    assert get_rank_and_world_size() == (0, 1)
    assert get_worker_info() == (0, 1)


def test_rank_falls_back_to_torchrun_environment(monkeypatch, caplog):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert get_rank_and_world_size() == (2, 3)
    assert captured_rank() is None  # only a live process group is captured
    # A rank recorded by the process that pickled the dataset wins over the environment.
    assert resolve_rank((1, 4)) == (1, 4)
    assert resolve_rank(None) == (2, 3)
    monkeypatch.setenv("RANK", "3")
    assert get_rank_and_world_size() == (0, 1)
    assert "Ignoring RANK=3 WORLD_SIZE=3" in caplog.text
    monkeypatch.setenv("RANK", "x")
    assert get_rank_and_world_size() == (0, 1)


def test_prefix_listing_is_recursive_lazy_and_carries_object_info(proxy, bucket, put):
    for key in ("p/a", "p/dir/", "p/dir/b", "q"):
        put(key, b"xy")
    client = S3Client(REGION, endpoint=proxy.url, s3client_config=CONFIG)
    items = get_objects_from_prefix(f"s3://{bucket}/p/", client)
    assert listings(proxy, bucket) == 0
    got = list(items)
    assert [i.key for i in got] == ["p/a", "p/dir/", "p/dir/b"]  # markers kept
    assert all(i.bucket == bucket and i.object_info.size == 2 for i in got)
    with pytest.raises(ValueError, match="Only s3://"):
        get_objects_from_prefix("bucket/p", client)


def test_pickled_listing_iterator_resumes_at_the_next_item(
    monkeypatch, client, bucket, put
):
    keys = [f"k{i}" for i in range(7)]
    for key in keys:
        put(key, b"")
    monkeypatch.setattr(_s3_bucket_iterable, "_MAX_KEYS", 2)
    it = iter(S3BucketIterable(client, bucket, ""))
    head = [next(it).key for _ in range(3)]  # mid-way through the second page
    resumed = pickle.loads(pickle.dumps(it))
    assert head + [i.key for i in resumed] == keys
    assert [i.key for i in it] == keys[3:]


# -- the sources from_prefix / from_objects build ----------------------------------------------


def test_from_prefix_source_is_the_reference_partial_and_names_its_uri(endpoint):
    ds = S3IterableDataset.from_prefix("s3://b/p/", region=REGION, endpoint=endpoint)
    source = ds._get_dataset_objects
    # As in the reference: a functools.partial of the module-level helper...
    assert isinstance(source, functools.partial)
    assert source.func is get_objects_from_prefix
    assert source.args == ("s3://b/p/",)
    # ...that also says what it lists, and keeps saying it through pickling.
    assert isinstance(source, PrefixSource)
    copy = pickle.loads(pickle.dumps(source))
    assert isinstance(copy, PrefixSource)
    assert (copy.s3_uri, copy.bucket_prefix()) == ("s3://b/p/", ("b", "p/"))


@pytest.mark.parametrize(
    "build", [S3IterableDataset.from_objects, S3MapDataset.from_objects]
)
def test_from_objects_source_is_the_reference_partial_and_keeps_its_uris(build):
    uris = ["s3://b/k1", "s3://b/k2"]
    source = build(uris, region=REGION)._get_dataset_objects
    assert isinstance(source, UriSource)
    assert source.func is get_objects_from_uris
    copy = pickle.loads(pickle.dumps(source))
    assert copy.object_uris == uris
    assert copy.items() == [S3BucketKeyData("b", "k1"), S3BucketKeyData("b", "k2")]


def test_a_users_own_partial_of_the_prefix_helper_still_lists_that_prefix(
    endpoint, bucket, put
):
    # Not one of ours, so the dataset calls it rather than looking inside it.
    for key in ("a/1", "a/2", "b/1"):
        put(key, b"x")
    source = functools.partial(get_objects_from_prefix, f"s3://{bucket}/a/")
    ds = S3MapDataset(REGION, source, endpoint, transform=lambda r: r.key)
    assert [ds[i] for i in range(len(ds))] == ["a/1", "a/2"]


async def test_async_dataset_takes_the_same_sources():
    ds = AsyncS3Dataset.from_objects("s3://b/k", region=REGION)
    again = AsyncS3Dataset(REGION, source=UriSource(iter(["s3://b/k"])))
    with pytest.raises(ValueError, match="exactly one of s3_uri and object_uris"):
        AsyncS3Dataset(REGION, s3_uri="s3://b/", source=PrefixSource("s3://b/"))
    assert ds.state_dict() == again.state_dict()
