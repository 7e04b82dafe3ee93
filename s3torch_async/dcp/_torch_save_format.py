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
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import struct
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

__all__ = ["PREFIX_LIMIT", "StoredTensor", "UnsupportedFormat", "parse_prefix"]

# Past this many bytes without reaching ``data/0`` the blob is not the plain layout.
PREFIX_LIMIT = 64 * 1024

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE = 0x04034B50
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
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
