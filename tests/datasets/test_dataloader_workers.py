"""Datasets in real DataLoader worker processes under fork, spawn and forkserver."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
from torch.utils.data import ChainDataset, DataLoader

from s3torch_async.s3iterable_dataset import S3IterableDataset
from s3torch_async.s3map_dataset import S3MapDataset
from s3torch_async.s3reader import S3ReaderConstructor
from tests.datasets._helpers import CONFIG, REGION, read_all

pytestmark = pytest.mark.process

START_METHODS = [
    m
    for m in ("fork", "spawn", "forkserver")
    if m in multiprocessing.get_all_start_methods()
]
N_OBJECTS = 20
EPOCHS = 2


def loader(ds, start_method):
    return DataLoader(
        ds,
        batch_size=None,
        num_workers=2,
        multiprocessing_context=start_method,
        persistent_workers=True,
        timeout=60,
    )


@pytest.mark.parametrize("start_method", START_METHODS)
def test_iterable_datasets_in_workers_over_two_epochs(
    start_method, endpoint, bucket, objects
):
    # One worker pool serves two datasets (ChainDataset) to keep process start-ups few:
    # from_prefix + sequential reader + sharding, already iterated in the parent, and
    # from_objects + range-based reader without sharding.
    sharded = objects(N_OBJECTS, prefix="a/")
    unsharded = objects(N_OBJECTS // 2, prefix="b/")
    by_prefix = S3IterableDataset.from_prefix(
        f"s3://{bucket}/a/",
        region=REGION,
        endpoint=endpoint,
        transform=read_all,
        s3client_config=CONFIG,
        enable_sharding=True,
        reader_constructor=S3ReaderConstructor.sequential(),
    )
    by_uris = S3IterableDataset.from_objects(
        [f"s3://{bucket}/{k}" for k in unsharded],
        region=REGION,
        endpoint=endpoint,
        transform=read_all,
        s3client_config=CONFIG,
        reader_constructor=S3ReaderConstructor.range_based(),
    )
    # The parent uses the dataset (and starts its runner) before the workers start.
    assert list(by_prefix) == list(sharded.items())
    dl = loader(ChainDataset([by_prefix, by_uris]), start_method)
    for _ in range(EPOCHS):
        got = Counter(tuple(item) for item in dl)
        expected = Counter(sharded.items())  # sharded: once across both workers
        expected.update(dict.fromkeys(unsharded.items(), 2))  # every worker: all
        assert got == expected
    assert list(by_prefix) == list(sharded.items())  # the parent still works afterwards


@pytest.mark.parametrize(
    "start_method", [m for m in START_METHODS if m != "forkserver"]
)
def test_map_dataset_listed_in_parent_is_read_by_workers(
    start_method, proxy, bucket, objects
):
    made = objects(N_OBJECTS)
    ds = S3MapDataset.from_prefix(
        f"s3://{bucket}/data/",
        region=REGION,
        endpoint=proxy.url,
        transform=read_all,
        s3client_config=CONFIG,
        reader_constructor=S3ReaderConstructor.range_based(),
    )
    assert ds[0] == next(iter(made.items()))
    dl = loader(ds, start_method)
    for _ in range(EPOCHS):
        # sequential sampler: index order
        assert [tuple(item) for item in dl] == list(made.items())
    lists = sum(1 for m, raw, _h in proxy.requests if "list-type=2" in raw)
    assert lists == 1  # the workers used the parent's listing
