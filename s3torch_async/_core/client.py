"""``AsyncS3Client``: lifecycle, loop binding and every S3 operation the package uses.

All requests go through one aiobotocore client, opened lazily on the first operation (or by
``async with``) and bound to the event loop that opened it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import aiohttp
from botocore.exceptions import ResponseStreamingError
from botocore.httpsession import get_cert_path

from .._config import S3ClientConfig, validate_for_use
from .._errors import S3Exception
from .._types import HeadObjectResult, ListObjectResult, ObjectInfo, RestoreStatus
from .._user_agent import UserAgent
from . import _session
from ._checksum import (
    CRC32_HEADER,
    ChecksumPolicy,
    checksum_mismatch,
    crc32_b64_async,
    expected_crc32,
)
from ._http import HTTPResponse
from ._lean import LeanTransport
from ._translate import translate, translating_errors
from .writer import AsyncS3Writer

if TYPE_CHECKING:
    from .reader import AsyncS3Reader

__all__ = ["AsyncS3Client", "ClientState", "GetResult", "ListObjectsPager", "RangeMeta"]

logger = logging.getLogger(__name__)

Buffer = Union[bytes, bytearray, memoryview]

# Failures of a response body after the headers arrived: resumed from the last byte received.
_BODY_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
    ResponseStreamingError,
    asyncio.TimeoutError,
    ConnectionError,
)


class ClientState(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True)
class RangeMeta:
    """What a ranged read learned: the version read, the object's size and the bytes delivered."""

    etag: str
    object_size: int
    nbytes: int


@dataclass(frozen=True)
class GetResult:
    """A small GET held in memory."""

    data: bytes
    etag: str
    object_size: int


def _epoch(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(value or 0)


def _restore_status(value: Any) -> Optional[RestoreStatus]:
    if not value:
        return None
    if isinstance(value, dict):
        expiry = value.get("RestoreExpiryDate")
        return RestoreStatus(
            bool(value.get("IsRestoreInProgress")), _epoch(expiry) if expiry else None
        )
    text = str(
        value
    )  # HEAD's x-amz-restore header: ongoing-request="false", expiry-date="..."
    return RestoreStatus('ongoing-request="true"' in text, None)


@dataclass
class _Body:
    """A GET response whose headers arrived, from either transport."""

    etag: str
    content_range: Optional[str]
    content_length: int
    stream: Any  # aiohttp.StreamReader
    release: Callable[[], Any]
    checksum: Optional[str] = None  # full-object CRC32 announced by S3

    @property
    def object_size(self) -> int:
        if self.content_range and "/" in self.content_range:
            total = self.content_range.rsplit("/", 1)[1]
            if total != "*":
                return int(total)
        return self.content_length


def _range_header(start: int, end: Optional[int]) -> str:
    return f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"


def _check_names(bucket: Any, key: Any = "", *, key_required: bool = True) -> None:
    if not isinstance(bucket, str):
        raise TypeError(f"bucket must be a str, got {type(bucket).__name__}")
    if not bucket:
        raise ValueError("bucket must be a non-empty string")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if key_required and not key:
        raise ValueError(f"key must be a non-empty string (bucket {bucket!r})")


async def _backoff(attempt: int) -> None:
    # Full jitter, as botocore's standard mode: base 50 ms, capped at 2 s.
    await asyncio.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))


