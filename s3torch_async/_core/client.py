"""``AsyncS3Client``: lifecycle, loop binding and every S3 operation the package uses.

The transport opens on the first operation (or by ``async with``) and is bound to the event
loop that opened it: the lean transport, started without botocore when ``_direct`` can decide
the configuration alone (botocore then opens only when something needs it), else started
through an aiobotocore client; or, with ``S3TORCH_ASYNC_FAST_PATH=0``, that client alone.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, TypeVar, Union

from .._config import S3ClientConfig, validate_for_use
from .._errors import S3Exception
from .._types import HeadObjectResult, ListObjectResult, ObjectInfo
from .._user_agent import UserAgent
from . import _direct, _session
from ._checksum import (
    CREATE_HEADERS,
    GET_HEADERS,
    ChecksumPolicy,
    checksum_mismatch,
    crc32_b64_async,
    full_object_headers,
    upload_headers,
)
from ._interface import RangeMeta
from ._lean import BotocoreSide, LeanTransport
from ._retry import Attempts
from ._translate import translate
from ._transport import OnToken, Transport
from .writer import AsyncS3Writer, PartAssembler

if TYPE_CHECKING:
    from ._botostart import BotocoreStart
    from .reader import AsyncS3Reader

__all__ = [
    "AsyncS3Client",
    "ClientState",
    "GetResult",
    "ListObjectsPager",
    "ListingCursor",
    "RangeMeta",
    "warm_start",
]

T = TypeVar("T")
Buffer = Union[bytes, bytearray, memoryview]

#: Set to ``0`` to send every request through aiobotocore instead of the lean transport.
FAST_PATH_ENV = "S3TORCH_ASYNC_FAST_PATH"


class _Timeouts(NamedTuple):
    connect_timeout: float
    read_timeout: float
    first_answer_timeout: float


class ClientState(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True)
class GetResult:
    """A small GET held in memory."""

    data: bytes
    etag: str
    object_size: int


def _range_header(start: int, end: Optional[int]) -> str:
    return f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"


def _check_header_value(name: str, value: Optional[str], bucket: str, key: str) -> None:
    """Refuse a value that would end a header line early (header injection)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(
            f"{name} must not contain CR, LF or NUL (s3://{bucket}/{key}): {value!r}"
        )


def _check_names(bucket: Any, key: Any = "", *, key_required: bool = True) -> None:
    if not isinstance(bucket, str):
        raise TypeError(f"bucket must be a str, got {type(bucket).__name__}")
    if not bucket:
        raise ValueError("bucket must be a non-empty string")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if key_required and not key:
        raise ValueError(f"key must be a non-empty string (bucket {bucket!r})")


