"""The dataset pipeline core: selection (pure), the prefetch window (fake fetches), and the
listing/fetch sources against moto."""

from __future__ import annotations

import asyncio
import random
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, Optional, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core.prefetch import (
    DeliveryRate,
    FeedSource,
    ObjectFetcher,
    Prefetched,
    Prefetcher,
    Selection,
    ShuffleBuffer,
    StalePipelineError,
    iterate_items,
    list_ahead,
    list_all,
    open_object_pipeline,
    prefix_items,
    shard_slot,
    shuffle_rng,
)
from s3torch_async._s3bucket_key_data import S3BucketKeyData

REGION = "us-east-1"


async def _collect(aiter: Any) -> list[Any]:
    return [x async for x in aiter]


# -- selection --------------------------------------------------------------------------------


@given(
    n=st.integers(0, 60),
    world=st.integers(1, 4),
    workers=st.integers(1, 4),
    buffer=st.sampled_from([0, 1, 7, 1000]),
    seed=st.integers(0, 3),
    epoch=st.integers(0, 3),
)
def test_shards_partition_the_shuffled_global_order(
    n, world, workers, buffer, seed, epoch
):
    items = list(range(n))
    global_order = list(
        Selection(shuffle_buffer_size=buffer, seed=seed, epoch=epoch).apply(items)
    )
    assert sorted(global_order) == items
    seen: list[int] = []
    for rank in range(world):
        for worker in range(workers):
            offset, stride = shard_slot(rank, world, worker, workers)
            sel = Selection(
                shuffle_buffer_size=buffer,
                seed=seed,
                epoch=epoch,
                offset=offset,
                stride=stride,
            )
            mine = list(sel.apply(items))
            # two-level round robin: rank first, then worker within the rank's stream
            rank_stream = global_order[rank::world]
            assert mine == rank_stream[worker::workers]
            assert mine == asyncio.run(_collect(sel.aapply(iterate_items(items))))
            seen.extend(mine)
    assert sorted(seen) == items


@given(n=st.integers(0, 40), skip=st.integers(0, 45), buffer=st.sampled_from([0, 5]))
def test_skip_drops_exactly_the_first_items_of_the_consumer_stream(n, skip, buffer):
    offset, stride = shard_slot(1, 2, 0, 2)
    base = Selection(shuffle_buffer_size=buffer, seed=3, offset=offset, stride=stride)
    full = list(base.apply(range(n)))
    resumed = Selection(
        shuffle_buffer_size=buffer, seed=3, offset=offset, stride=stride, skip=skip
    )
    assert list(resumed.apply(range(n))) == full[skip:]
    assert asyncio.run(_collect(resumed.aapply(iterate_items(range(n))))) == full[skip:]


def test_shuffle_is_deterministic_per_seed_and_epoch_and_changes_between_epochs():
    items = list(range(200))

    def order(seed: int, epoch: int) -> list[int]:
        return list(
            Selection(shuffle_buffer_size=50, seed=seed, epoch=epoch).apply(items)
        )

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != items
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_shuffle_buffer_of_one_keeps_source_order():
    buf: ShuffleBuffer[int] = ShuffleBuffer(1, shuffle_rng(0, 0))
    out = [x for i in range(10) for x in buf.push(i)] + buf.drain()
    assert out == list(range(10))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, 0, 0), "world_size and num_workers"),
        ((2, 2, 0, 1), "rank must be in"),
        ((0, 1, 3, 3), "worker_id must be in"),
    ],
)
def test_shard_slot_rejects_bad_indices(args, message):
    with pytest.raises(ValueError, match=message):
        shard_slot(*args)


# -- the prefetch window with fake fetches ----------------------------------------------------


