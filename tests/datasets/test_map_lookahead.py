"""``S3MapDataset``'s look-ahead: predicted batches are downloaded ahead, nothing else is."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import torch
from torch.utils.data import DataLoader

from s3torch_async import S3Exception, s3map_dataset
from s3torch_async._core._planning import index_run, next_runs
from s3torch_async.s3map_dataset import S3MapDataset
from tests._faultproxy import Fault, FaultRule
from tests.datasets._helpers import CONFIG, REGION, object_gets, read_all

START_METHODS = [
    m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()
]


OPTIONS = {"region": REGION, "transform": read_all, "s3client_config": CONFIG}


@pytest.fixture(autouse=True)
def _latency_to_hide(monkeypatch):
    """Every wait counts as idle: the proxy runs in this process and moto answers at once,
    so whether the look-ahead would pay here depends on the machine's load."""
    monkeypatch.setattr(s3map_dataset, "LOOKAHEAD_MAX_BUSY", float("inf"))


def from_prefix(bucket, endpoint, **kwargs):
    uri = f"s3://{bucket}/data/"
    return S3MapDataset.from_prefix(uri, endpoint=endpoint, **OPTIONS, **kwargs)


def hits(ds):
    """Batches the dataset served from its look-ahead."""
    return 0 if ds._lookahead is None else ds._lookahead.hits


def settled_gets(proxy, bucket, wait=0.3):
    """The GETs the proxy saw once no new one came for ``wait`` seconds."""
    seen = -1
    gets = object_gets(proxy, bucket)
    while len(gets) != seen:
        seen = len(gets)
        time.sleep(wait)
        gets = object_gets(proxy, bucket)
    return gets


def batch(start, stop):
    return list(range(start, stop))


def test_index_run_and_next_runs():
    assert index_run([4, 5, 6]) == (4, 7)
    assert index_run([4, 6]) is None
    assert index_run([]) is None
    assert next_runs((0, 4), 8, 18, 3) == [(8, 12), (16, 18)]
    assert next_runs((0, 4), 2, 100, 3) == []  # overlapping runs: no prediction


def test_sequential_batches_are_served_from_the_lookahead(proxy, bucket, objects):
    made = objects(20)
    ds = from_prefix(bucket, proxy.url)
    len(ds)
    assert ds.__getitems__(batch(0, 4)) == list(made.items())[:4]
    # the first batch opens the connections: it tells nothing about latency
    assert len(settled_gets(proxy, bucket)) == 4
    assert ds.__getitems__(batch(4, 8)) == list(made.items())[4:8]
    # the next batch was guessed (one batch) and its GETs sent before it is asked for
    assert sorted(settled_gets(proxy, bucket)) == [f"data/{i:03d}" for i in range(12)]
    got = []
    for start in range(8, 20, 4):
        got += ds.__getitems__(batch(start, start + 4))
    assert got == list(made.items())[8:]
    assert hits(ds) == 3
    gets = settled_gets(proxy, bucket)
    assert sorted(gets) == sorted(made)  # each object once: the readers sent none


def test_a_dataloader_gives_the_same_items_and_each_object_once(proxy, bucket, objects):
    made = objects(30)
    ds = from_prefix(bucket, proxy.url)
    got = [pair for b in DataLoader(ds, batch_size=4, collate_fn=list) for pair in b]
    assert got == list(made.items())
    assert sorted(settled_gets(proxy, bucket)) == sorted(made)
    assert hits(ds) == 6  # all but the first two


def test_random_order_sends_no_extra_get(proxy, bucket, objects):
    made = objects(30)
    ds = from_prefix(bucket, proxy.url)
    loader = DataLoader(
        ds,
        batch_size=4,
        shuffle=True,
        generator=torch.Generator().manual_seed(3),
        collate_fn=list,
    )
    got = [pair for b in loader for pair in b]
    assert sorted(got) == list(made.items())
    assert sorted(settled_gets(proxy, bucket)) == sorted(made)
    assert hits(ds) == 0


def test_a_failed_prefetch_raises_only_when_its_item_is_read(proxy, bucket, objects):
    made = objects(16)
    ds = from_prefix(bucket, proxy.url)
    len(ds)
    proxy.add_fault(
        FaultRule(
            Fault.status(403, "AccessDenied"), path_contains="/data/009", times=None
        )
    )
    assert ds.__getitems__(batch(0, 4)) == list(made.items())[:4]
    assert ds.__getitems__(batch(4, 8)) == list(made.items())[4:8]
    settled_gets(proxy, bucket)  # the guessed batch 8-11 has failed on 009 by now
    with pytest.raises(S3Exception, match="GetObject"):
        ds.__getitems__(batch(8, 12))
    assert ds.__getitems__(batch(12, 16)) == list(made.items())[12:]
    # an index that is never read never raises
    ds2 = from_prefix(bucket, proxy.url)
    assert ds2.__getitems__(batch(0, 4)) == list(made.items())[:4]
    assert ds2.__getitems__(batch(4, 8)) == list(made.items())[4:8]
    settled_gets(proxy, bucket)
    assert ds2.__getitems__([10, 11]) == list(made.items())[10:12]


