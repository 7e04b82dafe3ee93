"""``AsyncS3Writer``: buffered upload of one object, atomic at commit, aborted on any failure.

An object that fits in one part (``part_size`` bytes, total at close) is sent as one PutObject
at :meth:`AsyncS3Writer.aclose`. A larger one becomes a multipart upload: CreateMultipartUpload
when the first full part is followed by more data, then up to ``client.max_concurrency`` parts
in flight while the caller keeps writing (``write()`` waits when the window is full), then
CompleteMultipartUpload with the parts in order. Memory is bounded by
``part_size x in-flight parts + one filling buffer``.

Nothing becomes visible before the commit. An error from any request, an exception inside
``async with``, or cancellation cancels the in-flight parts and aborts the multipart upload;
that cleanup runs shielded from cancellation, so no multipart upload is left pending.

Buffers: each part is filled in an ``io.BytesIO``; ``getvalue()`` hands its storage over as
``bytes`` without a copy, and botocore wraps ``bytes`` bodies in a ``BytesIO`` (again without a
copy) that aiohttp streams in chunks. A ``bytearray`` body would avoid nothing: botocore passes
it straight to aiohttp, which warns (``ResourceWarning``) for raw bodies over 1 MiB.
"""

from __future__ import annotations

import asyncio
import enum
import io
import logging
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from .._config import validate_for_use
from .._errors import S3Exception
from ._planning import MAX_PARTS, MIN_PART_SIZE, part_size_for_part_number

if TYPE_CHECKING:
    from .client import AsyncS3Client

__all__ = ["AsyncS3Writer", "as_byte_view", "part_capacity"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED_FILE = "I/O operation on closed file."


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


async def _settle(task: asyncio.Future[Any]) -> bool:
    """Wait until ``task`` is done even if we are cancelled meanwhile.

    Returns whether a cancellation arrived while waiting (the caller must re-raise it).
    """
    interrupted = False
    while not task.done():
        interrupted |= await _wait_uncancellable(task)
    return interrupted


async def _wait_uncancellable(task: asyncio.Future[Any]) -> bool:
    try:
        await asyncio.wait([task])  # unlike ``await task``, never cancels ``task``
    except asyncio.CancelledError:
        return True
    return False


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
    """

    def __init__(
        self,
        client: AsyncS3Client,
        bucket: str,
        key: str,
        storage_class: Optional[str] = None,
        *,
        if_none_match: bool = False,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.key = key
        self.storage_class = storage_class
        self.if_none_match = if_none_match
        self._state = _State.OPEN
        self._position = 0
        self._part_size: Optional[int] = None
        # The part being filled, and a full part held back until more data shows that the
        # object needs a multipart upload (a total of exactly part_size is one PutObject).
        self._fill: Optional[io.BytesIO] = None
        self._fill_len = 0
        self._fill_cap = 0
        self._pending: Optional[bytes] = None
        self._parts_sent = 0
        self._create_task: Optional[asyncio.Task[str]] = None
        self._upload_id: Optional[str] = None
        self._window: Optional[asyncio.Semaphore] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._etags: dict[int, str] = {}
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

    def _base_part_size(self) -> int:
        if self._part_size is None:
            config = self._client.s3client_config
            validate_for_use(config)
            self._part_size = config.part_size
        return self._part_size

    def next_part_capacity(self) -> int:
        """Size of the next full part a caller hands over with ``_put_part``.

        Raises:
            S3Exception: The configuration is invalid, or the upload needs too many parts.
        """
        return part_capacity(self._parts_sent + 1, self._base_part_size())

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
            pos = 0
            while pos < size:
                if self._pending is not None:
                    part, self._pending = self._pending, None
                    await self._put_part(part)
                if self._fill is None:
                    self._fill_cap = self.next_part_capacity()
                    self._fill, self._fill_len = io.BytesIO(), 0
                take = min(size - pos, self._fill_cap - self._fill_len)
                self._fill.write(view[pos : pos + take])
                self._fill_len += take
                pos += take
                if self._fill_len == self._fill_cap:
                    self._pending = self._fill.getvalue()
                    self._fill = None
        except BaseException as exc:
            await self._fail(exc)
            raise
        self._position += size
        return size

    async def _put_part(self, data: bytes, *, last: bool = False) -> None:
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
            self._window = asyncio.Semaphore(max(1, self._client.max_concurrency))
        if self._create_task is None:
            self._create_task = asyncio.ensure_future(
                self._client.create_multipart_upload(
                    self.bucket, self.key, storage_class=self.storage_class
                )
            )
        if self._upload_id is None:
            # Shielded: if we are cancelled now, the abort still learns the upload id.
            self._upload_id = await asyncio.shield(self._create_task)
        await self._window.acquire()
        if self._error is not None:
            self._window.release()
            raise self._error
        self._parts_sent += 1
        task = asyncio.ensure_future(self._upload_part(self._parts_sent, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upload_part(self, part_number: int, data: bytes) -> None:
        assert self._upload_id is not None
        assert self._window is not None
        try:
            etag = await self._client.upload_part(
                self.bucket, self.key, self._upload_id, part_number, data
            )
            self._etags[part_number] = etag
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
            self._window.release()

    # -- commit / abort -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Upload what is buffered and commit the object; idempotent. See ``S3Writer.close``.

        Raises:
            S3Exception: An upload request failed; the upload was aborted and no object was
                written (an existing object is kept).
        """
        await self._close_with(None)

    async def _close_with(self, pieces: Optional[Sequence[bytes]]) -> None:
        """Commit; ``pieces`` (owned, all but the last full parts) replace the own buffers."""
        if self._close_lock is None:
            self._close_lock = asyncio.Lock()
        async with self._close_lock:
            if self._state in (_State.COMMITTED, _State.ABORTED):
                return
            await self._check_usable()
            if pieces is None:
                own: list[bytes] = []
                if self._pending is not None:
                    own.append(self._pending)
                if self._fill is not None and self._fill_len:
                    own.append(self._fill.getvalue())
                pieces = own
            self._pending, self._fill = None, None
            await self._commit(pieces)

    async def _put_owned(self, data: bytes) -> None:
        """Upload ``data``, a full part owned by the caller, as the next part (sync writer)."""
        await self._check_usable()
        if self._pending is not None or self._fill is not None:
            raise RuntimeError("_put_owned cannot be mixed with write()")
        try:
            await self._put_part(data)
        except BaseException as exc:
            await self._fail(exc)
            raise

    async def _commit(self, pieces: Sequence[bytes]) -> None:
        """Commit with ``pieces`` as the remaining data (all but the last are full parts)."""
        try:
            self._check_open()  # a part may have failed in the background
            if self._create_task is None and len(pieces) <= 1:
                data = pieces[0] if pieces else b""
                await self._final(
                    self._client.put_object_bytes(
                        self.bucket,
                        self.key,
                        data,
                        storage_class=self.storage_class,
                        if_none_match=self.if_none_match,
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
                    )
                )
        except BaseException as exc:
            await self._fail(exc)
            raise
        self._state = _State.COMMITTED

    async def _final(self, request: Awaitable[T]) -> T:
        """Send the committing request and learn its outcome even if we are cancelled.

        Once PutObject or CompleteMultipartUpload is on the wire S3 may apply it, so it is
        never cut short: a cancellation waits for the answer and is re-raised afterwards.
        """
        task = asyncio.ensure_future(request)
        if await _settle(task):
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
        self._pending, self._fill = None, None
        if self._abort_task is None:
            self._abort_task = asyncio.ensure_future(self._abort_upload())
        if await _settle(self._abort_task):
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