def warm_start(
    region: str, endpoint: Optional[str], config: Optional[S3ClientConfig] = None
) -> None:
    """Prepare this process for clients of this configuration to start fast.

    A client that starts through botocore parses botocore's models first (~0.1 s): they are
    parsed now, and shared by later clients (and forked DataLoader workers). A client that
    starts without botocore (see ``_direct``) needs nothing: then nothing is loaded.
    """
    if config is None:
        config = S3ClientConfig()
    if not isinstance(config, S3ClientConfig) or not isinstance(region, str):
        return  # the client reports it when it opens
    if os.environ.get(FAST_PATH_ENV, "1") != "0":
        resolved = _session.resolve_endpoint(endpoint)
        try:
            direct = _direct.plan(
                region=region,
                endpoint=resolved,
                path_style=_session.wants_path_style(resolved, config.force_path_style),
                unsigned=config.unsigned,
                profile=config.profile,
            )
        except ValueError:
            return  # the client reports it when it opens
        if isinstance(direct, _direct.DirectStart):
            return
    from ._botostart import warm_models

    warm_models()


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
        self._transport: Optional[Transport] = None
        self._open_lock: Optional[asyncio.Lock] = None
        self._settings: Optional[_session.ResolvedSettings] = None
        self._checksums = ChecksumPolicy()
        # How the client started: "direct" (no botocore until needed) or "botocore (why)".
        self._start: Optional[str] = None

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
        """Concurrent ranged GETs one read may use (uploads: ``upload_concurrency_for``)."""
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
        stack, self._stack, self._transport = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError(
                "AsyncS3Client is bound to the event loop that opened it and was used from a "
                "different event loop; create one AsyncS3Client per event loop"
            )

    async def _client(self) -> Transport:
        """The transport, opened on first use and bound to this event loop."""
        if self._state is ClientState.OPENED:
            self._check_loop()
            assert self._transport is not None
            return self._transport
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
        connect_timeout, read_timeout = _session.timeouts()
        timeouts = _Timeouts(
            connect_timeout, read_timeout, _session.first_answer_timeout()
        )
        settings = self._resolved()
        # The transport is chosen once, here (documented in docs/configuration.md).
        lean = os.environ.get(FAST_PATH_ENV, "1") != "0"
        direct = (
            _direct.plan(
                region=settings.region,
                endpoint=settings.endpoint,
                path_style=settings.path_style,
                unsigned=self._config.unsigned,
                profile=self._config.profile,
            )
            if lean
            else f"{FAST_PATH_ENV}=0"
        )
        stack = AsyncExitStack()
        if isinstance(direct, _direct.DirectStart):
            # No botocore until something needs it (see _direct).
            self._start = "direct"
            self._checksums = direct.checksums

            async def open_botocore() -> BotocoreSide:
                from ._botostart import BotocoreStart, make_session

                return await BotocoreStart.open(
                    make_session(settings), settings, **timeouts._asdict()
                )

            transport: Transport = self._lean_transport(
                open_botocore,
                timeouts,
                credentials=direct.credentials,
                tls=direct.ca_file is not None,
                ca_file=direct.ca_file,
                direct_base=direct.base,
            )
            stack.push_async_callback(transport.aclose)
        else:
            from ._botostart import BotocoreStart, make_session

            self._start = f"botocore ({direct})"
            _session.check_endpoint(settings.endpoint)
            session = make_session(settings)
            self._checksums = ChecksumPolicy.from_session(session)
            try:
                start = await BotocoreStart.open(
                    session, settings, **timeouts._asdict()
                )
                stack.push_async_callback(start.aclose)
                transport = start.transport
                if lean:
                    transport = await self._lean_over(start, timeouts)
                    stack.push_async_callback(transport.aclose)
            except Exception as exc:
                await stack.aclose()
                new = translate(exc, operation="CreateClient", bucket=None, key=None)
                if new is exc:
                    raise
                raise new from exc
        self._stack, self._transport = stack, transport
        self._loop = asyncio.get_running_loop()
        self._state = ClientState.OPENED

    async def _lean_over(
        self, start: BotocoreStart, timeouts: _Timeouts
    ) -> LeanTransport:
        """The lean transport over an opened botocore start (its credentials, its rules)."""
        credentials = (
            None if self._config.unsigned else await start.session.get_credentials()
        )

        async def opened() -> BotocoreSide:
            return start

        endpoint_url = str(start.s3.meta.endpoint_url or "")
        return self._lean_transport(
            opened,
            timeouts,
            credentials=credentials,
            tls=endpoint_url.lower().startswith("https:"),
            ca_file=start.ca_file(),
        )

    def _lean_transport(
        self,
        botocore: Callable[[], Awaitable[BotocoreSide]],
        timeouts: _Timeouts,
        *,
        credentials: Any,
        tls: bool,
        ca_file: Optional[str],
        direct_base: Optional[Callable[[str], Any]] = None,
    ) -> LeanTransport:
        settings = self._resolved()
        extra = {"User-Agent": settings.user_agent}
        if self._config.requester_pays:
            extra["x-amz-request-payer"] = "requester"
        return LeanTransport(
            botocore,
            credentials=credentials,
            region=settings.region,
            endpoint=settings.endpoint,
            pool_size=settings.pool_size,
            connect_timeout=timeouts.connect_timeout,
            read_timeout=timeouts.read_timeout,
            extra_headers=extra,
            unsigned=self._config.unsigned,
            tls=tls,
            ca_file=ca_file,
            first_answer_timeout=timeouts.first_answer_timeout,
            direct_base=direct_base,
        )

    def _attempts(self, operation: str, bucket: str, key: str = "") -> Attempts:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        endpoint = self._transport.endpoint if self._transport else "AWS"
        return Attempts(self._config.max_attempts, operation, where, endpoint)

    async def _call(
        self,
        operation: str,
        bucket: str,
        key: str,
        attempt: Callable[[Transport], Awaitable[T]],
    ) -> T:
        """Run one attempt function under the operation's retry budget; translate errors."""
        try:
            transport = await self._client()
            budget = self._attempts(operation, bucket, key)
            return await budget.run(lambda: attempt(transport))
        except Exception as exc:
            new = translate(exc, operation=operation, bucket=bucket, key=key)
            if new is exc:
                raise
            raise new from exc

    # -- listing ----------------------------------------------------------------------------

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
        *,
        continuation_token: Optional[str] = None,
        start_after: str = "",
    ) -> ListObjectsPager:
        """Page through ListObjectsV2 results; no request is sent until iteration starts.

        ``start_after`` lists only the keys after it (S3's ``StartAfter``).

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``bucket`` is empty or ``max_keys`` is not in 1..1000.
        """
        _check_names(bucket, key_required=False)
        for name, value in (
            ("prefix", prefix),
            ("delimiter", delimiter),
            ("start_after", start_after),
        ):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if not isinstance(max_keys, int) or isinstance(max_keys, bool):
            raise TypeError(f"max_keys must be an int, got {type(max_keys).__name__}")
        if not 1 <= max_keys <= 1000:
            raise ValueError(f"max_keys must be between 1 and 1000, got {max_keys}")
        return ListObjectsPager(
            self,
            bucket,
            prefix,
            delimiter,
            max_keys,
            continuation_token,
            start_after=start_after,
        )

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
        """Fetch one ListObjectsV2 page; return it and the token of the next (``None``: last).

        Arguments are not validated here (``list_objects`` does that). ``on_token``, if
        given, may be awaited with the next page's token before the page is parsed (a hint;
        the returned token counts); ``preconnect``: connections to open to the bucket's
        endpoint while the page is awaited, for requests sent right after it; see
        ``Transport.list_page``.

        Raises:
            S3Exception: The request failed.
        """
        return await self._call(
            "ListObjectsV2",
            bucket,
            prefix,
            lambda t: t.list_page(
                bucket,
                prefix,
                delimiter,
                max_keys,
                token,
                start_after,
                on_token=on_token,
                preconnect=preconnect,
            ),
        )

    # -- objects ----------------------------------------------------------------------------

    async def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        """Return an object's metadata (one HEAD request).

        Raises:
            S3Exception: ``Service error: The object was not found`` for a missing object.
        """
        _check_names(bucket, key)
        return await self._call(
            "HeadObject", bucket, key, lambda t: t.head_object(bucket, key)
        )

    async def object_checksum(self, bucket: str, key: str) -> tuple[str, Optional[str]]:
        """The object's ETag and full-object CRC32 (``None``: none that can be checked); a HEAD.

        Raises:
            S3Exception: The HEAD request failed.
        """
        _check_names(bucket, key)
        return await self._call(
            "HeadObject", bucket, key, lambda t: t.head_checksum(bucket, key)
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
        limit: Optional[int] = None,
    ) -> GetResult:
        """GET ``[start, end)`` (the whole object when ``start`` is None) into memory.

        ``limit`` (whole-object GETs): an object larger than that many bytes is not
        downloaded; the result then holds no data and the object's size.

        Raises:
            S3Exception: The request failed (``Service error: The key does not exist``...).
        """
        _check_names(bucket, key)
        _check_header_value("if_match", if_match, bucket, key)
        if start is not None and end is not None and end <= start:
            raise ValueError(
                f"empty or inverted range [{start}, {end}) for s3://{bucket}/{key}"
            )
        if limit is not None and start is not None:
            raise ValueError("limit applies to whole-object GETs (start None) only")
        result = await self._get_into(bucket, key, start, end, None, if_match, limit)
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
        whole: bool = False,
        on_head: Optional[Callable[[int, str], None]] = None,
    ) -> RangeMeta:
        """GET ``[start, start + len(view))`` straight into ``view``; resume a broken body.

        Fewer bytes than ``len(view)`` are delivered only at the end of the object.
        ``on_head(object_size, etag)`` is called once the first response's head arrived,
        before its body (a caller that learns the object's size there can plan on while the
        body flows).

        ``whole`` (with ``start`` 0, for a ``view`` expected to hold the whole object): send
        a GET without ``Range``, so that S3 reports the object's checksum and the bytes are
        checked as in :meth:`get_range`; if the object turns out larger than ``view``, the
        first ``len(view)`` bytes are fetched with a ranged GET instead, unchecked.

        Raises:
            S3Exception: The request failed, or the object changed (``if_match``) mid-read.
        """
        _check_names(bucket, key)
        _check_header_value("if_match", if_match, bucket, key)
        # Every view of the caller's buffer made here is released before returning, also on
        # failure: a traceback kept in a reference cycle must not pin the buffer (a bytearray
        # could not be resized until the garbage collector ran).
        with memoryview(view) as base, base.cast("B") as mv:
            if mv.readonly:
                raise TypeError("view must be a writable buffer")
            if len(mv) == 0:
                raise ValueError("view must not be empty")
            if whole and start != 0:
                raise ValueError(f"whole needs start 0, got {start}")
            begin = None if whole else start
            meta = await self._get_into(
                bucket, key, begin, start + len(mv), mv, if_match, on_head=on_head
            )
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
        limit: Optional[int] = None,
        on_head: Optional[Callable[[int, str], None]] = None,
    ) -> Union[RangeMeta, GetResult]:
        """One GET, resumed from the last byte received when the body breaks.

        Request retries and resumes draw on one budget (``max_attempts`` requests in all);
        resumes pin the version seen first with ``If-Match``. A whole-object GET (``start``
        None) is checked against the object's full-object CRC32 when S3 announces one (the
        resumed pieces too); a mismatch raises ``S3Exception`` and delivers nothing.
        """
        try:
            transport = await self._client()
            budget = self._attempts("GetObject", bucket, key)
            received = 0
            etag = if_match
            object_size = -1
            expected: Optional[int] = None
            chunks: list[bytes] = []
            # Only a whole-object GET can be checked: S3 has no checksum for a range.
            checked = start is None and self._checksums.validate
            checksum: Optional[str] = None
            while True:
                offset = (start or 0) + received
                range_header = None
                if start is not None or received:
                    range_header = _range_header(offset, end)
                whole = checked and not received
                budget.take()
                try:
                    body = await transport.open_get(
                        bucket,
                        key,
                        range_header=range_header,
                        if_match=etag,
                        extra_headers=GET_HEADERS if whole else None,
                    )
                except Exception as exc:
                    if await budget.retry_after(exc):
                        continue
                    raise
                try:
                    if (
                        limit is not None
                        and not received
                        and body.content_length > limit
                    ):
                        # Too large to keep: give up on it (the unread body is dropped).
                        etag, object_size = etag or body.etag, body.object_size
                        break
                    if (
                        start is None
                        and view is not None
                        and body.content_length > len(view)
                    ):
                        # Larger than the caller expected (replaced since it learned the
                        # size): fetch what fits with a range, unchecked, as a ranged read.
                        start, checked = 0, False
                        continue
                    if whole:
                        checksum = body.checksum_crc32
                    etag = etag or body.etag
                    object_size = body.object_size
                    if expected is None:
                        expected = body.content_length
                        if on_head is not None:
                            on_head(object_size, etag)
                    if view is not None:
                        with view[received:expected] as rest:
                            received += await body.readinto(rest)
                    else:
                        try:
                            await body.read_chunks(chunks)
                        finally:
                            # Chunks read before a break count: the resume starts after them.
                            received = sum(map(len, chunks))
                    if received < expected:
                        raise IncompleteBody(
                            f"response ended after {received} of {expected} bytes"
                        )
                    break
                except Exception as exc:
                    if await budget.retry_after(exc, in_body=True):
                        continue
                    raise
                finally:
                    body.release()
        except Exception as exc:
            new = translate(exc, operation="GetObject", bucket=bucket, key=key)
            if new is exc:
                raise
            raise new from exc
        if checksum is not None:
            data: Union[memoryview, list[bytes]] = (
                chunks if view is None else view[:received]
            )
            actual = await checksum_mismatch(checksum, data)
            if actual is not None:
                raise S3Exception(
                    f"Client error: GetObject s3://{bucket}/{key} failed: the body's "
                    f"CRC32 {actual} does not match the object's checksum {checksum}; "
                    "the data was corrupted on the way and was not delivered",
                    bucket=bucket,
                    key=key,
                    operation="GetObject",
                    code="ChecksumMismatch",
                )
        if view is not None:
            return RangeMeta(etag or "", object_size, received)
        return GetResult(b"".join(chunks), etag or "", object_size)

    def put_object(
        self,
        bucket: str,
        key: str,
        storage_class: Optional[str] = None,
        *,
        if_none_match: bool = False,
        assembler: Optional[PartAssembler] = None,
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
            assembler: The part buffers, for a caller that cuts parts itself and feeds them
                to ``AsyncS3Writer.put_part`` (see ``AsyncS3Writer``).

        Raises:
            TypeError: ``bucket`` or ``key`` is not a string.
            ValueError: ``bucket`` or ``key`` is empty.
        """
        _check_names(bucket, key)
        _check_header_value("storage_class", storage_class, bucket, key)
        return AsyncS3Writer(
            self,
            bucket,
            key,
            storage_class,
            if_none_match=if_none_match,
            assembler=assembler,
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
        _check_header_value("storage_class", storage_class, bucket, key)
        _check_header_value("checksum_crc32", checksum_crc32, bucket, key)
        body = _as_view(data)
        checksum = await self._upload_checksum(body, checksum_crc32)
        return await self._call(
            "PutObject",
            bucket,
            key,
            lambda t: t.put_object(
                bucket,
                key,
                body,
                storage_class=storage_class,
                if_none_match=if_none_match,
                extra_headers=upload_headers(checksum),
            ),
        )

    async def _upload_checksum(
        self, body: memoryview, given: Optional[str]
    ) -> Optional[str]:
        # Computed once per upload, not per attempt.
        if given is not None:
            return given
        await self._client()
        if not self._checksums.send:
            return None
        return await crc32_b64_async(body)

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

        Raises:
            ValueError: ``checksum_algorithm`` is not ``"CRC32"`` or ``None``.
        """
        _check_names(bucket, key)
        _check_header_value("storage_class", storage_class, bucket, key)
        if checksum_algorithm not in (None, "CRC32"):
            raise ValueError(
                f"checksum_algorithm must be 'CRC32' or None, got {checksum_algorithm!r}"
            )
        headers = CREATE_HEADERS if checksum_algorithm else None
        return await self._call(
            "CreateMultipartUpload",
            bucket,
            key,
            lambda t: t.create_multipart_upload(
                bucket, key, storage_class=storage_class, extra_headers=headers
            ),
        )

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
        _check_header_value("checksum_crc32", checksum_crc32, bucket, key)
        body = _as_view(data)
        headers = upload_headers(checksum_crc32)
        return await self._call(
            "UploadPart",
            bucket,
            key,
            lambda t: t.upload_part(
                bucket, key, upload_id, part_number, body, extra_headers=headers
            ),
        )

    async def upload_trailers(self) -> bool:
        """Whether :meth:`upload_part_crc32` sends large parts' CRC32s in a trailer."""
        transport = await self._client()
        return isinstance(transport, LeanTransport) and transport.trailers

    async def upload_part_crc32(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: Buffer,
    ) -> tuple[str, str]:
        """Upload one part with its CRC32; return its ETag and that base64 CRC32.

        Where the transport can (large parts on the lean transport, see ``LeanTransport``), the
        CRC32 is taken while the part is sent and goes in a trailer; else it is computed first
        and sent as a header.
        """
        body = _as_view(data)
        trailed = await self._call(
            "UploadPart",
            bucket,
            key,
            lambda t: t.upload_part_trailed(bucket, key, upload_id, part_number, body),
        )
        if trailed is not None:
            return trailed
        crc = await crc32_b64_async(body)
        etag = await self.upload_part(
            bucket, key, upload_id, part_number, body, checksum_crc32=crc
        )
        return etag, crc

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
    ) -> str:
        """Complete a multipart upload from ``(part_number, etag)`` pairs; return the ETag.

        ``checksums`` maps part numbers to their CRC32 (uploads created with CRC32);
        ``full_crc32`` is the whole object's CRC32 (a FULL_OBJECT upload), which S3 checks
        against the parts it stored.

        Raises:
            ValueError: ``checksums`` lacks one of the parts.
        """
        if checksums is not None:
            missing = sorted({n for n, _ in parts} - set(checksums))
            if missing:
                raise ValueError(
                    f"checksums lacks parts {missing} of s3://{bucket}/{key}"
                )
        _check_header_value("full_crc32", full_crc32, bucket, key)
        headers = None if full_crc32 is None else full_object_headers(full_crc32)
        return await self._call(
            "CompleteMultipartUpload",
            bucket,
            key,
            lambda t: t.complete_multipart_upload(
                bucket,
                key,
                upload_id,
                parts,
                if_none_match=if_none_match,
                checksums=checksums,
                extra_headers=headers,
            ),
        )

    async def abort_multipart_upload(
        self, bucket: str, key: str, upload_id: str
    ) -> None:
        """Abort a multipart upload, discarding its parts."""
        await self._call(
            "AbortMultipartUpload",
            bucket,
            key,
            lambda t: t.abort_multipart_upload(bucket, key, upload_id),
        )

    async def list_multipart_uploads(
        self, bucket: str, prefix: str = ""
    ) -> list[tuple[str, str]]:
        """Return ``(key, upload_id)`` of the pending multipart uploads under ``prefix``."""
        _check_names(bucket, key_required=False)
        return await self._call(
            "ListMultipartUploads",
            bucket,
            prefix,
            lambda t: t.list_multipart_uploads(bucket, prefix),
        )

    async def delete_object(self, bucket: str, key: str) -> None:
        """Delete an object; a missing key is not an error, a missing bucket is."""
        _check_names(bucket, key)
        await self._call(
            "DeleteObject", bucket, key, lambda t: t.delete_object(bucket, key)
        )

    async def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        """Server-side copy of one object (single CopyObject: at most 5 GiB).

        Raises:
            S3Exception: ``Service error: The object was not found`` for a missing source.
        """
        _check_names(src_bucket, src_key)
        _check_names(dst_bucket, dst_key)
        await self._call(
            "CopyObject",
            src_bucket,
            src_key,
            lambda t: t.copy_object(src_bucket, src_key, dst_bucket, dst_key),
        )


