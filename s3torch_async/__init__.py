"""s3torch-async: a pure-Python, asyncio-first S3 connector for PyTorch.

A drop-in for ``s3torchconnector``: change ``import s3torchconnector`` to
``import s3torch_async`` and keep the rest of the code. The torch-dependent names
(``S3IterableDataset``, ``S3MapDataset``, ``S3Checkpoint``) are imported on first access, so
``import s3torch_async`` alone neither imports torch nor starts anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._config import S3ClientConfig
from ._core import AsyncS3Client, AsyncS3Reader, AsyncS3Writer
from ._errors import S3Exception
from ._types import HeadObjectResult, ListObjectResult, ObjectInfo, RestoreStatus
from ._version import __version__
from .s3reader import S3Reader, S3ReaderConstructor
from .s3writer import S3Writer

if TYPE_CHECKING:
    from ._core.listing import list_partitioned
    from .async_dataset import AsyncS3Dataset, S3Object
    from .s3checkpoint import S3Checkpoint
    from .s3iterable_dataset import S3IterableDataset
    from .s3map_dataset import S3MapDataset

# Imported on first access: the torch-dependent classes, the async dataset and the partitioned
# listing (~1 ms that a program using only the clients never needs).
_LAZY = {
    "AsyncS3Dataset": ".async_dataset",
    "S3Object": ".async_dataset",
    "S3Checkpoint": ".s3checkpoint",
    "S3IterableDataset": ".s3iterable_dataset",
    "S3MapDataset": ".s3map_dataset",
    "list_partitioned": "._core.listing",
}

for _obj in (AsyncS3Client, AsyncS3Reader, AsyncS3Writer):
    _obj.__module__ = __name__
del _obj


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AsyncS3Client",
    "AsyncS3Dataset",
    "AsyncS3Reader",
    "AsyncS3Writer",
    "HeadObjectResult",
    "ListObjectResult",
    "ObjectInfo",
    "RestoreStatus",
    "S3Checkpoint",
    "S3ClientConfig",
    "S3Exception",
    "S3IterableDataset",
    "S3MapDataset",
    "S3Object",
    "S3Reader",
    "S3ReaderConstructor",
    "S3Writer",
    "__version__",
    "list_partitioned",
]
