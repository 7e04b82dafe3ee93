"""``DCPOptimizedS3Reader``: coalesced ranged reads for PyTorch DCP loads (reference path).

``dcp.load`` reads each ``.distcp`` file as a sequence of items (tensors and byte blobs) at
known offsets, in offset order (``S3StorageReader.prepare_local_plan`` sorts them and injects
the ranges through ``DCPOptimizedConstructor``). This reader fetches only those ranges:
neighbouring items closer than ``max_gap_size`` share one request (a ``RangeGroup``), groups
are fetched ahead in parallel, and each item is held as views of the received parts, without
copying, so any position inside the current item can be re-read for free.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from dataclasses import dataclass
from io import SEEK_CUR, SEEK_END, SEEK_SET
from typing import Any, Callable, Iterator, List, NoReturn, Optional, Union

from .._core._object import ObjectVersion
from .._core._planning import group_ranges
from .._core.reader import alloc_bytes, finish_bytes
from .._types import HeadObjectResult, ObjectInfo
from ._backend import Backend, PieceStream, make_backend
from .s3reader import S3Reader, check_open, ranged_writable

__all__ = [
    "DEFAULT_MAX_GAP_SIZE",
    "FALLBACK_GUIDANCE",
    "FIND_ITEM_ERROR_PREFIX",
    "DCPOptimizedS3Reader",
    "ItemRange",
    "RangeGroup",
]

DEFAULT_MAX_GAP_SIZE = 32 * 1024 * 1024

FIND_ITEM_ERROR_PREFIX = (
    "DCPOptimizedS3Reader only supports sequentially accessing provided ranges: "
)

FALLBACK_GUIDANCE = (
    "If this access pattern is intended, load with the generic sequential reader instead: "
    "S3StorageReader(region, path, reader_constructor=S3ReaderConstructor.default()). "
    "See docs/TROUBLESHOOTING.md (DCPOptimizedS3Reader errors)."
)


@dataclass
class ItemRange:
    """Byte range of one DCP item: ``[start, end)``."""

    start: int
    end: int


@dataclass
class RangeGroup:
    """Items close enough to share one request: ``[start, end)`` covers ``item_ranges``."""

    start: int
    end: int
    item_ranges: List[ItemRange]


def check_max_gap_size(max_gap_size: Any) -> None:
    """Validate ``max_gap_size`` (an int or float, at least 0; ``float("inf")`` allowed).

    Raises:
        TypeError: It is not a number.
        ValueError: It is negative.
    """
    if not isinstance(max_gap_size, (int, float)):
        raise TypeError(
            f"max_gap_size must be int or float, got {type(max_gap_size).__name__}"
        )
    if max_gap_size < 0:
        raise ValueError("max_gap_size must be non-negative")


def validate_and_coalesce_ranges(
    item_ranges: List[ItemRange], max_gap_size: Union[int, float]
) -> List[RangeGroup]:
    """Check that ``item_ranges`` are valid, sorted and disjoint, and group neighbours.

    A range joins the current group when the gap from the previous range's end is at most
    ``max_gap_size`` (adjacent ranges always do). Zero-length ranges must have been removed.

    Raises:
        ValueError: ``Invalid range: s-e``, ``Unsorted ranges: a-b and c-d`` or
            ``Overlapping ranges: a-b and c-d``.
    """
    spans = [(r.start, r.end) for r in item_ranges]
    return [
        RangeGroup(
            item_ranges[g.start].start,
            item_ranges[g.stop - 1].end,
            item_ranges[g.start : g.stop],
        )
        for g in group_ranges(spans, max_gap_size)
    ]


def _prepare_ranges(item_ranges: List[ItemRange]) -> List[ItemRange]:
    """Drop zero-length ranges and repeats of the same range (several ReadItems, one range)."""
    out: List[ItemRange] = []
    for r in item_ranges:
        if r.start == r.end:
            continue
        if out and out[-1].start == r.start and out[-1].end == r.end:
            continue
        out.append(r)
    return out


class _ItemViewBuffer:
    """A read-only, seekable byte buffer over a list of memoryview segments (no copying)."""

    __slots__ = ("_lengths", "_offsets", "_pos", "_segments", "_size")

    def __init__(self) -> None:
        self._segments: List[memoryview] = []
        self._offsets: List[int] = []
        self._lengths: List[int] = []
        self._size = 0
        self._pos = 0

    @property
    def size(self) -> int:
        """Total bytes held."""
        return self._size

    def append_view(self, view: memoryview) -> None:
        """Append a segment (empty ones are ignored)."""
        if not len(view):
            return
        self._segments.append(view)
        self._offsets.append(self._size)
        self._lengths.append(len(view))
        self._size += len(view)

    def tell(self) -> int:
        """Return the position."""
        return self._pos

    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        """Move the position (past the end is allowed) and return it.

        Raises:
            ValueError: ``whence`` is not SEEK_SET, SEEK_CUR or SEEK_END.
            AssertionError: The position would be negative.
        """
        if whence == SEEK_SET:
            pos = offset
        elif whence == SEEK_CUR:
            pos = self._pos + offset
        elif whence == SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise AssertionError(f"negative seek value {pos}")
        self._pos = pos
        return pos

    def _segment_at(self, pos: int) -> int:
        return bisect_right(self._offsets, pos) - 1

    def readinto(self, buf: Any) -> int:
        """Copy bytes from the position into ``buf``; return the count.

        Raises:
            TypeError: ``buf`` does not support the buffer protocol.
            AssertionError: ``buf`` is read-only.
        """
        view = memoryview(buf)
        if view.readonly:
            raise AssertionError("readinto needs a writable buffer")
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        done = 0
        i = self._segment_at(self._pos)
        offset = self._pos - self._offsets[i]
        while done < want:
            segment = self._segments[i]
            n = min(want - done, self._lengths[i] - offset)
            view[done : done + n] = segment[offset : offset + n]
            done += n
            i += 1
            offset = 0
        self._pos += done
        return done

    def read(self, size: int) -> bytes:
        """Read up to ``size`` bytes from the position.

        Raises:
            AssertionError: ``size`` is None or negative.
        """
        if size is None or size < 0:
            raise AssertionError("size must be a non-negative int")
        want = min(size, self._size - self._pos)
        if want <= 0:
            return b""
        i = self._segment_at(self._pos)
        offset = self._pos - self._offsets[i]
        if offset + want <= self._lengths[i]:
            # Within one segment (e.g. torch's 4-byte zip magic check): a single copy.
            self._pos += want
            return self._segments[i][offset : offset + want].tobytes()
        bio, view = alloc_bytes(want)
        nbytes = self.readinto(view)
        return finish_bytes(bio, view, nbytes)


class DCPOptimizedS3Reader(S3Reader):
    """Reader for DCP loads: fetches only the given item ranges, coalesced, in order.

    Items must be read in order: a read must fall inside the current item or the next one
    (items cannot be skipped), and any position inside the current item can be re-read. A
    read that breaks this raises ``ValueError`` and leaves the reader's state unchanged.
    Groups of items closer than ``max_gap_size`` are fetched with one request each (split into
    parallel ``part_size`` requests when larger), ahead of the reader, in parallel. No HEAD is
    ever sent. ``read()`` without a size and ``SEEK_END`` are not supported.

    Args:
        bucket: Bucket name.
        key: Object key.
        item_ranges: Byte ranges of the items to read, sorted by offset.
        get_object_info: Unused (kept for the reader-constructor signature).
        get_stream: ``get_stream(start=None, end=None)`` from ``S3Client``.
        max_gap_size: Largest gap between items fetched in the same request; ``float("inf")``
            coalesces everything, 0 only adjacent items.

    Raises:
        ValueError: An argument is empty, negative, or the ranges are invalid, unsorted or
            overlapping.
        TypeError: ``max_gap_size`` is not a number.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        item_ranges: List[ItemRange],
        get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]],
        get_stream: Callable[..., Any],
        max_gap_size: Union[int, float] = DEFAULT_MAX_GAP_SIZE,
    ) -> None:
        if not bucket:
            raise ValueError("Bucket should be specified")
        if not key:
            raise ValueError("Key should be specified")
        if not item_ranges:
            raise ValueError("item_ranges must be a non-empty List[ItemRange] object")
        check_max_gap_size(max_gap_size)
        items = _prepare_ranges(item_ranges)
        if not items:
            raise ValueError("No non-empty ranges to read (all ranges were length 0)")
        self._range_groups = validate_and_coalesce_ranges(items, max_gap_size)
        self._bucket = bucket
        self._key = key
        self._get_object_info = get_object_info
        self._get_stream = get_stream
        self._max_gap_size = max_gap_size
        self._item_ranges = items
        self._group_start_to_group = {g.start: g for g in self._range_groups}
        self._position = 0
        self._reset_state()

    def _reset_state(self) -> None:
        self._item_index = 0
        self._current_item_buffer: Optional[_ItemViewBuffer] = None
        self._backend: Optional[Backend] = None
        self._stream: Optional[PieceStream] = None
        self._leftover: Optional[tuple[int, memoryview]] = None
        self._stream_pos = -1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_current_item_buffer", "_backend", "_stream", "_leftover"):
            state[name] = None
        state["_item_index"] = 0
        state["_stream_pos"] = -1
        return state

    @property
    def bucket(self) -> str:
        """The object's bucket."""
        return self._bucket

    @property
    def key(self) -> str:
        """The object's key."""
        return self._key

    # -- item lookup (no side effects) --------------------------------------------------------

    def _find_item(self, start: int, end: int) -> int:
        items = self._item_ranges
        i = self._item_index
        cur = items[i]
        if cur.start <= start and end <= cur.end:
            return i
        where = f"Range {start}-{end} not contained in"
        if start < cur.end or self._current_item_buffer is None:
            detail = f"{where} current item {cur.start}-{cur.end}."
        elif i + 1 == len(items):
            detail = f"{where} last item with range {cur.start}-{cur.end}."
        else:
            nxt = items[i + 1]
            if nxt.start <= start and end <= nxt.end:
                return i + 1
            detail = (
                f"{where} current item {cur.start}-{cur.end} "
                f"nor the next item {nxt.start}-{nxt.end}."
            )
        raise ValueError(f"{FIND_ITEM_ERROR_PREFIX}{detail}\n{FALLBACK_GUIDANCE}")

    def _item_buffer(self, index: int) -> _ItemViewBuffer:
        if index != self._item_index or self._current_item_buffer is None:
            buffer = self._load_item(self._item_ranges[index])
            self._item_index, self._current_item_buffer = index, buffer
        assert self._current_item_buffer is not None
        return self._current_item_buffer

    def _load_item(self, item: ItemRange) -> _ItemViewBuffer:
        buffer = _ItemViewBuffer()
        for view in self._item_views(item):
            buffer.append_view(view)
        return buffer

    def _item_views(self, item: ItemRange) -> Iterator[memoryview]:
        """Views of the received parts covering ``item``, in order, as they arrive."""
        if self._stream is None:
            self._backend = make_backend(self._get_stream, ObjectVersion())
            self._stream = self._backend.open_stream(self._range_groups)
        need = item.start
        while need < item.end:
            leftover = self._leftover
            if leftover is not None:
                start, view = leftover
                end = start + len(view)
                if end <= need:  # gap bytes between items
                    self._leftover = None
                    continue
                if start > need:  # the stream never delivered [need, start)
                    self._raise_exhausted(need, item)
                take = min(end, item.end)
                self._leftover = (take, view[take - start :]) if take < end else None
                yield view[need - start : take - start]
                need = take
                continue
            piece = self._stream.next()
            if piece is None:
                self._raise_exhausted(need, item)
            data = memoryview(piece[1])
            data = data if data.format == "B" and data.ndim == 1 else data.cast("B")
            self._leftover = (piece[0], data)
            self._stream_pos = piece[0] + len(data)

    @property
    def item_ranges(self) -> List[ItemRange]:
        """The ranges this reader fetches (the planned ones, without empty or repeated ones)."""
        return list(self._item_ranges)

    def iter_items(self) -> Iterator[tuple[int, memoryview]]:
        """Stream every item's bytes: ``(index into item_ranges, view)``, in order.

        The views are slices of the received parts, valid until the reader is closed; nothing
        is kept after it is yielded, so memory stays bounded by the fetch window, however
        large an item is. The reader must not have been read before.

        Raises:
            ValueError: The reader was read before, or the stream ended early.
            S3Exception: An error occurred accessing S3.
        """
        check_open(self)
        if self._stream is not None or self._current_item_buffer is not None:
            raise ValueError("iter_items() needs a reader that has not been read")
        for index, item in enumerate(self._item_ranges):
            for view in self._item_views(item):
                yield index, view
            self._position = item.end

    def _raise_exhausted(self, need: int, item: ItemRange) -> NoReturn:
        phase = "before reaching" if need == item.start else "while reading"
        pos = self._stream_pos if self._stream_pos >= 0 else need
        raise ValueError(
            f"S3 stream exhausted at position {pos} {phase} item {item.start}-{item.end}"
        )

    # -- reading ----------------------------------------------------------------------------

    def read(self, size: Optional[int] = None) -> bytes:
        """Read ``size`` bytes from the current position, inside the current or next item.

        Args:
            size: How many bytes to read; must be a non-negative int.

        Returns:
            bytes: Bytes read.

        Raises:
            ValueError: ``size`` is None or negative, the range is not inside the current
                or next item, or the reader is closed.
            TypeError: ``size`` is not an int.
            S3Exception: An error occurred accessing S3.
        """
        if size is None:
            raise ValueError(
                f"Size cannot be None; full read not supported.\n{FALLBACK_GUIDANCE}"
            )
        if not isinstance(size, int):
            raise TypeError(f"argument should be integer or None, not {type(size)!r}")
        if size < 0:
            raise ValueError(
                f"Size cannot be negative; full read not supported.\n{FALLBACK_GUIDANCE}"
            )
        check_open(self)
        if size == 0:
            return b""
        pos = self._position
        index = self._find_item(pos, pos + size)
        buffer = self._item_buffer(index)
        buffer.seek(pos - self._item_ranges[index].start)
        data = buffer.read(size)
        self._position = pos + len(data)
        return data

    def readinto(self, buf: Any) -> int:
        """Read into ``buf`` from the current position, inside the current or next item.

        Args:
            buf: A writable bytes-like object.

        Returns:
            int: Number of bytes read.

        Raises:
            TypeError: ``buf`` is not a writable bytes-like object.
            ValueError: The range is not inside the current or next item, or the reader is
                closed.
            S3Exception: An error occurred accessing S3.
        """
        view = ranged_writable(buf)
        check_open(self)
        pos = self._position
        index = self._find_item(pos, pos + len(view))
        if not len(view):
            return 0
        buffer = self._item_buffer(index)
        buffer.seek(pos - self._item_ranges[index].start)
        nbytes = buffer.readinto(view)
        self._position = pos + nbytes
        return nbytes

    def seek(self, offset: int, whence: int = SEEK_SET, /) -> int:
        """Move the position; the next read must fall in the current or next item.

        Args:
            offset: How many bytes to move relative to ``whence``.
            whence: ``SEEK_SET`` (default) or ``SEEK_CUR``; ``SEEK_END`` is not supported.

        Returns:
            int: The new position.

        Raises:
            TypeError: ``offset`` is not an int.
            ValueError: ``whence`` is not SEEK_SET/SEEK_CUR, the result is negative, or the
                reader is closed.
        """
        if not isinstance(offset, int):
            raise TypeError(f"integer argument expected, got {type(offset)!r}")
        check_open(self)
        if whence == SEEK_SET:
            target = offset
        elif whence == SEEK_CUR:
            target = self._position + offset
        else:
            raise ValueError("whence must be SEEK_CUR or SEEK_SET integers")
        if target < 0:
            raise ValueError(f"negative seek value {target}")
        self._position = target
        return target

    def tell(self) -> int:
        """Return the current position (also after ``close()``).

        Returns:
            int: Current absolute position in the object.
        """
        return self._position

    def close(self) -> None:
        """Cancel outstanding requests and drop buffers."""
        # getattr: also runs from the finalizer of a reader whose __init__ raised.
        if not self.closed and hasattr(self, "_stream"):
            stream = self._stream
            if stream is not None:
                stream.close()
            if self._backend is not None:
                self._backend.close()
            self._stream = None
            self._backend = None
            self._leftover = None
            self._current_item_buffer = None
        io.BufferedIOBase.close(self)
