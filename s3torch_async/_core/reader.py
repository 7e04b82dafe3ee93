"""``AsyncS3Reader``: reading one object through parallel, version-pinned ranged GETs.

This module owns how bytes of one object get from S3 into memory:

* **Parallel ranged GETs.** A large read is cut into ``part_size`` pieces, each written by
  ``AsyncS3Client.get_range_into`` straight into the destination (the caller's buffer, or a
  result buffer allocated once). A read of at most one part is a single GET. How many run at
  once is measured, per reader (``_planning.StreamWidth``): one first, then as many as the
  throughput target needs at the rate one delivered, up to ``client.max_concurrency`` (or
  at once up to twice that, ``_planning.read_reach``, when even that falls short), kept
  only while wider pays; a read still below the target widens on, up to that bound, and at
  its widest and still below the target, GETs span several parts
  (``StreamWidth.piece_parts``).
* **Sequential read-ahead.** Small reads are served from the last part fetched; consecutive
  parts are fetched ahead of the cursor by a window that starts at one part and doubles on
  every sequential step, up to ``max_concurrency`` parts and ``DEFAULT_WINDOW_BYTES``.
  Results are delivered in request order; a seek outside the window cancels it.
* **Version pinning.** The ETag of the first response is sent as ``If-Match`` on every later
  GET of the reader, and every response's ETag is checked, so a concurrent overwrite raises
  ``S3Exception`` (HTTP 412) instead of splicing two versions together.
* **Zero-copy results.** ``bytes`` results are built in place (``alloc_bytes``), so a whole
  read holds the object once, never twice.

Bodies that break mid-transfer are resumed by the client (``get_range_into``) on the
``max_attempts`` budget.

A reader that reads the whole object checks it against the object's full-object CRC32, though
it reads in ranges (``_wholecheck.py``: what is checked, when the error comes, what is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import os
import sys
import threading
import traceback
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Deque, List, Optional, Tuple, Union

from .._errors import S3Exception
from .._types import HeadObjectResult, ObjectInfo
from ._interface import ReadClient
from ._object import ObjectVersion
from ._planning import (
    MIN_PIECE_DIVISOR,
    StreamWidth,
    read_reach,
    round_piece,
    split_spans,
)
from ._tasks import cancel_all
from ._wholecheck import WholeReadCheck

__all__ = [
    "DEFAULT_WINDOW_BYTES",
    "AsyncS3Reader",
    "RangeStream",
    "alloc_bytes",
    "drop_view",
    "finish_bytes",
]

DEFAULT_WINDOW_BYTES = 64 * 1024 * 1024
"""Most bytes a sequential read-ahead window keeps in flight or buffered."""

Chunk = Tuple[int, bytes]
WritableBuffer = Union[bytearray, memoryview]


PREFAULT_ENV = "S3TORCH_ASYNC_PREFAULT"
"""Set to ``0`` to turn off pre-faulting large results (see :func:`alloc_bytes`)."""
#: Results at least this large are pre-faulted on a worker thread.
PREFAULT_MIN_BYTES = 32 * 1024 * 1024
_PREFAULT_STEP = 8 * 1024 * 1024
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14
_PAGE = 4096
_madvise: Optional[Callable[[int, int, int], int]] = None
#: The width each client's last large read settled at (``AsyncS3Reader._stream_width``).
_SETTLED_WIDTHS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_prefault_ok = sys.platform.startswith("linux")


def alloc_bytes(size: int) -> tuple[io.BytesIO, memoryview]:
    """Allocate a ``bytes`` result of ``size`` bytes and a writable view onto it.

    Fill the view, then call :func:`finish_bytes`. ``bytes(size)`` comes from ``calloc`` (no
    page is touched until written) and ``io.BytesIO`` adopts it without copying while nothing
    else references it; ``getvalue()`` then hands the same object back. Peak memory is one
    copy of the data (measured on CPython 3.11: 256 MiB peak for a 256 MiB result, against
    512 MiB for ``bytes(bytearray)``).

    On Linux a result of :data:`PREFAULT_MIN_BYTES` or more is pre-faulted by a worker thread
    (``madvise(MADV_POPULATE_WRITE)``, front to back) while the bytes arrive: the first write
    to each fresh page otherwise faults inside the socket receive, and those faults cost more
    CPU than the copy itself (measured: 0.45 CPU-s per GB filled fresh, 0.12 once faulted),
    all on the event loop's thread. The thread stops when the result is finished or dropped.
    """
    bio = io.BytesIO(bytes(size))
    view = bio.getbuffer()
    if size >= PREFAULT_MIN_BYTES and _prefault_ok:
        _start_prefault(bio, view)
    return bio, view


def _start_prefault(bio: io.BytesIO, view: memoryview) -> None:
    global _madvise, _prefault_ok
    if os.environ.get(PREFAULT_ENV, "1").strip() == "0":
        return
    if _madvise is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            _prefault_ok = False
            return
        _madvise = fn
    addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
    first = -(-addr // _PAGE) * _PAGE  # whole pages inside the buffer only
    last = (addr + len(view)) // _PAGE * _PAGE
    if last > first:
        threading.Thread(
            target=_prefault,
            args=(weakref.ref(bio), first, last - first),
            name="s3torch-async-prefault",
            daemon=True,
        ).start()


def _prefault(ref: weakref.ReferenceType[io.BytesIO], addr: int, nbytes: int) -> None:
    global _prefault_ok
    madvise = _madvise
    assert madvise is not None
    for offset in range(0, nbytes, _PREFAULT_STEP):
        bio = ref()  # held during the call: the memory cannot be freed under it
        if bio is None or bio.closed:
            return
        step = min(_PREFAULT_STEP, nbytes - offset)
        if madvise(addr + offset, step, _MADV_POPULATE_WRITE) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: a kernel older than 5.14
                _prefault_ok = False
            return
        del bio


def drop_view(view: memoryview, exc: BaseException) -> None:
    """Let go of a result's ``view`` after filling it failed with ``exc``.

    The frames ``exc``'s traceback keeps may still hold slices of ``view`` (exports of the
    result's buffer); their locals are cleared first so that the buffer can be freed. A
    ``BytesIO`` collected with live exports raises ``BufferError`` (CPython 3.13) or crashes
    the collecting thread (3.12.1).
    """
    traceback.clear_frames(exc.__traceback__)
    with contextlib.suppress(
        BufferError
    ):  # exported elsewhere: the original error matters
        view.release()


def finish_bytes(bio: io.BytesIO, view: memoryview, nbytes: int) -> bytes:
    """Release ``view`` and return the first ``nbytes`` bytes written through it."""
    view.release()
    if nbytes == 0:
        return b""
    if nbytes < bio.seek(0, io.SEEK_END):
        try:
            bio.truncate(nbytes)
        except BufferError:
            # A slice of the view is still alive somewhere: copy instead.
            return bio.getbuffer()[:nbytes].tobytes()
    return bio.getvalue()


def writable_view(buf: Any) -> memoryview:
    """Return ``buf`` as a flat, writable byte view.

    Raises:
        TypeError: ``buf`` is not a writable, contiguous bytes-like object.
    """
    mv = memoryview(buf)
    if mv.readonly:
        raise TypeError(f"buffer must be writable, got read-only {type(buf).__name__}")
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    return mv


#: A read of at least this many parts whose width is not yet measured begins with a short
#: probe GET (see ``_Pieces``).
PROBE_MIN_PARTS = 8
#: The probe GET is ``part_size`` over this (512 KiB of 8 MiB parts): at S3's ~20 ms to the
#: first byte it answers in ~26 ms, against ~43 ms for a quarter part. It measures low
#: where the first byte is slow, which only makes the read's first step wider.
PROBE_DIVISOR = 16


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Prefetched parts may fail after nobody wants them any more; mark the error as seen.
    if not task.cancelled():
        task.exception()


class _Pieces:
    """The GETs of one direct read, cut when taken: ``StreamWidth`` decides their length.

    A read that spans many parts and finds its width not yet measured begins with a short
    GET (:data:`PROBE_DIVISOR`): the width follows from its rate a few round trips sooner than
    from a whole part's, while the rest waits; no probe when ``first_wait`` (the first-byte
    wait of the GET that told the object's size) already says how the first step goes
    (``StreamWidth.first_byte``). A read that has at least one whole part per
    stream when it first runs several cuts its GETs in rounds of one per stream, every
    round left of one size (``_planning.round_piece``), so that the streams run out of work
    together rather than a few fetching whole parts at the end while the others have
    nothing left.
    """

    def __init__(
        self,
        holes: Sequence[tuple[int, int]],
        part_size: int,
        width: StreamWidth,
        first_wait: Optional[float] = None,
    ) -> None:
        self._holes: Deque[tuple[int, int]] = deque(h for h in holes if h[1] > h[0])
        self._part = part_size
        self._width = width
        self.left = sum(end - start for start, end in self._holes)
        unmeasured = not width.settled and not width.history and width.width == 1
        probe = max(1, part_size // PROBE_DIVISOR)
        self._probe = 0
        # No probe either when the GET that told the size already decided the first step.
        if (
            unmeasured
            and self.left >= PROBE_MIN_PARTS * part_size
            and not (first_wait and width.first_byte(first_wait, probe))
        ):
            self._probe = probe
        self._round_size = self._round_takes = self._round_streams = 0
        self._even: Optional[bool] = None

    def take(self, streams: int = 1, busy: int = 0) -> Optional[tuple[int, int]]:
        """The next ``[start, stop)`` to GET, or ``None`` when all are taken.

        ``streams`` is how many GETs of the read run at once (counted in rounds of that
        many takes), ``busy`` how many of them fetch a GET not taken here (the one that told
        the object's size): a round planned meanwhile counts each as one of its takes, so
        that stream runs out of work with the others.
        """
        if not self._holes:
            return None
        start, end = self._holes[0]
        if self._probe:
            stop = min(end, start + self._probe)
            self._probe = 0
        else:
            parts = self._width.piece_parts(-(-self.left // self._part))
            length = parts * self._part
            busy = min(busy, streams - 1)
            if streams > 1 and self._even is None:
                # Only a read that keeps every stream busy for a round evens out its rounds.
                self._even = self.left >= (streams - busy) * length
            if streams > 1 and self._even:
                if self._round_takes <= 0 or self._round_streams != streams:
                    least = max(1, self._part // MIN_PIECE_DIVISOR)
                    self._round_size = round_piece(
                        self.left, streams, length, least, busy
                    )
                    self._round_streams = streams
                    self._round_takes = streams - busy
                self._round_takes -= 1
                length = self._round_size
            stop = min(end, start + length)
        if stop == end:
            self._holes.popleft()
        else:
            self._holes[0] = (stop, end)
        self.left -= stop - start
        return start, stop


async def _gather_widening(
    pieces: _Pieces,
    fetch: Callable[[int, int], Awaitable[None]],
    width: StreamWidth,
    alongside: Optional[asyncio.Future[Any]] = None,
) -> None:
    """``fetch`` every piece with ``width.width`` in flight; the first failure cancels the rest.

    The width is re-read after every piece: workers are added when it grew and leave when it
    shrank (``StreamWidth`` decides from the pieces' measured throughput). While
    ``alongside`` (another GET of the same read) is not done it counts as one of the width,
    and of the round of pieces planned meanwhile; when it is done, its stream takes the next
    piece at once.
    No worker outlives the call (on failure or cancellation the others are cancelled and
    awaited); the first failure is raised as itself. The workers are plain asyncio tasks: a
    task group of anyio's would cost each process ~15 ms (its backend's import) on the
    timed path of its first large read.
    """
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    finished: asyncio.Future[None] = loop.create_future()
    workers = 0

    def busy() -> int:
        return int(alongside is not None and not alongside.done())

    def allowed() -> int:
        return max(1, width.width - busy())

    def take() -> Optional[tuple[int, int]]:
        return pieces.take(width.width, busy())

    def top_up() -> None:
        while workers < allowed() and pieces.left:
            spawn(take())

    def spawn(piece: Optional[tuple[int, int]]) -> None:
        nonlocal workers
        workers += 1
        task = loop.create_task(worker(piece))
        tasks.add(task)
        task.add_done_callback(ended)

    def ended(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if finished.done():
            return
        if error is not None:
            finished.set_exception(error)
        elif not tasks:
            finished.set_result(None)

    async def worker(piece: Optional[tuple[int, int]]) -> None:
        nonlocal workers
        try:
            while piece is not None:
                await fetch(*piece)
                if workers > allowed():
                    return  # the width shrank: this stream ends
                top_up()
                piece = take()
        finally:
            workers -= 1

    def joined(done: asyncio.Future[Any]) -> None:
        # The alongside GET's stream joins the read's pieces now, not at the next one's end.
        if not finished.done() and not done.cancelled() and done.exception() is None:
            top_up()

    first = take()
    if first is None:
        return
    if not pieces.left:
        await fetch(*first)
        return
    spawn(first)
    top_up()
    if alongside is not None and not alongside.done():
        alongside.add_done_callback(joined)
    try:
        await finished
    finally:
        if alongside is not None:
            alongside.remove_done_callback(joined)
        if not finished.done():
            finished.cancel()
        await cancel_all(tasks)


@dataclass
class _Part:
    start: int
    end: int
    task: asyncio.Future[bytes]


class _Fetcher:
    """Fetches a lazy sequence of spans ahead of its consumer and delivers them in order.

    At most ``target`` parts are in flight; ``target`` starts at ``initial_parts`` and doubles
    after each delivered part up to ``max_parts``. Unless ``exact_spans`` is set (spans are
    then known to lie inside the object), only one part is issued while the object's size is
    unknown, so nothing is requested past the end.
    """

    def __init__(
        self,
        reader: AsyncS3Reader,
        spans: Iterator[tuple[int, int]],
        *,
        next_pos: int,
        max_parts: int,
        initial_parts: int,
        exact_spans: bool = False,
    ) -> None:
        self._reader = reader
        self._exact = exact_spans
        self._spans = spans
        self._pending: Deque[_Part] = deque()
        self._max = max(1, max_parts)
        self._target = max(1, min(initial_parts, self._max))
        self._issued = 0
        self._exhausted = False
        self.next_pos = next_pos  # start of the next span not yet issued

    def in_flight(self, pos: int) -> bool:
        """Whether an issued part holds ``pos``."""
        return any(p.start <= pos < p.end for p in self._pending)

    def advance_to(self, pos: int) -> bool:
        """Drop parts ending at or before ``pos``; return whether ``pos`` is still served."""
        while self._pending and self._pending[0].end <= pos:
            self._pending.popleft().task.cancel()
        if self._pending:
            return self._pending[0].start <= pos
        return pos == self.next_pos and not self._exhausted

    def _fill(self) -> None:
        while len(self._pending) < self._target and not self._exhausted:
            if self._reader.known_size is None and self._issued and not self._exact:
                break
            span = next(self._spans, None)
            if span is None:
                self._exhausted = True
                break
            start, end = span
            task = asyncio.ensure_future(self._reader._fetch_piece(start, end))  # noqa: SLF001 - same module
            task.add_done_callback(_retrieve)
            self._pending.append(_Part(start, end, task))
            self._issued += 1
            self.next_pos = end

    def start(self) -> None:
        """Issue the first parts without waiting for them."""
        self._fill()

    async def next(self, *, read_ahead: bool = True) -> Optional[Chunk]:
        """The next part as ``(start, data)``; ``None`` when no span is left.

        With ``read_ahead`` false only a part already in flight is delivered and nothing new
        is issued.
        """
        if read_ahead:
            self._fill()
        if not self._pending:
            return None
        part = self._pending.popleft()
        try:
            data = await part.task
        except BaseException:
            self.cancel()
            raise
        if read_ahead:
            self._target = min(self._max, self._target * 2)
        return part.start, data

    def cancel(self) -> None:
        while self._pending:
            task = self._pending.popleft().task
            if not task.done() and task.get_loop() is _running_loop():
                task.cancel()
        self._exhausted = True


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class RangeStream:
    """Async iterator over ``(start, data)`` pieces of byte spans, fetched ahead in parallel.

    Spans are cut into pieces of at most ``part_size`` bytes; up to ``max_parts`` pieces are
    in flight and pieces arrive in span order. Build it with :meth:`AsyncS3Reader.iter_ranges`.
    """

    def __init__(
        self,
        reader: AsyncS3Reader,
        spans: Sequence[tuple[int, int]],
        max_parts: int,
    ) -> None:
        self._reader = reader
        pieces = list(split_spans(spans, reader.part_size))
        self._fetcher = _Fetcher(
            reader,
            iter(pieces),
            next_pos=pieces[0][0] if pieces else 0,
            max_parts=max_parts,
            initial_parts=max_parts,
            exact_spans=True,
        )
        self._fetcher.start()

    def __aiter__(self) -> RangeStream:
        return self

    async def __anext__(self) -> Chunk:
        item = await self._fetcher.next()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Cancel the pieces still in flight."""
        self._fetcher.cancel()


class AsyncS3Reader:
    """Read-only, seekable view of one S3 object for ``asyncio`` code.

    Build it with :meth:`AsyncS3Client.get_object`; construction sends no request. ``seek`` and
    ``tell`` are plain methods that only move the cursor. ``SEEK_END`` needs the size, which
    is known from ``object_info``, from any earlier read, or from ``await size()``. Seeks past
    the end are clamped to the size when it is known, as the sync readers do.

    ``read()`` of the rest of the object fetches it with parallel ranged GETs into one buffer;
    ``async for chunk in reader`` streams it part by part with read-ahead. The reader is not
    safe for concurrent use by several tasks.

    Args:
        client: The client to send requests with.
        bucket: Bucket name.
        key: Object key.
        object_info: Listing or HEAD information; its size saves the size lookup.
        part_size: Size of each ranged GET; defaults to the client's ``part_size``.
        window_bytes: Most bytes the sequential read-ahead keeps in flight.
        version: What is known of the object's version, shared with the caller: a reader
            rebuilt for the same object (after a fork) passes the first one's, so it keeps
            its size and pinned ETag.
    """

    def __init__(
        self,
        client: ReadClient,
        bucket: str,
        key: str,
        *,
        object_info: Union[ObjectInfo, HeadObjectResult, None] = None,
        part_size: Optional[int] = None,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        version: Optional[ObjectVersion] = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise ValueError(f"bucket must be a non-empty string, got {bucket!r}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        if part_size is None:
            part_size = client.s3client_config.part_size
        if not isinstance(part_size, int) or part_size < 1:
            raise ValueError(f"part_size must be a positive int, got {part_size!r}")
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._window_bytes = window_bytes
        if version is None:
            version = ObjectVersion.from_info(object_info)
        elif object_info is not None:
            version.learn_size(object_info)
        self._version = version
        self._pos = 0
        self._last: Optional[Chunk] = None
        self._window: Optional[_Fetcher] = None
        self._closed = False
        self._whole_check: Optional[WholeReadCheck] = None
        self._whole_wanted = False  # a whole read from offset 0 is under way
        self._width: Optional[StreamWidth] = None
        self._sized: Optional[asyncio.Future[None]] = None  # see _size_from_first
        #: Seconds the GET that told the size waited for its head (see ``_Pieces``).
        self._first_wait: Optional[float] = None

    # -- properties -------------------------------------------------------------------------

    @property
    def client(self) -> ReadClient:
        return self._client

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def key(self) -> str:
        return self._key

    @property
    def part_size(self) -> int:
        return self._part_size

    @property
    def version(self) -> ObjectVersion:
        """The object version being read (shared, updated as responses arrive)."""
        return self._version

    @property
    def etag(self) -> Optional[str]:
        """The ETag every request is pinned to, once the first response arrived."""
        return self._version.etag

    @property
    def known_size(self) -> Optional[int]:
        """The object's size if already known (no request), else ``None``."""
        return self._version.size

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_chunk(self) -> Optional[Chunk]:
        """The part most recently fetched for sequential reading, as ``(start, data)``."""
        return self._last

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncS3Reader:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel read-ahead and drop buffers. Idempotent."""
        self._closed = True
        self.forget()
        if self._whole_check is not None:
            self._whole_check.close()

    def forget(self) -> None:
        """Drop the retained part and cancel read-ahead (the reader stays usable)."""
        if self._window is not None:
            self._window.cancel()
            self._window = None
        self._last = None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    # -- cursor API ---------------------------------------------------------------------------

    async def size(self) -> int:
        """Return the object's size: known from ``object_info`` or a read, else one HEAD.

        Raises:
            S3Exception: The HEAD request failed.
        """
        version = self._version
        if version.size is not None:
            return version.size
        head = await self._client.head_object(self._bucket, self._key)
        if version.etag is None:
            version.etag = head.etag or None
        return version.learn_size(head)

    def tell(self) -> int:
        """Return the cursor position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the cursor and return the new position; sends no request.

        Raises:
            TypeError: ``offset`` or ``whence`` is not an int.
            ValueError: The position would be negative, ``whence`` is unknown, or ``SEEK_END``
                is used before the size is known.
        """
        if not isinstance(offset, int):
            raise TypeError(f"integer argument expected, got {type(offset)!r}")
        if not isinstance(whence, int):
            raise TypeError(f"integer argument expected, got {type(whence)!r}")
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            if self._version.size is None:
                raise ValueError(
                    "SEEK_END needs the object size: pass object_info or await size() first"
                )
            target = self._version.size + offset
        else:
            raise ValueError("Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END")
        if target < 0:
            raise ValueError(f"negative seek value {target}")
        if self._version.size is not None:
            target = min(target, self._version.size)
        self._pos = target
        return target

    async def read(self, size: Optional[int] = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when ``size`` is negative or None).

        Raises:
            TypeError: ``size`` is not an int or None.
            S3Exception: A request failed or the object changed during the read.
        """
        if size is not None and not isinstance(size, int):
            raise TypeError(f"argument should be integer or None, not {type(size)!r}")
        self._check_open()
        pos = self._pos
        if size == 0:
            return b""
        first: Optional[asyncio.Future[Chunk]] = None
        if self._version.size is None and (
            size is None or size < 0 or size > self._part_size
        ):
            # Learn the size before allocating.
            first = await self._size_from_first(pos, whole=size is None or size < 0)
        if self._version.size is not None:
            want = self._version.size - pos
            if size is not None and size >= 0:
                want = min(want, size)
        else:
            want = int(size or 0)
        if first is not None:
            if want >= 2 * self._part_size:
                return await self._read_alongside(pos, want, first)
            await first
        if want <= 0:
            self._clamp()
            return b""
        last = self._last
        if last is not None:
            start, data = last
            if start == pos and len(data) == want:
                self._pos = pos + want
                return data
            if start <= pos and pos + want <= start + len(data):
                self._pos = pos + want
                return data[pos - start : pos - start + want]
        return await self._read_into_result(pos, want, lambda v: self.read_at(pos, v))

    async def _read_into_result(
        self, pos: int, want: int, fill: Callable[[memoryview], Awaitable[int]]
    ) -> bytes:
        """Allocate a ``want``-byte result, ``fill`` it, move the cursor past what came."""
        bio, view = alloc_bytes(want)
        try:
            nbytes = await fill(view)
        except BaseException as exc:
            drop_view(view, exc)
            raise
        self._pos = pos + nbytes
        self._clamp()
        return finish_bytes(bio, view, nbytes)

    async def _size_from_first(
        self, pos: int, *, whole: bool
    ) -> Optional[asyncio.Future[Chunk]]:
        """Fetch the part at ``pos`` until the object's size is known.

        Returns ``None`` once the part arrived, or the task still fetching it once its
        response's head told the size: a large read then fetches the rest while that part's
        body flows, instead of one part's transfer time later.
        """
        task = asyncio.ensure_future(self.chunk_at(pos, whole=whole))
        task.add_done_callback(_retrieve)
        sized = self._sized = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((task, sized), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            self._sized = None
        if not task.done():
            return task
        task.result()  # its failure, if any
        return None

    async def _read_alongside(
        self, pos: int, want: int, first: asyncio.Future[Chunk]
    ) -> bytes:
        """``read`` of ``want`` bytes at ``pos`` while ``first`` still fetches the part there.

        The rest (from the end of that part) is fetched directly into the result meanwhile;
        the part's bytes are copied in when it arrives.
        """
        head = min(self._part_size, want)

        async def fill(view: memoryview) -> int:
            rest_view = view[head:]
            rest = asyncio.ensure_future(
                self._read_direct(pos + head, rest_view, alongside=first)
            )
            try:
                start, data = await first
                got = await rest
            except BaseException:
                first.cancel()
                rest.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.gather(first, rest, return_exceptions=True)
                raise
            finally:
                # A failed piece's frames may still export the view (see drop_view).
                with contextlib.suppress(BufferError):
                    rest_view.release()
            offset = pos - start
            n = max(0, min(head, len(data) - offset))
            view[:n] = data[offset : offset + n]
            if n < head:  # that part began before pos (a window already under way)
                with view[n:head] as gap:
                    n += await self._read_direct(pos + n, gap)
            return n + got if n == head else n

        return await self._read_into_result(pos, want, fill)

    def _on_head(self, object_size: int, etag: str) -> None:
        """A GET's response head arrived: learn the version's size (see ``_size_from_first``)."""
        version = self._version
        if etag and version.etag not in (None, etag):
            return  # another version: that GET's own check raises when it is done
        self._learn(etag, object_size)
        sized = self._sized
        if sized is not None and not sized.done() and version.size is not None:
            sized.set_result(None)

    def _clamp(self) -> None:
        if self._version.size is not None and self._pos > self._version.size:
            self._pos = self._version.size

    async def readinto(self, buf: WritableBuffer) -> int:
        """Read into ``buf`` from the cursor; return the bytes read (0 at the end).

        Raises:
            TypeError: ``buf`` is not a writable bytes-like object.
            S3Exception: A request failed or the object changed during the read.
        """
        with writable_view(buf) as view:
            self._check_open()
            nbytes = await self.read_at(self._pos, view)
        self._pos += nbytes
        self._clamp()
        return nbytes

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iter_chunks()

    async def _iter_chunks(self) -> AsyncIterator[bytes]:
        while True:
            self._check_open()
            pos = self._pos
            start, data = await self.chunk_at(pos)
            if not data:
                return
            self._pos = start + len(data)
            yield data if start == pos else data[pos - start :]

    def iter_ranges(
        self, spans: Sequence[tuple[int, int]], *, max_parts: Optional[int] = None
    ) -> RangeStream:
        """Fetch the byte ranges ``spans`` (sorted ``[start, end)`` pairs) ahead, in order.

        Each span is cut into pieces of at most ``part_size``; every piece is one GET, and up
        to ``max_parts`` (default: the client's ``max_concurrency``) are in flight.
        """
        self._check_open()
        return RangeStream(self, spans, max_parts or self._max_parts())

    # -- positional primitives (used by the sync readers) -----------------------------------

    def _max_parts(self) -> int:
        by_bytes = max(1, self._window_bytes // self._part_size)
        return max(1, min(self._client.max_concurrency, by_bytes))

    def _seq_spans(self, pos: int) -> Iterator[tuple[int, int]]:
        while True:
            size = self._version.size
            if size is not None and pos >= size:
                return
            end = pos + self._part_size
            if size is not None:
                end = min(end, size)
            yield pos, end
            pos = end

    def prefetch(self, pos: int) -> None:
        """Start fetching the part at ``pos`` without waiting for it."""
        self._check_open()
        last = self._last
        if last is not None and last[0] <= pos < last[0] + len(last[1]):
            return
        if self._window is not None and self._window.advance_to(pos):
            return
        self._start_window(pos).start()

    def _start_window(self, pos: int) -> _Fetcher:
        if self._window is not None:
            self._window.cancel()
        self._window = _Fetcher(
            self,
            self._seq_spans(pos),
            next_pos=pos,
            max_parts=self._max_parts(),
            initial_parts=1,
        )
        return self._window

    async def chunk_at(
        self, pos: int, *, read_ahead: bool = True, whole: bool = False
    ) -> Chunk:
        """Return ``(start, data)``: the part holding ``pos``, or ``(pos, b"")`` at the end.

        Consecutive calls that walk the object front to back grow the read-ahead window; a
        call anywhere else restarts it at ``pos``. With ``read_ahead`` false, a part already
        in flight is delivered without issuing more. ``whole`` says the caller goes on to
        read the whole object: a read from offset 0 of unknown size then asks for the
        object's checksum alongside its first GET, not after it.
        """
        self._check_open()
        if whole and pos == 0:
            self._whole_wanted = True
        last = self._last
        if last is not None and last[0] <= pos < last[0] + len(last[1]):
            return last
        if self._version.size is not None and pos >= self._version.size:
            return pos, b""
        window = self._window
        if window is None or not window.advance_to(pos):
            window = self._start_window(pos)
        try:
            item = await window.next(read_ahead=read_ahead)
        except BaseException:
            if self._window is window:
                self._window = None
            raise
        if item is None or not item[1]:
            return pos, b""
        self._last = item
        if pos >= item[0] + len(item[1]):  # the object ends before pos
            return pos, b""
        return item

    async def read_at(self, pos: int, buf: WritableBuffer) -> int:
        """Fill ``buf`` with the bytes at ``pos``; fewer only at the end of the object.

        Uses the retained part and the read-ahead window where they hold the bytes; a span of
        two parts or more is fetched directly into ``buf`` with parallel ranged GETs.
        """
        self._check_open()
        with writable_view(buf) as view:
            return await self._read_at(pos, view)

    async def _read_at(self, pos: int, view: memoryview) -> int:
        end = pos + len(view)
        done = 0
        while True:
            if self._version.size is not None:
                end = min(end, self._version.size)
            here = pos + done
            if here >= end:
                break
            last = self._last
            if last is not None and last[0] <= here < last[0] + len(last[1]):
                offset = here - last[0]
                n = min(end - here, len(last[1]) - offset)
                view[done : done + n] = last[1][offset : offset + n]
                done += n
                continue
            window = self._window
            small = end - here < 2 * self._part_size
            if small or (window is not None and window.in_flight(here)):
                # Large spans only take parts already in flight, then go direct.
                _, data = await self.chunk_at(here, read_ahead=small)
                if not data:
                    break
                continue
            with view[done : end - pos] as rest:
                done += await self.read_direct(here, rest)
            break
        return done

    async def read_direct(self, pos: int, buf: WritableBuffer) -> int:
        """GET exactly the bytes ``[pos, pos + len(buf))`` into ``buf``, in parallel parts.

        Returns the bytes delivered (fewer only at the end of the object). Bytes of the
        retained part are copied rather than fetched again; read-ahead is cancelled.
        """
        self._check_open()
        if self._window is not None:
            self._window.cancel()
            self._window = None
        with writable_view(buf) as view:
            return await self._read_direct(pos, view)

    async def _read_direct(
        self,
        pos: int,
        view: memoryview,
        *,
        alongside: Optional[asyncio.Future[Any]] = None,
    ) -> int:
        total = len(view)
        done = 0
        if self._version.size is None and total:
            first = min(total, self._part_size)
            with view[:first] as head:
                done = await self._get_into(pos, head)
            if done < first:
                return done
        if self._version.size is not None:
            total = max(done, min(total, self._version.size - pos))
        holes = [(pos + done, pos + total)]
        last = self._last
        if last is not None:
            holes = _subtract(holes[0], last[0], last[0] + len(last[1]))
            lo = max(pos + done, last[0])
            hi = min(pos + total, last[0] + len(last[1]))
            if lo < hi:
                view[lo - pos : hi - pos] = last[1][lo - last[0] : hi - last[0]]

        async def fetch(start: int, stop: int) -> None:
            with view[start - pos : stop - pos] as piece:
                nbytes = await self._get_into(start, piece)
            if nbytes < stop - start:
                raise S3Exception(
                    f"GetObject s3://{self._bucket}/{self._key} failed: response for bytes "
                    f"{start}-{stop - 1} ended after {nbytes} bytes",
                    bucket=self._bucket,
                    key=self._key,
                    operation="GetObject",
                )

        width = self._stream_width()
        wait, self._first_wait = self._first_wait, None
        await _gather_widening(
            _Pieces(holes, self._part_size, width, wait), fetch, width, alongside
        )
        self._remember_width()
        return total

    # -- requests ---------------------------------------------------------------------------

    def _stream_width(self) -> StreamWidth:
        """How many GETs of a large read run at once: measured per reader.

        The first reader of a client starts from one stream; later ones start at the width
        the client's last large read settled at (the network is likely the same).
        """
        width = self._width
        if width is None:
            target = self._client.s3client_config.throughput_target_gbps * 1e9 / 8
            limit = max(1, self._client.max_concurrency)
            reach = read_reach(limit)
            start = min(reach, _SETTLED_WIDTHS.get(self._client, 1))
            width = self._width = StreamWidth(
                limit, target, start=start, floor=2, reach=reach
            )
        return width

    def _remember_width(self) -> None:
        width = self._width
        if width is not None and width.settled:
            with contextlib.suppress(
                TypeError
            ):  # a client that takes no weak reference
                _SETTLED_WIDTHS[self._client] = width.width

    async def _fetch_piece(self, start: int, end: int) -> bytes:
        bio, view = alloc_bytes(end - start)
        try:
            nbytes = await self._get_into(start, view)
        except BaseException as exc:
            drop_view(view, exc)
            raise
        return finish_bytes(bio, view, nbytes)

    async def _get_into(self, start: int, view: memoryview) -> int:
        whole = False
        if start == 0 and self._whole_check is None:
            whole = await self._begin_whole_check(len(view))
        if self._whole_check is not None:
            self._whole_check.issued(start, len(view))
        width = self._stream_width()
        epoch = width.epoch
        loop = asyncio.get_running_loop()
        began = loop.time()
        on_head: Optional[Callable[[int, str], None]] = None
        if self._version.size is None:

            def on_head(object_size: int, etag: str) -> None:
                self._first_wait = loop.time() - began
                self._on_head(object_size, etag)

        try:
            meta = await self._client.get_range_into(
                self._bucket,
                self._key,
                start,
                view,
                if_match=self._version.etag,
                whole=whole,
                on_head=on_head,
            )
        except S3Exception as exc:
            if exc.status != 416:
                raise
            # Range not satisfiable: the request started at or past the end.
            if self._version.size is None and start == 0:
                self._version.size = 0
            elif self._version.size is None:
                await self.size()
            if self._version.size is not None and start >= self._version.size:
                return 0
            raise
        width.record(epoch, meta.nbytes, loop.time() - began)
        self._learn(meta.etag, meta.object_size)
        check = self._whole_check
        if check is not None:
            piece = view[: meta.nbytes]
            try:
                await check.record(start, piece, self._version.size, self._version.etag)
            except S3Exception:
                self._last = (
                    None  # a repeated read fetches (and checks) every byte again
                )
                raise
            finally:
                piece.release()  # no export left behind: finish_bytes can adopt the buffer
        return meta.nbytes

    async def _begin_whole_check(self, nbytes: int) -> bool:
        """Prepare checking a read that begins with a GET of ``nbytes`` at offset 0.

        Returns whether that GET holds the whole object: it then goes without ``Range``, so
        that S3 sends the checksum with it. Otherwise the ranges this reader receives are
        checked together once they cover the object (:class:`WholeReadCheck`).
        """
        if not (await self._client.checksum_policy()).validate or self._closed:
            return False
        size = self._version.size
        if size is not None and 0 < size <= nbytes:
            return True
        if self._whole_check is None:
            self._whole_check = WholeReadCheck(self._client, self._bucket, self._key)
        if self._whole_wanted and size is None:
            # The object's size is unknown, so this GET is ranged and S3 sends no checksum
            # with it: ask for the checksum now, not one round trip after the GET.
            self._whole_check.look_up()
        return False

    def _learn(self, etag: str, object_size: int) -> None:
        self._version.observe(etag, object_size, bucket=self._bucket, key=self._key)


def _subtract(span: tuple[int, int], lo: int, hi: int) -> List[tuple[int, int]]:
    """``span`` minus ``[lo, hi)``, as zero, one or two non-empty spans."""
    start, end = span
    out = []
    if start < min(lo, end):
        out.append((start, min(lo, end)))
    if max(hi, start) < end:
        out.append((max(hi, start), end))
    return out
