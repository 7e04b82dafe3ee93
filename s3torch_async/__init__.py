"""s3torch-async: a pure-Python, asyncio-first S3 connector for PyTorch.

A drop-in for ``s3torchconnector``: change ``import s3torchconnector`` to
``import s3torch_async`` and keep the rest of the code.
"""

from __future__ import annotations

from ._config import S3ClientConfig
from ._core import AsyncS3Client
from ._errors import S3Exception
from ._types import HeadObjectResult, ListObjectResult, ObjectInfo, RestoreStatus
from ._version import __version__

for _obj in (AsyncS3Client,):
    _obj.__module__ = __name__
del _obj

__all__ = [
    "AsyncS3Client",
    "HeadObjectResult",
    "ListObjectResult",
    "ObjectInfo",
    "RestoreStatus",
    "S3ClientConfig",
    "S3Exception",
    "__version__",
]
