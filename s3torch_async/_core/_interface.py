"""What the core's reader and writer need from a client: the interface they depend on.

``AsyncS3Client`` implements both protocols. ``reader.py`` and ``writer.py`` are typed against
them and never import the client module (the import contract in pyproject.toml holds them to
it), so a reader or writer can be driven by anything that answers these calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union

from .._config import S3ClientConfig
from .._types import HeadObjectResult
from ._checksum import Buffer, ChecksumPolicy

__all__ = ["RangeMeta", "ReadClient", "WriteClient"]


@dataclass(frozen=True)
class RangeMeta:
    """What a ranged read learned: the version read, the object's size and the bytes delivered."""

    etag: str
    object_size: int
    nbytes: int


class _Configured(Protocol):
    @property
    def s3client_config(self) -> S3ClientConfig: ...

    @property
    def max_concurrency(self) -> int: ...


class ReadClient(_Configured, Protocol):
    """The requests ``AsyncS3Reader`` sends."""

    async def head_object(self, bucket: str, key: str) -> HeadObjectResult: ...

    async def checksum_policy(self) -> ChecksumPolicy: ...

    async def object_checksum(
        self, bucket: str, key: str
    ) -> tuple[str, Optional[str]]: ...

    async def get_range_into(
        self,
        bucket: str,
        key: str,
        start: int,
        view: Union[memoryview, bytearray],
        *,
        if_match: Optional[str] = None,
        whole: bool = False,
        on_head: Optional[Callable[[int, str], None]] = None,
    ) -> RangeMeta: ...


class WriteClient(_Configured, Protocol):
    """The requests ``AsyncS3Writer`` sends."""

    async def checksum_policy(self) -> ChecksumPolicy: ...

    async def upload_trailers(self) -> bool: ...

    async def put_object_bytes(
        self,
        bucket: str,
        key: str,
        data: Buffer,
        *,
        storage_class: Optional[str] = None,
        if_none_match: bool = False,
        checksum_crc32: Optional[str] = None,
    ) -> str: ...

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: Optional[str] = None,
        checksum_algorithm: Optional[str] = None,
    ) -> str: ...

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: Buffer,
        *,
        checksum_crc32: Optional[str] = None,
    ) -> str: ...

    async def upload_part_crc32(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: Buffer,
    ) -> tuple[str, str]: ...

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        if_none_match: bool = False,
        checksums: Optional[Mapping[int, str]] = None,
        full_crc32: Optional[str] = None,
    ) -> str: ...

    async def abort_multipart_upload(
        self, bucket: str, key: str, upload_id: str
    ) -> None: ...
