"""Where ``torch.save`` put a tensor's raw bytes, found from the first bytes of the blob.

torch's DCP writer stores every tensor item as ``torch.save(tensor)``: an uncompressed zip
whose records come in a fixed order, ``data.pkl`` (the tensor's dtype, shape, strides and
storage size), a few small records (``byteorder``, ...), then ``data/0`` (the storage's
raw bytes, 64-byte aligned), then trailing records and the central directory. The local
headers carry no sizes (the writer streams, with data descriptors), but ``data.pkl`` is a
self-delimiting pickle and the small records are followed by descriptors that give their
size, so the raw bytes' offset and length are known long before they arrive. That lets a
load copy them straight into the destination tensor instead of going through ``torch.load``.

Anything unexpected raises :class:`UnsupportedFormat`, and the caller falls back to
``torch.load``.

:func:`save_tensor` writes the same bytes as ``torch.save(tensor, stream)``: torch's own
``_save`` produces the records (pickle, version markers, storage), this module lays out the
zip container as torch's writer does. The difference is the CRC-32 of each record: torch's
writer computes it holding the GIL, at a fraction of the speed of the package's CRC-32
(``_core._checksum.crc32``: ISA-L with the ``fast-crc`` extra, else ``zlib.crc32``), which
releases it, so the upload threads keep running while a checkpoint is serialised.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import io
import pickle
import random
import struct
import sys
import warnings
import zipfile
from dataclasses import dataclass
from typing import IO, Any, List, Optional, Tuple

import torch

from .._core._checksum import crc32

__all__ = [
    "PREFIX_LIMIT",
    "StoredTensor",
    "UnsupportedFormat",
    "memory_at",
    "parse_prefix",
    "save_tensor",
]

# Past this many bytes without reaching ``data/0`` the blob is not the plain layout.
PREFIX_LIMIT = 64 * 1024

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE = 0x04034B50
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_DESCRIPTOR = struct.Struct("<IIII")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
# torch's writer: "data descriptor follows" and "UTF-8 names"; zip64 end records always.
_FLAGS = 0x0808
_ALIGNMENT = 64
# Past this a record needs zip64 sizes and offsets, which torch.save itself then writes.
_MAX_BLOB = 0xFFFFFFFF - (1 << 20)
# CRC and write sizes: large enough to keep per-call costs small, small enough to stay in cache.
_CHUNK = 4 * 1024 * 1024
_STORED = 0
# Records torch.save writes before the storage bytes, besides data.pkl; all a few bytes long.
_SMALL_RECORDS = ("/.format_version", "/.storage_alignment", "/byteorder")


class UnsupportedFormat(Exception):
    """The blob is not a single dense tensor in the layout this module knows."""


@dataclass(frozen=True)
class StoredTensor:
    """A tensor saved by ``torch.save``: its layout and where its storage bytes lie.

    Attributes:
        dtype: Element type.
        size: Shape.
        stride: Strides, in elements.
        storage_offset: Offset of the first element in the storage, in elements.
        storage_numel: Elements in the storage.
        data_offset: Offset of the storage's first byte from the start of the blob.
    """

    dtype: torch.dtype
    size: Tuple[int, ...]
    stride: Tuple[int, ...]
    storage_offset: int
    storage_numel: int
    data_offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of the storage record."""
        return self.storage_numel * self.dtype.itemsize

    def is_contiguous_whole(self) -> bool:
        """Whether the storage holds exactly the tensor's elements in row-major order."""
        expected = 1
        for dim in range(len(self.size) - 1, -1, -1):
            if self.size[dim] != 1 and self.stride[dim] != expected:
                return False
            expected *= self.size[dim]
        return self.storage_offset == 0 and self.storage_numel == expected