class FakeFetch:
    """Records every fetch and the window occupancy each fetch saw when it started."""

    def __init__(self, sizes: dict[int, Optional[int]], seed: int = 0) -> None:
        self.sizes = sizes
        self.fetched: list[int] = []
        self.prefetcher: Optional[Prefetcher[int]] = None
        self.max_bytes_seen = 0
        self.violations: list[tuple[int, int]] = []
        self.rng = random.Random(seed)
        self.fail: set[int] = set()

    def cost(self, item: int) -> Optional[int]:
        return self.sizes[item]

    async def fetch(self, item: int) -> Optional[tuple[bytes, str]]:
        assert self.prefetcher is not None
        self.fetched.append(item)
        self.observe()
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)
        self.observe()
        if item in self.fail:
            raise S3Exception(f"fetch {item} failed")
        return bytes([item % 256]) * (self.sizes[item] or 0), f'"{item}"'

    def observe(self) -> None:
        assert self.prefetcher is not None
        nbytes = self.prefetcher.in_flight_bytes
        items = self.prefetcher.in_flight_items
        self.max_bytes_seen = max(self.max_bytes_seen, nbytes)
        if nbytes > self.budget and items > 1:
            self.violations.append((nbytes, items))

    budget = 0


async def _run_window(
    sizes: list[Optional[int]],
    budget: int,
    max_items: int,
    consume_delay: int,
    seed: int,
    batch: int = 1,
) -> tuple[list[Any], FakeFetch]:
    fake = FakeFetch(dict(enumerate(sizes)), seed)
    fake.budget = budget
    pf = Prefetcher(
        iterate_items(range(len(sizes))),
        fake.fetch,
        fake.cost,
        budget_bytes=budget,
        max_items=max_items,
    )
    fake.prefetcher = pf
    out: list[Any] = []
    while True:
        got = await pf.next_batch(batch)
        if not got:
            break
        assert len(got) <= batch
        for p in got:
            fake.observe()
            out.append(p)
            for _ in range(consume_delay):
                await asyncio.sleep(0)
    await pf.aclose()
    return out, fake


