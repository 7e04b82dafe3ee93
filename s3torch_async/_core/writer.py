"""``AsyncS3Writer``: buffered upload of one object, atomic at commit, aborted on any failure.

An object that fits in one part (``part_size`` bytes, total at close) is sent as one PutObject
at :meth:`AsyncS3Writer.aclose`. A larger one becomes a multipart upload: CreateMultipartUpload
when the first full part is followed by more data, then up to ``upload_concurrency_for(
throughput_target_gbps, part_size)`` parts in flight (23 at the defaults; see ``_planning``)
while the caller keeps writing (``write()`` waits when the window is full), then
CompleteMultipartUpload with the parts in order. Where the finished parts show that they take
longer than planned (a slower link or server), the window widens as far as the target needs
and further while each step raises the measured throughput, up to ``upload_window_reach(...)``
(32 at the defaults: twice the plan, at most 256 MiB of parts; ``_planning.UploadWindow``).
Memory is bounded by ``part_size x (in-flight parts + 2)``: one full part held back and one
filling; 272 MiB at the defaults once widened (200 MiB at the plan).

Nothing becomes visible before the commit. An error from any request, an exception inside
``async with``, or cancellation cancels the in-flight parts and aborts the multipart upload;
that cleanup runs shielded from cancellation, so no multipart upload is left pending.

Integrity: unless the checksum policy says ``when_required``, the multipart upload is created
with ``ChecksumAlgorithm=CRC32`` and ``ChecksumType=FULL_OBJECT``, each part carries its CRC32
(hashed on a worker thread while earlier parts upload) and the commit lists them together with
the whole object's CRC32, combined from the parts' (so the object can be checked whole when it
is read back); a single PutObject carries its CRC32 too.

Buffers: data is copied once, into a part buffer (a private anonymous ``mmap``: a new one
costs no zero-fill in Python, its pages are mapped in one call once the object is known to span
parts, and buffers are reused once their part is uploaded, so later parts cost no page faults); the part is then sent from that buffer. A write that covers a whole part with
``bytes`` (immutable, so the caller cannot change it afterwards) is not copied at all: the part
is sent from a view of it. The CRC32 of copied data is taken as it is copied, a slice at a time
while the slice is still in the CPU's cache (``PartAssembler.crc_of``): hashing a whole part
later reads it back from memory, which costs ~7x more than the hashing itself on the benchmark
machine (``benchmarks/results/writecpu-issue16.md``). Only parts sent uncopied are hashed on a
worker thread.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import mmap
from collections import deque
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any, Optional, TypeVar, Union

from .._config import validate_for_use
from .._errors import S3Exception
from ._checksum import (
    crc32,
    crc32_b64_async,
    crc32_combine,
    crc32_from_b64,
    crc32_to_b64,
)
from ._interface import WriteClient
from ._planning import (
    MAX_PARTS,
    MIN_PART_SIZE,
    UploadWindow,
    part_size_for_part_number,
    upload_concurrency_for,
    upload_window_reach,
)
from ._tasks import settle

__all__ = ["AsyncS3Writer", "PartAssembler", "as_byte_view", "part_capacity"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED_FILE = "I/O operation on closed file."

#: Copied data is hashed in slices of at most this many bytes, each right after its copy, while
#: it is still in the core's cache (L2; hashing from there is ~7x faster than from DRAM, and
#: 256 KiB measured cheaper than 1 MiB slices, whose copy pushes them out of the cache).
_HASH_SLICE = 256 << 10
#: Part buffers: private anonymous memory (its page faults cost less than shared memory's,
#: which ``mmap.mmap(-1, n)`` gives by default); ``_POPULATE`` maps every page at once, for
#: buffers that will be filled: one call instead of a page fault per 4 KiB.
_PRIVATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
#: Largest buffer mapped at once on the guess that it will be filled (a later part of an object
#: written in small pieces); the last part may be short, so at most this much is mapped unused.
_POPULATE_GUESS_MAX = 16 << 20


class _State(enum.Enum):
    OPEN = 1
    COMMITTED = 2
    FAILED = 3
    ABORTED = 4


def as_byte_view(data: Any) -> memoryview:
    """A flat unsigned-byte view of any buffer-protocol object (copied only if not C-contiguous).

    Raises:
        TypeError: ``data`` does not support the buffer protocol (e.g. ``str``).
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"a bytes-like object is required, not {type(data).__name__!r}"
        ) from None
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    if view.c_contiguous:
        try:
            return view.cast("B")
        except TypeError:  # e.g. a 0-dimensional view
            pass
    return memoryview(view.tobytes())


