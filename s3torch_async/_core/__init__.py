"""The async core: aiobotocore/aiohttp/anyio only; never torch, never threads."""

from __future__ import annotations

from .client import AsyncS3Client, ClientState, GetResult, ListObjectsPager, RangeMeta
from .reader import AsyncS3Reader
from .writer import AsyncS3Writer

__all__ = [
    "AsyncS3Client",
    "AsyncS3Reader",
    "AsyncS3Writer",
    "ClientState",
    "GetResult",
    "ListObjectsPager",
    "RangeMeta",
]