@given(
    sizes=st.lists(st.one_of(st.none(), st.integers(0, 100)), max_size=30),
    budget=st.integers(1, 150),
    max_items=st.integers(1, 6),
    consume_delay=st.integers(0, 3),
    batch=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_window_keeps_order_fetches_once_and_respects_budget(
    sizes, budget, max_items, consume_delay, batch, seed
):
    out, fake = asyncio.run(
        _run_window(sizes, budget, max_items, consume_delay, seed, batch)
    )
    assert [p.item for p in out] == list(range(len(sizes)))
    # every prefetchable item fetched exactly once, the others never
    assert sorted(fake.fetched) == [i for i, s in enumerate(sizes) if s is not None]
    for p in out:
        if sizes[p.item] is None:
            assert p.data is None
            assert p.etag is None
        else:
            assert p.data == bytes([p.item % 256]) * sizes[p.item]
            assert p.etag == f'"{p.item}"'
    # never over budget, except a single (oversized) item alone in the window
    assert fake.violations == []


def test_window_bounds_items_in_flight():
    async def main() -> int:
        started: list[int] = []
        release = asyncio.Event()

        async def fetch(item: int) -> tuple[bytes, str]:
            started.append(item)
            await release.wait()
            return b"x", "e"

        pf = Prefetcher(
            iterate_items(range(10)),
            fetch,
            lambda _i: 1,
            budget_bytes=1000,
            max_items=3,
        )
        consumer = asyncio.ensure_future(pf.__anext__())
        for _ in range(20):
            await asyncio.sleep(0)
        count = len(started)
        release.set()
        await consumer
        await pf.aclose()
        return count

    assert asyncio.run(main()) == 3


T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that, instead of blocking until the next timer, jumps the clock to it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: Optional[float] = None) -> list[Any]:
        events = super().select(0)
        if not events and timeout is not None and timeout > 0:
            self.now += timeout
        return events


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """Time passes only in sleeps and timers, never in computing: the adaptive window's
    decisions (it measures latency and delivery intervals with ``loop.time()``) are then
    the same on a quiet machine and a loaded one."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = _VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _sleepy(
    n: int,
    latency: float,
    *,
    floor: int,
    cap: int,
    budget: int,
    seen: list[int],
    delays: Optional[Callable[[], float]] = None,
) -> Prefetcher[int]:
    """A window over ``n`` items of 100 bytes whose fetches take ``latency`` s (or
    ``delays()`` s each); ``seen[0]`` is kept at the most items in flight a fetch saw."""
    pf: Prefetcher[int]

    async def fetch(item: int) -> tuple[bytes, str]:
        seen[0] = max(seen[0], pf.in_flight_items)
        await asyncio.sleep(latency if delays is None else delays())
        return b"x" * 100, "e"

    pf = Prefetcher(
        iterate_items(range(n)),
        fetch,
        lambda _i: 100,
        budget_bytes=budget,
        max_items=floor,
        adaptive_cap=cap,
    )
    return pf


async def _paced_run(
    latency: float, consume: float, *, floor: int, cap: int, budget: int, n: int
) -> tuple[int, int, list[int]]:
    """Fetches that take ``latency`` s, a consumer taking ``consume`` s per item: the most
    items seen in flight, the final window count, and the delivered order."""
    seen = [0]
    pf = _sleepy(n, latency, floor=floor, cap=cap, budget=budget, seen=seen)
    order = []
    async for got in pf:
        order.append(got.item)
        await asyncio.sleep(consume)
    count = pf.max_items
    await pf.aclose()
    return seen[0], count, order


def test_adaptive_window_widens_when_fetches_are_slow_and_stays_ordered():
    most, count, order = run_virtual(
        _paced_run(0.03, 0.001, floor=4, cap=256, budget=100_000, n=500)
    )
    assert order == list(range(500))
    # 30 ms fetches, an item taken every ~1 ms: each growth pays, so it keeps growing
    assert most >= 13
    assert count > 4


async def _traced_run(
    latency: float,
    consume: float,
    floor: int,
    n: int,
    batch: int,
    delays: Optional[Callable[[], float]] = None,
) -> tuple[list[tuple[int, int]], float]:
    """``(deliveries so far, window)`` after each hand-out, and the virtual time at the end;
    ``batch`` > 1 takes items as the sync datasets do (``next_batch``)."""
    pf = _sleepy(
        n, latency, floor=floor, cap=256, budget=10**7, seen=[0], delays=delays
    )
    trace: list[tuple[int, int]] = []
    got = 0
    while True:
        items = await pf.next_batch(batch)
        if not items:
            break
        got += len(items)
        trace.append((got, pf.max_items))
        await asyncio.sleep(consume * len(items))
    await pf.aclose()
    return trace, asyncio.get_running_loop().time()


@pytest.mark.parametrize("batch", [1, 16])
def test_adaptive_window_finds_its_size_from_the_consumers_pace_and_keeps_it(batch):
    # 30 ms fetches, a consumer that takes 0.5 ms per item: 60 items must be in flight. The
    # window is sized from the rate the consumer could take items at, in one growth (it
    # used to grow by half a window per trial, and its first trial compared the rate with
    # the first window's burst and took the growth back to the floor for 320 deliveries).
    trace, end = run_virtual(_traced_run(0.03, 0.0005, floor=16, n=2000, batch=batch))
    first = next(done for done, window in trace if window >= 60)
    assert first <= 40
    assert min(window for done, window in trace if done > 100) >= 60
    assert end <= 1.1 * (2000 * 0.0005 + 0.03)


async def _in_step(n: int, fetch_s: float, *, shared_link: bool) -> list[int]:
    """Two windows whose items one consumer takes strictly in turn (a ``DataLoader``'s
    main process and its two workers), 0.2 ms per item; fetches take ``fetch_s`` each, or
    go one at a time through one link both windows share. The windows' last counts."""
    link = asyncio.Lock()

    async def fetch(item: int) -> tuple[bytes, str]:
        if shared_link:
            async with link:
                await asyncio.sleep(fetch_s)
        else:
            await asyncio.sleep(fetch_s)
        return b"x" * 100, "e"

    windows = [
        Prefetcher(
            iterate_items(range(n)),
            fetch,
            lambda _i: 100,
            budget_bytes=10**7,
            max_items=16,
            adaptive_cap=256,
        )
        for _ in range(2)
    ]
    for _ in range(n):
        for pf in windows:
            await pf.__anext__()
            await asyncio.sleep(0.0002)
    last = [pf.max_items for pf in windows]
    for pf in windows:
        await pf.aclose()
    return last


