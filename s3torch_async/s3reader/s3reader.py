"""The ``S3Reader`` abstract base class (reference module path)."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from io import SEEK_SET
from typing import Any, Optional

__all__ = ["S3Reader"]


class S3Reader(ABC, io.BufferedIOBase):
    """An abstract base class for a read-only, file-like view of one S3 object.

    Concrete readers are ``SequentialS3Reader``, ``RangedS3Reader`` and
    ``DCPOptimizedS3Reader``. ``S3ReaderConstructor`` builds partial constructors of them that
    ``S3Client.get_object`` completes with ``bucket``, ``key``, ``get_object_info`` and
    ``get_stream``. Readers are seekable, not writable, and not safe for concurrent use by
    several threads.
    """

    @property
    @abstractmethod
    def bucket(self) -> str:
        """The object's bucket."""

    @property
    @abstractmethod
    def key(self) -> str:
        """The object's key."""

    @abstractmethod
    def read(self, size: Optional[int] = None) -> bytes:
        """Read and return up to ``size`` bytes; all remaining bytes if omitted or negative.

        Returns ``b""`` at the end of the object.
        """

    @abstractmethod
    def seek(self, offset: int, whence: int = SEEK_SET, /) -> int:
        """Change the stream position and return the new absolute position.

        ``whence`` is 0 (start of the object), 1 (current position) or 2 (end of object).
        """

    @abstractmethod
    def tell(self) -> int:
        """Return the current stream position."""

    @abstractmethod
    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into the writable buffer ``buf``; return the count."""

    def seekable(self) -> bool:
        """Return whether the object supports seek operations (always True).

        Returns:
            bool: True.
        """
        return True

    def readable(self) -> bool:
        """Return whether the object was opened for reading (always True).

        Returns:
            bool: True.
        """
        return True

    def writable(self) -> bool:
        """Return whether the object was opened for writing (always False).

        Returns:
            bool: False.
        """
        return False


def check_read_size(size: Any) -> None:
    """Raise the reference's ``TypeError`` for a ``read`` size that is not an int or None."""
    if size is not None and not isinstance(size, int):
        raise TypeError(f"argument should be integer or None, not {type(size)!r}")


def check_open(reader: io.IOBase) -> None:
    """Raise ``ValueError("I/O operation on closed file.")`` on a closed reader."""
    if reader.closed:
        raise ValueError("I/O operation on closed file.")


def ranged_writable(buf: Any) -> memoryview:
    """``buf`` as a flat byte view, or the ranged/DCP readers' ``TypeError``."""
    try:
        view = memoryview(buf)
    except TypeError:
        view = None
    if view is None or view.readonly or not view.c_contiguous:
        raise TypeError(
            f"argument must be a writable bytes-like object, not {type(buf).__name__}"
        )
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def sequential_writable(buf: Any) -> memoryview:
    """``buf`` as a flat byte view, or ``io.BytesIO.readinto``'s ``TypeError``."""
    try:
        view = memoryview(buf)
    except TypeError:
        view = None
    if view is None or view.readonly or not view.c_contiguous:
        name = "None" if buf is None else type(buf).__name__
        raise TypeError(
            f"readinto() argument must be read-write bytes-like object, not {name}"
        )
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def resolve_seek(
    offset: Any,
    whence: Any,
    position: int,
    size_if_known: Optional[int],
    get_size: Any,
) -> Optional[int]:
    """Apply the reference's seek rules; return the unclamped target, or None for a no-op.

    Validation order and messages follow the reference: a non-int ``offset`` is a
    ``TypeError``; ``SEEK_END`` needs the size (``get_size()``); ``SEEK_CUR`` at the end with
    ``offset >= 0`` changes nothing; an int ``whence`` outside 0..2 is a ``ValueError``, any
    other type a ``TypeError``; a negative result is a ``ValueError``.
    """
    if not isinstance(offset, int):
        raise TypeError(f"integer argument expected, got {type(offset)!r}")
    if whence == io.SEEK_END:
        size = int(get_size())
        if offset >= 0:
            return size
        target = size + offset
    elif whence == io.SEEK_CUR:
        if size_if_known is not None and position == size_if_known and offset >= 0:
            return None
        target = position + offset
    elif whence == io.SEEK_SET:
        target = offset
    elif isinstance(whence, int):
        raise ValueError("Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END")
    else:
        raise TypeError(f"integer argument expected, got {type(whence)!r}")
    if target < 0:
        raise ValueError(f"negative seek value {target}")
    return target
