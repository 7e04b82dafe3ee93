"""``S3ReaderConstructor`` and ``DCPOptimizedConstructor`` (reference module path)."""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Union

from .._types import HeadObjectResult, ObjectInfo
from .dcp_optimized import (
    DEFAULT_MAX_GAP_SIZE,
    FALLBACK_GUIDANCE,
    DCPOptimizedS3Reader,
    ItemRange,
    check_max_gap_size,
)
from .protocol import DCPS3ReaderConstructorProtocol, S3ReaderConstructorProtocol
from .ranged import RangedS3Reader
from .s3reader import S3Reader
from .sequential import SequentialS3Reader

__all__ = ["DCPOptimizedConstructor", "S3ReaderConstructor"]


class DCPOptimizedConstructor:
    """Reader constructor for DCP loads: ``DCPOptimizedS3Reader`` over the plan's ranges.

    ``S3StorageReader.prepare_local_plan`` calls :meth:`set_item_ranges_by_file`; afterwards
    each ``.distcp`` file gets a ``DCPOptimizedS3Reader`` over its ranges and ``.metadata`` a
    ``SequentialS3Reader``.

    Args:
        max_gap_size: Largest gap between items fetched in the same request.

    Raises:
        TypeError: ``max_gap_size`` is not a number.
        ValueError: ``max_gap_size`` is negative.
    """

    def __init__(self, max_gap_size: Union[int, float] = DEFAULT_MAX_GAP_SIZE) -> None:
        check_max_gap_size(max_gap_size)
        self._max_gap_size = max_gap_size
        self._item_ranges_by_file: Dict[str, List[ItemRange]] = {}

    def set_item_ranges_by_file(
        self,
        plan_items: List[Any],
        storage_data: Dict[Any, Any],
        base_path: Any,
    ) -> None:
        """Record the byte range of every ``ReadItem``, keyed by ``base_path/relative_path``.

        Replaces earlier state. An empty plan (a rank that reads nothing) is fine.

        Args:
            plan_items: The load plan's ``ReadItem`` objects (``storage_index`` is used).
            storage_data: ``MetadataIndex`` to storage info (``relative_path``, ``offset``,
                ``length``).
            base_path: The checkpoint's ``s3://`` path.

        Raises:
            ValueError: ``plan_items`` is not empty but ``storage_data`` is.
        """
        ranges: Dict[str, List[ItemRange]] = defaultdict(list)
        if plan_items:
            if not storage_data:
                raise ValueError(
                    "storage_data must not be empty; required to map ReadItems to file "
                    "ranges."
                )
            base = os.fspath(base_path)
            for item in plan_items:
                info = storage_data[item.storage_index]
                path = posixpath.join(base, info.relative_path)
                ranges[path].append(ItemRange(info.offset, info.offset + info.length))
        self._item_ranges_by_file = ranges

    def __call__(
        self,
        bucket: str,
        key: str,
        get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]],
        get_stream: Callable[..., Any],
    ) -> S3Reader:
        """Return the reader for ``s3://bucket/key``.

        Raises:
            ValueError: No ranges were recorded for the object.
        """
        if key.endswith(".metadata"):
            return SequentialS3Reader(bucket, key, get_object_info, get_stream)
        s3_uri = f"s3://{bucket}/{key}"
        item_ranges = self._item_ranges_by_file.get(s3_uri)
        if item_ranges:
            return DCPOptimizedS3Reader(
                bucket,
                key,
                item_ranges,
                get_object_info,
                get_stream,
                max_gap_size=self._max_gap_size,
            )
        raise ValueError(
            f"No ranges found for {s3_uri}. Make sure range injection is used in "
            f"'S3StorageReader.prepare_local_plan'.\n{FALLBACK_GUIDANCE}"
        )


class S3ReaderConstructor:
    """Constructor for creating ``partial(S3Reader)`` instances.

    Creates partial ``S3Reader`` instances that ``S3Client`` completes with the remaining
    parameters (``bucket``, ``key``, ``get_object_info``, ``get_stream``):

    - ``sequential()``: the generic reader, for full reads and every access pattern.
    - ``range_based()``: ranged GETs for sparse partial reads of large objects.
    - ``dcp_optimized()``: coalesced ranged reads for PyTorch DCP loads.
    """

    @staticmethod
    def sequential() -> S3ReaderConstructorProtocol:
        """Create a constructor for sequential (generic) readers.

        Returns:
            S3ReaderConstructorProtocol: Partial constructor for ``SequentialS3Reader``.

        Example::

            reader_constructor = S3ReaderConstructor.sequential()
        """
        return partial(SequentialS3Reader)

    @staticmethod
    def range_based(buffer_size: Optional[int] = None) -> S3ReaderConstructorProtocol:
        """Create a constructor for range-based readers.

        Reads smaller than ``buffer_size`` load ``buffer_size`` bytes into a buffer, larger
        ones go straight to S3; a read that extends past the buffer reuses its overlap.

        Args:
            buffer_size: Internal buffer size in bytes; ``None`` for 8 MiB, 0 to disable.

        Returns:
            S3ReaderConstructorProtocol: Partial constructor for ``RangedS3Reader``.

        Example::

            reader_constructor = S3ReaderConstructor.range_based(buffer_size=16 * 1024 * 1024)
        """
        return partial(RangedS3Reader, buffer_size=buffer_size)

    @staticmethod
    def dcp_optimized(
        max_gap_size: Union[int, float] = DEFAULT_MAX_GAP_SIZE,
    ) -> DCPS3ReaderConstructorProtocol:
        """Create a constructor of DCP-optimized readers for faster checkpoint loading.

        Use with ``S3StorageReader``, whose ``prepare_local_plan`` sorts the load plan and
        injects its byte ranges.

        Args:
            max_gap_size: Largest gap in bytes between ranges fetched by the same request
                (default 32 MiB); ``float("inf")`` coalesces everything, 0 only adjacent
                ranges.

        Returns:
            DCPS3ReaderConstructorProtocol: A ``DCPOptimizedConstructor``.

        Raises:
            TypeError: ``max_gap_size`` is not a number.
            ValueError: ``max_gap_size`` is negative.
        """
        return DCPOptimizedConstructor(max_gap_size)

    @staticmethod
    def default() -> S3ReaderConstructorProtocol:
        """Create the default reader constructor (sequential).

        Returns:
            S3ReaderConstructorProtocol: Partial constructor for ``SequentialS3Reader``.
        """
        return S3ReaderConstructor.sequential()

    @staticmethod
    def get_reader_type_string(
        constructor: Optional[
            Union[S3ReaderConstructorProtocol, DCPS3ReaderConstructorProtocol]
        ],
    ) -> str:
        """Return ``"sequential"``, ``"range_based"``, ``"dcp_optimized"`` or ``"unknown"``.

        Args:
            constructor: A reader constructor; ``None`` means the default (sequential).
        """
        if constructor is None:
            return "sequential"
        if isinstance(constructor, DCPOptimizedConstructor):
            return "dcp_optimized"
        if isinstance(constructor, partial):
            if constructor.func is RangedS3Reader:
                return "range_based"
            if constructor.func is SequentialS3Reader:
                return "sequential"
        return "unknown"
