"""The typed door between the sync adapters and the async core.

A sync object (``S3Client``, a reader's backend, ``S3Writer``'s stream, a dataset) never runs
coroutines of its own on the event loop. It asks a :class:`Bridge` for one of the operations
listed here; each is one thread crossing that runs one core operation on the runner's loop,
with the ``AsyncS3Client`` that ``open_client()`` returns there, and blocks for the result.
Objects that live on the loop across calls (a reader's ``AsyncS3Reader``, a writer's
``AsyncS3Writer``, a dataset's prefetch pipeline) are held by handles made here, which rebuild
them when the loop's client changes (fork, runner restart).

This module sits above both the runner (which knows nothing about S3) and the core (which
knows nothing about threads); the sync layers import it, never the runner's ``run`` with a
core coroutine of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, Callable, Deque, List, Optional, Tuple, TypeVar, Union

from ._core._object import ObjectVersion
from ._core.client import AsyncS3Client, GetResult, ListingCursor
from ._core.prefetch import (
    FeedSource,
    Prefetched,
    Prefetcher,
    Selection,
    StalePipelineError,
    fetch_batch,
    iterate_items,
    list_all,
    open_object_pipeline,
    opening_requests,
    prefix_items,
)
from ._core.reader import AsyncS3Reader, RangeStream
from ._core.writer import AsyncS3Writer, PartAssembler
from ._runner import get_runner, runner_generation
from ._s3bucket_key_data import S3BucketKeyData
from ._types import HeadObjectResult, ListObjectResult

__all__ = [
    "AheadBatch",
    "Bridge",
    "Chunk",
    "PrefetchSession",
    "PrefetchSettings",
    "PrefixItems",
    "RangeHandle",
    "ReaderHandle",
    "StalePipelineError",
    "WriterHandle",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Chunk = Tuple[int, bytes]
"""``(start, data)``: bytes of an object starting at offset ``start``."""


async def _with_client(
    open_client: Callable[[], AsyncS3Client],
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
) -> T:
    return await fn(open_client(), *args)


def close_soon(resource: Any) -> None:
    """Close ``resource`` (anything with ``aclose()``) on the loop without blocking.

    For ``close()`` methods that also run from finalizers; does nothing when the interpreter
    is shutting down.
    """
    try:
        get_runner().close_soon(resource)
    except Exception:  # interpreter shutdown: nothing left to cancel
        logger.debug("could not schedule closing %r", resource, exc_info=True)


class Bridge:
    """What a sync object may ask of the event loop, for one client configuration.

    Args:
        open_client: Returns the ``AsyncS3Client`` to use; called on the loop thread before
            every operation (``S3Client`` returns its shared client for the current loop). It
            is kept, so a bridge pickles when ``open_client`` does.
    """

    def __init__(self, open_client: Callable[[], AsyncS3Client]) -> None:
        self._open_client = open_client

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        result: T = get_runner().run(_with_client, self._open_client, fn, args)
        return result

    # -- one request each -------------------------------------------------------------------

    def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        """HEAD one object."""
        return self._run(AsyncS3Client.head_object, bucket, key)

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete one object."""
        self._run(AsyncS3Client.delete_object, bucket, key)

    def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        """Copy one object server-side."""
        self._run(AsyncS3Client.copy_object, src_bucket, src_key, dst_bucket, dst_key)

    def get_range(
        self, bucket: str, key: str, start: int, end: int, if_match: Optional[str]
    ) -> GetResult:
        """GET the bytes ``[start, end)`` (``If-Match: if_match`` when given)."""
        return self._run(_get_range, bucket, key, start, end, if_match)

    def list_page(self, cursor: ListingCursor) -> Optional[ListObjectResult]:
        """Fetch the next page of ``cursor``'s listing and advance it; ``None`` when complete."""
        return self._run(_fetch_next, cursor)

    def list_all(
        self,
        bucket: str,
        prefix: str,
        *,
        max_keys: int,
        on_page: Optional[Callable[[int, int], None]] = None,
    ) -> List[S3BucketKeyData]:
        """The whole listing of ``prefix``; the next page is requested while one is read.

        ``on_page(pages, objects)`` is called on the loop thread after each page.
        """
        return self._run(_list_all, bucket, prefix, max_keys, on_page)

    def fetch_batch(
        self,
        items: Sequence[S3BucketKeyData],
        *,
        max_object_size: int,
        budget_bytes: int,
    ) -> List[Optional[Tuple[bytes, str]]]:
        """Download ``items`` whole and concurrently; see ``prefetch.fetch_batch``."""
        return self._run(_fetch_batch, items, max_object_size, budget_bytes)

    def start_batches(
        self,
        batches: Sequence[Sequence[S3BucketKeyData]],
        *,
        max_object_size: int,
        budget_bytes: int,
    ) -> List[AheadBatch]:
        """Start ``fetch_batch`` of each of ``batches`` on the loop; returns without waiting."""
        return self._run(_start_batches, batches, max_object_size, budget_bytes)

    def await_batch(
        self, batch: AheadBatch
    ) -> Tuple[List[Optional[Tuple[bytes, str]]], bool]:
        """What ``fetch_batch`` of a started batch gives, and whether it had to be waited for.

        ``batch`` must be alive.
        """
        return self._run(_await_batch, batch)

    # -- objects that live on the loop --------------------------------------------------------

    def reader(
        self,
        bucket: str,
        key: str,
        *,
        part_size: Optional[int],
        version: ObjectVersion,
    ) -> ReaderHandle:
        """A handle on an ``AsyncS3Reader`` of one object; no request is sent yet."""
        return ReaderHandle(self, bucket, key, part_size, version)

    def writer(
        self,
        bucket: str,
        key: str,
        storage_class: Optional[str],
        assembler: Optional[PartAssembler],
    ) -> WriterHandle:
        """A handle on an ``AsyncS3Writer`` fed with parts cut by ``assembler``; no request yet."""
        return WriterHandle(self, bucket, key, storage_class, assembler)

    def open_pipeline(
        self,
        source: Union[PrefixItems, Sequence[S3BucketKeyData], None],
        selection: Selection,
        settings: PrefetchSettings,
    ) -> PrefetchSession:
        """Start a dataset's prefetch pipeline on the loop.

        ``source`` is a prefix to list, a list of items, or ``None``: the caller then selects
        on its own thread and feeds the items through :meth:`PrefetchSession.feed`. The
        pipeline starts at once.
        """
        return self._run(_open_pipeline, source, selection, settings)


