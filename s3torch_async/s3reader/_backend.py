"""Where the sync readers get their bytes: the async core, a plain ``get_stream``, or memory.

A reader is handed ``get_stream`` by ``S3Client.get_object``. This module duck-types it:

* ``get_stream.prefetched`` set: the whole object is already in memory; no request is sent.
* ``get_stream.bridge`` is a ``Bridge`` (this package's ``_GetStream``): an ``AsyncS3Reader``
  runs on the runner's loop behind a ``ReaderHandle``, and every call crosses threads once per
  part, not once per read.
* anything else (a user's ``get_stream(start=None, end=None)`` returning an iterator of
  ``bytes``): plain iteration, one stream per request, as the reference does.

Every backend offers the same positional operations, so the readers hold no I/O code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, Callable, List, Optional, Protocol, Tuple, Union

from .._bridge import Bridge
from .._core._object import ObjectVersion
from .._core._planning import pieces_with_data
from .._core.reader import writable_view
from .._types import HeadObjectResult, ObjectInfo

logger = logging.getLogger(__name__)

Data = Union[bytes, bytearray, memoryview]
Chunk = Tuple[int, Data]
Span = Tuple[int, int]


class Group(Protocol):
    """A coalesced request: ``[start, end)`` holding ``item_ranges``."""

    start: int
    end: int
    item_ranges: Any


class PieceStream(Protocol):
    def next(self) -> Optional[Chunk]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """Positional access to one object's bytes.

    ``version`` is the reader's own ``ObjectVersion`` (the same instance): what the backend
    learns (size, pinned ETag) the reader sees. ``learns_size`` says whether reads reveal the
    size (ranged GETs do: ``Content-Range``).
    """

    version: ObjectVersion
    learns_size: bool

    def chunk_at(self, pos: int, whole: bool = False) -> Chunk: ...

    def fill(self, pos: int, view: memoryview) -> tuple[int, Optional[Chunk]]: ...

    def load(self, pos: int, view: memoryview) -> int: ...

    def read_rest(self, pos: int) -> Optional[bytes]: ...

    def get_into(self, pos: int, view: memoryview) -> int: ...

    def prefetch(self, pos: int) -> None: ...

    def open_stream(self, groups: Sequence[Group]) -> PieceStream: ...

    def close(self) -> None: ...


def make_backend(get_stream: Any, version: ObjectVersion) -> Backend:
    """Pick the backend for ``get_stream`` (see the module docstring)."""
    prefetched = getattr(get_stream, "prefetched", None)
    if prefetched is not None:
        return PrefetchedBackend(prefetched.data, prefetched.etag, version)
    if (
        isinstance(getattr(get_stream, "bridge", None), Bridge)
        and isinstance(getattr(get_stream, "bucket", None), str)
        and isinstance(getattr(get_stream, "key", None), str)
    ):
        return CoreBackend(get_stream, version)
    return StreamBackend(get_stream, version)


def covers(chunk: Optional[Chunk], pos: int) -> bool:
    return chunk is not None and chunk[0] <= pos < chunk[0] + _nbytes(chunk[1])


def _nbytes(data: Data) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def group_pieces(groups: Sequence[Group], part_size: int) -> List[Span]:
    """The ranged GETs for ``groups``: see ``_planning.pieces_with_data``."""
    return pieces_with_data(
        (((g.start, g.end), [(r.start, r.end) for r in g.item_ranges]) for g in groups),
        part_size,
    )


# -- async core -------------------------------------------------------------------------------


class CoreBackend:
    """Reads through a ``ReaderHandle``: an ``AsyncS3Reader`` on the runner's loop."""

    learns_size = True

    def __init__(self, get_stream: Any, version: ObjectVersion) -> None:
        self._get_stream = get_stream
        self._bucket: str = get_stream.bucket
        self._key: str = get_stream.key
        part_size: Optional[int] = getattr(get_stream, "part_size", None)
        self.part_size = part_size or int(get_stream.client.s3client_config.part_size)
        self.version = version
        bridge: Bridge = get_stream.bridge
        self._reader = bridge.reader(
            self._bucket, self._key, part_size=part_size, version=version
        )

    def chunk_at(self, pos: int, whole: bool = False) -> Chunk:
        return self._reader.chunk_at(pos, whole)

    def fill(self, pos: int, view: memoryview) -> tuple[int, Optional[Chunk]]:
        return self._reader.read_at(pos, view)

    def load(self, pos: int, view: memoryview) -> int:
        return self._reader.load(pos, view)

    def read_rest(self, pos: int) -> Optional[bytes]:
        """The bytes from ``pos`` to the end in one result (``None``: use ``load``)."""
        return self._reader.read_rest(pos)

    def get_into(self, pos: int, view: memoryview) -> int:
        foreign = self._open_hook(pos, pos + len(view))
        if foreign is not None:
            return _copy_stream(foreign, view)
        return self._reader.read_direct(pos, view)

    def prefetch(self, pos: int) -> None:
        self._reader.prefetch(pos)

    def open_stream(self, groups: Sequence[Group]) -> PieceStream:
        # The reference's request hook sees one call per group, in ascending order.
        opened = [(group, self._open_hook(group.start, group.end)) for group in groups]
        if all(foreign is None for _group, foreign in opened):
            return self._reader.ranges(group_pieces(groups, self.part_size))
        return _IterStream(self._mixed(opened))

    def _open_hook(self, start: int, end: int) -> Optional[Iterator[Data]]:
        """Call ``S3Client._get_object_stream`` for ``[start, end)``: the reference's hook.

        Users patch it to count or trace requests. ``None`` when it returned the client's own
        lazy stream untouched (the core then fetches the range, in parallel parts); otherwise
        the iterator it returned, read as is.
        """
        stream = self._get_stream(start, end)
        if self._get_stream.is_untouched(stream, start, end):
            return None
        chunks: Iterator[Data] = iter(stream)
        return chunks

    def _mixed(
        self, opened: List[Tuple[Group, Optional[Iterator[Data]]]]
    ) -> Iterator[Chunk]:
        for group, foreign in opened:
            if foreign is None:
                stream = self._reader.ranges(group_pieces([group], self.part_size))
                try:
                    while (chunk := stream.next()) is not None:
                        yield chunk
                finally:
                    stream.close()
            else:
                pos = group.start
                for data in foreign:
                    yield pos, data
                    pos += _nbytes(data)

    def close(self) -> None:
        self._reader.close()