def test_the_lookahead_deepens_while_batches_are_waited_for_within_the_budget(
    proxy, bucket, objects
):
    made = objects(40, size=100)
    ds = from_prefix(bucket, proxy.url, prefetch_bytes=1000)
    len(ds)
    # a slow first byte: every predicted batch is still downloading when it is asked for
    proxy.add_fault(
        FaultRule(Fault.delay(0.8), method="GET", path_contains="/data/", times=None)
    )
    got, ahead = [], []
    for start in range(0, 40, 4):
        got += ds.__getitems__(batch(start, start + 4))
        ahead.append(len(settled_gets(proxy, bucket)) - (start + 4))
    assert got == list(made.items())
    # none after the first batch (cold), one guessed after the second, then (it was
    # waited for) deeper: two batches of 4 x 100 bytes fit in 1000 bytes, a third would
    # not; the end of the dataset ends it
    assert ahead == [0, 4, 4, 8, 8, 8, 8, 8, 4, 0]
    assert sorted(settled_gets(proxy, bucket)) == sorted(made)


def test_a_store_that_keeps_up_keeps_one_batch_ahead(proxy, bucket, objects):
    objects(40)
    ds = from_prefix(bucket, proxy.url)
    len(ds)
    for start in range(0, 40, 4):
        ds.__getitems__(batch(start, start + 4))
        settled_gets(proxy, bucket)  # the batch ahead is done before it is asked for
        assert len(object_gets(proxy, bucket)) <= start + 8
    assert hits(ds) == 8


def test_no_lookahead_while_waiting_keeps_the_process_busy(
    monkeypatch, proxy, bucket, objects
):
    made = objects(20)
    # every wait counts as busy: the store is as fast as this process can take it
    monkeypatch.setattr(s3map_dataset, "LOOKAHEAD_MAX_BUSY", 0.0)
    ds = from_prefix(bucket, proxy.url)
    got = [pair for b in DataLoader(ds, batch_size=4, collate_fn=list) for pair in b]
    assert got == list(made.items())
    assert object_gets(proxy, bucket) == sorted(made)  # on demand, in order
    assert hits(ds) == 0


def test_prefetch_bytes_zero_turns_it_off(proxy, bucket, objects):
    objects(8)
    ds = from_prefix(bucket, proxy.url, prefetch_bytes=0)
    ds.__getitems__(batch(0, 4))
    assert len(settled_gets(proxy, bucket)) == 4
    assert ds._lookahead is None
    with pytest.raises(ValueError, match="prefetch_bytes"):
        from_prefix(bucket, proxy.url, prefetch_bytes=-1)


def test_a_new_epoch_drops_the_lookahead(proxy, bucket, objects):
    made = objects(16)
    ds = from_prefix(bucket, proxy.url, shuffle=True, seed=5)
    first = ds.__getitems__(batch(0, 4)) + ds.__getitems__(batch(4, 8))
    assert len(settled_gets(proxy, bucket)) == 12  # batch 8-11 of epoch 0 is ahead
    ds.set_epoch(1)
    second = ds.__getitems__(batch(8, 12))
    assert second == [ds[i] for i in range(8, 12)]
    assert set(first) <= set(made.items())
    assert hits(ds) == 0


@pytest.mark.process
@pytest.mark.parametrize("start_method", START_METHODS)
def test_workers_forked_or_spawned_with_a_lookahead_in_flight_give_the_same_items(
    start_method, proxy, bucket, objects
):
    made = objects(40)
    ds = from_prefix(bucket, proxy.url)
    ds.__getitems__(batch(0, 4))
    ds.__getitems__(batch(4, 8))  # the parent has a batch ahead
    assert len(settled_gets(proxy, bucket)) == 12
    loader = DataLoader(
        ds,
        batch_size=4,
        num_workers=2,
        multiprocessing_context=start_method,
        collate_fn=list,
        timeout=60,
    )
    for _ in range(2):
        assert [pair for b in loader for pair in b] == list(made.items())
    # each worker guessed its stride (2 batches) right: every object once per epoch
    assert len(settled_gets(proxy, bucket)) == 12 + 2 * 40


def test_threads_sharing_a_dataset_get_the_same_items(proxy, bucket, objects):
    from concurrent.futures import ThreadPoolExecutor

    made = objects(48)
    ds = from_prefix(bucket, proxy.url)
    len(ds)
    runs = [batch(s, s + 4) for s in range(0, 48, 4)]
    with ThreadPoolExecutor(4) as pool:
        got = [pair for b in pool.map(ds.__getitems__, runs) for pair in b]
    assert got == list(made.items())
    gets = settled_gets(proxy, bucket)
    assert sorted(set(gets)) == sorted(
        made
    )  # a guess lost to a race is at most refetched


def test_the_dataset_shuffle_is_looked_ahead_too(proxy, bucket, objects):
    made = objects(24)
    ds = from_prefix(bucket, proxy.url, shuffle=True, seed=2)
    got = [pair for b in DataLoader(ds, batch_size=4, collate_fn=list) for pair in b]
    assert sorted(got) == list(made.items())
    assert got == [ds[i] for i in range(24)]
    assert hits(ds) == 4  # the permuted items of consecutive indices were predicted
