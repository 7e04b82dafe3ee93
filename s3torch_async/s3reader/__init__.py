"""Readers: file-like, seekable views of S3 objects (reference module path)."""

from __future__ import annotations

from .constructor import DCPOptimizedConstructor as DCPOptimizedConstructor
from .constructor import S3ReaderConstructor
from .dcp_optimized import DCPOptimizedS3Reader
from .dcp_optimized import ItemRange as ItemRange
from .dcp_optimized import RangeGroup as RangeGroup
from .protocol import DCPS3ReaderConstructorProtocol as DCPS3ReaderConstructorProtocol
from .protocol import GetStreamCallable as GetStreamCallable
from .protocol import S3ReaderConstructorProtocol as S3ReaderConstructorProtocol
from .ranged import RangedS3Reader
from .s3reader import S3Reader
from .sequential import SequentialS3Reader

# DCPOptimizedConstructor, ItemRange, RangeGroup and the protocols are importable from here
# too (explicit re-exports above), as in the reference, without being in ``__all__``.
__all__ = [
    "DCPOptimizedS3Reader",
    "RangedS3Reader",
    "S3Reader",
    "S3ReaderConstructor",
    "SequentialS3Reader",
]