def test_adaptive_windows_of_consumers_in_step_grow_when_latency_is_the_limit():
    # 30 ms fetches: each window needs ~75 items; the rate of one is tied to the other's,
    # yet each growth shows (the other window is not the limit at that moment)
    last = run_virtual(_in_step(1000, 0.03, shared_link=False))
    assert min(last) >= 64


def test_adaptive_windows_of_consumers_in_step_do_not_keep_growing_on_a_shared_link():
    # One link serves both windows in turn (a saturated CPU or server): a growth in one
    # window only takes link time from the other. Judged on the consumer's wait for its
    # head, each growth would look like a gain (the grown window's items are served
    # first) and both windows would end up wide; judged on the delivery rate it is not.
    last = run_virtual(_in_step(1000, 0.0005, shared_link=True))
    assert max(last) <= 32


def test_adaptive_window_keeps_its_floor_when_fetches_are_fast():
    _, count, _ = run_virtual(
        _paced_run(0.0, 0.002, floor=4, cap=256, budget=10**6, n=60)
    )
    assert count == 4


def test_adaptive_window_stays_within_its_byte_budget():
    # 100 bytes per item, 1,500 bytes of budget: never more than 15 in flight
    most, count, _ = run_virtual(
        _paced_run(0.03, 0.0005, floor=2, cap=256, budget=1500, n=200)
    )
    assert most <= 15
    assert count <= 15


def test_adaptive_window_does_not_grow_when_a_shared_link_is_the_limit():
    async def main() -> tuple[int, int]:
        link = asyncio.Lock()  # one fetch at a time: more in flight only queues
        pf: Prefetcher[int]

        async def fetch(item: int) -> tuple[bytes, str]:
            async with link:
                await asyncio.sleep(0.002)
            return b"x" * 100, "e"

        pf = Prefetcher(
            iterate_items(range(400)),
            fetch,
            lambda _i: 100,
            budget_bytes=10**6,
            max_items=4,
            adaptive_cap=256,
        )
        most = 0
        async for _ in pf:
            most = max(most, pf.max_items)
        count = pf.max_items
        await pf.aclose()
        return most, count

    most, count = run_virtual(main())
    # queueing makes each fetch look slow (Little's law alone would ask for ~256); growth
    # is tried, does not raise the delivery rate, and is taken back (a trial may be running
    # at the end)
    assert most <= 16
    assert count <= 16


def test_adaptive_window_widens_for_a_store_whose_latency_varies_widely():
    # S3's first-byte times have a long tail. Here they are log-normal around 20 ms
    # (sigma 0.6: a tenth under 9 ms, a tenth over 43 ms) and the consumer takes 0.1 ms
    # per item, so the window must grow well past its 32. A rule that takes the shortest
    # fetch as the store's latency (to leave out our own queueing) reads ~3 ms here and
    # stopped the window at 32: 550 items/s instead of ~1,700.
    rng = random.Random(1)
    trace, end = run_virtual(
        _traced_run(
            0.0,
            0.0001,
            floor=32,
            n=6000,
            batch=16,
            delays=lambda: 0.02 * rng.lognormvariate(0, 0.6),
        )
    )
    most = max(window for _, window in trace)
    assert most >= 128
    assert 6000 / end >= 1200


@given(
    per_item=st.floats(1e-5, 1.0),
    counts=st.lists(st.integers(1, 32), min_size=2, max_size=50),
)
def test_delivery_rate_of_a_steady_consumer_is_its_per_item_time(
    per_item: float, counts: list[int]
) -> None:
    rate = DeliveryRate()
    now = 0.0
    rate.record(now, counts[0])
    for count in counts[1:]:
        now += per_item * count
        rate.record(now, count)
    assert rate.interval == pytest.approx(per_item, rel=1e-9)


