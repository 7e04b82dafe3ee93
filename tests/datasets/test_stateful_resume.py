"""Mid-epoch resume with torchdata's StatefulDataLoader (shuffle and sharding on)."""

from __future__ import annotations

import pytest

from s3torch_async.s3iterable_dataset import S3IterableDataset
from tests.datasets._helpers import CONFIG, REGION, key_of, object_gets

stateful_dataloader = pytest.importorskip("torchdata.stateful_dataloader")

# torchdata 0.11's StatefulDataLoader calls torch.set_vital, which torch 2.13 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
StatefulDataLoader = stateful_dataloader.StatefulDataLoader

N_OBJECTS = 20
BATCH = 3


def make_dataset(endpoint, bucket):
    return S3IterableDataset.from_prefix(
        f"s3://{bucket}/data/",
        region=REGION,
        endpoint=endpoint,
        transform=key_of,
        s3client_config=CONFIG,
        enable_sharding=True,
        shuffle=True,
        seed=11,
        shuffle_buffer_size=6,
        prefetch_count=4,
    )


def make_loader(ds, num_workers):
    return StatefulDataLoader(
        ds,
        batch_size=BATCH,
        num_workers=num_workers,
        multiprocessing_context="fork" if num_workers else None,
        timeout=60 if num_workers else 0,
    )


def flatten(batches):
    return [k for batch in batches for k in batch]


@pytest.mark.parametrize(
    ("num_workers", "stop_after"),
    [(0, 1), (0, 4), pytest.param(2, 4, marks=pytest.mark.process)],
)
def test_resume_continues_exactly_where_it_stopped(
    num_workers, stop_after, proxy, bucket, objects
):
    keys = list(objects(N_OBJECTS, size=4))
    full_ds = make_dataset(proxy.url, bucket)
    full_loader = make_loader(full_ds, num_workers)
    epoch0 = flatten(full_loader)
    full_ds.set_epoch(1)
    epoch1 = flatten(full_loader)
    assert sorted(epoch0) == sorted(keys) == sorted(epoch1)
    assert epoch0 != epoch1

    ds = make_dataset(proxy.url, bucket)
    loader = make_loader(ds, num_workers)
    it = iter(loader)
    head = flatten(next(it) for _ in range(stop_after))
    state = loader.state_dict()
    del it, loader

    proxy.clear()
    resumed_ds = make_dataset(proxy.url, bucket)
    resumed = make_loader(resumed_ds, num_workers)
    resumed.load_state_dict(state)
    tail = flatten(resumed)
    assert head + tail == epoch0
    # the items delivered before the stop are skipped without being downloaded again
    assert not set(object_gets(proxy, bucket)) & set(head)

    resumed_ds.set_epoch(1)
    assert flatten(resumed) == epoch1


def test_state_dict_round_trip_on_the_dataset(endpoint, bucket, objects):
    keys = list(objects(6, size=4))
    ds = make_dataset(endpoint, bucket)
    assert ds.state_dict() == {"epoch": 0, "yielded": 0}
    it = iter(ds)
    first = [next(it), next(it)]
    assert ds.state_dict() == {"epoch": 0, "yielded": 2}
    other = make_dataset(endpoint, bucket)
    other.load_state_dict(ds.state_dict())
    assert other.state_dict() == {"epoch": 0, "yielded": 2}
    rest = list(other)
    assert sorted(first + rest) == keys
    assert first + rest == list(make_dataset(endpoint, bucket))
    assert list(other) == first + rest  # the skip applies to one iteration only


@pytest.mark.parametrize("bad", [{}, {"epoch": 0}, {"epoch": 0, "yielded": -1}])
def test_load_state_dict_rejects_malformed_state(bad):
    ds = S3IterableDataset.from_prefix("s3://b/p", region=REGION)
    with pytest.raises(ValueError, match="yielded"):
        ds.load_state_dict(bad)
