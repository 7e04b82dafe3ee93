"""Loading a data file's items as its bytes arrive: tensors are filled in place.

``S3StorageReader.read_data`` hands each ``.distcp`` file's read items here with the file's
reader. With the DCP-optimized reader the bytes of the planned items stream in, coalesced and
fetched ahead by a bounded window, as views of the received parts; every tensor item is
decoded from its first bytes (see ``_torch_save_format``) and its storage bytes are copied
once, straight into the destination tensor when it matches the stored one (same dtype and
shape, contiguous, not resharded), else into one staging tensor that is then narrowed and
copied as torch does. Nothing holds a whole item, so memory stays bounded by the fetch window
however large a file or tensor is. Byte items, items written through stream transforms, and
blobs in any other layout take torch's path (``torch.load`` of the item's bytes).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from typing import Any, Dict, List, Optional, Protocol, Tuple

import torch
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlanner, ReadItem

from ..s3reader import DCPOptimizedS3Reader
from ._torch_save_format import (
    PREFIX_LIMIT,
    StoredTensor,
    UnsupportedFormat,
    memory_at,
    parse_prefix,
)

__all__ = ["load_file"]

# Size of the reads when the file's reader cannot stream its items.
_READ_SIZE = 8 * 1024 * 1024


class _Transforms(Protocol):
    def transform_load_stream(
        self, read_item: ReadItem, transform_descriptors: Any, raw_stream: Any
    ) -> Any: ...


class _Context:
    """What every item of one load needs: the planner, storage info and stream transforms."""

    def __init__(
        self,
        planner: LoadPlanner,
        storage_data: Dict[Any, Any],
        transforms: _Transforms,
        path: str,
    ) -> None:
        self.planner = planner
        self.storage_data = storage_data
        self.transforms = transforms
        self.path = path

    def info(self, req: ReadItem) -> Any:
        return self.storage_data[req.storage_index]


def load_file(
    stream: Any,
    reqs: List[ReadItem],
    planner: LoadPlanner,
    storage_data: Dict[Any, Any],
    transforms: _Transforms,
    path: str,
) -> None:
    """Load the read items ``reqs`` of one data file from ``stream`` (its open reader).

    Args:
        stream: The file's reader, from ``fs.create_stream(path, "rb")``.
        reqs: The file's read items, sorted by offset.
        planner: The load planner (``resolve_tensor``/``commit_tensor``/``load_bytes``).
        storage_data: Storage info of every item.
        transforms: The storage reader's stream transforms.
        path: The file's path, for error messages.
    """
    context = _Context(planner, storage_data, transforms, path)
    by_range: Dict[Tuple[int, int], List[ReadItem]] = {}
    for req in reqs:
        info = context.info(req)
        by_range.setdefault((info.offset, info.offset + info.length), []).append(req)
    for (start, end), group in by_range.items():
        if start == end:  # no bytes to fetch: an empty byte item
            _finish_buffered(context, group, [])
    ranges = [r for r in by_range if r[0] < r[1]]
    if isinstance(stream, DCPOptimizedS3Reader) and ranges == [
        (r.start, r.end) for r in stream.item_ranges
    ]:
        pieces: Iterable[Tuple[int, memoryview]] = stream.iter_items()
    else:
        pieces = _read_ranges(stream, ranges)
    sink: Optional[_Sink] = None
    current = -1
    for index, view in pieces:
        if index != current:
            if sink is not None:
                sink.finish()
            current = index
            sink = _sink_for(context, by_range[ranges[index]], ranges[index])
        sink.feed(view)  # type: ignore[union-attr]
    if sink is not None:
        sink.finish()


def _read_ranges(
    stream: Any, ranges: List[Tuple[int, int]]
) -> Iterator[Tuple[int, memoryview]]:
    """The bytes of ``ranges`` read from a plain seekable stream, a bounded read at a time."""
    for index, (start, end) in enumerate(ranges):
        stream.seek(start)
        pos = start
        while pos < end:
            data = stream.read(min(_READ_SIZE, end - pos))
            if not data:
                raise ValueError(f"stream ended at {pos} before {end}")
            pos += len(data)
            yield index, memoryview(data).cast("B")


class _Sink(Protocol):
    def feed(self, view: memoryview) -> None: ...

    def finish(self) -> None: ...


def _sink_for(context: _Context, reqs: List[ReadItem], span: Tuple[int, int]) -> _Sink:
    if all(
        req.type == LoadItemType.TENSOR and not context.info(req).transform_descriptors
        for req in reqs
    ):
        return _TensorSink(context, reqs, span[1] - span[0])
    return _BufferedSink(context, reqs)


class _BufferedSink:
    """torch's own path: gather the item's bytes, then ``load_bytes`` or ``torch.load``."""

    def __init__(
        self,
        context: _Context,
        reqs: List[ReadItem],
        views: Optional[List[memoryview]] = None,
    ) -> None:
        self._context = context
        self._reqs = reqs
        self._views = views or []

    def feed(self, view: memoryview) -> None:
        self._views.append(view)

    def finish(self) -> None:
        _finish_buffered(self._context, self._reqs, self._views)
        self._views = []


def _finish_buffered(
    context: _Context, reqs: List[ReadItem], views: List[memoryview]
) -> None:
    data = b"".join(views)
    for req in reqs:
        raw = io.BytesIO(data)
        descriptors = context.info(req).transform_descriptors or ()
        stream = context.transforms.transform_load_stream(req, descriptors, raw)
        if req.type == LoadItemType.BYTE_IO:
            context.planner.load_bytes(req, io.BytesIO(stream.read(-1)))
            continue
        if not stream.seekable():  # torch.load needs to seek
            stream = io.BytesIO(stream.read(-1))
        stored = torch.load(stream, map_location="cpu", weights_only=True)
        _copy_into_target(context, req, stored)


def _copy_into_target(
    context: _Context,
    req: ReadItem,
    stored: torch.Tensor,
    target: Optional[torch.Tensor] = None,
) -> None:
    tensor = narrow_tensor_by_index(stored, req.storage_offsets, req.lengths)
    if target is None:
        target = context.planner.resolve_tensor(req).detach()
    if target.size() != tensor.size():
        raise AssertionError(
            f"req {req.storage_index} mismatch sizes {target.size()} vs {tensor.size()}"
        )
    target.copy_(tensor)
    context.planner.commit_tensor(req, target)


class _TensorSink:
    """Streams one tensor item: its storage bytes land in the target or a staging tensor.

    Until the ``data/0`` record is reached the received views are held (a few hundred
    bytes of them are header); a layout it does not know hands them to a ``_BufferedSink``.
    """

    def __init__(self, context: _Context, reqs: List[ReadItem], length: int) -> None:
        self._context = context
        self._reqs = reqs
        self._length = length
        self._held: List[memoryview] = []
        self._received = 0
        self._stored: Optional[StoredTensor] = None
        self._fallback: Optional[_BufferedSink] = None
        self._target: Optional[torch.Tensor] = None  # resolved, when written in place
        self._dest: Optional[torch.Tensor] = None
        self._dest_bytes = memoryview(b"")
        self._tail = bytearray()

    def feed(self, view: memoryview) -> None:
        if self._fallback is not None:
            self._fallback.feed(view)
            return
        pos = self._received
        self._received += len(view)
        if self._stored is not None:
            self._write(pos, view)
            return
        self._held.append(view)
        try:
            stored = parse_prefix(_head(self._held))
            give_up = stored is None and self._received >= min(
                PREFIX_LIMIT, self._length
            )
        except UnsupportedFormat:
            stored, give_up = None, True
        if give_up:
            self._fallback = _BufferedSink(self._context, self._reqs, self._held)
            self._held = []
        if stored is None:
            return
        self._start(stored)
        held, self._held = self._held, []
        at = 0
        for piece in held:
            self._write(at, piece)
            at += len(piece)

    def _start(self, stored: StoredTensor) -> None:
        if stored.data_offset + stored.nbytes > self._length:
            raise ValueError(
                f"Tensor item {self._reqs[0].storage_index} of {self._context.path} is "
                f"shorter than its storage ({stored.nbytes} bytes at {stored.data_offset})"
            )
        self._stored = stored
        dest: Optional[torch.Tensor] = None
        if len(self._reqs) == 1 and stored.is_contiguous_whole():
            req = self._reqs[0]
            target = self._context.planner.resolve_tensor(req).detach()
            self._target = target
            if (
                target.device.type == "cpu"
                and target.dtype == stored.dtype
                and tuple(target.size()) == stored.size
                and all(n >= d for n, d in zip(req.lengths, stored.size))
                and target.is_contiguous()
            ):
                dest = target
        if dest is None:
            dest = torch.empty(stored.storage_numel, dtype=stored.dtype)
        self._dest = dest
        self._dest_bytes = memory_at(dest.data_ptr(), stored.nbytes)

    def _write(self, pos: int, view: memoryview) -> None:
        """Copy the part of ``view`` (item bytes from ``pos``) that is storage bytes."""
        stored = self._stored
        assert stored is not None
        begin, end = stored.data_offset, stored.data_offset + stored.nbytes
        lo, hi = max(pos, begin), min(pos + len(view), end)
        if lo < hi:
            self._dest_bytes[lo - begin : hi - begin] = view[lo - pos : hi - pos]
        if pos + len(view) > end and len(self._tail) < 24:
            self._tail += view[max(end - pos, 0) : max(end - pos, 0) + 24]

    def finish(self) -> None:
        if self._fallback is not None:
            self._fallback.finish()
            return
        stored = self._stored
        if stored is None or self._received != self._length:
            raise ValueError(
                f"Tensor item {self._reqs[0].storage_index} of {self._context.path}: "
                f"received {self._received} of {self._length} bytes"
            )
        _check_descriptor(bytes(self._tail), stored.nbytes, self._context.path)
        dest = self._dest
        assert dest is not None
        if dest is self._target:
            self._context.planner.commit_tensor(self._reqs[0], dest)
        else:
            tensor = dest.as_strided(stored.size, stored.stride, stored.storage_offset)
            for req in self._reqs:
                _copy_into_target(self._context, req, tensor, self._target)
        self._dest = self._target = None
        self._dest_bytes = memoryview(b"")


def _head(views: List[memoryview]) -> bytes:
    """The first (at most ``PREFIX_LIMIT``) bytes held."""
    out = bytearray()
    for view in views:
        out += view[: PREFIX_LIMIT - len(out)]
        if len(out) >= PREFIX_LIMIT:
            break
    return bytes(out)


def _check_descriptor(tail: bytes, nbytes: int, path: str) -> None:
    """The zip data descriptor after the storage bytes must give their size."""
    sizes32 = struct.unpack_from("<II", tail, 8) if len(tail) >= 16 else None
    sizes64 = struct.unpack_from("<QQ", tail, 8) if len(tail) >= 24 else None
    if tail[:4] != b"PK\x07\x08" or (nbytes, nbytes) not in (sizes32, sizes64):
        raise ValueError(
            f"A tensor item of {path} does not end where its header says; the "
            "checkpoint may be damaged"
        )