def test_delivery_rate_weighs_a_batch_by_its_items() -> None:
    # The sync datasets take ready items in batches: one item after waiting 2 ms, then 15
    # more 1 ms later, over and over, is 16 items per 3 ms. A mean of per-delivery intervals
    # (2 ms and 1/15 ms) would say about 1 ms per item and keep the window five times short.
    rate = DeliveryRate()
    assert rate.interval is None
    now = 0.0
    rate.record(now, 15)
    for _ in range(50):
        now += 0.002
        rate.record(now, 1)
        now += 0.001
        rate.record(now, 15)
    assert rate.interval == pytest.approx(0.003 / 16, rel=0.15)


# -- hedging the item at the head of the line --------------------------------------------------


class _Straggling:
    """Fetches of 20 ms, except the first request for each item in ``slow`` (``stall`` s,
    or failing after it with ``fail_first``); a second request for any item fails when it
    is in ``fail_second``. Records every call and every cancelled request."""

    def __init__(
        self,
        slow: set[int],
        stall: float = 100.0,
        fail_first: bool = False,
        fail_second: frozenset[int] = frozenset(),
        fetch_s: float = 0.02,
    ) -> None:
        self.slow, self.stall, self.fetch_s = slow, stall, fetch_s
        self.fail_first, self.fail_second = fail_first, fail_second
        self.calls: list[int] = []
        self.cancelled: list[int] = []

    async def fetch(self, item: int) -> tuple[bytes, str]:
        again = item in self.calls
        self.calls.append(item)
        try:
            if item in self.slow and not again:
                await asyncio.sleep(self.stall)
                if self.fail_first:
                    raise S3Exception(f"fetch {item} failed")
            else:
                await asyncio.sleep(self.fetch_s)
                if again and item in self.fail_second:
                    raise S3Exception(f"second fetch {item} failed")
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        return bytes([item % 256]) * 10, f'"{item}"'


async def _hedged_run(
    store: _Straggling, n: int, *, hedge: bool = True, max_items: int = 32
) -> tuple[list[Prefetched[int]], int, float]:
    pf = Prefetcher(
        iterate_items(range(n)),
        store.fetch,
        lambda _i: 10,
        budget_bytes=10**6,
        max_items=max_items,
        hedge=hedge,
    )
    out: list[Prefetched[int]] = []
    while True:
        got = await pf.next_batch(16)
        if not got:
            break
        out.extend(got)
        await asyncio.sleep(0.0002 * len(got))
    hedges = pf.hedges
    await pf.aclose()
    return out, hedges, asyncio.get_running_loop().time()


def _check_delivered(out: list[Prefetched[int]], n: int) -> None:
    assert [p.item for p in out] == list(range(n))
    for p in out:
        assert p.data == bytes([p.item % 256]) * 10
        assert p.etag == f'"{p.item}"'


def test_straggler_at_the_head_is_hedged_and_the_loser_cancelled():
    # item 5's first request never comes back in time; 31 items behind it are done at 20 ms
    store = _Straggling({5})
    out, hedges, end = run_virtual(_hedged_run(store, 200))
    _check_delivered(out, 200)
    assert hedges == 1
    assert store.calls.count(5) == 2
    assert store.cancelled == [5]  # the straggling first request, given up
    assert sorted(set(store.calls)) == list(range(200))
    assert len(store.calls) == 201
    assert end < store.stall  # nobody waited for the straggler

    # without hedging the same store holds every item behind it for the whole stall
    store = _Straggling({5})
    out, hedges, end = run_virtual(_hedged_run(store, 200, hedge=False))
    _check_delivered(out, 200)
    assert hedges == 0
    assert store.calls.count(5) == 1
    assert end >= store.stall


def test_hedges_stay_within_their_budget():
    # a straggler every 10 items: 3 hedges at the start, then one per 50 finished fetches
    slow = set(range(3, 400, 10))
    store = _Straggling(slow, stall=0.5)
    out, hedges, _ = run_virtual(_hedged_run(store, 400))
    _check_delivered(out, 400)
    assert 3 <= hedges <= 3 + 400 // 50
    assert hedges < len(slow)
    # at most one second request per item, and only for stragglers
    again = [item for item in set(store.calls) if store.calls.count(item) > 1]
    assert len(again) == hedges
    assert set(again) <= slow