async def _get_range(
    client: AsyncS3Client,
    bucket: str,
    key: str,
    start: int,
    end: int,
    if_match: Optional[str],
) -> GetResult:
    return await client.get_range(bucket, key, start, end, if_match=if_match)


async def _fetch_next(
    client: AsyncS3Client, cursor: ListingCursor
) -> Optional[ListObjectResult]:
    return await cursor.fetch_next(client)


async def _fetch_batch(
    client: AsyncS3Client,
    items: Sequence[S3BucketKeyData],
    max_object_size: int,
    budget_bytes: int,
) -> List[Optional[Tuple[bytes, str]]]:
    return await fetch_batch(
        client, items, max_object_size=max_object_size, budget_bytes=budget_bytes
    )


class AheadBatch:
    """One ``fetch_batch`` started on the loop ahead of its turn (``Bridge.start_batches``).

    Belongs to the loop it was started on: once that loop is gone (fork, runner restart) it
    is not :meth:`alive` and must be dropped, never awaited.
    """

    def __init__(
        self,
        task: asyncio.Task[List[Optional[Tuple[bytes, str]]]],
        items: Sequence[S3BucketKeyData],
        max_object_size: int,
        budget_bytes: int,
    ) -> None:
        self.items = items
        self.max_object_size, self.budget_bytes = max_object_size, budget_bytes
        self.task = task
        self._loop = task.get_loop()
        self._generation = runner_generation()

    def alive(self) -> bool:
        """Whether the loop it runs on is still this process's runner's loop."""
        return (
            runner_generation() == self._generation and get_runner().loop is self._loop
        )

    async def aclose(self) -> None:
        """Cancel the download (on the loop)."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def close_soon(self) -> None:
        """Cancel the download without blocking; nothing when its loop is gone."""
        if self.alive():
            close_soon(self)


async def _start_batches(
    client: AsyncS3Client,
    batches: Sequence[Sequence[S3BucketKeyData]],
    max_object_size: int,
    budget_bytes: int,
) -> List[AheadBatch]:
    return [
        AheadBatch(
            asyncio.ensure_future(
                fetch_batch(
                    client,
                    items,
                    max_object_size=max_object_size,
                    budget_bytes=budget_bytes,
                )
            ),
            items,
            max_object_size,
            budget_bytes,
        )
        for items in batches
    ]


async def _await_batch(
    client: AsyncS3Client, batch: AheadBatch
) -> Tuple[List[Optional[Tuple[bytes, str]]], bool]:
    task = batch.task
    if task.cancelled():  # e.g. dropped by another thread meanwhile: fetch it now
        fetched = await fetch_batch(
            client,
            batch.items,
            max_object_size=batch.max_object_size,
            budget_bytes=batch.budget_bytes,
        )
        return fetched, True
    waited = not task.done()
    return await task, waited


async def _list_all(
    client: AsyncS3Client,
    bucket: str,
    prefix: str,
    max_keys: int,
    on_page: Optional[Callable[[int, int], None]],
) -> List[S3BucketKeyData]:
    return await list_all(client, bucket, prefix, max_keys=max_keys, on_page=on_page)


# -- reading ------------------------------------------------------------------------------------


class _ObjectHandle:
    def __init__(self, bridge: Bridge, bucket: str, key: str) -> None:
        self._bridge = bridge
        self.bucket = bucket
        self.key = key


class ReaderHandle(_ObjectHandle):
    """An ``AsyncS3Reader`` of one object on the loop, seen from a sync reader.

    The core reader is built on first use and rebuilt when the loop's client changes (fork,
    runner restart); every one shares ``version``, so a rebuilt reader keeps the size and the
    pinned ETag. Each method is one thread crossing.
    """

    def __init__(
        self,
        bridge: Bridge,
        bucket: str,
        key: str,
        part_size: Optional[int],
        version: ObjectVersion,
    ) -> None:
        super().__init__(bridge, bucket, key)
        self._part_size = part_size
        self.version = version
        self._core: Optional[AsyncS3Reader] = None

    def _core_for(self, client: AsyncS3Client) -> AsyncS3Reader:
        core = self._core
        if core is None or core.client is not client:
            core = self._core = AsyncS3Reader(
                client,
                self.bucket,
                self.key,
                part_size=self._part_size,
                version=self.version,
            )
        return core

    async def _call(
        self,
        client: AsyncS3Client,
        op: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
    ) -> T:
        return await op(self._core_for(client), *args)

    def _run(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        result: T = self._bridge._run(self._call, op, args)  # noqa: SLF001 - same module
        return result

    def chunk_at(self, pos: int, whole: bool = False) -> Chunk:
        """The part holding ``pos`` as ``(start, data)`` (``(pos, b"")`` at the end).

        ``whole``: the caller goes on to read the whole object (see
        :meth:`AsyncS3Reader.chunk_at`).
        """
        return self._run(_chunk_at, pos, whole)

    def read_at(self, pos: int, view: memoryview) -> tuple[int, Optional[Chunk]]:
        """Fill ``view`` from ``pos``; return the bytes read and the part now retained."""
        return self._run(_read_at, pos, view)

    def load(self, pos: int, view: memoryview) -> int:
        """Fill ``view`` from ``pos`` and retain nothing (the caller keeps the whole result)."""
        return self._run(_load, pos, view)

    def read_direct(self, pos: int, view: memoryview) -> int:
        """GET exactly ``[pos, pos + len(view))`` into ``view``, in parallel parts."""
        return self._run(AsyncS3Reader.read_direct, pos, view)

    def read_rest(self, pos: int) -> bytes:
        """The bytes from ``pos`` to the end, as :meth:`AsyncS3Reader.read` returns them.

        One result built in place; a large read of unknown size goes wide as soon as its
        first response tells the size. Retains nothing (the caller keeps the result).
        """
        return self._run(_read_rest, pos)

    def prefetch(self, pos: int) -> None:
        """Start fetching the part at ``pos`` without waiting for it."""
        self._run(_prefetch, pos)

    def ranges(self, spans: List[tuple[int, int]]) -> RangeHandle:
        """Fetch ``spans`` (sorted, each at most one part) ahead, one part per crossing."""
        return RangeHandle(self, spans)

    def close(self) -> None:
        """Cancel read-ahead on the loop; never blocks."""
        core, self._core = self._core, None
        if core is not None:
            close_soon(core)


async def _chunk_at(core: AsyncS3Reader, pos: int, whole: bool) -> Chunk:
    return await core.chunk_at(pos, whole=whole)


async def _read_at(
    core: AsyncS3Reader, pos: int, view: memoryview
) -> tuple[int, Optional[Chunk]]:
    nbytes = await core.read_at(pos, view)
    return nbytes, core.last_chunk


async def _load(core: AsyncS3Reader, pos: int, view: memoryview) -> int:
    nbytes = await core.read_at(pos, view)
    core.forget()  # the caller keeps the whole result; drop the core's copy of a part
    return nbytes


async def _read_rest(core: AsyncS3Reader, pos: int) -> bytes:
    core.seek(pos)
    try:
        return await core.read()
    finally:
        core.forget()  # the caller keeps the whole result; drop the core's copy of a part


async def _prefetch(core: AsyncS3Reader, pos: int) -> None:
    core.prefetch(pos)


class RangeHandle:
    """The pieces of a ``RangeStream``, delivered to the sync side one part per crossing.

    Reopened from the first piece not yet delivered when the reader's core was rebuilt.
    """

    def __init__(self, reader: ReaderHandle, pieces: List[tuple[int, int]]) -> None:
        self._reader = reader
        self._pieces = pieces
        self._index = 0
        self._stream: Optional[RangeStream] = None
        self._core: Optional[AsyncS3Reader] = None

    def next(self) -> Optional[Chunk]:
        """The next piece as ``(start, data)``; ``None`` after the last."""
        if self._index >= len(self._pieces):
            return None
        return self._reader._run(self._next)  # noqa: SLF001 - same module

    async def _next(self, core: AsyncS3Reader) -> Optional[Chunk]:
        if self._stream is None or self._core is not core:
            self._stream = core.iter_ranges(self._pieces[self._index :])
            self._core = core
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            return None
        except BaseException:
            self._stream = None
            raise
        self._index += 1
        return item

    def close(self) -> None:
        """Cancel the pieces in flight; never blocks."""
        stream, self._stream = self._stream, None
        self._index = len(self._pieces)
        if stream is not None:
            close_soon(stream)


# -- writing ------------------------------------------------------------------------------------


class WriterHandle(_ObjectHandle):
    """An ``AsyncS3Writer`` on the loop, fed parts that the sync side cut with ``assembler``.

    The writer is created on the first part or at commit; uploaded parts' buffers go back to
    ``assembler``.
    """

    def __init__(
        self,
        bridge: Bridge,
        bucket: str,
        key: str,
        storage_class: Optional[str],
        assembler: Optional[PartAssembler],
    ) -> None:
        super().__init__(bridge, bucket, key)
        self.storage_class = storage_class
        self._assembler = assembler
        self._writer: Optional[AsyncS3Writer] = None

    def _writer_for(self, client: AsyncS3Client) -> AsyncS3Writer:
        if self._writer is None:
            self._writer = client.put_object(
                self.bucket, self.key, self.storage_class, assembler=self._assembler
            )
        return self._writer

    async def _put_part(self, client: AsyncS3Client, data: memoryview) -> None:
        await self._writer_for(client).put_part(data)

    async def _commit(self, client: AsyncS3Client, tail: List[memoryview]) -> None:
        await self._writer_for(client).commit(tail)

    def put_part(self, data: memoryview) -> None:
        """Queue ``data``, a full part the writer now owns, for upload."""
        self._bridge._run(self._put_part, data)  # noqa: SLF001 - same module

    def commit(self, tail: List[memoryview]) -> None:
        """Upload ``tail`` (owned; all but the last are full parts) and commit the object."""
        self._bridge._run(self._commit, tail)  # noqa: SLF001 - same module

    def abort(self) -> None:
        """Abort the upload if one was started; no object is written."""
        if self._writer is not None:
            get_runner().run(self._writer.abort)


# -- dataset pipelines --------------------------------------------------------------------------


# Plain classes, not dataclasses: each dataclass costs ~0.3 ms of import.
class PrefixItems:
    """A pipeline source: every object under ``prefix``, listed on the loop."""

    __slots__ = ("bucket", "prefix")

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix


class PrefetchSettings:
    """How far a dataset's pipeline downloads ahead (see ``open_object_pipeline``)."""

    __slots__ = ("max_object_size", "prefetch_bytes", "prefetch_count")

    def __init__(
        self, prefetch_bytes: int, prefetch_count: int, max_object_size: int
    ) -> None:
        self.prefetch_bytes = prefetch_bytes
        self.prefetch_count = prefetch_count
        self.max_object_size = max_object_size


