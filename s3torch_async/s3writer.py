"""``S3Writer``: the reference's write-only file object, over the async core's ``AsyncS3Writer``.

Small writes (``torch.save`` issues many) are buffered on the caller's thread; only full parts
cross to the event-loop thread, where they upload in the background while the caller keeps
producing. ``close()`` uploads the rest and commits the object.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - registers its exit hook before ours
import io
import logging
import threading
import warnings
from types import TracebackType
from typing import Any, Optional

from ._bridge import Bridge, WriterHandle
from ._config import S3ClientConfig, validate_for_use
from ._core.writer import PartAssembler, as_byte_view
from ._runner import get_runner

__all__ = ["PutObjectStream", "S3Writer"]

logger = logging.getLogger(__name__)

_CLOSED_FILE = "I/O operation on closed file."


class PutObjectStream:
    """The stream behind ``S3Writer.stream``: buffers parts and drives an ``AsyncS3Writer``.

    Mirrors the reference's ``PutObjectStream`` (``write``, ``close``, ``bucket``, ``key``) and
    adds ``abort``. Not thread-safe; ``S3Writer`` serialises ``close``.

    Args:
        bridge: How to reach the event loop (``S3Client.bridge``).
        config: The client's configuration (its ``part_size`` cuts the parts).
        bucket: Bucket name.
        key: Object key.
        storage_class: S3 storage class, if any.

    Attributes:
        bucket: Bucket name.
        key: Object key.
        storage_class: S3 storage class, if any.
    """

    def __init__(
        self,
        bridge: Bridge,
        config: S3ClientConfig,
        bucket: str,
        key: str,
        storage_class: Optional[str] = None,
    ) -> None:
        self._bridge = bridge
        self._config = config
        self.bucket = bucket
        self.key = key
        self.storage_class = storage_class
        self._upload: Optional[WriterHandle] = None
        self._assembler: Optional[PartAssembler] = None
        self._done = False

    def write(self, data: Any) -> int:
        """Buffer ``data`` (any bytes-like object); hand full parts to the upload.

        Returns:
            The number of bytes written.

        Raises:
            S3Exception: A part upload failed (the upload has been aborted).
            ValueError: The stream was closed or aborted.
        """
        view = as_byte_view(data)
        if self._done:
            raise ValueError(_CLOSED_FILE)
        parts = self._parts()
        size = len(view)
        pos = 0
        while pos < size:
            if parts.held is not None:
                self._writer().put_part(parts.take_held())
            pos = parts.feed(view, pos)
        return size

    def _parts(self) -> PartAssembler:
        if self._assembler is None:
            validate_for_use(self._config)  # raises S3Exception naming a bad part_size
            self._assembler = PartAssembler(int(self._config.part_size))
        return self._assembler

    def _writer(self) -> WriterHandle:
        if self._upload is None:
            # Uploaded parts' buffers come back to our assembler.
            self._upload = self._bridge.writer(
                self.bucket, self.key, self.storage_class, self._assembler
            )
        return self._upload

    def _drain(self) -> list[memoryview]:
        return [] if self._assembler is None else self._assembler.drain()

    def close(self) -> None:
        """Upload the buffered data and commit the object.

        Raises:
            S3Exception: The upload failed; it was aborted and no object was written.
            ValueError: The stream was already closed or aborted.
        """
        if self._done:
            raise ValueError(_CLOSED_FILE)
        self._done = True
        self._writer().commit(self._drain())

    def abort(self) -> None:
        """Discard the buffered data and abort the upload; no object is written."""
        self._done = True
        self._drain()
        if self._upload is not None:
            self._upload.abort()

    def commit_in_background(self) -> None:
        """Commit what was written without blocking the caller (from a finalizer).

        A helper thread does the blocking call, so a finalizer that runs on the event-loop
        thread, or while the runner's lock is held, cannot deadlock; interpreter exit joins it.
        """
        if self._done:
            return
        self._done = True
        thread = threading.Thread(
            target=_commit_now,
            args=(self, self._writer(), self._drain()),
            name="s3torch-async-commit",
            daemon=True,
        )
        with _commits_lock:
            _pending_commits.add(thread)
        get_runner().prepare_background_work()
        thread.start()


_commits_lock = threading.Lock()
_pending_commits: set[threading.Thread] = set()


def _commit_now(
    stream: PutObjectStream, upload: WriterHandle, tail: list[memoryview]
) -> None:
    try:
        upload.commit(tail)
    except BaseException:
        logger.exception(
            "Committing s3://%s/%s of a writer that was never closed failed",
            stream.bucket,
            stream.key,
        )
    finally:
        with _commits_lock:
            _pending_commits.discard(threading.current_thread())


def _join_pending_commits(timeout: float = 60.0) -> None:
    """At exit, wait for background commits to finish."""
    with _commits_lock:
        threads = list(_pending_commits)
    for thread in threads:
        thread.join(timeout)


# The commit may need the event loop's default executor (aiobotocore builds SSL contexts in a
# thread), which concurrent.futures shuts down in threading's own exit hooks, before atexit
# runs. So wait for pending commits in a threading exit hook registered after
# concurrent.futures' (they run in reverse order); plain atexit is the fallback.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_join_pending_commits)
else:  # pragma: no cover - every supported CPython has it
    atexit.register(_join_pending_commits)


class S3Writer(io.BufferedIOBase):
    """A write-only, file-like representation of a single object stored in S3.

    Get one from ``S3Client.put_object`` or ``S3Checkpoint.writer``. The object appears
    atomically when the writer is closed: ``close()`` (or leaving a ``with`` block normally)
    uploads the rest and commits the upload. ``write()`` returns as soon as the data is
    buffered; full parts upload in the background, several at once, while the caller keeps
    writing.

    Differences from the reference connector, both deliberate:

    * Leaving a ``with`` block because of an exception (including ``KeyboardInterrupt``)
      **aborts** the upload: the exception is logged at INFO as in the reference and
      re-raised unchanged, no object is written, any existing object is kept, no multipart
      upload is left behind, and the writer is closed. The reference left the upload
      unfinished instead.
    * ``__enter__`` does not reset :meth:`tell` to 0: ``tell()`` always counts the bytes
      written.

    A writer that is garbage-collected without being closed is committed, as ``io`` objects
    (and the reference) do, but in the background, with a ``ResourceWarning``; use ``with`` or
    :meth:`close` to know when the object exists. Not thread-safe except for :meth:`close`.

    Args:
        stream: The upload stream (``S3Client.put_object`` builds it); any object with
            ``write(bytes)`` and ``close()``, and optionally ``abort()``.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._position = 0
        self._closed = False
        self._lock = threading.Lock()

    def write(self, data: Any) -> int:  # type: ignore[override]
        """Write bytes to the S3 object specified by bucket and key.

        Args:
            data: Bytes to write: ``bytes``, ``bytearray``, ``memoryview`` or any object
                supporting the buffer protocol. It is copied; the caller may reuse it.

        Returns:
            int: The number of bytes written.

        Raises:
            S3Exception: An error occurred accessing S3.
            ValueError: If the writer is closed.
        """
        if self._closed:
            raise ValueError(_CLOSED_FILE)
        if isinstance(self.stream, PutObjectStream):
            size = self.stream.write(data)
        else:
            view = as_byte_view(data)
            size = len(view)
            self.stream.write(data if isinstance(data, bytes) else view.tobytes())
        self._position += size
        return size

    def close(self) -> None:
        """Close the write-stream to S3, committing the object. Idempotent and thread-safe.

        Raises:
            S3Exception: An error occurred accessing S3; no object was written.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.stream.close()

    def _abort(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            abort = getattr(self.stream, "abort", None)
            if abort is not None:
                abort()

    @property
    def closed(self) -> bool:  # type: ignore[override]
        """bool: Whether the writer is closed."""
        return self._closed

    def flush(self) -> None:
        """No-op (also on a closed writer): data is uploaded in parts and at close."""

    def readable(self) -> bool:
        """Whether the object was opened for reading.

        Returns:
            bool: Always False.
        """
        return False

    def writable(self) -> bool:
        """Whether the object is open for writing.

        Returns:
            bool: True until the writer is closed.
        """
        return not self._closed

    def seekable(self) -> bool:
        """Whether the stream supports seeking.

        Returns:
            bool: Always False.
        """
        return False

    def tell(self) -> int:
        """The current stream position: the number of bytes written (also after close).

        Returns:
            int: Current stream position.
        """
        return self._position

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None:
            self.close()
            return
        logger.info(
            "Exception occurred before closing stream: %s: %s",
            exc_type.__name__,
            exc_val,
        )
        try:
            self._abort()
        except BaseException as abort_exc:  # never mask the original exception
            logger.warning(
                "Could not abort the upload after %s: %r", exc_type.__name__, abort_exc
            )

    def __del__(self) -> None:
        # As io.IOBase (and so the reference) does, an unclosed writer is committed when it is
        # collected, so `torch.save(obj, checkpoint.writer(uri))` keeps working; but the
        # commit runs in the background instead of blocking inside a finalizer.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        stream = getattr(self, "stream", None)
        where = ""
        if isinstance(stream, PutObjectStream):
            where = f" for s3://{stream.bucket}/{stream.key}"
            try:
                stream.commit_in_background()
            except Exception:  # e.g. during interpreter shutdown: nothing left to do
                logger.debug("could not schedule the commit%s", where, exc_info=True)
        warnings.warn(
            f"S3Writer{where} was garbage-collected without close(); committing it in the "
            "background. Use `with` or close() to commit synchronously.",
            ResourceWarning,
            stacklevel=2,
        )