def test_a_uniformly_slow_store_is_not_hedged():
    # every request takes 100 s: nothing behind the head finishes first, so nothing is hedged
    store = _Straggling(set(range(40)), stall=100.0)
    out, hedges, _ = run_virtual(_hedged_run(store, 40))
    _check_delivered(out, 40)
    assert hedges == 0
    assert store.calls == list(range(40))


def test_a_fast_store_is_not_hedged_for_a_few_ms():
    # 1 ms fetches, one of 8 ms: 8x the typical time, but under the 10 ms floor (on a store
    # that fast, the client's own pauses make such delays; a second GET only adds work) ...
    store = _Straggling({5}, stall=0.008, fetch_s=0.001)
    out, hedges, _ = run_virtual(_hedged_run(store, 100))
    _check_delivered(out, 100)
    assert hedges == 0
    # ... while one of 50 ms is hedged
    store = _Straggling({5}, stall=0.05, fetch_s=0.001)
    out, hedges, _ = run_virtual(_hedged_run(store, 100))
    _check_delivered(out, 100)
    assert hedges == 1


def test_hedge_failing_leaves_the_original_request_to_finish():
    # the second request for item 5 fails: the first one (slow but fine) is the result
    store = _Straggling({5}, stall=1.0, fail_second=frozenset({5}))
    out, hedges, _ = run_virtual(_hedged_run(store, 100))
    _check_delivered(out, 100)
    assert hedges == 1
    assert store.cancelled == []


def test_original_failing_leaves_the_hedge_to_finish():
    store = _Straggling({5}, stall=1.0, fail_first=True)
    out, hedges, _ = run_virtual(_hedged_run(store, 100))
    _check_delivered(out, 100)
    assert hedges == 1


def test_both_requests_failing_raise_at_the_items_turn():
    store = _Straggling({5}, stall=1.0, fail_first=True, fail_second=frozenset({5}))

    async def main() -> tuple[list[int], str]:
        pf = Prefetcher(
            iterate_items(range(50)),
            store.fetch,
            lambda _i: 10,
            budget_bytes=10**6,
            max_items=32,
            hedge=True,
        )
        got: list[int] = []
        try:
            while True:
                batch = await pf.next_batch(16)
                got.extend(p.item for p in batch)
        except S3Exception as exc:
            return got, str(exc)
        finally:
            await pf.aclose()

    got, message = run_virtual(main())
    assert got == [0, 1, 2, 3, 4]
    assert message == "fetch 5 failed"  # the original request's error


def test_window_without_adaptive_cap_keeps_its_count():
    most, count, _ = asyncio.run(
        _paced_run(0.02, 0.0005, floor=3, cap=0, budget=10**6, n=60)
    )
    assert (most, count) == (3, 3)


def test_oversized_item_waits_for_an_empty_window_then_runs_alone():
    async def main() -> list[tuple[int, int]]:
        occupancy: list[tuple[int, int]] = []
        pf: Prefetcher[int]

        async def fetch(item: int) -> tuple[bytes, str]:
            occupancy.append((item, pf.in_flight_items))
            await asyncio.sleep(0)
            return b"", ""

        sizes = [10, 10, 500, 10]
        pf = Prefetcher(
            iterate_items(range(4)),
            fetch,
            lambda i: sizes[i],
            budget_bytes=100,
            max_items=8,
        )
        assert [p.item for p in await _collect(pf)] == [0, 1, 2, 3]
        return occupancy

    occupancy = dict(asyncio.run(main()))
    assert occupancy[2] == 1  # started alone


def test_fetch_error_is_raised_at_its_turn_after_earlier_items():
    async def main() -> tuple[list[int], BaseException]:
        fake = FakeFetch(dict.fromkeys(range(6), 5))
        fake.budget = 100
        fake.fail = {3}
        pf = Prefetcher(
            iterate_items(range(6)),
            fake.fetch,
            fake.cost,
            budget_bytes=100,
            max_items=6,
        )
        fake.prefetcher = pf
        got: list[int] = []
        error: Optional[BaseException] = None
        try:
            while True:
                batch = await pf.next_batch(10)
                got.extend(p.item for p in batch)
        except S3Exception as exc:
            error = exc
        await pf.aclose()
        assert error is not None
        return got, error

    got, error = asyncio.run(main())
    assert got == [0, 1, 2]
    assert str(error) == "fetch 3 failed"