def _immutable(view: memoryview) -> bool:
    """Whether ``view``'s bytes can never change: it is a view of a ``bytes`` object."""
    return type(view.obj) is bytes


def part_capacity(part_number: int, part_size: int) -> int:
    """Size of part ``part_number`` (1-based) of a streaming upload with base ``part_size``.

    Raises:
        S3Exception: The upload would need more than 10,000 parts.
    """
    if part_number > MAX_PARTS:
        raise S3Exception(
            f"object too large: a multipart upload has at most {MAX_PARTS} parts"
        )
    return part_size_for_part_number(part_number, part_size)


class PartAssembler:
    """Cuts a stream of writes into upload parts of the planned sizes, in reusable buffers.

    Shared by ``AsyncS3Writer`` and the sync ``S3Writer`` stream (which fills parts on the
    caller's thread). A full part is *held* until more data arrives: an object of exactly one
    part is a single PutObject, decided at close. Buffers come back through :meth:`recycle`
    once their part is uploaded; the pool never holds more buffers than were in use at once.
    Only :meth:`recycle` may be called from another thread.

    Data is copied into the buffers, so the caller may reuse what it wrote, except where a
    write covers a whole part with the bytes of a ``bytes`` object: that part is a view of
    them (immutable, so the same promise holds) and costs no copy. The CRC32 of the copied
    bytes is computed along with the copy; :meth:`crc_of` hands it to the uploader.
    """

    def __init__(self, base_part_size: int) -> None:
        self._base = base_part_size
        self._free: deque[mmap.mmap] = deque()
        self._fill: Optional[mmap.mmap] = None
        self._fill_len = 0
        self._fill_crc = 0
        # CRC32s of handed-over parts, by id of their buffer: (buffer, length, crc).
        self._crcs: dict[int, tuple[mmap.mmap, int, int]] = {}
        self.held: Optional[memoryview] = None
        self.parts = 0  #: full parts cut so far

    def feed(self, view: memoryview, pos: int) -> int:
        """Copy ``view[pos:]`` into the current part until it is full; return the new ``pos``.

        Raises:
            S3Exception: The object would need more than 10,000 parts.
        """
        if self.held is not None:
            raise RuntimeError("hand over the held part before feeding more data")
        fill = self._fill
        if fill is None:
            size = part_capacity(self.parts + 1, self._base)
            if len(view) - pos >= size and _immutable(view):
                # A whole part of bytes nobody can change: upload it from there, uncopied.
                self.held = view[pos : pos + size]
                self.parts += 1
                return pos + size
            # With a part's worth at hand the buffer will be filled; past the first part it
            # very likely will (bar the last). The first part of a small object, and large
            # buffers filled piecemeal, touch only the pages written.
            full = len(view) - pos >= size or (
                self.parts > 0 and size <= _POPULATE_GUESS_MAX
            )
            fill = self._fill = self._take(size, full)
            self._fill_len = self._fill_crc = 0
        take = min(len(view) - pos, len(fill) - self._fill_len)
        start, end = self._fill_len, self._fill_len + take
        value = self._fill_crc
        for at in range(start, end, _HASH_SLICE):
            stop = min(end, at + _HASH_SLICE)
            fill[at:stop] = view[pos + at - start : pos + stop - start]
            # Hash what landed in our buffer (what will be sent), while it is in the cache.
            value = crc32(memoryview(fill)[at:stop], value)
        self._fill_len, self._fill_crc = end, value
        if end == len(fill):
            self.held = self._handed(fill, end)
            self._fill = None
            self.parts += 1
        return pos + take

    def _handed(self, fill: mmap.mmap, length: int) -> memoryview:
        """A view of ``fill[:length]`` handed over; its CRC32 is kept for :meth:`crc_of`."""
        self._crcs[id(fill)] = (fill, length, self._fill_crc)
        view = memoryview(fill)
        return view if length == len(fill) else view[:length]

    def crc_of(self, part: memoryview) -> Optional[int]:
        """The CRC32 of a part this assembler copied and handed over, ``None`` if unknown.

        Unknown for parts sent uncopied (views of the caller's ``bytes``) and for a part asked
        about twice (the CRC is handed out once, with the part's ownership).
        """
        buf = part.obj
        entry = self._crcs.pop(id(buf), None)
        if entry is None or entry[0] is not buf or entry[1] != part.nbytes:
            return None
        return entry[2]

    def take_held(self) -> memoryview:
        """The held full part; the caller now owns it (and recycles it once uploaded)."""
        held, self.held = self.held, None
        assert held is not None
        return held

    def drain(self) -> list[memoryview]:
        """Everything not handed over yet, in order (all but the last are full parts)."""
        pieces = [] if self.held is None else [self.held]
        if self._fill is not None and self._fill_len:
            pieces.append(self._handed(self._fill, self._fill_len))
        self.held, self._fill = None, None
        return pieces

    def forget(self) -> None:
        """Drop everything buffered and every CRC32 not handed out (the upload is over)."""
        self.drain()
        self._crcs.clear()

    def recycle(self, part: memoryview) -> None:
        """Return the buffer behind an uploaded ``part`` for reuse (thread-safe)."""
        buf = part.obj
        if isinstance(buf, mmap.mmap):
            self._free.append(buf)

    def _take(self, size: int, populate: bool) -> mmap.mmap:
        while True:
            try:
                buf = self._free.pop()
            except IndexError:
                flags = _PRIVATE | _POPULATE if populate else _PRIVATE
                return mmap.mmap(-1, size, flags=flags)
            if len(buf) == size:
                return buf


