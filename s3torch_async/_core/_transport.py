"""The ``Transport`` interface: how ``AsyncS3Client`` talks to S3.

Two implementations, chosen once when a client opens (:func:`open_transport`):

* ``LeanTransport`` (``_lean.py``): GET/HEAD/ListObjectsV2/PutObject/UploadPart signed here and
  sent on our own HTTP/1.1 client; the default.
* ``BotocoreTransport`` (``_botocore.py``): every call through aiobotocore. Selected with
  ``S3TORCH_ASYNC_FAST_PATH=0``; the lean transport also hands it the buckets it cannot serve
  (endpoints reached through an HTTP(S) proxy, S3 Express directory buckets).

Each method makes exactly **one attempt** (a region redirect S3 names is followed inside it,
once): retries belong to the caller's :class:`~._retry.Attempts` budget. Failures are raised
as botocore ``ClientError`` (service errors, same shape on both) or connection-level errors;
``_translate`` turns them into ``S3Exception``.

``extra_headers`` on uploads and GETs carries per-request headers (e.g. checksums) the same
way on both transports: they are sent and signed as given. The checksum headers themselves are
chosen by the client (``_checksum``); a transport only sends them and reports the full-object
CRC32 a GET announces (:attr:`ObjectBody.checksum_crc32`).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Mapping, Sequence
from typing import Callable, Optional

from .._types import HeadObjectResult, ListObjectResult

__all__ = ["ObjectBody", "OnToken", "Transport"]

Headers = Optional[Mapping[str, str]]
#: ``on_token(token)``: told the next listing page's token before this page is parsed.
OnToken = Optional[Callable[[str], Awaitable[None]]]


class ObjectBody(abc.ABC):
    """A GET response whose headers arrived; read its body once, then :meth:`release`."""

    etag: str
    content_range: Optional[str]
    content_length: int
    #: The full-object CRC32 the response announces (``None``: none, or a composite one).
    checksum_crc32: Optional[str] = None

    @property
    def object_size(self) -> int:
        """The object's full size (from ``Content-Range`` for a ranged GET)."""
        if self.content_range and "/" in self.content_range:
            total = self.content_range.rsplit("/", 1)[1]
            if total != "*":
                return int(total)
        return self.content_length

    @abc.abstractmethod
    async def readinto(self, view: memoryview) -> int:
        """Fill ``view`` from the body; return the bytes stored (fewer only at its end).

        Raises:
            S3Exception: The body is longer than ``view``.
        """

    @abc.abstractmethod
    async def readany(self) -> bytes:
        """The next bytes of the body as they arrive; ``b""`` at its end."""

    async def read_chunks(self, chunks: list[bytes]) -> int:
        """Append the rest of the body to ``chunks``; return the bytes added."""
        total = 0
        while True:
            chunk = await self.readany()
            if not chunk:
                return total
            chunks.append(chunk)
            total += len(chunk)

    @abc.abstractmethod
    def release(self) -> None:
        """Give the connection back (or close it if the body was not read to its end)."""


class Transport(abc.ABC):
    """One attempt of each S3 call ``AsyncS3Client`` makes."""

    #: ``"lean"`` or ``"botocore"``.
    name: str
    #: The endpoint URL for logs, or ``"AWS"``.
    endpoint: str

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close connections; the transport cannot be used afterwards."""

    @abc.abstractmethod
    async def open_get(
        self,
        bucket: str,
        key: str,
        *,
        range_header: Optional[str] = None,
        if_match: Optional[str] = None,
        extra_headers: Headers = None,
    ) -> ObjectBody:
        """Send a GetObject; return once its headers arrived (raises on error statuses)."""

    @abc.abstractmethod
    async def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        """HeadObject."""

    @abc.abstractmethod
    async def head_checksum(self, bucket: str, key: str) -> tuple[str, Optional[str]]:
        """HeadObject with ``x-amz-checksum-mode: ENABLED``.

        Returns:
            The ETag and the full-object CRC32 (``None``: none that can be checked).
        """

    @abc.abstractmethod
    async def list_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        token: Optional[str],
        start_after: str = "",
        *,
        on_token: OnToken = None,
        preconnect: int = 0,
    ) -> tuple[ListObjectResult, Optional[str]]:
        """One ListObjectsV2 page and the next page's token (``None`` at the end).

        ``start_after`` lists only keys after it (S3's ``StartAfter``; ignored with a token).
        ``on_token``, when the transport can read the next page's token from the raw answer
        before parsing it, is awaited with that token first (a hint: the returned token is
        the one that counts); a transport that cannot simply never calls it.
        ``preconnect`` (a hint too): the caller will send about that many requests to the
        bucket at once after this page; a transport with its own connection pool opens
        their connections while this page is awaited.
        """

    @abc.abstractmethod
    async def put_object(
        self,
        bucket: str,
        key: str,
        body: memoryview,
        *,
        storage_class: Optional[str] = None,
        if_none_match: bool = False,
        extra_headers: Headers = None,
    ) -> str:
        """PutObject; return the ETag."""

    @abc.abstractmethod
    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: memoryview,
        *,
        extra_headers: Headers = None,
    ) -> str:
        """UploadPart; return the part's ETag."""

    async def upload_part_trailed(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: memoryview,
    ) -> Optional[tuple[str, str]]:
        """UploadPart with the CRC32 in a trailer: ``(ETag, base64 CRC32)``.

        ``None``: not supported here (the caller sends the CRC32 in a header instead).
        """
        return None

    @abc.abstractmethod
    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: Optional[str] = None,
        extra_headers: Headers = None,
    ) -> str:
        """CreateMultipartUpload; return the upload id."""

    @abc.abstractmethod
    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        if_none_match: bool = False,
        checksums: Optional[Mapping[int, str]] = None,
        extra_headers: Headers = None,
    ) -> str:
        """CompleteMultipartUpload from ``(part_number, etag)`` pairs; return the ETag.

        ``checksums`` maps part numbers to their CRC32 (uploads created with CRC32): they go
        into the request body, next to each part's ETag.
        """

    @abc.abstractmethod
    async def abort_multipart_upload(
        self, bucket: str, key: str, upload_id: str
    ) -> None:
        """AbortMultipartUpload."""

    @abc.abstractmethod
    async def list_multipart_uploads(
        self, bucket: str, prefix: str
    ) -> list[tuple[str, str]]:
        """``(key, upload_id)`` of pending uploads under ``prefix`` (first page)."""

    @abc.abstractmethod
    async def delete_object(self, bucket: str, key: str) -> None:
        """DeleteObject."""

    @abc.abstractmethod
    async def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        """CopyObject (single request, at most 5 GiB)."""
