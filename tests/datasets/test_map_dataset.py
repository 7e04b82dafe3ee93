from __future__ import annotations

import logging
import pickle

import pytest

from s3torch_async import S3Exception, s3map_dataset
from s3torch_async._s3bucket_key_data import S3BucketKeyData
from s3torch_async.s3map_dataset import S3MapDataset
from s3torch_async.s3reader import S3ReaderConstructor
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
    return S3MapDataset.from_prefix(uri, region=REGION, endpoint=endpoint, **kwargs)


def test_from_prefix_indexes_like_a_list(endpoint, bucket, objects, caplog):
    made = objects(7)
    with caplog.at_level(logging.INFO, logger="s3torch_async"):
        ds = from_prefix(f"s3://{bucket}/data/", endpoint, transform=read_all)
    assert f"Building S3MapDataset from_prefix s3_uri='s3://{bucket}/data/'" in (
        caplog.text
    )
    items = list(made.items())
    assert len(ds) == 7
    assert ds[0] == items[0]
    assert ds[6] == items[6]
    assert ds[-1] == items[-1]
    assert ds[-7] == items[0]
    for bad in (7, -8, 100):
        with pytest.raises(IndexError):
            ds[bad]
    assert list(ds) == items  # the legacy iteration protocol stops at IndexError
    assert ds.region == REGION
    assert ds.endpoint == endpoint


def test_listing_is_lazy_done_once_and_sends_no_head(proxy, bucket, objects):
    objects(5)
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=read_all)
    assert listings(proxy, bucket) == 0
    assert len(ds) == 5
    assert len(ds) == 5
    ds[3]
    assert listings(proxy, bucket) == 1
    assert heads(proxy) == 0


def test_from_objects_generator_is_listed_once(endpoint, bucket, objects, caplog):
    made = objects(3)
    gen = (f"s3://{bucket}/{k}" for k in made)
    with caplog.at_level(logging.INFO, logger="s3torch_async"):
        ds = S3MapDataset.from_objects(
            gen, region=REGION, endpoint=endpoint, transform=key_of
        )
    assert "Building S3MapDataset from_objects" in caplog.text
    assert len(ds) == 3
    assert len(ds) == 3
    assert [ds[i] for i in range(3)] == list(made)


def test_user_agent_and_default_reader(endpoint):
    ds = from_prefix("s3://b/p", endpoint)
    assert S3ReaderConstructor.get_reader_type_string(ds._reader_constructor) == (
        "sequential"
    )
    assert ds._get_client().user_agent_prefix.endswith(
        "(md/dataset#map md/reader_type#sequential)"
    )


def test_bad_uri_and_missing_bucket_raise_at_first_access(endpoint):
    bad = from_prefix("gs://bucket/p", endpoint)  # construction never raises
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
        len(bad)
    missing = from_prefix("s3://no-such-bucket-s3torch-async/", endpoint)
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        missing[0]


def test_empty_prefix_is_empty_and_warns(endpoint, bucket, caplog):
    ds = from_prefix(f"s3://{bucket}/nothing/", endpoint)
    with caplog.at_level(logging.WARNING, logger="s3torch_async"):
        assert len(ds) == 0
    assert f"S3MapDataset: s3://{bucket}/nothing/ lists no objects" in caplog.text
    with pytest.raises(IndexError):
        ds[0]


def test_shuffle_permutes_indices_per_epoch(endpoint, bucket, objects):
    keys = list(objects(20, size=4))
    ds = from_prefix(f"s3://{bucket}/data/", endpoint, transform=key_of, shuffle=True)
    epoch0 = [ds[i] for i in range(len(ds))]
    assert sorted(epoch0) == keys
    assert epoch0 != keys
    other = from_prefix(
        f"s3://{bucket}/data/", endpoint, transform=key_of, shuffle=True
    )
    assert [other[i] for i in range(20)] == epoch0  # same on every rank
    assert ds[-1] == epoch0[-1]
    ds.set_epoch(1)
    epoch1 = [ds[i] for i in range(20)]
    assert sorted(epoch1) == keys
    assert epoch1 != epoch0
    ds.set_epoch(0)
    assert [ds[i] for i in range(20)] == epoch0


def test_pickles_with_the_listing_and_without_a_client(proxy, bucket, objects):
    made = objects(4)
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=read_all)
    assert len(ds) == 4
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._client is None
    assert [copy[i] for i in range(4)] == list(made.items())
    assert listings(proxy, bucket) == 1  # the copy did not list again


def test_large_listing_logs_progress(monkeypatch, endpoint, bucket, objects, caplog):
    objects(9, size=1)
    monkeypatch.setattr(s3map_dataset, "_LIST_PAGE_SIZE", 2)
    monkeypatch.setattr(s3map_dataset, "LISTING_PROGRESS_PAGES", 2)
    ds = from_prefix(f"s3://{bucket}/data/", endpoint)
    with caplog.at_level(logging.INFO, logger="s3torch_async"):
        assert len(ds) == 9
    progress = [r.getMessage() for r in caplog.records if "listing" in r.getMessage()]
    assert progress == [
        f"S3MapDataset listing s3://{bucket}/data/: 4 objects in 2 pages so far",
        f"S3MapDataset listing s3://{bucket}/data/: 8 objects in 4 pages so far",
    ]
    assert f"S3MapDataset listed s3://{bucket}/data/: 9 objects in 5 pages" in (
        caplog.text
    )


def test_custom_source_callable(endpoint, bucket, objects):
    made = objects(3)

    def source(client):
        return [S3BucketKeyData(bucket, k) for k in reversed(list(made))]

    ds = S3MapDataset(REGION, source, endpoint, transform=read_all)
    assert [ds[i] for i in range(len(ds))] == list(reversed(made.items()))


def test_slices_are_rejected(endpoint, bucket, objects):
    objects(2)
    ds = from_prefix(f"s3://{bucket}/data/", endpoint)
    with pytest.raises(TypeError):
        ds[0:1]


def test_a_dataloader_batch_downloads_its_objects_concurrently(proxy, bucket, objects):
    from torch.utils.data import DataLoader

    made = objects(8)
    # without the look-ahead, whose GETs of the next batch would meet these
    ds = from_prefix(
        f"s3://{bucket}/data/", proxy.url, transform=read_all, prefetch_bytes=0
    )
    len(ds)  # listed before the GETs are held
    # every GET is held until four meet: one batch of four arrives together, or each waits
    proxy.add_fault(
        FaultRule(Fault.meet(4, 10), method="GET", path_contains="/data/", times=None)
    )
    loader = DataLoader(ds, batch_size=4, collate_fn=list)
    got = [pair for batch in loader for pair in batch]
    assert got == sorted(made.items())
    assert proxy.most_held == 4
    assert heads(proxy) == 0
    assert len(object_gets(proxy, bucket)) == 8  # one GET per object: readers send none


def test_a_batch_object_that_fails_raises_when_it_is_read(proxy, bucket, objects):
    objects(3)
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=read_all)
    len(ds)
    proxy.add_fault(
        FaultRule(
            Fault.status(403, "AccessDenied"), path_contains="/data/001", times=None
        )
    )
    with pytest.raises(S3Exception, match="GetObject"):
        ds.__getitems__([0, 1, 2])
    assert ds.__getitems__([0, 2]) == [ds[0], ds[2]]