def _as_failure(
    exc: BaseException, bucket: str, key: str, operation: str
) -> S3Exception:
    if isinstance(exc, S3Exception):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        new = S3Exception(
            f"Upload to s3://{bucket}/{key} was cancelled; the upload was aborted",
            bucket=bucket,
            key=key,
            operation=operation,
        )
    else:
        new = S3Exception(
            f"Upload to s3://{bucket}/{key} failed: {type(exc).__name__}: {exc}",
            bucket=bucket,
            key=key,
            operation=operation,
        )
    new.__cause__ = exc
    return new


class AsyncS3Writer:
    """Write-only, buffered upload of one S3 object; the async twin of ``S3Writer``.

    Create with ``AsyncS3Client.put_object``; construction sends no request. Use as
    ``async with client.put_object(bucket, key) as writer: await writer.write(data)``: leaving
    the block commits the object, leaving it with an exception (or cancellation) aborts the
    upload and keeps any existing object. Not safe for concurrent ``write()`` calls.

    Args:
        client: The client that sends the requests.
        bucket: Bucket name.
        key: Object key.
        storage_class: S3 storage class, e.g. ``"STANDARD_IA"``.
        if_none_match: Create only: the commit fails with ``S3Exception`` (HTTP 412) if the key
            already exists.
        assembler: Where ``write()`` buffers parts and where uploaded parts' buffers return;
            by default one sized by the client's ``part_size``, made on the first write. A
            caller that cuts parts itself (the sync ``S3Writer``) passes its own and feeds
            full parts to :meth:`put_part`.
    """

    def __init__(
        self,
        client: WriteClient,
        bucket: str,
        key: str,
        storage_class: Optional[str] = None,
        *,
        if_none_match: bool = False,
        assembler: Optional[PartAssembler] = None,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.key = key
        self.storage_class = storage_class
        self.if_none_match = if_none_match
        self._state = _State.OPEN
        self._position = 0
        self._assembler = assembler
        self._parts_sent = 0
        self._create_task: Optional[asyncio.Task[str]] = None
        self._upload_id: Optional[str] = None
        self._window: Optional[asyncio.Semaphore] = None
        self._width: Optional[UploadWindow] = None
        self._debt = 0  # slots to take back from the window (it narrowed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._etags: dict[int, str] = {}
        # Part CRC32s, when the upload was created with ChecksumAlgorithm=CRC32.
        self._crcs: Optional[dict[int, str]] = None
        self._trailers = False  # parts' CRC32s are taken as they are sent (a trailer)
        self._part_sizes: dict[int, int] = {}
        self._error: Optional[S3Exception] = None
        self._abort_task: Optional[asyncio.Task[None]] = None
        self._close_lock: Optional[asyncio.Lock] = None

    def __repr__(self) -> str:
        return (
            f"<AsyncS3Writer s3://{self.bucket}/{self.key} {self._state.name.lower()}>"
        )

    # -- state --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the writer was committed, aborted or failed."""
        return self._state is not _State.OPEN

    @property
    def upload_id(self) -> Optional[str]:
        """The multipart upload id, once a multipart upload was started."""
        return self._upload_id

    def tell(self) -> int:
        """Bytes accepted so far."""
        return self._position

    def _parts(self) -> PartAssembler:
        if self._assembler is None:
            config = self._client.s3client_config
            validate_for_use(config)  # raises S3Exception naming a bad part_size
            self._assembler = PartAssembler(int(config.part_size))
        return self._assembler

    def _check_open(self) -> None:
        """Raise if the writer cannot take data: closed, failed, or a part failed meanwhile."""
        if self._state is _State.FAILED and self._error is not None:
            raise self._error
        if self._state is not _State.OPEN:
            raise ValueError(CLOSED_FILE)
        if self._error is not None:  # a part failed in the background
            raise self._error

    async def _check_usable(self) -> None:
        # Like _check_open, but makes sure a failed upload has been aborted before raising.
        if self._error is not None and self._state in (_State.OPEN, _State.FAILED):
            await self._fail(self._error)
        self._check_open()

    # -- writing ------------------------------------------------------------------------------

    async def write(self, data: Any) -> int:
        """Buffer ``data``; full parts upload in the background. See ``S3Writer.write``.

        ``data`` may be any buffer-protocol object; it is copied, so the caller may reuse it.

        Returns:
            The number of bytes written (``memoryview(data).nbytes``).

        Raises:
            S3Exception: An upload request failed (then every later call raises it too).
            ValueError: The writer is closed.
            TypeError: ``data`` is not bytes-like.
        """
        view = as_byte_view(data)
        await self._check_usable()
        size = len(view)
        try:
            parts = self._parts()
            pos = 0
            while pos < size:
                if parts.held is not None:
                    await self._put_part(parts.take_held())
                pos = parts.feed(view, pos)
        except BaseException as exc:
            await self._fail(exc)
            raise
        self._position += size
        return size

    async def _put_part(self, data: memoryview, *, last: bool = False) -> None:
        """Upload ``data`` as the next part (``last``: the final one). Waits for a window slot.

        Callers hand over ownership of ``data`` (it is not copied).
        """
        self._check_open()
        if not last and len(data) < MIN_PART_SIZE:
            raise ValueError(
                f"a part followed by more data must be at least {MIN_PART_SIZE} bytes, "
                f"got {len(data)}"
            )
        if self._window is None:
            config = self._client.s3client_config
            gbps, part_size = config.throughput_target_gbps, config.part_size
            self._width = UploadWindow(
                upload_concurrency_for(gbps, part_size),
                upload_window_reach(gbps, part_size),
                gbps * 1e9 / 8,
            )
            self._window = asyncio.Semaphore(self._width.width)
        if self._create_task is None:
            self._create_task = asyncio.ensure_future(self._create_upload())
        if self._upload_id is None:
            # Shielded: if we are cancelled now, the abort still learns the upload id.
            self._upload_id = await asyncio.shield(self._create_task)
        crc: Optional[asyncio.Future[str]] = None
        if self._crcs is not None:
            crc = self._part_crc(data)  # None: taken while the part is sent
        try:
            await self._window.acquire()
        except BaseException:
            if crc is not None:
                crc.cancel()
            raise
        if self._error is not None:
            self._window.release()
            if crc is not None:
                crc.cancel()
            raise self._error
        self._parts_sent += 1
        assert self._width is not None
        task = asyncio.ensure_future(
            self._upload_part(self._parts_sent, data, crc, self._width.epoch)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _part_crc(self, data: memoryview) -> Optional[asyncio.Future[str]]:
        """The base64 CRC32 of ``data``: the one taken while copying it, else computed now.

        ``None``: it is taken while the part is sent (the client's ``upload_part_crc32``).
        """
        known = None if self._assembler is None else self._assembler.crc_of(data)
        if known is None:
            if self._trailers:
                return None
            # Hashed (on a worker thread) while the part waits for a window slot, so a freed
            # slot's next request goes out without waiting for it.
            return asyncio.ensure_future(crc32_b64_async(data))
        done = asyncio.get_running_loop().create_future()
        done.set_result(crc32_to_b64(known))
        return done

    async def _create_upload(self) -> str:
        if (await self._client.checksum_policy()).send:
            self._crcs = {}
            self._trailers = await self._client.upload_trailers()
        return await self._client.create_multipart_upload(
            self.bucket,
            self.key,
            storage_class=self.storage_class,
            checksum_algorithm=None if self._crcs is None else "CRC32",
        )

    async def _upload_part(
        self,
        part_number: int,
        data: memoryview,
        crc_future: Optional[asyncio.Future[str]],
        epoch: int,
    ) -> None:
        assert self._upload_id is not None
        assert self._window is not None
        try:
            crc: Optional[str] = None
            if self._crcs is not None and crc_future is not None:
                crc = self._crcs[part_number] = await crc_future
                self._part_sizes[part_number] = len(data)
            loop = asyncio.get_running_loop()
            started = loop.time()
            if self._crcs is not None and crc_future is None:
                etag, crc = await self._client.upload_part_crc32(
                    self.bucket, self.key, self._upload_id, part_number, data
                )
                self._crcs[part_number] = crc
                self._part_sizes[part_number] = len(data)
            else:
                etag = await self._client.upload_part(
                    self.bucket,
                    self.key,
                    self._upload_id,
                    part_number,
                    data,
                    checksum_crc32=crc,
                )
            self._etags[part_number] = etag
            self._measured(epoch, len(data), loop.time() - started)
            if self._assembler is not None:
                # Only after success: a failed attempt's bytes may still sit in a closing
                # socket's buffer, so that buffer is never reused.
                self._assembler.recycle(data)
        except Exception as exc:
            # Surfaced by the next write() or aclose(), which then aborts the upload.
            if self._error is None:
                self._error = _as_failure(exc, self.bucket, self.key, "UploadPart")
            logger.debug(
                "UploadPart %d of s3://%s/%s failed: %r",
                part_number,
                self.bucket,
                self.key,
                exc,
            )
        finally:
            if self._debt:
                self._debt -= 1  # the window narrowed: this slot is not given back
            else:
                self._window.release()

    def _measured(self, epoch: int, nbytes: int, seconds: float) -> None:
        """Feed a finished part's time to the window's width; apply a new width at once."""
        width = self._width
        assert width is not None
        assert self._window is not None
        if width.settled:
            return
        before = width.width
        width.record(epoch, nbytes, seconds)
        change = width.width - before
        if change < 0:
            self._debt -= change
        for _ in range(change):
            if self._debt:
                self._debt -= 1
            else:
                self._window.release()

    # -- commit / abort -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Upload what is buffered and commit the object; idempotent. See ``S3Writer.close``.

        Raises:
            S3Exception: An upload request failed; the upload was aborted and no object was
                written (an existing object is kept).
        """
        await self.commit(None)

    async def commit(self, tail: Optional[Sequence[memoryview]] = None) -> None:
        """Upload ``tail`` and commit the object; idempotent once committed or aborted.

        ``tail`` is the data not yet handed to :meth:`put_part`, as buffers the writer now owns
        (all but the last must be full parts); ``None`` takes it from the assembler.

        Raises:
            S3Exception: An upload request failed; the upload was aborted and no object was
                written (an existing object is kept).
        """
        if self._close_lock is None:
            self._close_lock = asyncio.Lock()
        async with self._close_lock:
            if self._state in (_State.COMMITTED, _State.ABORTED):
                return
            await self._check_usable()
            if tail is None:
                tail = [] if self._assembler is None else self._assembler.drain()
            await self._commit(tail)

    async def put_part(self, data: memoryview) -> None:
        """Upload ``data``, a full part the writer now owns, as the next part.

        For callers that cut parts themselves; returns once the part is queued (it uploads in
        the background, at most ``upload_window_reach(...)`` at a time). Its buffer goes
        back to the assembler after a successful upload.

        Raises:
            S3Exception: This or an earlier part failed; the upload was aborted.
            ValueError: The writer is closed, or ``data`` is smaller than S3's minimum part.
        """
        await self._check_usable()
        try:
            await self._put_part(data)
        except BaseException as exc:
            await self._fail(exc)
            raise

    async def _commit(self, pieces: Sequence[memoryview]) -> None:
        """Commit with ``pieces`` as the remaining data (all but the last are full parts)."""
        try:
            self._check_open()  # a part may have failed in the background
            if self._create_task is None and len(pieces) <= 1:
                data: Union[bytes, memoryview] = pieces[0] if pieces else b""
                known = None
                if pieces and self._assembler is not None:
                    known = self._assembler.crc_of(pieces[0])
                if known is not None and (await self._client.checksum_policy()).send:
                    checksum: Optional[str] = crc32_to_b64(known)
                else:
                    checksum = None  # computed by the client if the policy says so
                await self._final(
                    self._client.put_object_bytes(
                        self.bucket,
                        self.key,
                        data,
                        storage_class=self.storage_class,
                        if_none_match=self.if_none_match,
                        checksum_crc32=checksum,
                    )
                )
            else:
                for piece in pieces[:-1]:
                    await self._put_part(piece)
                if pieces:
                    await self._put_part(pieces[-1], last=True)
                if self._tasks:
                    await asyncio.gather(*self._tasks)
                if self._error is not None:
                    raise self._error
                assert self._upload_id is not None
                parts = sorted(self._etags.items())
                if [n for n, _ in parts] != list(range(1, self._parts_sent + 1)):
                    raise S3Exception(
                        f"internal error: parts {parts} do not match {self._parts_sent}"
                    )
                await self._final(
                    self._client.complete_multipart_upload(
                        self.bucket,
                        self.key,
                        self._upload_id,
                        parts,
                        if_none_match=self.if_none_match,
                        checksums=self._crcs,
                        full_crc32=self._full_crc32(),
                    )
                )
        except BaseException as exc:
            await self._fail(exc)
            raise
        self._state = _State.COMMITTED

    def _full_crc32(self) -> Optional[str]:
        """The whole object's CRC32, combined from the parts' (``None`` without checksums)."""
        if self._crcs is None:
            return None
        total = 0
        for number in range(1, self._parts_sent + 1):
            part = crc32_from_b64(self._crcs[number])
            assert part is not None  # computed here
            total = crc32_combine(total, part, self._part_sizes[number])
        return crc32_to_b64(total)

    async def _final(self, request: Awaitable[T]) -> T:
        """Send the committing request and learn its outcome even if we are cancelled.

        Once PutObject or CompleteMultipartUpload is on the wire S3 may apply it, so it is
        never cut short: a cancellation waits for the answer and is re-raised afterwards.
        """
        task = asyncio.ensure_future(request)
        if await settle(task):
            if not task.cancelled() and task.exception() is None:
                self._state = _State.COMMITTED
            raise asyncio.CancelledError
        return task.result()

    async def abort(self) -> None:
        """Discard the buffered data and abort the upload; no object is written. Idempotent.

        Does nothing after a successful commit. The abort runs shielded from cancellation.
        """
        if self._state is _State.OPEN:
            self._state = _State.ABORTED
        await self._cleanup()

    async def _fail(self, exc: BaseException) -> None:
        if self._state is _State.COMMITTED:
            return
        if self._error is None:
            self._error = _as_failure(exc, self.bucket, self.key, "PutObject")
        if self._state is _State.OPEN:
            self._state = _State.FAILED
        await self._cleanup()

    async def _cleanup(self) -> None:
        if self._state is _State.COMMITTED:
            return
        if self._assembler is not None:
            self._assembler.forget()  # drop buffered data
        if self._abort_task is None:
            self._abort_task = asyncio.ensure_future(self._abort_upload())
        if await settle(self._abort_task):
            raise asyncio.CancelledError

    async def _abort_upload(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._upload_id is None and self._create_task is not None:
            try:
                self._upload_id = await self._create_task
            except (Exception, asyncio.CancelledError):
                return  # no upload was created
        if self._upload_id is None:
            return
        try:
            await self._client.abort_multipart_upload(
                self.bucket, self.key, self._upload_id
            )
        except Exception as exc:
            logger.warning(
                "Could not abort multipart upload %s of s3://%s/%s: %s",
                self._upload_id,
                self.bucket,
                self.key,
                exc,
            )
        else:
            logger.debug(
                "Aborted multipart upload %s of s3://%s/%s",
                self._upload_id,
                self.bucket,
                self.key,
            )

    # -- context manager ----------------------------------------------------------------------

    async def __aenter__(self) -> AsyncS3Writer:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None:
            await self.aclose()
            return
        logger.info(
            "Exception occurred before closing stream: %s: %s; aborting s3://%s/%s",
            exc_type.__name__,
            exc,
            self.bucket,
            self.key,
        )
        await self.abort()