def _copy_stream(chunks: Iterator[Data], view: memoryview) -> int:
    done = 0
    for chunk in chunks:
        mv = memoryview(chunk).cast("B")
        n = min(len(mv), len(view) - done)
        view[done : done + n] = mv[:n]
        done += n
        if done == len(view):
            break
    return done


# -- a plain get_stream callable --------------------------------------------------------------


class StreamBackend:
    """Backend over a user's ``get_stream(start=None, end=None)`` returning ``bytes`` chunks.

    Without ranged-GET metadata it never learns the size from a read except when a stream
    opened to the end runs out.
    """

    learns_size = False

    def __init__(self, get_stream: Callable[..., Any], version: ObjectVersion) -> None:
        self._get_stream = get_stream
        self.version = version
        self._it: Optional[Iterator[Data]] = None
        self._it_pos = 0
        self._last: Optional[Chunk] = None

    def _open(self, start: int, end: Optional[int] = None) -> Iterator[Data]:
        if start == 0 and end is None:
            return iter(self._get_stream())
        return iter(self._get_stream(start, end))

    def chunk_at(self, pos: int, whole: bool = False) -> Chunk:
        if covers(self._last, pos):
            assert self._last is not None
            return self._last
        size = self.version.size
        if size is not None and pos >= size:
            return pos, b""
        if self._it is None or self._it_pos > pos:
            self._it, self._it_pos = self._open(pos), pos
        while True:
            chunk = next(self._it, None)
            if chunk is None:
                self.version.size = self._it_pos
                self._it = None
                return pos, b""
            start = self._it_pos
            self._it_pos += _nbytes(chunk)
            if self._it_pos > pos:
                self._last = (start, chunk)
                return self._last

    def fill(self, pos: int, view: memoryview) -> tuple[int, Optional[Chunk]]:
        done = 0
        while done < len(view):
            start, data = self.chunk_at(pos + done)
            mv = memoryview(data).cast("B")
            offset = pos + done - start
            if offset >= len(mv):
                break
            n = min(len(view) - done, len(mv) - offset)
            view[done : done + n] = mv[offset : offset + n]
            done += n
        return done, self._last

    def load(self, pos: int, view: memoryview) -> int:
        nbytes, _ = self.fill(pos, view)
        self._last = None
        return nbytes

    def read_rest(self, pos: int) -> Optional[bytes]:
        return None  # the size comes from the stream's own reads: see load

    def get_into(self, pos: int, view: memoryview) -> int:
        return _copy_stream(self._open(pos, pos + len(view)), view)

    def prefetch(self, pos: int) -> None:
        return None

    def open_stream(self, groups: Sequence[Group]) -> PieceStream:
        return _IterStream(self._iter_groups(groups))

    def _iter_groups(self, groups: Sequence[Group]) -> Iterator[Chunk]:
        for group in groups:
            pos = group.start
            for chunk in self._get_stream(group.start, group.end):
                yield pos, chunk
                pos += _nbytes(chunk)

    def close(self) -> None:
        self._it = None
        self._last = None


