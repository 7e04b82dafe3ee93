"""The reference's dataset helpers: URI parsing, listing iterables and their pickling."""

from __future__ import annotations

import pickle

import pytest

from s3torch_async import _s3_bucket_iterable
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
