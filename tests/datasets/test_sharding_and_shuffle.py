"""Sharding by rank x worker, shuffling, and their combination (ranks and workers simulated
through the dataset module's own lookup functions)."""

from __future__ import annotations

from collections import Counter

import pytest

from s3torch_async import _s3dataset_common
from s3torch_async._s3bucket_key_data import S3BucketKeyData
from s3torch_async.s3iterable_dataset import S3IterableDataset
from tests.datasets._helpers import CONFIG, REGION, key_of

N_OBJECTS = 23  # not a multiple of any grid size, so shards are uneven


@pytest.fixture
def keys(objects, bucket):
    return list(objects(N_OBJECTS, size=4))


def simulate(monkeypatch, rank, world_size, worker_id, num_workers):
    monkeypatch.setattr(
        _s3dataset_common, "get_rank_and_world_size", lambda: (rank, world_size)
    )
    monkeypatch.setattr(
        _s3dataset_common, "get_worker_info", lambda: (worker_id, num_workers)
    )


def run_grid(monkeypatch, ds, world_size, num_workers):
    shards = {}
    for rank in range(world_size):
        for worker in range(num_workers):
            simulate(monkeypatch, rank, world_size, worker, num_workers)
            shards[(rank, worker)] = list(ds)
    return shards


GRIDS = [(1, 1), (1, 4), (4, 1), (2, 3), (3, 2), (4, 4)]


@pytest.mark.parametrize(("world_size", "num_workers"), GRIDS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_key_seen_exactly_once_across_ranks_and_workers(
    monkeypatch, endpoint, bucket, keys, world_size, num_workers, shuffle
):
    ds = S3IterableDataset.from_prefix(
        f"s3://{bucket}/data/",
        region=REGION,
        endpoint=endpoint,
        transform=key_of,
        s3client_config=CONFIG,
        enable_sharding=True,
        shuffle=shuffle,
        shuffle_buffer_size=5,
        prefetch_bytes=0,
    )
    shards = run_grid(monkeypatch, ds, world_size, num_workers)
    seen = [k for shard in shards.values() for k in shard]
    assert Counter(seen) == Counter(keys)
    # two-level round robin: rank sizes differ by at most one
    per_rank = [
        sum(len(shards[(r, w)]) for w in range(num_workers)) for r in range(world_size)
    ]
    assert max(per_rank) - min(per_rank) <= 1
    if not shuffle:
        for (rank, worker), shard in shards.items():
            assert shard == keys[rank::world_size][worker::num_workers]


def test_without_sharding_every_worker_yields_the_whole_dataset(
    monkeypatch, endpoint, bucket, keys
):
    ds = S3IterableDataset.from_prefix(
        f"s3://{bucket}/data/",
        region=REGION,
        endpoint=endpoint,
        transform=key_of,
        s3client_config=CONFIG,
    )
    shards = run_grid(monkeypatch, ds, 2, 3)
    for shard in shards.values():
        assert shard == keys


def test_rank_is_read_when_iteration_starts_not_at_construction(
    monkeypatch, endpoint, bucket, keys
):
    simulate(monkeypatch, 0, 1, 0, 1)
    ds = S3IterableDataset.from_prefix(
        f"s3://{bucket}/data/",
        region=REGION,
        endpoint=endpoint,
        transform=key_of,
        s3client_config=CONFIG,
        enable_sharding=True,
    )
    simulate(monkeypatch, 1, 2, 0, 1)  # e.g. init_process_group after construction
    assert list(ds) == keys[1::2]


def test_sharding_applies_to_custom_source_callables(
    monkeypatch, endpoint, bucket, keys
):
    def source(client):
        return (S3BucketKeyData(bucket, k) for k in keys)

    ds = S3IterableDataset(
        REGION,
        source,
        endpoint,
        transform=key_of,
        s3client_config=CONFIG,
        enable_sharding=True,
        shuffle=True,
        shuffle_buffer_size=4,
    )
    shards = run_grid(monkeypatch, ds, 2, 2)
    assert Counter(k for s in shards.values() for k in s) == Counter(keys)


def test_shuffle_is_seeded_per_epoch_and_identical_across_instances(
    endpoint, bucket, keys
):
    def make(seed=0):
        return S3IterableDataset.from_prefix(
            f"s3://{bucket}/data/",
            region=REGION,
            endpoint=endpoint,
            transform=key_of,
            s3client_config=CONFIG,
            shuffle=True,
            seed=seed,
            shuffle_buffer_size=8,
        )

    a, b = make(), make()
    epoch0 = list(a)
    assert sorted(epoch0) == keys
    assert epoch0 != keys
    assert list(b) == epoch0  # same seed and epoch: same order on every rank
    a.set_epoch(1)
    epoch1 = list(a)
    assert sorted(epoch1) == keys
    assert epoch1 != epoch0
    assert list(make(seed=5)) != epoch0


def test_from_objects_and_custom_source_shuffle_to_the_same_order(
    endpoint, bucket, keys
):
    uris = [f"s3://{bucket}/{k}" for k in keys]

    def source(client):
        return (S3BucketKeyData(bucket, k) for k in keys)

    common = {
        "transform": key_of,
        "s3client_config": CONFIG,
        "shuffle": True,
        "seed": 3,
        "shuffle_buffer_size": 6,
    }
    a = S3IterableDataset.from_objects(uris, region=REGION, endpoint=endpoint, **common)
    b = S3IterableDataset(REGION, source, endpoint, **common)
    assert list(a) == list(b)
