"""Dataset pipelines on the async core: listing ahead, selection, and the prefetch window.

This module owns what happens between "these objects make up the dataset" and "here is the next
object, possibly already downloaded":

* :func:`list_ahead` pages through a listing and requests page *k + 1* while page *k* is consumed;
* :class:`Selection` decides which items one consumer gets and in what order: a seeded, bounded
  shuffle of the global order (identical on every rank and worker), then a round-robin shard,
  then skipping the items a resumed iteration has already delivered. It has a sync and an async
  form that give the same order;
* :class:`Prefetcher` downloads the next objects concurrently, bounded by a byte budget and an
  item count (``_planning.PrefetchWindow``), and delivers them, or the error each one raised,
  in source order. The count can size itself from the observed fetch latency and delivery
  rate (``_planning.window_items``), so a store far away gets a wider window than loopback;
* :func:`open_object_pipeline` wires the three together for ``S3BucketKeyData`` items.

No torch, no threads: the sync datasets drive a pipeline through the runner, the async dataset
awaits it directly.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Deque, Generic, List, Optional, Tuple, TypeVar

from .._errors import S3Exception
from .._s3bucket_key_data import S3BucketKeyData
from .._types import ObjectInfo
from ._planning import MAX_WINDOW_ITEMS, PrefetchWindow, window_items
from .client import AsyncS3Client

__all__ = [
    "DeliveryRate",
    "FeedSource",
    "ObjectFetcher",
    "Prefetched",
    "Prefetcher",
    "Selection",
    "ShuffleBuffer",
    "StalePipelineError",
    "batch_cost",
    "fetch_batch",
    "iterate_items",
    "list_ahead",
    "list_all",
    "open_object_pipeline",
    "opening_requests",
    "prefix_items",
    "shard_slot",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


# -- selection: shuffle, shard, skip (pure) ---------------------------------------------------


def shuffle_rng(seed: int, epoch: int) -> random.Random:
    """The generator behind one epoch's shuffle; the same in every process for the same input."""
    # A str seed is hashed with SHA-512, so this is stable across processes and Python runs.
    return random.Random(f"s3torch-async:{seed}:{epoch}")


class ShuffleBuffer(Generic[T]):
    """A bounded shuffle buffer: holds up to ``size`` items and releases a random one per push.

    The order it produces depends only on the input order and ``rng``.
    """

    def __init__(self, size: int, rng: random.Random) -> None:
        if size < 1:
            raise ValueError(f"shuffle buffer size must be >= 1, got {size}")
        self._size = size
        self._rng = rng
        self._buf: List[T] = []

    def push(self, item: T) -> Tuple[T, ...]:
        """Add ``item``; return the item released (none while the buffer is filling)."""
        if len(self._buf) < self._size:
            self._buf.append(item)
            return ()
        j = self._rng.randrange(self._size)
        out, self._buf[j] = self._buf[j], item
        return (out,)

    def drain(self) -> List[T]:
        """Return the remaining items in random order and empty the buffer."""
        out, self._buf = self._buf, []
        self._rng.shuffle(out)
        return out