def test_source_error_is_raised_after_every_item_before_it():
    async def source() -> Any:
        for i in range(4):
            yield i
        raise S3Exception("Service error: The bucket does not exist")

    async def main() -> tuple[list[int], str]:
        async def fetch(item: int) -> tuple[bytes, str]:
            return b"", ""

        pf = Prefetcher(source(), fetch, lambda _i: 1, budget_bytes=100, max_items=2)
        got: list[int] = []
        error = ""
        try:
            async for p in pf:
                got.append(p.item)  # noqa: PERF401 - keep what arrived before the error
        except S3Exception as exc:
            error = str(exc)
        await pf.aclose()
        return got, error

    assert asyncio.run(main()) == (
        [0, 1, 2, 3],
        "Service error: The bucket does not exist",
    )


def test_next_batch_returns_every_ready_item_in_one_call():
    async def main() -> list[int]:
        async def fetch(item: int) -> tuple[bytes, str]:
            return b"d", ""

        pf = Prefetcher(
            iterate_items(range(5)), fetch, lambda _i: 1, budget_bytes=100, max_items=5
        )
        first = await pf.next_batch(1)
        for _ in range(10):
            await asyncio.sleep(0)  # the rest completes meanwhile
        rest = await pf.next_batch(10)
        end = await pf.next_batch(10)
        await pf.aclose()
        return [len(first), len(rest), len(end)]

    assert asyncio.run(main()) == [1, 4, 0]


def test_aclose_cancels_fetches_in_flight_and_closes_the_source():
    async def main() -> tuple[int, bool]:
        cancelled = 0
        closed = False

        async def source() -> Any:
            nonlocal closed
            try:
                for i in range(100):
                    yield i
            finally:
                closed = True

        async def fetch(item: int) -> tuple[bytes, str]:
            nonlocal cancelled
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled += 1
                raise
            return b"", ""

        pf = Prefetcher(source(), fetch, lambda _i: 1, budget_bytes=10, max_items=4)
        waiter = asyncio.ensure_future(pf.__anext__())
        for _ in range(10):
            await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await pf.aclose()
        return cancelled, closed

    assert asyncio.run(main()) == (4, True)


def test_pipeline_used_from_another_loop_raises_stale_error():
    async def make() -> Prefetcher[int]:
        async def fetch(item: int) -> tuple[bytes, str]:
            return b"", ""

        return Prefetcher(
            iterate_items([1]), fetch, lambda _i: 1, budget_bytes=1, max_items=1
        )

    pf = asyncio.run(make())
    with pytest.raises(StalePipelineError):
        asyncio.run(pf.next_batch(1))


def test_feed_source_waits_for_items_until_ended():
    async def main() -> list[int]:
        feed: FeedSource[int] = FeedSource()
        out: list[int] = []

        async def consume() -> None:
            out.extend([x async for x in feed])

        task = asyncio.ensure_future(consume())
        feed.feed([1, 2])
        await asyncio.sleep(0)
        feed.feed([3], end=True)
        await task
        return out

    assert asyncio.run(main()) == [1, 2, 3]


# -- listing ahead ----------------------------------------------------------------------------
# list_ahead reads one page ahead from the first page on (the pager's read-ahead): tested
# against a real server in test_list_read_ahead.py.


# -- against moto -----------------------------------------------------------------------------


@pytest.fixture
async def client(endpoint):
    async with AsyncS3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(max_attempts=1)
    ) as c:
        yield c