class _Ended:
    """The last entry of a session's queue: the end, the error that ended it, or a stale loop."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException]) -> None:
        self.error = error


#: How often a consumer waiting for an item checks that the pipeline's loop still runs (a
#: loop stopped from another thread, e.g. by a fork's drain, normally says so at once).
_LIVENESS_CHECK_S = 0.5


class PrefetchSession:
    """One dataset iteration's prefetch pipeline on the loop, handing its items to a sync consumer.

    A pump task on the loop takes the next item and every following one already done (up
    to ``held``) and queues them for the consumer, so :meth:`next_item` costs no thread
    crossing while the queue has items; the consumer waits on a lock the pump releases, not
    on a call to the loop, only when it is empty. At most ``held`` items are out of the
    window at once (queued, plus the one the consumer took until it asks for the next).
    The pump takes more once the consumer is done with all it was given, which it says with
    one non-blocking wake-up of the loop: taking more as soon as half were consumed cut the
    S3-like rate by 10-20 % (smaller, more frequent deliveries move the window's sizing),
    and the pump's next call then comes when a call to the loop used to, so the window's
    measure of the consumer's pace (hand-out to next call) means what it did.

    Sync side: one consumer thread; the loop side: the pump.
    """

    def __init__(
        self,
        pipeline: Prefetcher[S3BucketKeyData],
        feed: Optional[FeedSource[S3BucketKeyData]],
        held: int,
    ) -> None:
        self._pipeline, self._feed = pipeline, feed
        self._loop = asyncio.get_running_loop()
        self._generation = runner_generation()
        self._held = max(1, held)
        self._ready: Deque[Union[Prefetched[S3BucketKeyData], _Ended]] = deque()
        # Held while the consumer waits for an item; the pump releases it after a push.
        self._waiter: Optional[threading.Lock] = None
        self._pushed = 0  # written by the pump only
        self._returned = 0  # written by the consumer only
        self._starved = False  # the pump waits for room
        self._room = asyncio.Event()
        self._holding = False  # the consumer has an item it has not come back from
        self._pump: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        """Start the pump (on the loop)."""
        self._pump = asyncio.ensure_future(self._run_pump())

    # -- the consumer's side ----------------------------------------------------------------

    def next_item(self) -> Optional[Prefetched[S3BucketKeyData]]:
        """The next item in order, or ``None`` at the end; blocks only when it is not ready.

        Raises:
            StalePipelineError: The pipeline's loop is gone (fork, runner restart) and
                every item it queued is taken; open a new one.
            Exception: The error that ended the pipeline (from the source), at its turn.
        """
        if self._holding:
            # the item taken last is done with: it leaves the hand-off's count
            self._holding = False
            self._returned += 1
        # Read after ``_returned`` is written, as the pump writes ``_starved`` before it
        # reads ``_returned``: one of the two sees the other, so no wake-up is lost.
        if self._starved and self._pushed == self._returned:
            self._give_room()
        ready = self._ready
        if not ready:
            self._wait()
        entry = ready[0]
        if isinstance(entry, _Ended):
            if entry.error is not None:
                raise entry.error
            return None
        ready.popleft()
        self._holding = True
        return entry

    def _alive(self) -> bool:
        """Whether the loop the pump runs on is still this process's runner's loop."""
        return (
            runner_generation() == self._generation and get_runner().loop is self._loop
        )

    def _give_room(self) -> None:
        self._starved = False
        if self._alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._room.set)

    def _wait(self) -> None:
        ready = self._ready
        while not ready:
            if not self._alive():
                raise StalePipelineError("the prefetch pipeline's event loop is gone")
            # A bare lock is the cheapest wake-up between two threads (see _runner._Call).
            waiter = threading.Lock()
            waiter.acquire()
            self._waiter = waiter
            # Read after ``_waiter`` is set, as the pump pushes before it reads ``_waiter``.
            if not ready:
                waiter.acquire(timeout=_LIVENESS_CHECK_S)
            self._waiter = None

    def feed(self, items: List[S3BucketKeyData], end: bool) -> None:
        """Feed ``items`` to a fed pipeline (``end``: no more follow); never blocks.

        Items lost to a stale loop are the caller's to feed again to the next session.
        """
        if self._feed is not None and self._alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._feed_on_loop, items, end)

    # -- the loop's side --------------------------------------------------------------------

    def _feed_on_loop(self, items: List[S3BucketKeyData], end: bool) -> None:
        if self._feed is not None:
            self._feed.feed(items, end=end)

    async def _run_pump(self) -> None:
        last: Optional[_Ended] = None
        try:
            while True:
                if self._pushed != self._returned:
                    await self._wait_for_room()
                    continue
                try:
                    batch = await self._pipeline.next_batch(self._held)
                except Exception as exc:  # the source failed: raised at its turn
                    last = _Ended(exc)
                    return
                if not batch:
                    last = _Ended(None)
                    return
                self._ready.extend(batch)
                self._pushed += len(batch)
                self._wake()
        finally:
            if last is None:  # cancelled: the runner stopped, or the session closed
                last = _Ended(StalePipelineError("the prefetch pipeline was stopped"))
            self._ready.append(last)
            self._wake()

    def _wake(self) -> None:
        # Only the consumer sets and clears ``_waiter``; only this releases it.
        waiter = self._waiter
        if waiter is not None and waiter.locked():
            waiter.release()

    async def _wait_for_room(self) -> None:
        self._room.clear()
        self._starved = True
        if self._pushed != self._returned:
            await self._room.wait()
        self._starved = False

    async def aclose(self) -> None:
        """Stop the pump and the pipeline (on the loop)."""
        pump, self._pump = self._pump, None
        if pump is not None and asyncio.get_running_loop() is self._loop:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        await self._pipeline.aclose()

    def close(self) -> None:
        """Stop the pipeline and wait for it."""
        get_runner().run(self.aclose)

    def close_soon(self) -> None:
        """Stop the pipeline without blocking (abandoned iterations, finalizers)."""
        get_runner().close_soon(self)


async def _open_pipeline(
    client: AsyncS3Client,
    source: Union[PrefixItems, Sequence[S3BucketKeyData], None],
    selection: Selection,
    settings: PrefetchSettings,
) -> PrefetchSession:
    feed: Optional[FeedSource[S3BucketKeyData]] = None
    items: Any
    if isinstance(source, PrefixItems):
        preconnect = opening_requests(settings.prefetch_bytes, settings.prefetch_count)
        items = prefix_items(
            client, source.bucket, source.prefix, preconnect=preconnect
        )
    elif source is not None:
        items = iterate_items(source)
    else:
        # The caller selected already (on its own thread) and feeds the result.
        feed = FeedSource()
        items, selection = feed, Selection()
    pipeline = open_object_pipeline(
        client,
        items,
        selection=selection,
        prefetch_bytes=settings.prefetch_bytes,
        prefetch_count=settings.prefetch_count,
        max_object_size=settings.max_object_size,
        deliver_errors=False,
    )
    # Items out of the window at once: half the starting window, as a batch used to be.
    session = PrefetchSession(pipeline, feed, settings.prefetch_count // 2)
    session.start()
    return session