def parse_prefix(head: bytes) -> Optional[StoredTensor]:
    """Locate the storage bytes of the tensor saved in a blob starting with ``head``.

    Args:
        head: The first bytes of the blob (any number).

    Returns:
        The tensor's description once ``head`` reaches the ``data/0`` record, None when more
        bytes are needed.

    Raises:
        UnsupportedFormat: The blob is not a plain ``torch.save`` of one tensor.
    """
    if sys.byteorder != "little":
        raise UnsupportedFormat("big-endian host")
    record = _local_record(head, 0)
    if record is None:
        return None
    name, start = record
    if not name.endswith("/data.pkl"):
        raise UnsupportedFormat(f"first record is {name!r}")
    prefix = name[: -len("data.pkl")]
    if start >= len(head):
        return None
    parsed = _unpickle(head, start)
    if parsed is None:
        return None
    description, end = parsed
    pos = _after_descriptor(head, start, end)
    if pos is None:
        return None
    while True:
        record = _local_record(head, pos)
        if record is None:
            return None
        name, start = record
        if name == prefix + "data/" + description.key:
            return StoredTensor(
                dtype=description.dtype,
                size=description.size,
                stride=description.stride,
                storage_offset=description.storage_offset,
                storage_numel=description.numel,
                data_offset=start,
            )
        if not any(name == prefix + small[1:] for small in _SMALL_RECORDS):
            raise UnsupportedFormat(f"unexpected record {name!r}")
        end = head.find(_DESCRIPTOR_SIGNATURE, start)
        if end < 0:
            if len(head) - start > 64:
                raise UnsupportedFormat(f"record {name!r} is not small")
            return None
        if name.endswith("/byteorder") and head[start:end] != b"little":
            raise UnsupportedFormat(f"byte order {head[start:end]!r}")
        pos = _after_descriptor(head, start, end)
        if pos is None:
            return None


def _local_record(head: bytes, pos: int) -> Optional[Tuple[str, int]]:
    """``(name, data start)`` of the local header at ``pos``; None if ``head`` is short."""
    if len(head) < pos + _LOCAL_HEADER.size:
        return None
    fields = _LOCAL_HEADER.unpack_from(head, pos)
    signature, _version, flags, method = fields[:4]
    name_len, extra_len = fields[9], fields[10]
    if signature != _LOCAL_SIGNATURE:
        raise UnsupportedFormat(f"no zip record at {pos}")
    if method != _STORED or flags & 1:
        raise UnsupportedFormat("compressed or encrypted record")
    name_start = pos + _LOCAL_HEADER.size
    data_start = name_start + name_len + extra_len
    if len(head) < data_start:
        return None
    return head[name_start : name_start + name_len].decode("utf-8"), data_start


def _after_descriptor(head: bytes, start: int, end: int) -> Optional[int]:
    """Offset after the data descriptor at ``end`` of a record that began at ``start``."""
    size = end - start
    if len(head) < end + 24:
        return None
    if head[end : end + 4] != _DESCRIPTOR_SIGNATURE:
        raise UnsupportedFormat(f"no data descriptor at {end}")
    # crc32, then compressed and uncompressed sizes: 4 bytes each, or 8 with zip64.
    if struct.unpack_from("<II", head, end + 8) == (size, size):
        return end + 16
    if struct.unpack_from("<QQ", head, end + 8) == (size, size):
        return end + 24
    raise UnsupportedFormat(f"data descriptor at {end} does not match")


@dataclass(frozen=True)
class _Description:
    dtype: torch.dtype
    key: str
    numel: int
    storage_offset: int
    size: Tuple[int, ...]
    stride: Tuple[int, ...]


@dataclass(frozen=True)
class _StorageRef:
    dtype: torch.dtype
    key: str
    numel: int


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


def _describe_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _Description:
    """Stands in for ``torch._utils._rebuild_tensor_v2`` while unpickling ``data.pkl``."""
    if not isinstance(storage, _StorageRef) or backward_hooks or metadata:
        raise UnsupportedFormat("tensor with hooks or metadata")
    if not all(isinstance(n, int) for n in (storage_offset, *size, *stride)):
        raise UnsupportedFormat("tensor layout is not integers")
    return _Description(
        storage.dtype,
        storage.key,
        storage.numel,
        storage_offset,
        tuple(size),
        tuple(stride),
    )