async def test_list_ahead_returns_every_page_in_order(client, bucket, put):
    keys = [f"p/{i:02d}" for i in range(25)]
    for k in keys:
        put(k, b"x")
    put("other", b"y")
    pages: list[tuple[int, int]] = []
    got = [
        i.key
        async for i in list_ahead(
            client, bucket, "p/", max_keys=10, on_page=lambda p, o: pages.append((p, o))
        )
    ]
    assert got == keys
    assert pages == [(1, 10), (2, 20), (3, 25)]
    items = await list_all(client, bucket, "p/")
    assert [(i.bucket, i.key, i.object_info.size) for i in items] == [
        (bucket, k, 1) for k in keys
    ]


async def test_list_ahead_of_missing_bucket_raises_bucket_error(client):
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        await _collect(list_ahead(client, "no-such-bucket-s3torch-async"))


async def test_object_fetcher_prefetches_only_small_objects(client, bucket, put):
    put("small", b"s" * 100)
    put("big", b"b" * 300)
    put("empty", b"")
    listed = {i.key: i for i in await list_all(client, bucket)}
    fetcher = ObjectFetcher(client, 200, deliver_errors=True)
    assert fetcher.cost(listed["small"]) == 100
    assert fetcher.cost(listed["big"]) is None
    assert fetcher.cost(S3BucketKeyData(bucket, "big")) == 200
    data, etag = await fetcher.fetch(listed["small"])  # type: ignore[misc]
    assert data == b"s" * 100
    assert etag == listed["small"].object_info.etag
    # without listing info: one whole GET given up when too large -> no data; empty -> b""
    assert (await fetcher.fetch(S3BucketKeyData(bucket, "small")))[0] == b"s" * 100  # type: ignore[index]
    assert await fetcher.fetch(S3BucketKeyData(bucket, "big")) is None
    assert await fetcher.fetch(S3BucketKeyData(bucket, "empty")) == (  # type: ignore[comparison-overlap]
        b"",
        listed["empty"].object_info.etag,
    )
    assert ObjectFetcher(client, 0, deliver_errors=True).cost(listed["small"]) is None


async def test_object_fetcher_error_policy(client, bucket):
    missing = S3BucketKeyData(bucket, "missing")
    assert await ObjectFetcher(client, 10, deliver_errors=False).fetch(missing) is None
    with pytest.raises(
        S3Exception, match=r"^Service error: The key does not exist(\n|$)"
    ):
        await ObjectFetcher(client, 10, deliver_errors=True).fetch(missing)


async def test_object_pipeline_selects_before_fetching(client, bucket, put):
    for i in range(8):
        put(f"k{i}", bytes([i]) * 10)
    offset, stride = shard_slot(1, 2, 0, 1)
    pf = open_object_pipeline(
        client,
        prefix_items(client, bucket, "k"),
        selection=Selection(offset=offset, stride=stride, skip=1),
        prefetch_bytes=1000,
        prefetch_count=4,
        max_object_size=100,
        deliver_errors=True,
    )
    got = await _collect(pf)
    await pf.aclose()
    assert [(p.item.key, p.data) for p in got] == [
        (f"k{i}", bytes([i]) * 10) for i in (3, 5, 7)
    ]


@pytest.mark.parametrize(
    ("stride", "prefetch_count", "start", "adapts"),
    [(1, 4, 4, True), (2, 4, 64, False), (2, 100, 100, False)],
)
async def test_object_pipeline_window_of_a_shard_is_fixed(
    client, bucket, put, stride, prefetch_count, start, adapts
):
    # A shard of consumers in step (stride > 1) keeps max(prefetch_count, 64) objects in
    # its window; a lone consumer starts at prefetch_count and may widen.
    for i in range(6):
        put(f"w{i}", bytes([i]) * 10)
    pf = open_object_pipeline(
        client,
        prefix_items(client, bucket, "w"),
        selection=Selection(offset=0, stride=stride),
        prefetch_bytes=1 << 20,
        prefetch_count=prefetch_count,
        max_object_size=100,
        deliver_errors=True,
    )
    assert pf.max_items == start
    assert pf._adaptive() is adapts
    got = await _collect(pf)
    await pf.aclose()
    assert [p.item.key for p in got] == [f"w{i}" for i in range(0, 6, stride)]
    assert pf.max_items == start or adapts