#: ``(bucket, prefix, delimiter, max_keys, start_after)`` of one listing.
_Query = tuple[str, str, str, int, str]
#: The first page after which a cursor requests the next one early (a caller who takes only
#: the first page never pays for a second).
READ_AHEAD_FROM = 2


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A page read ahead may fail or be dropped unread: its error is not "never retrieved".
    if not task.cancelled():
        task.exception()


class _PageFetch:
    """The request of one listing page and, once allowed, of the page after it.

    Holds no reference to its cursor, so a cursor dropped mid-listing is collected at once
    and cancels what it read ahead.
    """

    def __init__(
        self,
        client: AsyncS3Client,
        query: _Query,
        token: Optional[str],
        number: int,
        ahead_from: Optional[int],
        preconnect: int = 0,
    ) -> None:
        self.client, self.query, self.token = client, query, token
        self.preconnect = preconnect
        self.number = number  # of this page in its cursor's life (1: the first)
        self.ahead_from = ahead_from
        self.wanted = asyncio.Event()  # set once the caller asks for this page
        self.hint: Optional[str] = None  # the next token, read before the parse
        self.next: Optional[_PageFetch] = None
        self.task: asyncio.Task[tuple[ListObjectResult, Optional[str]]]
        self.task = asyncio.ensure_future(self._run())
        self.task.add_done_callback(_retrieve)

    async def _run(self) -> tuple[ListObjectResult, Optional[str]]:
        bucket, prefix, delimiter, max_keys, start_after = self.query
        return await self.client.list_page(
            bucket,
            prefix,
            delimiter,
            max_keys,
            self.token,
            start_after,
            on_token=self._on_token,
            preconnect=self.preconnect,
        )

    async def _on_token(self, token: str) -> None:
        # A page read ahead is parsed once asked for, right after the request of the page
        # after it leaves: the server prepares that one while this one is parsed. Parsing
        # earlier would gain nothing (the caller's thread holds the GIL meanwhile) and would
        # leave the next request waiting until the caller comes back.
        self.hint = token
        await self.wanted.wait()
        if self.follow(token):
            await asyncio.sleep(0)  # its request leaves before this page is parsed

    def follow(self, token: str) -> bool:
        """Request the page at ``token`` if this page's number allows; True if one started."""
        if self.ahead_from is None or self.number < self.ahead_from:
            return False
        if self.next is not None:
            if self.next.token == token:
                return False
            self.next.cancel()
        self.next = _PageFetch(
            self.client, self.query, token, self.number + 1, self.ahead_from
        )
        return True

    def matches(
        self, client: AsyncS3Client, query: _Query, token: Optional[str]
    ) -> bool:
        """Whether this fetch is the one a cursor at ``token`` would send now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return (
            self.task.get_loop() is loop
            and not self.task.cancelled()
            and self.client is client
            and self.query == query
            and self.token == token
        )

    def cancel(self) -> None:
        """Cancel this request and the one after it; safe from any thread and finalizers."""
        loop = self.task.get_loop()
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            self._cancel_here()
        elif not loop.is_closed():
            with suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._cancel_here)

    def _cancel_here(self) -> None:
        self.task.cancel()
        if self.next is not None:
            self.next._cancel_here()  # noqa: SLF001 - same class


class ListingCursor:
    """Where one listing stands: what is listed and the token of its next page.

    Plain state and no client, so it pickles: ``ListObjectsPager`` (async) and the sync
    ``ListObjectStream`` are both cursors and differ only in how they reach the loop.

    From page ``read_ahead_from`` on, the request of the next page goes out as soon as the
    current page's token is known (before the page is parsed when the transport allows), so
    the server prepares it while this page is parsed and consumed: one page ahead at most, and
    none for a caller who stops after the first page. A page read ahead and not asked for is
    cancelled by :meth:`close_ahead` or when the cursor is collected; it is never pickled
    (an unpickled cursor asks again).

    Attributes:
        bucket: Bucket being listed.
        prefix: Key prefix of the listing.
        delimiter: Delimiter that groups keys into common prefixes (``""`` for none).
        max_keys: Keys per page (1..1000).
        continuation_token: Token of the next page to fetch (``None`` before the first page).
        complete: No more pages remain.
        start_after: Only keys after this one are listed (``""``: from the start).
        read_ahead_from: The first page (1-based, counted by this cursor) after which the next
            is read ahead; ``None``: never.
        preconnect: Connections to open to the bucket's endpoint while the cursor's first
            page is awaited, for requests the caller sends as soon as it has the page
            (``0``: none; a hint the botocore transport ignores).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        continuation_token: Optional[str] = None,
        complete: bool = False,
        *,
        start_after: str = "",
        read_ahead_from: Optional[int] = READ_AHEAD_FROM,
        preconnect: int = 0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.delimiter = delimiter
        self.max_keys = max_keys
        self.continuation_token = continuation_token
        self.complete = complete
        self.start_after = start_after
        self.read_ahead_from = read_ahead_from
        self.preconnect = preconnect
        self._served = 0
        self._ahead: Optional[_PageFetch] = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_served"], state["_ahead"] = 0, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("read_ahead_from", READ_AHEAD_FROM)
        state.setdefault("preconnect", 0)
        self.__dict__.update(state, _served=0, _ahead=None)

    def __del__(self) -> None:
        self.close_ahead()

    def close_ahead(self) -> None:
        """Cancel the page read ahead, if any (from any thread; it ends on its loop)."""
        ahead, self._ahead = getattr(self, "_ahead", None), None
        if ahead is not None and not ahead.task.done():
            ahead.cancel()

    def _query(self) -> _Query:
        return (
            self.bucket,
            self.prefix,
            self.delimiter,
            self.max_keys,
            self.start_after,
        )

    async def fetch_next(self, client: AsyncS3Client) -> Optional[ListObjectResult]:
        """Fetch the next page with ``client`` and move past it; ``None`` once complete.

        Raises:
            S3Exception: The request failed (the cursor does not move; a page read ahead
                reports its error here, when the caller reaches it).
        """
        if self.complete:
            return None
        query, token = self._query(), self.continuation_token
        fetch, self._ahead = self._ahead, None
        if fetch is None or not fetch.matches(client, query, token):
            if fetch is not None:
                fetch.cancel()
            fetch = _PageFetch(
                client,
                query,
                token,
                self._served + 1,
                self.read_ahead_from,
                self.preconnect if self._served == 0 else 0,
            )
        fetch.wanted.set()
        try:
            page, next_token = await fetch.task
        except BaseException:
            fetch.cancel()
            raise
        if next_token is None:
            if fetch.next is not None:
                fetch.next.cancel()
        else:
            fetch.follow(next_token)  # keeps a request started from the right hint
        self._ahead, fetch.next = fetch.next, None
        self._served += 1
        self.continuation_token = next_token
        self.complete = next_token is None
        return page


