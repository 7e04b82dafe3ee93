"""Datasets under a real 2-rank gloo group, each rank with 2 spawn DataLoader workers.

One spawned run (module fixture) serves every test here: process start-ups dominate.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from tests.distributed import _jobs_datasets as jobs
from tests.distributed._harness import run_ranks

pytestmark = [
    pytest.mark.torch,
    pytest.mark.process,
    pytest.mark.slow,
    pytest.mark.timeout(400),
]

N_KEYS = 101
WORLD = 2
EPOCH = 1  # not 0: the epoch must reach the spawn workers


@pytest.fixture(scope="module")
def run(moto_endpoint, boto_s3):
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    boto_s3.create_bucket(Bucket=bucket)
    keys = {"plain": [], "shuffled": []}
    for name, made in keys.items():
        for i in range(N_KEYS):
            made.append(f"{name}/{i:03d}")
            boto_s3.put_object(Bucket=bucket, Key=made[-1], Body=made[-1].encode())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # inherited by ranks and workers
        per_rank = run_ranks(
            jobs.dataset_keys,
            WORLD,
            f"s3://{bucket}/plain/",
            f"s3://{bucket}/shuffled/",
            EPOCH,
        )
        # One unsharded dataset in this process gives each epoch's global order.
        iterable = jobs.iterable_dataset(f"s3://{bucket}/shuffled/", True)
        iterable.set_epoch(EPOCH)
        mapped = jobs.map_dataset(f"s3://{bucket}/plain/", True)
        mapped.set_epoch(EPOCH)
        expected = {
            "iterable": list(iterable),
            "map": [mapped[i] for i in range(len(mapped))],
        }
    return keys, per_rank, expected


def test_iterable_sharding_with_spawn_workers_yields_every_key_once(run):
    keys, per_rank, _ = run
    got = [[k for k in r["iterable"] if k.startswith("plain/")] for r in per_rank]
    # Every key exactly once across 2 ranks x 2 workers (each was yielded twice when the
    # spawn workers could not see the rank).
    assert Counter(k for keys_of_rank in got for k in keys_of_rank) == Counter(
        keys["plain"]
    )
    assert abs(len(got[0]) - len(got[1])) <= 1


def test_iterable_shuffle_gives_one_global_order_on_every_rank(run):
    keys, per_rank, expected = run
    order = expected["iterable"]
    assert order != keys["shuffled"]
    assert sorted(order) == keys["shuffled"]
    for rank in range(WORLD):
        got = [k for k in per_rank[rank]["iterable"] if k.startswith("shuffled/")]
        # Rank r holds items r, r + 2, ... of the one global order (workers interleave).
        assert Counter(got) == Counter(order[rank::WORLD])


def test_map_dataset_with_distributed_sampler_and_spawn_workers(run):
    keys, per_rank, expected = run
    order = expected["map"]
    assert order != keys["plain"]
    assert sorted(order) == keys["plain"]
    # DistributedSampler pads to a multiple of the world size by repeating from the start,
    # then gives rank r the indices r, r + 2, ...; the workers keep the sampler's order.
    padded = order + order[: (-len(order)) % WORLD]
    for rank in range(WORLD):
        assert per_rank[rank]["map"] == padded[rank::WORLD]
