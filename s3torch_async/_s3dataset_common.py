"""Helpers shared by the datasets (reference module path).

Besides the reference's helpers (``parse_s3_uri``, ``get_objects_from_prefix``,
``get_objects_from_uris``, ``identity``) this module owns the two process lookups the datasets
shard by: :func:`get_rank_and_world_size` and :func:`get_worker_info`. Both are read when an
iteration starts, never at construction, so a dataset built before
``torch.distributed.init_process_group`` still shards by rank. A DataLoader worker started with
spawn or forkserver has no process group of its own, so the datasets also capture the rank when
they are pickled for the workers (:func:`captured_rank`) and :func:`resolve_rank` prefers it
there.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Optional, Tuple, TypeVar, Union

from ._dataset_source import (
    get_objects_from_prefix,
    get_objects_from_uris,
    parse_object_uris,
)
from ._s3bucket_key_data import S3BucketKeyData
from ._types import ObjectInfo
from ._uri import parse_s3_uri

if TYPE_CHECKING:
    from ._s3client import S3Client
    from .s3reader import S3Reader
    from .s3reader.protocol import S3ReaderConstructorProtocol

__all__ = [
    "get_objects_from_prefix",
    "get_objects_from_uris",
    "get_rank_and_world_size",
    "get_worker_info",
    "identity",
    "parse_object_uris",
    "parse_s3_uri",
    "reader_for",
    "resolve_rank",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def identity(obj: T) -> T:
    """Return ``obj`` unchanged (the datasets' default transform)."""
    return obj


#: Readers that serve reads from prefetched bytes (the DCP-optimized one ignores them).
PREFETCHABLE_READERS = ("sequential", "range_based")


def reader_for(
    client: S3Client,
    item: S3BucketKeyData,
    data: Optional[Union[bytes, memoryview]],
    etag: Optional[str],
    reader_constructor: Optional[S3ReaderConstructorProtocol],
) -> S3Reader:
    """A reader of ``item``: from ``data`` (the whole object, at ``etag``) when given."""
    if data is None:
        return client.get_object(
            item.bucket,
            item.key,
            object_info=item.object_info,
            reader_constructor=reader_constructor,
        )
    info = item.object_info
    if info is None:
        # From URIs: the download told us the size, so the reader never needs a HEAD.
        # (The GET does not report the listing's last_modified; it is left at 0.)
        info = ObjectInfo(
            key=item.key, etag=etag or "", size=len(data), last_modified=0
        )
    return client.get_prefetched_object(
        item.bucket,
        item.key,
        object_info=info,
        data=data,
        etag=etag or "",
        reader_constructor=reader_constructor,
    )


def get_rank_and_world_size() -> Tuple[int, int]:
    """``(rank, world_size)`` of this process, else ``(0, 1)``.

    From ``torch.distributed`` when it is initialized here; otherwise from torchrun's
    ``RANK``/``WORLD_SIZE`` environment variables when both are set.
    """
    live = _process_group_rank()
    if live is not None:
        return live
    return _env_rank() or (0, 1)


def captured_rank() -> Optional[Tuple[int, int]]:
    """``(rank, world_size)`` of the process group initialized in this process, else ``None``.

    The datasets record it when they are pickled (for spawn/forkserver DataLoader workers),
    because only the process that owns the group knows it.
    """
    return _process_group_rank()


def resolve_rank(captured: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The rank to shard by: this process's group, else ``captured``, else the environment.

    Args:
        captured: What :func:`captured_rank` returned in the process that pickled the dataset.
    """
    if captured is not None and _process_group_rank() is None:
        return captured
    return get_rank_and_world_size()


def _process_group_rank() -> Optional[Tuple[int, int]]:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def _env_rank() -> Optional[Tuple[int, int]]:
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    if world_size < 1 or not 0 <= rank < world_size:
        logger.warning(
            "Ignoring RANK=%s WORLD_SIZE=%s: not a rank of that world size",
            rank,
            world_size,
        )
        return None
    return rank, world_size


def get_worker_info() -> Tuple[int, int]:
    """``(worker_id, num_workers)`` inside a DataLoader worker, else ``(0, 1)``."""
    from torch.utils.data import get_worker_info as torch_worker_info

    info = torch_worker_info()
    if info is None:
        return 0, 1
    return info.id, info.num_workers
