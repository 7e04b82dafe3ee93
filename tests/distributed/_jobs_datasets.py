"""Rank functions for the dataset tests (module level: spawn imports them)."""

from __future__ import annotations

from typing import Any, Dict, List

from torch.utils.data import ChainDataset, DataLoader, DistributedSampler

from s3torch_async.s3iterable_dataset import S3IterableDataset
from s3torch_async.s3map_dataset import S3MapDataset
from tests.datasets._helpers import CONFIG, REGION, key_of

SEED = 7


def _loader(ds: Any, **kwargs: Any) -> DataLoader:  # type: ignore[type-arg]
    return DataLoader(
        ds,
        batch_size=None,
        num_workers=2,
        multiprocessing_context="spawn",
        timeout=60,
        **kwargs,
    )


def iterable_dataset(uri: str, shuffle: bool, **kwargs: Any) -> S3IterableDataset:
    return S3IterableDataset.from_prefix(
        uri,
        region=REGION,
        transform=key_of,
        s3client_config=CONFIG,
        shuffle=shuffle,
        seed=SEED,
        **kwargs,
    )


def map_dataset(uri: str, shuffle: bool) -> S3MapDataset:
    return S3MapDataset.from_prefix(
        uri, region=REGION, transform=key_of, s3client_config=CONFIG, shuffle=shuffle
    )


def dataset_keys(
    rank: int, world_size: int, plain_uri: str, shuffled_uri: str, epoch: int
) -> Dict[str, List[str]]:
    """The keys this rank reads with two spawn DataLoader workers per loader.

    ``iterable``: the sharded iterable dataset over ``plain_uri`` then, shuffled with
    ``epoch``, over ``shuffled_uri`` (one loader over both); ``map``: the shuffled map
    dataset over ``plain_uri`` through ``DistributedSampler``.
    """
    shuffled = iterable_dataset(shuffled_uri, True, enable_sharding=True)
    shuffled.set_epoch(epoch)
    chain = ChainDataset(
        [iterable_dataset(plain_uri, False, enable_sharding=True), shuffled]
    )
    ds = map_dataset(plain_uri, True)
    ds.set_epoch(epoch)
    sampler = DistributedSampler(ds, shuffle=False)  # the dataset does the shuffling
    return {"iterable": list(_loader(chain)), "map": list(_loader(ds, sampler=sampler))}