class ListObjectsPager(ListingCursor):
    """Async iterator over the pages of one listing; resumable from ``continuation_token``.

    Build it with :meth:`s3torch_async.AsyncS3Client.list_objects`. The arguments after
    ``client`` and the attributes are those of ``ListingCursor``: from the second page on,
    the next page is requested while one is consumed; :meth:`aclose` (or dropping the pager)
    cancels it.
    """

    def __init__(self, client: AsyncS3Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = client

    def __aiter__(self) -> ListObjectsPager:
        return self

    async def __anext__(self) -> ListObjectResult:
        page = await self.fetch_next(self._client)
        if page is None:
            raise StopAsyncIteration
        return page

    async def aclose(self) -> None:
        """Cancel the page read ahead and wait until it has ended; the pager stays usable."""
        ahead = self._ahead
        self.close_ahead()
        if ahead is not None:
            await asyncio.gather(ahead.task, return_exceptions=True)

    async def objects(self) -> AsyncIterator[ObjectInfo]:
        """Iterate over every object of the remaining pages."""
        try:
            async for page in self:
                for info in page.object_info:
                    yield info
        finally:
            await self.aclose()


class IncompleteBody(ConnectionError):
    """A response body ended before its Content-Length (resumed from the last byte)."""


def _as_view(data: Buffer) -> memoryview:
    # The lean transport sends straight from the caller's buffer: no copy.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}")
    return memoryview(data).cast("B")