def shard_slot(
    rank: int, world_size: int, worker_id: int, num_workers: int
) -> Tuple[int, int]:
    """``(offset, stride)`` of one consumer in the two-level round robin (rank, then worker).

    Item ``i`` of the global order goes to rank ``i % world_size``; within that rank's stream,
    item ``j`` goes to worker ``j % num_workers``. Together that is ``i % stride == offset``.

    Raises:
        ValueError: A count is below 1 or an index is outside its count.
    """
    if world_size < 1 or num_workers < 1:
        raise ValueError(
            f"world_size and num_workers must be >= 1, got {world_size} and {num_workers}"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if not 0 <= worker_id < num_workers:
        raise ValueError(f"worker_id must be in [0, {num_workers}), got {worker_id}")
    return rank + world_size * worker_id, world_size * num_workers


@dataclass(frozen=True)
class Selection:
    """Which items of the global order one consumer gets, and in which order.

    Attributes:
        shuffle_buffer_size: 0 keeps the source order; otherwise the size of the shuffle buffer.
        seed: Shuffle seed (with ``epoch``, it fixes the order).
        epoch: Shuffle epoch.
        offset: First global index (after shuffling) this consumer gets.
        stride: Distance between this consumer's global indices.
        skip: Items of this consumer's stream to drop (already delivered before a resume).
    """

    shuffle_buffer_size: int = 0
    seed: int = 0
    epoch: int = 0
    offset: int = 0
    stride: int = 1
    skip: int = 0

    def __post_init__(self) -> None:
        if self.shuffle_buffer_size < 0:
            raise ValueError(
                f"shuffle_buffer_size must be >= 0, got {self.shuffle_buffer_size}"
            )
        if self.stride < 1 or not 0 <= self.offset < self.stride:
            raise ValueError(
                f"bad shard slot offset={self.offset} stride={self.stride}"
            )
        if self.skip < 0:
            raise ValueError(f"skip must be >= 0, got {self.skip}")

    def _shuffled(self, items: Iterable[T]) -> Iterator[T]:
        if not self.shuffle_buffer_size:
            yield from items
            return
        buf: ShuffleBuffer[T] = ShuffleBuffer(
            self.shuffle_buffer_size, shuffle_rng(self.seed, self.epoch)
        )
        for item in items:
            yield from buf.push(item)
        yield from buf.drain()

    async def _ashuffled(self, items: AsyncIterable[T]) -> AsyncGenerator[T, None]:
        if not self.shuffle_buffer_size:
            async for item in items:
                yield item
            return
        buf: ShuffleBuffer[T] = ShuffleBuffer(
            self.shuffle_buffer_size, shuffle_rng(self.seed, self.epoch)
        )
        async for item in items:
            for out in buf.push(item):
                yield out
        for out in buf.drain():
            yield out

    def apply(self, items: Iterable[T]) -> Iterator[T]:
        """Select from a sync iterable."""
        mine = islice(self._shuffled(items), self.offset, None, self.stride)
        return islice(mine, self.skip, None)

    async def aapply(self, items: AsyncIterable[T]) -> AsyncIterator[T]:
        """Select from an async iterable (same order as :meth:`apply`)."""
        source = self._ashuffled(items)
        index = -1
        try:
            async for item in source:
                index += 1
                # index // stride is the item's position in this consumer's own stream.
                if (
                    index % self.stride == self.offset
                    and index // self.stride >= self.skip
                ):
                    yield item
        finally:
            await source.aclose()


# -- sources ----------------------------------------------------------------------------------


async def list_ahead(
    client: AsyncS3Client,
    bucket: str,
    prefix: str = "",
    *,
    max_keys: int = 1000,
    on_page: Optional[Callable[[int, int], None]] = None,
    preconnect: int = 0,
) -> AsyncGenerator[ObjectInfo, None]:
    """Every object under ``prefix`` (recursive), requesting the next page while one is consumed.

    Unlike a plain ``list_objects`` pager, the second page is read ahead too (a caller of
    this reads the whole listing).

    Args:
        client: The client to list with.
        bucket: Bucket name.
        prefix: Key prefix, sent verbatim.
        max_keys: Page size.
        on_page: Called as ``on_page(pages, objects)`` after each page arrives.
        preconnect: Connections to open while the first page is awaited, for the requests
            the caller sends once it has the first objects (see ``ListingCursor``).

    Raises:
        S3Exception: A listing request failed (``Service error: The bucket does not exist``...).
    """
    pager = client.list_objects(bucket, prefix, "", max_keys)
    pager.read_ahead_from = 1
    pager.preconnect = preconnect
    pages = objects = 0
    try:
        async for page in pager:
            pages += 1
            objects += len(page.object_info)
            if on_page is not None:
                on_page(pages, objects)
            for info in page.object_info:
                yield info
    finally:
        await pager.aclose()


async def list_all(
    client: AsyncS3Client,
    bucket: str,
    prefix: str = "",
    *,
    max_keys: int = 1000,
    on_page: Optional[Callable[[int, int], None]] = None,
) -> List[S3BucketKeyData]:
    """The whole listing as ``S3BucketKeyData`` (with listing ahead); see :func:`list_ahead`."""
    listing = list_ahead(client, bucket, prefix, max_keys=max_keys, on_page=on_page)
    return [S3BucketKeyData(bucket, info.key, info) async for info in listing]


async def prefix_items(
    client: AsyncS3Client, bucket: str, prefix: str, *, preconnect: int = 0
) -> AsyncIterator[S3BucketKeyData]:
    """The objects under ``prefix`` as ``S3BucketKeyData`` with their listing info.

    ``preconnect``: see :func:`list_ahead`.
    """
    listing = list_ahead(client, bucket, prefix, preconnect=preconnect)
    try:
        async for info in listing:
            yield S3BucketKeyData(bucket, info.key, info)
    finally:
        await listing.aclose()


async def iterate_items(items: Iterable[T]) -> AsyncIterator[T]:
    """An async iterator over an in-memory iterable."""
    for item in items:
        yield item


class FeedSource(Generic[T]):
    """An async iterator whose items are pushed by its owner (:meth:`feed`).

    It lets a sync caller run its own item source (for instance a user's generator that lists
    through the blocking client) on its own thread and push the items through the prefetch window.
    """

    def __init__(self) -> None:
        self._items: Deque[T] = deque()
        self._ended = False
        self._arrived = asyncio.Event()

    def feed(self, items: Iterable[T], *, end: bool = False) -> None:
        """Append ``items``; ``end=True`` says no more will come."""
        self._items.extend(items)
        self._ended = self._ended or end
        self._arrived.set()

    def __aiter__(self) -> FeedSource[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        return self._items.popleft()


# -- the prefetch window ----------------------------------------------------------------------


class StalePipelineError(RuntimeError):
    """The pipeline belongs to an event loop that is gone (after a fork or a runner restart)."""


@dataclass(frozen=True)
class Prefetched(Generic[T]):
    """One delivered item.

    Attributes:
        item: The source item.
        data: The whole object, or ``None`` when it was not prefetched.
        etag: The ETag of ``data`` (``None`` when not prefetched).
    """

    item: T
    data: Optional[bytes] = None
    etag: Optional[str] = None


FetchFn = Callable[[T], Awaitable[Optional[Tuple[bytes, str]]]]
CostFn = Callable[[T], Optional[int]]


@dataclass
class _Entry(Generic[T]):
    item: T
    cost: int
    task: Optional[asyncio.Task[Optional[Tuple[bytes, str]]]]
    started: float = 0.0
    hedged: bool = False

    def ready(self) -> bool:
        return self.task is None or self.task.done()


class Prefetcher(Generic[T]):
    """Fetches the next items concurrently and delivers them in source order.

    ``cost(item)`` says how many bytes an item reserves in the window, or ``None`` when it must
    not be prefetched (it is then delivered without data, still in order). An item is started
    when it fits in ``budget_bytes`` and ``max_items`` together with everything fetched and not
    yet delivered; with nothing in flight any item starts, so one oversized item still
    progresses.

    With ``adaptive_cap`` above ``max_items``, ``max_items`` is only the starting count: after
    every delivery the count becomes :func:`~._planning.window_items` of the observed fetch
    latency, delivery interval and item size, between ``max_items`` and ``adaptive_cap``; the
    byte budget stays a hard bound. ``fetch(item)`` returns ``(data, etag)`` or ``None`` (deliver without data); an
    exception it raises is raised when that item's turn comes, and so is an exception from the
    source, after every item before it.

    With ``hedge``, an item the consumer waits for that has taken more than ``_HEDGE_AFTER``
    (3) times the typical fetch time (a running mean in which no fetch counts for more than
    twice the mean), and at least ``_HEDGE_MIN_S`` (10 ms), while ``_HEDGE_PEERS`` (8) items sent after it have finished gets a second
    ``fetch``; the first of the two to succeed is delivered and the other is cancelled (a
    straggling request, "The Tail at Scale"). At most one hedge per item and, beyond the first
    3, one per ``_HEDGE_EVERY`` (50) finished fetches; a hedge counts in the window while it
    runs. The order never changes.

    Create it on the event loop that will drive it. Nothing starts before the first
    ``__anext__``/:meth:`next_batch`; :meth:`aclose` cancels everything in flight.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        fetch: FetchFn[T],
        cost: CostFn[T],
        *,
        budget_bytes: int,
        max_items: int,
        adaptive_cap: int = 0,
        hedge: bool = False,
    ) -> None:
        self._source = source
        self._fetch = fetch
        self._cost = cost
        self._window = PrefetchWindow(budget_bytes, max_items)
        self._floor = max_items
        self._adaptive_cap = adaptive_cap
        self._hedge = hedge
        self._typical: Optional[float] = None  # fetch time, robust to stragglers
        self._hedge_tokens = _HEDGE_TOKENS_MOST
        self._hedges = 0
        # Exponentially weighted means of what the window is sized from.
        self._latency: Optional[float] = None
        self._deliveries = DeliveryRate()
        # The consumer's own time per item (from a hand-out to its next request): the rate
        # it could take items at, which a window too small to keep up hides.
        self._demand = DeliveryRate()
        self._handed: Optional[Tuple[float, int]] = None
        self._mean_cost: Optional[float] = None
        # Growth on trial: (time, deliveries, rate before, size before) of the last growth;
        # deliveries is -1 until one fetch latency has passed since the growth.
        self._trial: Optional[Tuple[float, int, float, int]] = None
        self._total = 0
        self._hold_until = 0
        self._history: Deque[Tuple[float, int]] = deque(
            maxlen=max(64, 2 * adaptive_cap + 1)
        )
        self._entries: Deque[_Entry[T]] = deque()
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self._arrived = asyncio.Event()
        self._scheduler: Optional[asyncio.Task[None]] = None
        self._source_done = False
        self._error: Optional[BaseException] = None
        self._closed = False

    @property
    def in_flight_bytes(self) -> int:
        """Bytes reserved by items started and not yet delivered."""
        return self._window.in_flight_bytes

    @property
    def in_flight_items(self) -> int:
        """Items started (or queued without data) and not yet delivered."""
        return self._window.in_flight_items

    @property
    def max_items(self) -> int:
        """The window's current item count (it moves when the window is adaptive)."""
        return self._window.max_items

    @property
    def hedges(self) -> int:
        """Second requests sent so far for items much later than the items behind them."""
        return self._hedges

    def _adaptive(self) -> bool:
        return self._adaptive_cap > self._floor

    async def _timed_fetch(self, item: T) -> Optional[Tuple[bytes, str]]:
        started = self._loop.time()
        result = await self._fetch(item)
        took = self._loop.time() - started
        self._latency = _ewma(self._latency, took)
        # A straggler must not raise the yardstick stragglers are measured with: each
        # sample counts at most twice the running value.
        typical = self._typical
        self._typical = _ewma(
            typical, took if typical is None else min(took, 2 * typical)
        )
        self._hedge_tokens = min(
            _HEDGE_TOKENS_MOST, self._hedge_tokens + 1 / _HEDGE_EVERY
        )
        return result

    # -- hedging: a second request for the item at the head of the line ----------------------

    def _hedge_at(self, head: _Entry[T]) -> Optional[float]:
        """When ``head`` may be hedged, or ``None`` when it may not (yet)."""
        if (
            not self._hedge
            or head.hedged
            or self._typical is None
            or self._hedge_tokens < 1
        ):
            return None
        return head.started + max(_HEDGE_AFTER * self._typical, _HEDGE_MIN_S)

    def _peers_done(self) -> int:
        """Items behind the head whose fetch has finished (it was sent before them)."""
        done = 0
        for entry in islice(self._entries, 1, None):
            if entry.task is not None and entry.task.done():
                done += 1
                if done >= _HEDGE_PEERS:
                    break
        return done

    async def _wait_head(self, head: _Entry[T]) -> None:
        """Wait until the head's fetch is done, hedging it once if it falls far behind.

        The head is hedged when it has taken more than ``_HEDGE_AFTER`` times the typical
        fetch time, at least ``_HEDGE_PEERS`` items sent after it have finished (so it is a
        straggler, not a slow store), and the budget has a token (one per ``_HEDGE_EVERY``
        finished fetches). The first of the two requests to succeed is the item's result;
        the other is cancelled.
        """
        assert head.task is not None
        while not head.task.done():
            hedge_at = self._hedge_at(head)
            if hedge_at is None:
                # asyncio.wait, not await: cancelling the consumer must not cancel the fetch.
                await asyncio.wait([head.task])
                return
            wait = hedge_at - self._loop.time()
            if wait <= 0:
                if self._peers_done() >= _HEDGE_PEERS:
                    self._start_hedge(head)
                    continue
                # not a straggler yet: look again after another typical fetch time
                wait = max(self._typical or 0.0, _HEDGE_RECHECK_S)
            await asyncio.wait([head.task], timeout=wait)

    def _start_hedge(self, head: _Entry[T]) -> None:
        original = head.task
        assert original is not None
        self._hedge_tokens -= 1
        self._hedges += 1
        head.hedged = True
        # Counted in the window (past its bounds: the window is full of finished items
        # behind the head), so nothing else starts until the race is over.
        self._window.admit(head.cost, force=True)
        second = asyncio.ensure_future(self._fetch(head.item))
        head.task = asyncio.ensure_future(self._race(original, second, head.cost))
        logger.debug("prefetch: hedged a straggler (%d so far)", self._hedges)

    async def _race(
        self,
        original: asyncio.Task[Optional[Tuple[bytes, str]]],
        second: asyncio.Future[Optional[Tuple[bytes, str]]],
        cost: int,
    ) -> Optional[Tuple[bytes, str]]:
        """The first of the two requests to succeed; both failed: the original's error."""
        try:
            pending = {original, second}
            while pending:
                done, pending = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if not task.cancelled() and task.exception() is None:
                        return task.result()
            return original.result()
        finally:
            original.cancel()
            second.cancel()
            self._window.release(cost)
            self._space.set()

    def _delivered(self, count: int) -> None:
        """Record ``count`` deliveries now; resize an adaptive window.

        Little's law gives the size, but a fetch's duration also grows with the queueing in
        front of a saturated CPU or link, which would inflate the window for nothing. So a
        window only grows on trial: it keeps the larger size when the delivery rate over
        ``max(size, 32)`` deliveries, counted from one fetch latency after the growth (when
        the added items start to arrive), beats the rate over twice as many deliveries before
        it by 10 %, and otherwise goes back and holds for ``20 x size`` deliveries before
        trying again.
        """
        if not self._adaptive() or not count:
            return
        now = self._loop.time()
        self._handed = (now, count)
        self._deliveries.record(now, count)
        self._total += count
        self._history.append((now, self._total))
        interval = self._deliveries.interval
        if self._latency is None or interval is None:
            return
        demand = self._demand.interval
        if demand is not None:
            # sized for the rate the consumer could take, not only the rate it got: a
            # window too small to keep up finds its size in one growth, not in many trials
            interval = min(interval, demand)
        window = self._window
        current = window.max_items
        target = window_items(
            self._latency,
            interval,
            self._mean_cost or 0.0,
            window.budget_bytes,
            self._floor,
            self._adaptive_cap,
        )
        trial = self._trial
        if trial is not None:
            started, at, rate_before, previous = trial
            if at < 0:
                # the items the growth added arrive one fetch latency later: the rate
                # after it is counted from then on
                if now - started < self._latency:
                    return
                self._trial = trial = (now, self._total, rate_before, previous)
                started, at = now, self._total
            if self._total - at < max(current, _TRIAL_DELIVERIES):
                return  # still judging the last growth
            self._trial = None
            rate_after = (self._total - at) / max(now - started, 1e-9)
            if rate_after < rate_before * _TRIAL_GAIN:
                logger.debug(
                    "prefetch window %d -> %d items (%.0f/s, not above %.0f/s)",
                    current,
                    previous,
                    rate_after,
                    rate_before,
                )
                window.max_items = previous
                self._hold_until = self._total + _TRIAL_HOLD * previous
                return
        if target <= current:
            window.max_items = target
            return
        if self._total < self._hold_until or len(self._history) < 2:
            return
        # the rate over as many deliveries as the trial will be judged on: a shorter span
        # would be a burst of items that were ready at once
        span = 2 * max(current, _TRIAL_DELIVERIES)
        first_time, first_total = self._history[0]
        for then, total in reversed(self._history):
            if self._total - total >= span:
                first_time, first_total = then, total
                break
        if now <= first_time:
            return
        # ``current`` items each taking one fetch latency deliver at most current / latency
        # per second: a faster rate measured over a short history is a burst of items that
        # were ready at once (the first window arriving together, most of all)
        rate_before = min(
            (self._total - first_total) / (now - first_time),
            current / max(self._latency, 1e-9),
        )
        # a step big enough for its gain to show (a few % would drown in the noise), never
        # past what the byte budget holds (``target`` already respects it)
        mean_cost = self._mean_cost or 0.0
        by_bytes = (
            int(window.budget_bytes // mean_cost)
            if mean_cost >= 1
            else self._adaptive_cap
        )
        window.max_items = min(
            self._adaptive_cap,
            max(min(target, current * _GROWTH_MOST), min(by_bytes, int(current * 1.5))),
        )
        logger.debug(
            "prefetch window %d -> %d items (fetch %.1f ms, interval %.3f ms)",
            current,
            window.max_items,
            self._latency * 1e3,
            interval * 1e3,
        )
        self._trial = (now, -1, rate_before, current)
        self._history.clear()
        self._space.set()

    async def _schedule(self) -> None:
        try:
            async for item in self._source:
                cost = self._cost(item)
                nbytes = cost or 0
                while not self._window.can_admit(nbytes):
                    self._space.clear()
                    await self._space.wait()
                self._window.admit(nbytes)
                task = None
                if cost is not None:
                    timed = self._adaptive() or self._hedge
                    fetch = self._timed_fetch if timed else self._fetch
                    task = asyncio.ensure_future(fetch(item))
                    self._mean_cost = _ewma(self._mean_cost, float(nbytes))
                self._entries.append(_Entry(item, nbytes, task, self._loop.time()))
                self._arrived.set()
        except Exception as exc:
            self._error = exc
        finally:
            self._source_done = True
            self._arrived.set()

    def belongs_to_running_loop(self) -> bool:
        """Whether the running event loop is the (still open) one this pipeline was made on."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return loop is self._loop and not loop.is_closed()

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("the prefetch pipeline is closed")
        if not self.belongs_to_running_loop():
            raise StalePipelineError(
                "this prefetch pipeline was created on another event loop"
            )
        if self._scheduler is None:
            self._scheduler = asyncio.ensure_future(self._schedule())

    def _pop(self) -> Prefetched[T]:
        entry = self._entries.popleft()
        self._window.release(entry.cost)
        self._space.set()
        if entry.task is None:
            return Prefetched(entry.item)
        fetched = entry.task.result()  # raises the fetch error, in order
        if fetched is None:
            return Prefetched(entry.item)
        return Prefetched(entry.item, fetched[0], fetched[1])

    def __aiter__(self) -> Prefetcher[T]:
        return self

    async def __anext__(self) -> Prefetched[T]:
        item = await self._next()
        self._delivered(1)
        return item

    async def _next(self) -> Prefetched[T]:
        self._check()
        if self._handed is not None:
            handed_at, count = self._handed
            self._handed = None
            self._demand.pace(self._loop.time() - handed_at, count)
        while not self._entries:
            if self._source_done:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        head = self._entries[0]
        if head.task is not None and not head.task.done():
            await self._wait_head(head)
        return self._pop()

    async def next_batch(self, max_items: int) -> List[Prefetched[T]]:
        """The next item (waiting for it) plus every following one already done, up to ``max_items``.

        Returns an empty list at the end. A failed item ends the batch before it and is raised
        by the next call.

        Raises:
            StalePipelineError: Called from another event loop than the one it was created on.
        """
        try:
            batch = [await self._next()]
        except StopAsyncIteration:
            return []
        while len(batch) < max_items and self._entries:
            head = self._entries[0]
            if not head.ready():
                break
            task = head.task
            if task is not None and (task.cancelled() or task.exception() is not None):
                break
            batch.append(self._pop())
        self._delivered(len(batch))
        return batch

    async def aclose(self) -> None:
        """Cancel the scheduler and every fetch in flight, and close the source."""
        if self._closed:
            return
        self._closed = True
        if asyncio.get_running_loop() is not self._loop:
            return  # the loop that owned the tasks is gone; nothing left to cancel
        tasks: List[asyncio.Future[Any]] = [
            e.task for e in self._entries if e.task is not None
        ]
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            # The source's own cleanup failing is not the consumer's error.
            try:
                await aclose()
            except Exception as exc:
                logger.debug("closing a prefetch source failed: %r", exc)


#: Weight of the newest sample in the window's running means.
_EWMA_WEIGHT = 0.2
#: Fewest deliveries a window growth is judged over.
_TRIAL_DELIVERIES = 32
#: Delivery-rate gain that keeps a growth.
_TRIAL_GAIN = 1.1
#: After a growth that did not pay: deliveries to wait, per item of the window, before the next.
_TRIAL_HOLD = 20
#: Largest growth in one step (times the window), so one trial's overshoot stays bounded.
_GROWTH_MOST = 4
#: A head-of-line item is hedged once it has taken this many times the typical fetch time ...
_HEDGE_AFTER = 3
#: ... and at least this many items sent after it have finished.
_HEDGE_PEERS = 8
#: One hedge is allowed per this many finished fetches (2 % more requests at most) ...
_HEDGE_EVERY = 50
#: ... saved up to this many (all there from the start: a cold start's first GETs straggle most).
_HEDGE_TOKENS_MOST = 3.0
#: ... and never before this many seconds: a store that answers in a few ms is not what makes
#: a GET that late (the client's own pauses are: GC, a busy loop), and a second GET only adds work.
_HEDGE_MIN_S = 0.01
#: Shortest wait before a late head is looked at again (a fetch time of ~0 must not spin).
_HEDGE_RECHECK_S = 0.001


def _ewma(mean: Optional[float], sample: float) -> float:
    return sample if mean is None else mean + _EWMA_WEIGHT * (sample - mean)


class DeliveryRate:
    """The recent seconds per delivered item, from deliveries that may come in batches.

    It is the ratio of two running means (seconds between deliveries, items per delivery),
    so a batch of 16 weighs 16 times one item; a mean of per-batch intervals would let one
    slow single delivery outweigh a batch and overstate the interval.
    """

    def __init__(self) -> None:
        self._last: Optional[float] = None
        self._seconds: Optional[float] = None
        self._items: Optional[float] = None

    def record(self, now: float, count: int) -> None:
        """``count`` items were delivered at time ``now`` (seconds, monotonic)."""
        if self._last is not None:
            self.pace(now - self._last, count)
        self._last = now

    def pace(self, seconds: float, count: int) -> None:
        """``count`` items took ``seconds`` (a span measured by the caller)."""
        self._seconds = _ewma(self._seconds, seconds)
        self._items = _ewma(self._items, float(count))

    @property
    def interval(self) -> Optional[float]:
        """Seconds per item, or ``None`` before two deliveries."""
        if self._seconds is None or not self._items:
            return None
        return self._seconds / self._items


# -- whole-object fetches for S3 items --------------------------------------------------------


def _object_cost(item: S3BucketKeyData, max_object_size: int) -> Optional[int]:
    if max_object_size <= 0:
        return None
    info = item.object_info
    if info is None:
        return max_object_size
    return info.size if info.size <= max_object_size else None


def _batch_costs(
    items: Sequence[S3BucketKeyData], max_object_size: int, budget_bytes: int
) -> List[Optional[int]]:
    """What each item of a :func:`fetch_batch` reserves; ``None``: not fetched."""
    left = budget_bytes
    costs: List[Optional[int]] = []
    for item in items:
        cost = _object_cost(item, max_object_size)
        if cost is None or cost > left:
            costs.append(None)
        else:
            left -= cost
            costs.append(cost)
    return costs


def batch_cost(
    items: Sequence[S3BucketKeyData], *, max_object_size: int, budget_bytes: int
) -> int:
    """Bytes :func:`fetch_batch` reserves for ``items`` (at most ``budget_bytes``)."""
    return sum(c for c in _batch_costs(items, max_object_size, budget_bytes) if c)


class ObjectFetcher:
    """Cost and fetch functions that prefetch whole objects of at most ``max_object_size`` bytes.

    Objects with listing info are fetched with one GET when small enough and not at all
    otherwise. Objects without it (built from URIs) reserve ``max_object_size`` and are fetched
    with one whole-object GET (so their checksum is checked too) that is given up as soon as its
    headers show a larger object; that item is then delivered without data.

    Args:
        client: Client to fetch with.
        max_object_size: Largest object prefetched; 0 disables prefetching.
        deliver_errors: ``True`` raises a failed GET at the item's turn; ``False`` delivers the
            item without data, so the reader repeats the request and raises where the reference
            raises (on read).
    """

    def __init__(
        self, client: AsyncS3Client, max_object_size: int, *, deliver_errors: bool
    ) -> None:
        self._client = client
        self._max = max_object_size
        self._deliver_errors = deliver_errors

    def cost(self, item: S3BucketKeyData) -> Optional[int]:
        """Bytes ``item`` reserves in the window, ``None`` when it is not prefetched."""
        return _object_cost(item, self._max)

    async def fetch(self, item: S3BucketKeyData) -> Optional[Tuple[bytes, str]]:
        """Download ``item`` whole; ``None`` when it is too large to keep."""
        try:
            if item.object_info is not None:
                whole = await self._client.get_range(item.bucket, item.key)
                return whole.data, whole.etag
            # One whole-object GET, so that S3 sends the checksum and the bytes are checked;
            # given up at the headers if the object is larger than we keep.
            head = await self._client.get_range(item.bucket, item.key, limit=self._max)
        except S3Exception as exc:
            if item.object_info is None and exc.status == 416:
                return None  # empty object: the reader handles it
            if self._deliver_errors:
                raise
            logger.debug(
                "prefetch of s3://%s/%s failed (%s); leaving it to the reader",
                item.bucket,
                item.key,
                exc,
            )
            return None
        if head.object_size > len(head.data):
            return None
        return head.data, head.etag


async def fetch_batch(
    client: AsyncS3Client,
    items: Sequence[S3BucketKeyData],
    *,
    max_object_size: int,
    budget_bytes: int,
) -> List[Optional[Tuple[bytes, str]]]:
    """Download the objects of ``items`` whole and concurrently, as :class:`ObjectFetcher` does.

    An item gets ``None`` (read later by its reader) when it is larger than ``max_object_size``,
    when it does not fit in what ``budget_bytes`` has left after the items before it, or when
    its GET failed (the reader's own request then raises where a reader raises).
    """
    fetcher = ObjectFetcher(client, max_object_size, deliver_errors=False)

    async def none() -> None:
        return None

    fetches: List[Awaitable[Optional[Tuple[bytes, str]]]] = [
        none() if cost is None else fetcher.fetch(item)
        for item, cost in zip(items, _batch_costs(items, max_object_size, budget_bytes))
    ]
    return list(await asyncio.gather(*fetches))


#: The window of a pipeline that is one shard of several consumers in step (a DataLoader
#: worker, a rank: ``Selection.stride > 1``), when ``prefetch_count`` is smaller. Such a
#: consumer's delivery rate is tied to its peers' (the DataLoader takes items from its workers
#: in turn, ranks wait for each other at every step), so a growth on trial cannot show its
#: gain: the adaptive window kept trying and reverting, opening connections for nothing. A
#: fixed 64 (~3,000 objects/s per consumer at 20 ms per GET) beat it on the S3-like profile
#: in every interleaved round (``benchmarks/results/window-issue16.md``,
#: ``session13-lead-timeline-ab.txt``).
SHARD_WINDOW_ITEMS = 64


def opening_requests(prefetch_bytes: int, prefetch_count: int) -> int:
    """GETs a pipeline sends at once when its first objects arrive (0: none prefetched).

    The connections worth opening while the listing's first page is awaited.
    """
    return prefetch_count if prefetch_bytes > 0 and prefetch_count > 0 else 0


def open_object_pipeline(
    client: AsyncS3Client,
    source: AsyncIterable[S3BucketKeyData],
    *,
    selection: Selection,
    prefetch_bytes: int,
    prefetch_count: int,
    max_object_size: int,
    deliver_errors: bool,
) -> Prefetcher[S3BucketKeyData]:
    """Select from ``source`` and prefetch the selected objects (call on the event loop).

    Args:
        client: Client to fetch with.
        source: Every item of the dataset, in listing order.
        selection: Shuffle, shard and skip to apply before anything is fetched.
        prefetch_bytes: Byte budget of the window; 0 disables prefetching.
        prefetch_count: Items in the window at the start (at least 1 is used); it widens
            from the observed latency and delivery rate while ``prefetch_bytes`` allows, up
            to ``MAX_WINDOW_ITEMS``. A shard of several consumers (``selection.stride > 1``)
            keeps a fixed window of ``max(prefetch_count, SHARD_WINDOW_ITEMS)`` instead.
        max_object_size: Largest object prefetched.
        deliver_errors: See :class:`ObjectFetcher`.

    A straggling GET at the head of the line is hedged (see :class:`Prefetcher`).
    """
    enabled = prefetch_bytes > 0 and prefetch_count > 0
    sharded = enabled and selection.stride > 1
    fetcher = ObjectFetcher(
        client, max_object_size if enabled else 0, deliver_errors=deliver_errors
    )
    return Prefetcher(
        selection.aapply(source),
        fetcher.fetch,
        fetcher.cost,
        budget_bytes=max(1, prefetch_bytes),
        max_items=max(prefetch_count, SHARD_WINDOW_ITEMS)
        if sharded
        else max(1, prefetch_count),
        adaptive_cap=MAX_WINDOW_ITEMS if enabled and not sharded else 0,
        hedge=enabled,
    )
