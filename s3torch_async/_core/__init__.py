"""The async core: aiobotocore/aiohttp/anyio only; never torch, never threads."""

from __future__ import annotations

from .client import AsyncS3Client, ClientState, GetResult, ListObjectsPager, RangeMeta

__all__ = ["AsyncS3Client", "ClientState", "GetResult", "ListObjectsPager", "RangeMeta"]
