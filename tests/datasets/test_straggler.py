"""A GET that straggles at the head of the line is hedged; the items behind it flow on.

The dataset yields in listing order, so one late GET holds back every item behind it, however
many of them are already downloaded. A real faulty peer (the fault proxy in front of moto)
holds the first GET of one object for 10 s: the dataset sends a second GET for it once the
items behind it are in, delivers that one's bytes, in order, and gives the first up.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from s3torch_async import AsyncS3Dataset
from s3torch_async.s3iterable_dataset import S3IterableDataset
from tests._faultproxy import Fault, FaultRule
from tests.datasets._helpers import CONFIG, REGION, object_gets, read_all

STALL_S = 10.0
LATE = "data/005"


def _hold_first_get_of_late(proxy) -> None:
    proxy.add_fault(
        FaultRule(Fault.delay(STALL_S), method="GET", path_contains=LATE, times=1)
    )


def _check_gets(proxy, bucket: str, made: dict[str, bytes]) -> None:
    gets = Counter(object_gets(proxy, bucket))
    assert gets[LATE] == 2  # the straggler and its hedge
    # every other object once; a GET that a loaded machine made late may be hedged too,
    # within the budget (3 at the start)
    assert all(gets[key] in (1, 2) for key in made)
    assert sum(gets.values()) - len(made) <= 3


def test_iterable_dataset_hedges_a_straggling_get(proxy, bucket, objects):
    made = objects(40)
    _hold_first_get_of_late(proxy)
    ds = S3IterableDataset.from_prefix(
        f"s3://{bucket}/data/",
        region=REGION,
        endpoint=proxy.url,
        s3client_config=CONFIG,
        transform=read_all,
    )
    assert list(ds) == list(made.items())  # in listing order, the straggler's bytes too
    _check_gets(proxy, bucket, made)


def test_async_dataset_hedges_a_straggling_get(proxy, bucket, objects):
    made = objects(40)
    _hold_first_get_of_late(proxy)

    async def main() -> list[tuple[str, bytes]]:
        async with AsyncS3Dataset.from_prefix(
            f"s3://{bucket}/data/",
            region=REGION,
            endpoint=proxy.url,
            s3client_config=CONFIG,
        ) as ds:
            return [(obj.key, obj.data) async for obj in ds]

    assert asyncio.run(main()) == list(made.items())
    _check_gets(proxy, bucket, made)
