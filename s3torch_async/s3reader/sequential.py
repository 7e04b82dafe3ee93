"""``SequentialS3Reader``: the default, general-purpose reader (reference module path)."""

from __future__ import annotations

from io import SEEK_END, SEEK_SET
from typing import Any, Callable, Optional, Union

from .._core._object import ObjectVersion
from .._core.reader import alloc_bytes, drop_view, finish_bytes
from .._types import HeadObjectResult, ObjectInfo
from ._backend import Backend, Chunk, Data, ObjectSize
from .s3reader import (
    S3Reader,
    check_open,
    check_read_size,
    resolve_seek,
    sequential_writable,
)

__all__ = ["SequentialS3Reader"]


class SequentialS3Reader(ObjectSize, S3Reader):
    """Sequential S3 reader: supports every access pattern, tuned for front-to-back reads.

    How bytes are fetched:

    * ``read()`` of the rest of the object fetches it with parallel ranged GETs written into
      one buffer that becomes the returned ``bytes`` (no second copy), and keeps it, so later
      backward seeks are free.
    * Smaller reads are served from the current part (``part_size`` bytes) without crossing to
      the I/O thread; while the caller reads front to back, the following parts are fetched
      ahead in the background (a window that grows to ``max_concurrency`` parts). Parts
      already consumed are released, so memory stays bounded however large the object is.
    * A read outside the current part after a backward seek fetches that part again.
    * After ``seek(..., SEEK_END)`` (``torch.load`` and zip readers do this before reading
      randomly), the first read that misses the current part loads the whole object in
      parallel, once.

    A reader built from listing information never sends HEAD; otherwise ``SEEK_END`` and
    seeks past the data seen so far send one HEAD to learn the size. Nothing is requested
    before the first read. The reader pickles at any point (buffers are dropped).

    Args:
        bucket: Bucket name.
        key: Object key.
        get_object_info: Returns the object's ``ObjectInfo``/``HeadObjectResult``.
        get_stream: ``get_stream(start=None, end=None)`` from ``S3Client``.

    Raises:
        ValueError: ``bucket`` is empty.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]],
        get_stream: Callable[..., Any],
    ) -> None:
        if not bucket:
            raise ValueError("Bucket should be specified")
        self._bucket = bucket
        self._key = key
        self._get_object_info = get_object_info
        self._get_stream = get_stream
        self._version = ObjectVersion()
        self._position = 0
        self._random_access = False
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._backend: Optional[Backend] = None
        self._chunk_start = 0
        self._chunk: Optional[memoryview] = None
        self._chunk_obj: Optional[Data] = None
        self._whole = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_backend", "_chunk", "_chunk_obj"):
            state[name] = None
        state["_whole"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_buffers()

    # -- size -------------------------------------------------------------------------------

    # -- local part -------------------------------------------------------------------------

    def _set_chunk(self, chunk: Optional[Chunk]) -> None:
        if chunk is None or chunk[1] is self._chunk_obj:
            return
        start, data = chunk
        self._chunk_start = start
        self._chunk_obj = data
        self._chunk = memoryview(data).cast("B")

    def _local(self, pos: int) -> int:
        """Offset of ``pos`` in the local part, or -1."""
        mv = self._chunk
        if mv is None:
            return -1
        offset = pos - self._chunk_start
        return offset if 0 <= offset < len(mv) else -1

    def _fetch_local(self, pos: int, whole: bool = False) -> None:
        """Make the local part hold ``pos`` (unless ``pos`` is at the end).

        ``whole``: the caller goes on to read the rest of the object.
        """
        backend = self._get_backend()
        if self._random_access and not self._whole and self._known_size() is not None:
            self._load_whole()
            return
        self._set_chunk(backend.chunk_at(pos, whole))
        self._known_size()

    def _load_whole(self) -> None:
        size = self._get_size()
        bio, view = alloc_bytes(size)
        try:
            nbytes = self._get_backend().load(0, view)
        except BaseException as exc:
            drop_view(view, exc)
            raise
        self._set_chunk((0, finish_bytes(bio, view, nbytes)))
        self._whole = True

    # -- reading ----------------------------------------------------------------------------

    def prefetch(self) -> None:
        """Start fetching data at the current position in the background.

        Raises:
            S3Exception: An error occurred accessing S3.
        """
        check_open(self)
        if self._local(self._position) < 0:
            self._get_backend().prefetch(self._position)

    def read(self, size: Optional[int] = None) -> bytes:
        """Read up to ``size`` bytes from the object and return them.

        If ``size`` is zero or positive, read that many bytes or until the end of the object;
        if ``size`` is None or negative, read the rest of the object.

        Args:
            size: How many bytes to read.

        Returns:
            bytes: Bytes read from the object (``b""`` at the end).

        Raises:
            TypeError: ``size`` is not an int or None.
            ValueError: The reader is closed.
            S3Exception: An error occurred accessing S3.
        """
        check_read_size(size)
        check_open(self)
        if size == 0:
            return b""
        pos = self._position
        total = self._known_size()
        if total is not None and pos >= total:
            return b""
        if size is None or size < 0:
            return self._read_rest()
        offset = self._local(pos)
        if offset >= 0 and offset + size <= len(self._chunk or b""):
            self._position = pos + size
            return self._slice(offset, size)
        if total is None and offset < 0:
            self._fetch_local(pos)  # learn the size before allocating the result
            total = self._known_size()
            if total is None and self._local(pos) < 0:
                return b""
        if total is not None:
            if pos + size >= total:
                return self._read_rest()
            size = total - pos if pos + size > total else size
        bio, view = alloc_bytes(size)
        try:
            nbytes = self._readinto_view(view)
        except BaseException as exc:
            drop_view(view, exc)
            raise
        return finish_bytes(bio, view, nbytes)

    def _slice(self, offset: int, size: int) -> bytes:
        obj = self._chunk_obj
        if offset == 0 and isinstance(obj, bytes) and len(obj) == size:
            return obj
        assert self._chunk is not None
        return self._chunk[offset : offset + size].tobytes()

    def _read_rest(self) -> bytes:
        pos = self._position
        if self._local(pos) < 0 and self._known_size() is None:
            # One call: the core learns the size from its first answer and fetches the rest
            # of a large object at once, instead of one part first, then the rest.
            data = self._get_backend().read_rest(pos)
            if data is not None:
                self._position = pos + len(data)
                self._set_chunk((pos, data))  # keep it: backward seeks stay free
                self._whole = pos == 0
                return data
        if self._local(pos) < 0 and (
            self._known_size() is None
            or (self._random_access and not self._whole)
            # Prefetched: the local part is the whole object, so read() needs no copy.
            or getattr(self._get_stream, "prefetched", None) is not None
        ):
            self._fetch_local(pos, whole=True)
        total = self._known_size()
        if total is None:  # a plain get_stream that never reports the size
            return self._read_rest_chunked()
        if pos >= total:
            return b""
        offset = self._local(pos)
        chunk = self._chunk
        if (
            offset >= 0
            and chunk is not None
            and self._chunk_start + len(chunk) >= total
        ):
            self._position = total
            return self._slice(offset, total - pos)
        bio, view = alloc_bytes(total - pos)
        try:
            nbytes = self._get_backend().load(pos, view)
        except BaseException as exc:
            drop_view(view, exc)
            raise
        data = finish_bytes(bio, view, nbytes)
        self._position = pos + nbytes
        self._set_chunk((pos, data))  # keep it: backward seeks stay free
        self._whole = pos == 0
        return data

    def _read_rest_chunked(self) -> bytes:
        parts = []
        while True:
            offset = self._local(self._position)
            if offset < 0:
                self._fetch_local(self._position)
                offset = self._local(self._position)
                if offset < 0:
                    break
            assert self._chunk is not None
            part = self._chunk[offset:].tobytes()
            parts.append(part)
            self._position += len(part)
        return b"".join(parts)

    def readinto(self, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes into the writable bytes-like object ``buf``.

        Args:
            buf: A writable bytes-like object (``bytearray``, ``memoryview``...).

        Returns:
            int: Number of bytes read; 0 at the end of the object or for an empty ``buf``.

        Raises:
            TypeError: ``buf`` is not a writable bytes-like object.
            ValueError: The reader is closed.
            S3Exception: An error occurred accessing S3.
        """
        view = sequential_writable(buf)
        check_open(self)
        if not len(view):
            return 0
        total = self._known_size()
        if total is not None and self._position >= total:
            return 0
        return self._readinto_view(view)

    def _readinto_view(self, view: memoryview) -> int:
        want = len(view)
        done = 0
        while done < want:
            pos = self._position
            total = self._known_size()
            if total is not None and pos >= total:
                break
            offset = self._local(pos)
            if offset >= 0:
                assert self._chunk is not None
                n = min(want - done, len(self._chunk) - offset)
                view[done : done + n] = self._chunk[offset : offset + n]
                done += n
                self._position += n
                continue
            if self._random_access and not self._whole and total is not None:
                self._load_whole()
                continue
            # One thread crossing fills the rest: read-ahead window or parallel GETs.
            nbytes, retained = self._get_backend().fill(pos, view[done:])
            self._set_chunk(retained)
            self._known_size()
            done += nbytes
            self._position += nbytes
            break
        return done

    def readline(self, size: Optional[int] = -1) -> bytes:
        """Read and return one line (up to and including the newline), at most ``size`` bytes.

        Raises:
            ValueError: The reader is closed.
            S3Exception: An error occurred accessing S3.
        """
        if size is None:
            size = -1
        check_read_size(size)
        check_open(self)
        left = size if size >= 0 else None
        parts = []
        while left != 0:
            pos = self._position
            offset = self._local(pos)
            if offset < 0:
                total = self._known_size()
                if total is not None and pos >= total:
                    break
                self._fetch_local(pos)
                if self._local(pos) < 0:
                    break
                continue
            assert self._chunk is not None
            end = (
                len(self._chunk)
                if left is None
                else min(len(self._chunk), offset + left)
            )
            obj = self._chunk_obj
            if isinstance(obj, (bytes, bytearray)):
                found = obj.find(b"\n", offset, end)
            else:
                found = self._chunk[offset:end].tobytes().find(b"\n")
                found = found + offset if found >= 0 else -1
            stop = found + 1 if found >= 0 else end
            parts.append(self._chunk[offset:stop].tobytes())
            self._position += stop - offset
            if left is not None:
                left -= stop - offset
            if found >= 0:
                break
        return b"".join(parts)

    # -- positioning ------------------------------------------------------------------------

    def seek(self, offset: int, whence: int = SEEK_SET, /) -> int:
        """Change the stream position to ``offset``, interpreted relative to ``whence``.

        Seeking past the end stays at the end; seeking before the start is an error.

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
        if whence == SEEK_END:
            self._random_access = True
        if target is None:
            return self._position
        size = self._known_size()
        if size is None and target > self._extent():
            size = self._get_size()
        if size is not None:
            target = min(target, size)
        self._position = target
        return target

    def _extent(self) -> int:
        """End of the data seen so far: positions up to it exist without knowing the size."""
        return self._chunk_start + len(self._chunk) if self._chunk is not None else 0

    def tell(self) -> int:
        """Return the current stream position (also after ``close()``).

        Returns:
            int: Current stream position.
        """
        return self._position

    def close(self) -> None:
        """Release buffers and cancel read-ahead; the reader cannot be read afterwards."""
        # getattr: also runs from the finalizer of a reader whose __init__ raised.
        backend = getattr(self, "_backend", None)
        if not self.closed and backend is not None:
            backend.close()
            self._reset_buffers()
        super().close()