class AsyncS3Client:
    """Asynchronous S3 client; the engine under every sync class.

    Construction does no I/O. The underlying connection pool opens on first use (or in
    ``async with``) and is bound to that event loop; close it with :meth:`aclose`.

    Args:
        region: AWS region of the buckets.
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``.
        user_agent: User-agent prefix (a ``UserAgent`` or a string).

    Raises:
        TypeError: ``region`` is not a string, or ``s3client_config`` is not an ``S3ClientConfig``.
    """

    def __init__(
        self,
        region: str,
        *,
        endpoint: Optional[str] = None,
        s3client_config: Optional[S3ClientConfig] = None,
        user_agent: Union[UserAgent, str, None] = None,
    ) -> None:
        if not isinstance(region, str):
            raise TypeError(f"region must be a str, got {type(region).__name__}")
        if endpoint is not None and not isinstance(endpoint, str):
            raise TypeError(
                f"endpoint must be a str or None, got {type(endpoint).__name__}"
            )
        if s3client_config is None:
            s3client_config = S3ClientConfig()
        if not isinstance(s3client_config, S3ClientConfig):
            raise TypeError(
                "s3client_config must be an S3ClientConfig, got "
                f"{type(s3client_config).__name__}"
            )
        if user_agent is None:
            user_agent = UserAgent()
        self._region = region
        self._endpoint_arg = endpoint
        self._config = s3client_config
        self._user_agent = (
            user_agent if isinstance(user_agent, str) else user_agent.prefix
        )
        self._state = ClientState.UNOPENED
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stack: Optional[AsyncExitStack] = None
        self._s3: Any = None
        self._open_lock: Optional[asyncio.Lock] = None
        self._settings: Optional[_session.ResolvedSettings] = None
        self._lean: Optional[LeanTransport] = None
        self._checksums = ChecksumPolicy()

    # -- properties -------------------------------------------------------------------------

    @property
    def region(self) -> str:
        return self._region

    @property
    def endpoint(self) -> Optional[str]:
        """The endpoint in use (the argument or the environment), ``None`` for AWS."""
        return _session.resolve_endpoint(self._endpoint_arg)

    @property
    def s3client_config(self) -> S3ClientConfig:
        return self._config

    @property
    def user_agent_prefix(self) -> str:
        return self._user_agent

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def max_concurrency(self) -> int:
        """Concurrent ranged GETs or part uploads one transfer may use."""
        return self._resolved().max_concurrency

    async def checksum_policy(self) -> ChecksumPolicy:
        """Whether uploads carry CRC32 checksums and whole-object GETs are checked."""
        await self._client()
        return self._checksums

    def _resolved(self) -> _session.ResolvedSettings:
        if self._settings is None:
            self._settings = _session.resolve(
                self._region, self._endpoint_arg, self._config, self._user_agent
            )
        return self._settings

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncS3Client:
        await self._client()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent; the client cannot be used afterwards."""
        if self._state is ClientState.OPENED:
            self._check_loop()
        self._state = ClientState.CLOSED
        stack, self._stack, self._s3, self._lean = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError(
                "AsyncS3Client is bound to the event loop that opened it and was used from a "
                "different event loop; create one AsyncS3Client per event loop"
            )

    async def _client(self) -> Any:
        if self._state is ClientState.OPENED:
            self._check_loop()
            return self._s3
        if self._state is ClientState.CLOSED:
            raise RuntimeError("AsyncS3Client is closed; create a new client")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._state is ClientState.UNOPENED:
                await self._open()
        return await self._client()

    async def _open(self) -> None:
        validate_for_use(self._config)
        settings = self._resolved()
        _session.check_endpoint(settings.endpoint)
        session = _session.make_session(settings)
        self._checksums = ChecksumPolicy.from_session(session)
        stack = AsyncExitStack()
        try:
            s3 = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=settings.endpoint,
                    config=_session.build_aio_config(settings),
                )
            )
        except Exception as exc:
            await stack.aclose()
            new = translate(exc, operation="CreateClient", bucket=None, key=None)
            raise new from exc
        if self._config.requester_pays:
            s3.meta.events.register("before-sign.s3", _add_requester_pays)
        self._lean = None
        if os.environ.get("S3TORCH_ASYNC_FAST_PATH", "1") != "0":
            extra = {"User-Agent": settings.user_agent}
            if self._config.requester_pays:
                extra["x-amz-request-payer"] = "requester"
            self._lean = LeanTransport(
                s3,
                region=settings.region,
                max_attempts=self._config.max_attempts,
                pool_size=settings.pool_size,
                connect_timeout=_session.connect_timeout(),
                read_timeout=_session.read_timeout(),
                extra_headers=extra,
                unsigned=self._config.unsigned,
                ca_file=get_cert_path(session.get_config_variable("ca_bundle") or True),
            )
            stack.push_async_callback(self._lean.aclose)
        self._stack, self._s3 = stack, s3
        self._loop = asyncio.get_running_loop()
        self._state = ClientState.OPENED

    async def _lean_base(self, bucket: str) -> Optional[tuple[str, str, str]]:
        """The lean transport's base URL for ``bucket``, or ``None`` to use botocore."""
        await self._client()
        if self._lean is None:
            return None
        return await self._lean.base(bucket)

    # -- listing ----------------------------------------------------------------------------

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
        *,
        continuation_token: Optional[str] = None,
    ) -> ListObjectsPager:
        """Page through ListObjectsV2 results; no request is sent until iteration starts.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``bucket`` is empty or ``max_keys`` is not in 1..1000.
        """
        _check_names(bucket, key_required=False)
        for name, value in (("prefix", prefix), ("delimiter", delimiter)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if not isinstance(max_keys, int) or isinstance(max_keys, bool):
            raise TypeError(f"max_keys must be an int, got {type(max_keys).__name__}")
        if not 1 <= max_keys <= 1000:
            raise ValueError(f"max_keys must be between 1 and 1000, got {max_keys}")
        return ListObjectsPager(
            self, bucket, prefix, delimiter, max_keys, continuation_token
        )

    async def _list_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        token: Optional[str],
    ) -> tuple[ListObjectResult, Optional[str]]:
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "MaxKeys": max_keys,
        }
        if delimiter:
            params["Delimiter"] = delimiter
        if token:
            params["ContinuationToken"] = token
        async with translating_errors("ListObjectsV2", bucket, prefix):
            base = await self._lean_base(bucket)
            if base is not None:
                assert self._lean is not None
                objects, prefixes, next_token = await self._lean.list_page(
                    base, prefix, delimiter, max_keys, token
                )
                infos = [ObjectInfo(k, e, sz, lm, sc) for k, e, sz, lm, sc in objects]
                return ListObjectResult(infos, prefixes), next_token
            s3 = await self._client()
            resp = await s3.list_objects_v2(**params)
        infos = [
            ObjectInfo(
                key=item["Key"],
                etag=item.get("ETag", ""),
                size=int(item.get("Size", 0)),
                last_modified=_epoch(item.get("LastModified")),
                storage_class=item.get("StorageClass"),
                restore_status=_restore_status(item.get("RestoreStatus")),
            )
            for item in resp.get("Contents", ())
        ]
        prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes", ())]
        next_token = (
            resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
        )
        return ListObjectResult(infos, prefixes), next_token

    # -- objects ----------------------------------------------------------------------------

    async def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        """Return an object's metadata (one HEAD request).

        Raises:
            S3Exception: ``Service error: The object was not found`` for a missing object.
        """
        _check_names(bucket, key)
        async with translating_errors("HeadObject", bucket, key):
            base = await self._lean_base(bucket)
            if base is not None:
                assert self._lean is not None
                resp = await self._lean.head(base, key)
            else:
                s3 = await self._client()
                resp = await s3.head_object(Bucket=bucket, Key=key)
        return HeadObjectResult(
            etag=resp.get("ETag", ""),
            size=int(resp.get("ContentLength", 0)),
            last_modified=_epoch(resp.get("LastModified")),
            storage_class=resp.get("StorageClass"),
            restore_status=_restore_status(resp.get("Restore")),
        )

    def get_object(
        self,
        bucket: str,
        key: str,
        *,
        object_info: Union[ObjectInfo, HeadObjectResult, None] = None,
    ) -> AsyncS3Reader:
        """Return an :class:`AsyncS3Reader` for ``s3://bucket/key``; sends no request.

        Args:
            bucket: Bucket name.
            key: Object key.
            object_info: Listing or HEAD information; its size saves the size lookup.
        """
        from .reader import AsyncS3Reader

        _check_names(bucket, key)
        return AsyncS3Reader(self, bucket, key, object_info=object_info)

    async def get_range(
        self,
        bucket: str,
        key: str,
        start: Optional[int] = None,
        end: Optional[int] = None,
        *,
        if_match: Optional[str] = None,
    ) -> GetResult:
        """GET ``[start, end)`` (the whole object when ``start`` is None) into memory.

        Raises:
            S3Exception: The request failed (``Service error: The key does not exist``...).
        """
        _check_names(bucket, key)
        if start is not None and end is not None and end <= start:
            raise ValueError(
                f"empty or inverted range [{start}, {end}) for s3://{bucket}/{key}"
            )
        result = await self._get_into(bucket, key, start, end, None, if_match)
        assert isinstance(result, GetResult)
        return result

    async def get_range_into(
        self,
        bucket: str,
        key: str,
        start: int,
        view: Union[memoryview, bytearray],
        *,
        if_match: Optional[str] = None,
    ) -> RangeMeta:
        """GET ``[start, start + len(view))`` straight into ``view``; resume a broken body.

        Fewer bytes than ``len(view)`` are delivered only at the end of the object.

        Raises:
            S3Exception: The request failed, or the object changed (``if_match``) mid-read.
        """
        _check_names(bucket, key)
        mv = memoryview(view).cast("B")
        if mv.readonly:
            raise TypeError("view must be a writable buffer")
        if len(mv) == 0:
            raise ValueError("view must not be empty")
        meta = await self._get_into(bucket, key, start, start + len(mv), mv, if_match)
        assert isinstance(meta, RangeMeta)
        return meta

    async def _get_into(
        self,
        bucket: str,
        key: str,
        start: Optional[int],
        end: Optional[int],
        view: Optional[memoryview],
        if_match: Optional[str],
    ) -> Union[RangeMeta, GetResult]:
        """One GET, resumed from the last byte received when the body breaks.

        Resumes draw on the same attempt budget as request retries (``max_attempts``) and pin
        the version seen first with ``If-Match``.
        """
        attempts_left = self._config.max_attempts
        received = 0
        etag = if_match
        object_size = -1
        expected: Optional[int] = None
        chunks: list[bytes] = []
        attempt = 0
        # Only a whole-object GET can be checked: S3 has no checksum for a range.
        checked = start is None and self._checksums.validate
        checksum: Optional[str] = None
        while True:
            offset = (start or 0) + received
            params: dict[str, Any] = {}
            if start is not None or received:
                params["Range"] = _range_header(offset, end)
            try:
                async with translating_errors("GetObject", bucket, key):
                    body = await self._open_get(
                        bucket,
                        key,
                        params.get("Range"),
                        etag,
                        checksum_mode=checked and not received,
                    )
                try:
                    if checked and not received:
                        checksum = body.checksum
                    etag = etag or body.etag
                    object_size = body.object_size
                    if expected is None:
                        expected = body.content_length
                    if view is not None:
                        received += await _read_into(
                            body.stream, view[received:expected]
                        )
                    else:
                        try:
                            await _read_chunks(body.stream, chunks)
                        finally:
                            # Chunks read before a break count: the resume starts after them.
                            received = sum(map(len, chunks))
                finally:
                    body.release()
                if received < expected:
                    raise aiohttp.ClientPayloadError(
                        f"response ended after {received} of {expected} bytes"
                    )
                break
            except _BODY_ERRORS as exc:
                attempt += 1
                attempts_left -= 1
                if attempts_left <= 0 or expected is None:
                    new = translate(exc, operation="GetObject", bucket=bucket, key=key)
                    raise new from exc
                logger.debug(
                    "GetObject s3://%s/%s: body broke after %d bytes (%s); resuming",
                    bucket,
                    key,
                    received,
                    exc,
                )
                await _backoff(attempt)
        if checksum is not None:
            data = chunks if view is None else view[:received]
            actual = await checksum_mismatch(checksum, data)
            if actual is not None:
                raise S3Exception(
                    f"GetObject s3://{bucket}/{key} failed: the body's CRC32 {actual} "
                    f"does not match the object's checksum {checksum}; the data was "
                    "corrupted on the way and was not delivered",
                    bucket=bucket,
                    key=key,
                    operation="GetObject",
                    code="ChecksumMismatch",
                )
        if view is not None:
            return RangeMeta(etag or "", object_size, received)
        return GetResult(b"".join(chunks), etag or "", object_size)

    async def _open_get(
        self,
        bucket: str,
        key: str,
        range_header: Optional[str],
        if_match: Optional[str],
        *,
        checksum_mode: bool = False,
    ) -> _Body:
        base = await self._lean_base(bucket)
        if base is not None:
            lean = self._lean
            assert lean is not None
            resp = await lean.with_retries(
                lambda: lean.open_get(
                    base, key, range_header, if_match, checksum_mode=checksum_mode
                )
            )
            h = resp.headers
            return _Body(
                etag=h.get("ETag", ""),
                content_range=h.get("Content-Range"),
                content_length=int(h.get("Content-Length", 0)),
                stream=resp,
                release=resp.release,
                checksum=expected_crc32(h),
            )
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if range_header:
            params["Range"] = range_header
        if if_match:
            params["IfMatch"] = if_match
        if checksum_mode:
            # botocore itself validates only with response_checksum_validation=when_supported,
            # which our client config turns off: the body is checked here, on both paths.
            params["ChecksumMode"] = "ENABLED"
        s3 = await self._client()
        raw = await s3.get_object(**params)
        return _Body(
            etag=raw.get("ETag", ""),
            content_range=raw.get("ContentRange"),
            content_length=int(raw.get("ContentLength", 0)),
            stream=raw["Body"].raw_stream.content,
            release=raw["Body"].close,
            checksum=expected_crc32(raw["ResponseMetadata"]["HTTPHeaders"]),
        )

    def put_object(
        self,
        bucket: str,
        key: str,
        storage_class: Optional[str] = None,
        *,
        if_none_match: bool = False,
    ) -> AsyncS3Writer:
        """Return a writer for ``s3://bucket/key``; no request is sent until data is written.

        The object appears only when the writer commits (``aclose()`` or leaving
        ``async with``); an exception or cancellation aborts the upload.

        Args:
            bucket: Bucket name.
            key: Object key.
            storage_class: S3 storage class, e.g. ``"STANDARD_IA"``.
            if_none_match: Refuse to overwrite: the commit raises ``S3Exception`` (HTTP 412)
                if the key already exists.

        Raises:
            TypeError: ``bucket`` or ``key`` is not a string.
            ValueError: ``bucket`` or ``key`` is empty.
        """
        _check_names(bucket, key)
        return AsyncS3Writer(
            self, bucket, key, storage_class, if_none_match=if_none_match
        )

    async def put_object_bytes(
        self,
        bucket: str,
        key: str,
        data: Buffer,
        *,
        storage_class: Optional[str] = None,
        if_none_match: bool = False,
        checksum_crc32: Optional[str] = None,
    ) -> str:
        """Upload ``data`` with a single PutObject and return the new ETag.

        The body carries a CRC32 that S3 verifies (``checksum_crc32``, else computed here)
        unless the checksum policy says ``when_required``.

        Raises:
            S3Exception: The upload failed (with ``if_none_match``: the key already exists).
        """
        _check_names(bucket, key)
        async with translating_errors("PutObject", bucket, key):
            checksum = await self._upload_checksum(data, checksum_crc32)
            base = await self._lean_base(bucket)
            if base is not None:
                assert self._lean is not None
                headers = _checksum_headers(checksum)
                if storage_class:
                    headers["x-amz-storage-class"] = storage_class
                if if_none_match:
                    headers["If-None-Match"] = "*"
                return await self._lean.put(base, key, _as_view(data), headers=headers)
            params: dict[str, Any] = {
                "Bucket": bucket,
                "Key": key,
                "Body": _as_body(data),
                **_checksum_params(checksum),
            }
            if storage_class:
                params["StorageClass"] = storage_class
            if if_none_match:
                params["IfNoneMatch"] = "*"
            s3 = await self._client()
            resp = await s3.put_object(**params)
        return str(resp.get("ETag", ""))

    async def _upload_checksum(
        self, data: Buffer, given: Optional[str]
    ) -> Optional[str]:
        if given is not None:
            return given
        await self._client()
        if not self._checksums.send:
            return None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data must be a bytes-like object, got {type(data).__name__}"
            )
        return await crc32_b64_async(memoryview(data).cast("B"))

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: Optional[str] = None,
        checksum_algorithm: Optional[str] = None,
    ) -> str:
        """Start a multipart upload and return its upload id.

        With ``checksum_algorithm="CRC32"`` every part must then carry its CRC32, and
        :meth:`complete_multipart_upload` its parts' checksums.
        """
        _check_names(bucket, key)
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if storage_class:
            params["StorageClass"] = storage_class
        if checksum_algorithm:
            params["ChecksumAlgorithm"] = checksum_algorithm
        async with translating_errors("CreateMultipartUpload", bucket, key):
            s3 = await self._client()
            resp = await s3.create_multipart_upload(**params)
        return str(resp["UploadId"])

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: Buffer,
        *,
        checksum_crc32: Optional[str] = None,
    ) -> str:
        """Upload one part and return its ETag; ``checksum_crc32`` goes with it if given."""
        async with translating_errors("UploadPart", bucket, key):
            base = await self._lean_base(bucket)
            if base is not None:
                assert self._lean is not None
                query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
                return await self._lean.put(
                    base,
                    key,
                    _as_view(data),
                    query=query,
                    headers=_checksum_headers(checksum_crc32),
                    operation="UploadPart",
                )
            s3 = await self._client()
            resp = await s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=_as_body(data),
                **_checksum_params(checksum_crc32),
            )
        return str(resp["ETag"])

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        if_none_match: bool = False,
        checksums: Optional[Mapping[int, str]] = None,
    ) -> str:
        """Complete a multipart upload from ``(part_number, etag)`` pairs; return the ETag.

        ``checksums`` maps part numbers to their CRC32 (uploads created with CRC32).
        """
        listed: list[dict[str, Any]] = []
        for n, e in parts:
            listed.append({"PartNumber": n, "ETag": e})
            if checksums is not None:
                listed[-1]["ChecksumCRC32"] = checksums[n]
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": listed},
        }
        if if_none_match:
            params["IfNoneMatch"] = "*"
        async with translating_errors("CompleteMultipartUpload", bucket, key):
            s3 = await self._client()
            resp = await s3.complete_multipart_upload(**params)
        return str(resp.get("ETag", ""))

    async def abort_multipart_upload(
        self, bucket: str, key: str, upload_id: str
    ) -> None:
        """Abort a multipart upload, discarding its parts."""
        async with translating_errors("AbortMultipartUpload", bucket, key):
            s3 = await self._client()
            await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    async def list_multipart_uploads(
        self, bucket: str, prefix: str = ""
    ) -> list[tuple[str, str]]:
        """Return ``(key, upload_id)`` of the pending multipart uploads under ``prefix``."""
        _check_names(bucket, key_required=False)
        async with translating_errors("ListMultipartUploads", bucket, prefix):
            s3 = await self._client()
            resp = await s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", ())]

    async def delete_object(self, bucket: str, key: str) -> None:
        """Delete an object; a missing key is not an error, a missing bucket is."""
        _check_names(bucket, key)
        async with translating_errors("DeleteObject", bucket, key):
            s3 = await self._client()
            await s3.delete_object(Bucket=bucket, Key=key)

    async def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        """Server-side copy of one object (single CopyObject: at most 5 GiB).

        Raises:
            S3Exception: ``Service error: The object was not found`` for a missing source.
        """
        _check_names(src_bucket, src_key)
        _check_names(dst_bucket, dst_key)
        async with translating_errors("CopyObject", src_bucket, src_key):
            s3 = await self._client()
            await s3.copy_object(
                Bucket=dst_bucket,
                Key=dst_key,
                CopySource={"Bucket": src_bucket, "Key": src_key},
            )


