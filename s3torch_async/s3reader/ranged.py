"""``RangedS3Reader``: ranged GETs for sparse partial reads (reference module path)."""

from __future__ import annotations

from io import SEEK_SET
from typing import Any, Callable, Optional, Union

from .._core._object import ObjectVersion
from .._core.reader import alloc_bytes, drop_view, finish_bytes
from .._types import HeadObjectResult, ObjectInfo
from ._backend import Backend, ObjectSize
from .s3reader import (
    S3Reader,
    check_open,
    check_read_size,
    ranged_writable,
    resolve_seek,
)

__all__ = ["DEFAULT_BUFFER_SIZE", "RangedS3Reader"]

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024

# Largest read allocated before the object's size is known (a bigger one asks for the size).
_MAX_UNSIZED_READ = 64 * 1024 * 1024


class RangedS3Reader(ObjectSize, S3Reader):
    """Range-based S3 reader with an adaptive buffer, for sparse partial reads of large objects.

    Each read requests only the bytes asked for:

    * Reads smaller than ``buffer_size`` load ``buffer_size`` bytes from the read position
      into an internal buffer and copy out of it, so nearby small reads cost no request.
    * Reads of ``buffer_size`` bytes or more bypass the buffer: one ranged GET (split into
      parallel ``part_size`` requests when larger) straight into the destination.
    * A read that starts inside the buffer and extends past it takes the overlap from the
      buffer and handles only the remainder as above.
    * ``buffer_size=0`` disables the buffer; ``None`` means 8 MiB.

    The buffer is allocated on first use, the reader pickles at any point, and the object's
    size comes from the first response, from listing information or, when a seek needs it,
    from one HEAD; ``read(0)`` sends nothing.

    Args:
        bucket: Bucket name.
        key: Object key.
        get_object_info: Returns the object's ``ObjectInfo``/``HeadObjectResult``.
        get_stream: ``get_stream(start=None, end=None)`` from ``S3Client``.
        buffer_size: Internal buffer size in bytes; ``None`` for 8 MiB, 0 to disable.

    Raises:
        ValueError: ``bucket`` is empty.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]],
        get_stream: Callable[..., Any],
        buffer_size: Optional[int] = None,
    ) -> None:
        if not bucket:
            raise ValueError("Bucket should be specified")
        self._bucket = bucket
        self._key = key
        self._get_object_info = get_object_info
        self._get_stream = get_stream
        self._version = ObjectVersion()
        self._position = 0
        if buffer_size is None:
            self._buffer_size = DEFAULT_BUFFER_SIZE
            self._enable_buffering = True
        else:
            self._buffer_size = buffer_size
            self._enable_buffering = buffer_size > 0
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._backend: Optional[Backend] = None
        self._buffer: Optional[bytearray] = None
        self._buffer_view: Optional[memoryview] = None
        self._buffer_start = 0
        self._buffer_end = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_backend", "_buffer", "_buffer_view"):
            state[name] = None
        state["_buffer_start"] = state["_buffer_end"] = 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_buffers()

    # -- size and backend -------------------------------------------------------------------

    def _get_backend(self) -> Backend:
        if (
            self._backend is None
            and getattr(self._get_stream, "prefetched", None) is not None
        ):
            # Already in memory: copy straight from it, never through the buffer.
            self._enable_buffering = False
        return super()._get_backend()

    def _size_for_read(self, length: Optional[int]) -> Optional[int]:
        """The size, fetched first if this read cannot learn it from its own response."""
        size = self._known_size()
        if size is not None:
            return size
        if (
            length is None
            or not self._get_backend().learns_size
            or length > _MAX_UNSIZED_READ
        ):
            return self._get_size()
        return None

    # -- reading ----------------------------------------------------------------------------

    def _load_buffer(self, start: int) -> None:
        if self._buffer_view is None:
            self._buffer = bytearray(self._buffer_size)
            self._buffer_view = memoryview(self._buffer)
        size = self._known_size()
        end = (
            start + self._buffer_size
            if size is None
            else min(start + self._buffer_size, size)
        )
        nbytes = self._get_backend().get_into(start, self._buffer_view[: end - start])
        self._buffer_start, self._buffer_end = start, start + nbytes

    def _read_buffered(self, view: memoryview, start: int, end: int) -> int:
        if start < self._buffer_start or end > self._buffer_end:
            self._load_buffer(start)
        assert self._buffer_view is not None
        offset = start - self._buffer_start
        length = max(0, min(end, self._buffer_end) - start)
        view[:length] = self._buffer_view[offset : offset + length]
        return length

    def _read_unbuffered(self, view: memoryview, start: int, end: int) -> int:
        nbytes = self._get_backend().get_into(start, view[: end - start])
        size = self._known_size()
        if (
            self._enable_buffering
            and size is not None
            and end > size
            and size - start < self._buffer_size
        ):
            # The size was unknown when this read was planned; with it known the read would
            # have gone through the buffer, so leave the buffer as that would have.
            if self._buffer_view is None:
                self._buffer = bytearray(self._buffer_size)
                self._buffer_view = memoryview(self._buffer)
            self._buffer_view[:nbytes] = view[:nbytes]
            self._buffer_start, self._buffer_end = start, start + nbytes
        return nbytes

    def _read_range(self, view: memoryview, start: int, end: int) -> int:
        done = 0
        if self._buffer_start <= start < self._buffer_end <= end:
            # Forward overlap: the buffer holds the head of the range.
            done = self._read_buffered(view, start, self._buffer_end)
            start = self._buffer_end
            view = view[done:]
        if start < end:
            if end - start >= self._buffer_size or not self._enable_buffering:
                done += self._read_unbuffered(view, start, end)
            else:
                done += self._read_buffered(view, start, end)
        self._position += done
        return done

    def read(self, size: Optional[int] = None) -> bytes:
        """Read up to ``size`` bytes from the current position.

        If ``size`` is zero or positive, read that many bytes or until the end of the object;
        if ``size`` is None or negative, read until the end of the object.

        Args:
            size: How many bytes to read.

        Returns:
            bytes: Bytes read (``b""`` at the end).

        Raises:
            TypeError: ``size`` is not an int or None.
            ValueError: The reader is closed.
            S3Exception: An error occurred accessing S3.
        """
        check_read_size(size)
        check_open(self)
        if size == 0:
            return b""
        start = self._position
        known = self._known_size()
        if known is not None and start >= known:
            return b""
        whole = size is None or size < 0
        total = self._size_for_read(None if whole else size)
        if whole:
            assert total is not None
            end = total
        else:
            assert size is not None
            end = start + size if total is None else min(start + size, total)
        if start >= end:
            return b""
        prefetched = getattr(self._get_stream, "prefetched", None)
        if (
            start == 0
            and prefetched is not None
            and type(prefetched.data) is bytes
            and len(prefetched.data) == end
        ):
            # The whole object is already in memory as immutable bytes: no copy needed.
            self._get_backend()
            self._position = end
            return prefetched.data
        bio, view = alloc_bytes(end - start)
        try:
            nbytes = self._read_range(view, start, end)
        except BaseException as exc:
            drop_view(view, exc)
            raise
        return finish_bytes(bio, view, nbytes)

    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into the writable bytes-like object ``buf``.

        Args:
            buf: A writable bytes-like object.

        Returns:
            int: Number of bytes read; 0 at the end of the object or for an empty ``buf``.

        Raises:
            TypeError: ``buf`` is not a writable bytes-like object.
            ValueError: The reader is closed.
            S3Exception: An error occurred accessing S3.
        """
        view = ranged_writable(buf)
        check_open(self)
        if not len(view):
            return 0
        start = self._position
        known = self._known_size()
        if known is not None and start >= known:
            return 0
        total = self._size_for_read(len(view))
        end = start + len(view) if total is None else min(start + len(view), total)
        if start >= end:
            return 0
        return self._read_range(view, start, end)

    # -- positioning ------------------------------------------------------------------------

    def seek(self, offset: int, whence: int = SEEK_SET, /) -> int:
        """Change the stream position to ``offset``, interpreted relative to ``whence``.

        Seeking past the end stays at the end; seeking before the start is an error. No
        data is fetched.

        Args:
            offset: How many bytes to move relative to ``whence``.
            whence: ``SEEK_SET`` (default), ``SEEK_CUR`` or ``SEEK_END``.

        Returns:
            int: The new position.

        Raises:
            TypeError: ``offset`` or ``whence`` is not an int.
            ValueError: The result would be negative, ``whence`` is unknown, or the reader is
                closed.
            S3Exception: An error occurred accessing S3 (a HEAD for the size).
        """
        check_open(self)
        target = resolve_seek(
            offset, whence, self._position, self._known_size(), self._get_size
        )
        if target is None:
            return self._position
        size = self._known_size()
        if size is None and target > self._buffer_end:
            size = self._get_size()
        if size is not None:
            target = min(target, size)
        self._position = target
        return target

    def tell(self) -> int:
        """Return the current stream position (also after ``close()``).

        Returns:
            int: Current stream position.
        """
        return self._position

    def close(self) -> None:
        """Release the buffer; the reader cannot be read afterwards."""
        # getattr: also runs from the finalizer of a reader whose __init__ raised.
        backend = getattr(self, "_backend", None)
        if not self.closed and backend is not None:
            backend.close()
            self._reset_buffers()
        super().close()
