"""Protocols of the callables that build and feed readers (reference module path)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Protocol,
    Union,
    runtime_checkable,
)

from .._types import HeadObjectResult, ObjectInfo

if TYPE_CHECKING:
    from .dcp_optimized import ItemRange
    from .s3reader import S3Reader

__all__ = [
    "DCPS3ReaderConstructorProtocol",
    "GetStreamCallable",
    "S3ReaderConstructorProtocol",
]


class GetStreamCallable(Protocol):
    """``get_stream(start=None, end=None)``: the object's bytes ``[start, end)`` as chunks.

    ``start=None`` means the whole object.
    """

    def __call__(
        self, start: Optional[int] = None, end: Optional[int] = None
    ) -> Iterable[bytes]:
        """Return an iterator over the bytes of the requested range."""
        ...


@runtime_checkable
class S3ReaderConstructorProtocol(Protocol):
    """Builds a reader from ``(bucket, key, get_object_info, get_stream)``."""

    def __call__(
        self,
        bucket: str,
        key: str,
        get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]],
        get_stream: GetStreamCallable,
    ) -> S3Reader:
        """Return a reader for ``s3://bucket/key``."""
        ...


@runtime_checkable
class DCPS3ReaderConstructorProtocol(Protocol):
    """A reader constructor that takes the byte ranges of a DCP load plan, per file."""

    _item_ranges_by_file: Dict[str, List[ItemRange]]

    def set_item_ranges_by_file(
        self,
        plan_items: List[Any],
        storage_data: Dict[Any, Any],
        base_path: Any,
    ) -> None:
        """Record the ranges each ``ReadItem`` of the plan needs, keyed by file URI."""
        ...

    def __call__(
        self,
        bucket: str,
        key: str,
        get_object_info: Callable[[], Union[ObjectInfo, HeadObjectResult]],
        get_stream: GetStreamCallable,
    ) -> S3Reader:
        """Return a reader for ``s3://bucket/key``."""
        ...