class ListObjectsPager:
    """Async iterator over the pages of one listing; resumable from ``continuation_token``.

    Attributes:
        bucket, prefix, delimiter, max_keys: The listing's parameters.
        continuation_token: Token of the next page to fetch (``None`` before the first page).
        complete: No more pages remain.
    """

    def __init__(
        self,
        client: AsyncS3Client,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        continuation_token: Optional[str] = None,
        complete: bool = False,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.delimiter = delimiter
        self.max_keys = max_keys
        self.continuation_token = continuation_token
        self.complete = complete

    def __aiter__(self) -> ListObjectsPager:
        return self

    async def __anext__(self) -> ListObjectResult:
        if self.complete:
            raise StopAsyncIteration
        page, token = await self._client._list_page(
            self.bucket,
            self.prefix,
            self.delimiter,
            self.max_keys,
            self.continuation_token,
        )
        self.continuation_token = token
        self.complete = token is None
        return page

    async def objects(self) -> AsyncIterator[ObjectInfo]:
        """Iterate over every object of the remaining pages."""
        async for page in self:
            for info in page.object_info:
                yield info


def _checksum_headers(checksum: Optional[str]) -> dict[str, str]:
    # x-amz-sdk-checksum-algorithm is what AWS SDKs send alongside; S3 ignores it when the
    # value header is present, and some servers (moto) store the checksum only with it.
    if checksum is None:
        return {}
    return {CRC32_HEADER: checksum, "x-amz-sdk-checksum-algorithm": "CRC32"}


def _checksum_params(checksum: Optional[str]) -> dict[str, str]:
    # With the value given, botocore computes no checksum of its own (it skips requests that
    # already carry an x-amz-checksum-* header).
    if checksum is None:
        return {}
    return {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": checksum}


def _add_requester_pays(request: Any, **_: Any) -> None:
    request.headers["x-amz-request-payer"] = "requester"


def _as_body(data: Buffer) -> bytes:
    # botocore hands a bytearray straight to aiohttp, which warns (ResourceWarning) about raw
    # bodies over 1 MiB; immutable bytes are sent as-is.
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray):
        return bytes(data)
    if isinstance(data, memoryview):
        return data.tobytes()
    raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}")


def _as_view(data: Buffer) -> memoryview:
    # The lean transport sends straight from the caller's buffer: no copy.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}")
    return memoryview(data).cast("B")


async def _read_into(stream: Any, view: memoryview) -> int:
    """Read a response body into ``view``; return the bytes stored.

    Our HTTP client receives straight into ``view``; aiohttp's stream (botocore's path) is
    copied chunk by chunk.
    """
    if isinstance(stream, HTTPResponse):
        n = await stream.readinto(view)
        if n == len(view) and await stream.readany():
            raise S3Exception(
                f"response body longer than the requested {len(view)} bytes"
            )
        return n
    pos = 0
    size = len(view)
    while pos < size:
        chunk = await stream.readany()
        if not chunk:
            break
        n = len(chunk)
        if pos + n > size:
            raise S3Exception(f"response body longer than the requested {size} bytes")
        view[pos : pos + n] = chunk
        pos += n
    return pos


async def _read_chunks(stream: Any, chunks: list[bytes]) -> None:
    while True:
        chunk = await stream.readany()
        if not chunk:
            return
        chunks.append(chunk)