class _TensorUnpickler(pickle.Unpickler):
    """Reads ``data.pkl`` of a saved plain tensor, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _describe_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch":
            dtype = _storage_dtype(name)
            if dtype is not None:
                return _StorageType(dtype)
        raise UnsupportedFormat(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and pid[3] == "cpu"
            and isinstance(pid[4], int)
        ):
            return _StorageRef(pid[1].dtype, pid[2], pid[4])
        raise UnsupportedFormat(f"persistent id {pid!r}")


def _unpickle(head: bytes, start: int) -> Optional[Tuple[_Description, int]]:
    """The tensor described by the pickle at ``start`` and where the pickle ends."""
    stream = io.BytesIO(head)
    stream.seek(start)
    try:
        result = _TensorUnpickler(stream).load()
    except UnsupportedFormat:
        raise
    except Exception:  # cut short: a truncated pickle fails in many ways
        if len(head) >= PREFIX_LIMIT:
            raise UnsupportedFormat("data.pkl could not be read") from None
        return None
    if not isinstance(result, _Description):
        raise UnsupportedFormat(f"data.pkl holds {type(result).__name__}")
    return result, stream.tell()


@functools.cache
def _storage_dtype(name: str) -> Optional[torch.dtype]:
    """The dtype of torch's legacy typed storage class ``torch.<name>`` (``FloatStorage``)."""
    if not name.endswith("Storage"):
        return None
    cls = getattr(torch, name, None)
    if not isinstance(cls, type) or not issubclass(cls, torch.storage.TypedStorage):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage's deprecation notice
        dtype = getattr(cls, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else None


# -- writing ------------------------------------------------------------------------------


def save_tensor(tensor: torch.Tensor, stream: IO[bytes]) -> None:
    """Write what ``torch.save(tensor, stream)`` writes, computing CRC-32s off the GIL.

    Nothing is written when it raises.

    Args:
        tensor: A CPU tensor.
        stream: Where the bytes go (``write`` only).

    Raises:
        UnsupportedFormat: torch's records are not the ones this writer knows, or the blob
            would need zip64 sizes; call ``torch.save`` instead.
    """
    if not _round_trips():
        raise UnsupportedFormat("this torch does not load what this writer lays out")
    _write_tensor(tensor, stream)


@functools.cache
def _round_trips() -> bool:
    """Once per process: does ``torch.load`` read back a sample this writer laid out?

    The layout is taken from ``torch.save`` at run time and tested byte for byte against it
    in CI on one torch release; this guards the other releases a user may have, so that a
    checkpoint is never written in a form torch cannot load.
    """
    sample = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    buffer = io.BytesIO()
    try:
        _write_tensor(sample, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
    except Exception:  # any failure means: leave the writing to torch.save
        return False
    return isinstance(loaded, torch.Tensor) and torch.equal(loaded, sample)


def _write_tensor(tensor: torch.Tensor, stream: IO[bytes]) -> None:
    records = _records_of(tensor)
    template = _template()
    total = sum(len(payload) for _name, payload in records) + 4096
    if total > _MAX_BLOB:
        raise UnsupportedFormat("blob needs zip64 sizes")
    writer = _ZipWriter(stream)
    for name, payload in records:
        writer.record(template.prefix + name, payload)
    for name, payload in template.end_records():
        writer.record(name, payload)
    writer.finish()


class _RecordCollector:
    """Stands in for torch's zip writer in ``torch.serialization._save``: keeps the records."""

    def __init__(self) -> None:
        self.records: List[Tuple[str, memoryview]] = []
        self._keep: List[Any] = []  # storages whose memory the views point into

    def write_record(self, name: str, data: Any, nbytes: int) -> None:
        if isinstance(data, str):
            view = memoryview(data.encode("utf-8"))
        elif isinstance(data, (bytes, bytearray)):
            view = memoryview(data)
        elif isinstance(data, torch.UntypedStorage) and data.device.type == "cpu":
            self._keep.append(data)
            view = memory_at(data.data_ptr(), nbytes)
        else:
            raise UnsupportedFormat(f"record {name!r} of {type(data).__name__}")
        if len(view) != nbytes or not nbytes:
            # (torch lays out an empty record differently; torch.save writes those.)
            raise UnsupportedFormat(f"record {name!r} size")
        self.records.append((name, view))

    def write_record_metadata(self, name: str, nbytes: int) -> None:
        raise UnsupportedFormat("records without data")


def _records_of(tensor: torch.Tensor) -> List[Tuple[str, memoryview]]:
    collector = _RecordCollector()
    save = getattr(torch.serialization, "_save", None)
    if save is None:
        raise UnsupportedFormat("torch.serialization._save is gone")
    try:
        save(tensor, collector, pickle, torch.serialization.DEFAULT_PROTOCOL, False)
    except UnsupportedFormat:
        raise
    except TypeError as exc:  # a different _save signature
        raise UnsupportedFormat(str(exc)) from exc
    return collector.records


@dataclass(frozen=True)
class _Template:
    """What torch's writer adds around ``_save``'s records, read from a real ``torch.save``."""

    prefix: str  # "archive/"
    trailing: Tuple[Tuple[str, bytes], ...]  # ("archive/version", b"3\n"), ...
    id_name: str  # "archive/.data/serialization_id"
    id_length: int

    def end_records(self) -> List[Tuple[str, memoryview]]:
        serialization_id = "".join(random.choices("0123456789", k=self.id_length))
        records = [(name, memoryview(data)) for name, data in self.trailing]
        records.append((self.id_name, memoryview(serialization_id.encode())))
        return records


@functools.cache
def _template() -> _Template:
    buffer = io.BytesIO()
    torch.save(torch.zeros(1), buffer)
    with zipfile.ZipFile(buffer) as archive:
        names = archive.namelist()
        first = names[0]
        if (
            not first.endswith("/data.pkl")
            or names[-1] != first[:-8] + ".data/serialization_id"
        ):
            raise UnsupportedFormat(f"torch.save writes {names}")
        prefix = first[: -len("data.pkl")]
        last_data = max(
            i for i, name in enumerate(names) if name.startswith(prefix + "data/")
        )
        trailing = tuple(
            (name, archive.read(name)) for name in names[last_data + 1 : -1]
        )
        id_length = len(archive.read(names[-1]))
    return _Template(prefix, trailing, names[-1], id_length)


class _ZipWriter:
    """Lays out records as torch's zip writer does: stored, 64-byte aligned, descriptors."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._pos = 0
        self._entries: List[Tuple[bytes, int, int, int]] = []

    def _write(self, data: Any) -> None:
        self._stream.write(data)
        self._pos += len(data)

    def _payload(self, payload: memoryview) -> int:
        """Write ``payload`` a chunk at a time; return its CRC-32."""
        crc = 0
        for at in range(0, len(payload), _CHUNK):
            chunk = payload[at : at + _CHUNK]
            crc = crc32(chunk, crc)
            self._write(chunk)
        return crc

    def record(self, name: str, payload: memoryview) -> None:
        encoded = name.encode("utf-8")
        offset = self._pos
        start = offset + _LOCAL_HEADER.size + len(encoded) + 4
        pad = -start % _ALIGNMENT
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        header = _LOCAL_HEADER.pack(
            _LOCAL_SIGNATURE, 0, _FLAGS, 0, 0, 0, 0, 0, 0, len(encoded), len(extra)
        )
        self._write(header + encoded + extra)
        crc = self._payload(payload)
        size = len(payload)
        self._write(_DESCRIPTOR.pack(0x08074B50, crc, size, size))
        self._entries.append((encoded, crc, size, offset))

    def finish(self) -> None:
        directory = self._pos
        for encoded, crc, size, offset in self._entries:
            entry = _CENTRAL_HEADER.pack(
                0x02014B50,
                0,
                0,
                _FLAGS,
                0,
                0,
                0,
                crc,
                size,
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            self._write(entry + encoded)
        directory_size = self._pos - directory
        count = len(self._entries)
        zip64_end = self._pos
        self._write(
            _ZIP64_END.pack(
                0x06064B50,
                44,
                0x031E,
                0x2D,
                0,
                0,
                count,
                count,
                directory_size,
                directory,
            )
            + _ZIP64_LOCATOR.pack(0x07064B50, 0, zip64_end, 1)
            + _END.pack(0x06054B50, 0, 0, count, count, directory_size, directory, 0)
        )


def memory_at(address: int, nbytes: int) -> memoryview:
    """Bytes at ``address`` (memory the caller keeps alive), writable."""
    if nbytes == 0:
        return memoryview(b"")
    return memoryview((ctypes.c_char * nbytes).from_address(address)).cast("B")