class _IterStream:
    def __init__(self, it: Iterator[Chunk]) -> None:
        self._it: Optional[Iterator[Chunk]] = it

    def next(self) -> Optional[Chunk]:
        return None if self._it is None else next(self._it, None)

    def close(self) -> None:
        self._it = None


# -- prefetched bytes -------------------------------------------------------------------------


class PrefetchedBackend:
    """Serves every read from bytes already downloaded; sends no request."""

    learns_size = True

    def __init__(self, data: Data, etag: Optional[str], version: ObjectVersion) -> None:
        self._data = data
        self._view = memoryview(data).cast("B")
        # The bytes are that version: the reader now knows its size and ETag.
        self.version = version
        version.size = len(self._view)
        if etag:
            version.etag = etag

    def chunk_at(self, pos: int, whole: bool = False) -> Chunk:
        if pos >= len(self._view):
            return pos, b""
        return 0, self._data

    def fill(self, pos: int, view: memoryview) -> tuple[int, Optional[Chunk]]:
        return self.get_into(pos, view), (0, self._data)

    def load(self, pos: int, view: memoryview) -> int:
        return self.get_into(pos, view)

    def read_rest(self, pos: int) -> Optional[bytes]:
        return None  # in memory: the size is known

    def get_into(self, pos: int, view: memoryview) -> int:
        view = writable_view(view)
        n = max(0, min(len(view), len(self._view) - pos))
        view[:n] = self._view[pos : pos + n]
        return n

    def prefetch(self, pos: int) -> None:
        return None

    def open_stream(self, groups: Sequence[Group]) -> PieceStream:
        return _IterStream(iter([(0, self._data)]))

    def close(self) -> None:
        return None


class ObjectSize:
    """Identity, backend and size bookkeeping shared by the sequential and range-based readers.

    A reader using it sets ``_bucket``, ``_key``, ``_version``, ``_backend``,
    ``_get_object_info`` and ``_get_stream``. The size comes, cheapest first, from a response
    already received, listing info, prefetched data, and only then from ``get_object_info()``
    (a HEAD). ``_version`` is shared with the backend and the core reader, so a size or ETag
    any of them learns is known to all.
    """

    _bucket: str
    _key: str
    _version: ObjectVersion
    _backend: Optional[Backend]
    _get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]]
    _get_stream: Any

    @property
    def bucket(self) -> str:
        """The object's bucket."""
        return self._bucket

    @property
    def key(self) -> str:
        """The object's key."""
        return self._key

    @property
    def _size(self) -> Optional[int]:
        # The reference's attribute (tests read it); the size lives in the shared version.
        return self._version.size

    @_size.setter
    def _size(self, value: Optional[int]) -> None:
        self._version.size = value

    def _get_backend(self) -> Backend:
        backend = self._backend
        if backend is None:
            backend = self._backend = make_backend(self._get_stream, self._version)
        return backend

    @cached_property
    def _object_info(self) -> Union[ObjectInfo, HeadObjectResult]:
        return self._get_object_info()

    def _known_size(self) -> Optional[int]:
        """The size if known without a request."""
        version = self._version
        if version.size is None:
            info = getattr(self._get_object_info, "object_info", None)
            if info is not None:
                version.learn_size(info)
            elif getattr(self._get_stream, "prefetched", None) is not None:
                self._get_backend()  # knows the size of the bytes it holds
        return version.size

    def _get_size(self) -> int:
        size = self._known_size()
        if size is None:
            size = self._version.learn_size(self._object_info)
        return size
