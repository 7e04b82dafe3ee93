"""The sync ``S3Client``: the reference's internal-but-used facade over ``AsyncS3Client``.

Every call crosses to the process-wide loop thread (``_runner``). The async client is created
lazily on that loop, rebuilt when the loop changes (after fork, or after the runner was stopped),
and never pickled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, TypeVar, Union

from .._bridge import Bridge
from .._config import S3ClientConfig
from .._core._object import ObjectVersion
from .._core._session import client_fingerprint
from .._core.client import AsyncS3Client, ListingCursor
from .._errors import S3Exception
from .._runner import get_runner
from .._types import HeadObjectResult, ListObjectResult, ObjectInfo
from .._uri import validate_bucket_key
from .._user_agent import UserAgent
from ..s3writer import PutObjectStream, S3Writer

if TYPE_CHECKING:
    from ..s3reader import S3Reader
    from ..s3reader.protocol import S3ReaderConstructorProtocol

__all__ = ["GetObjectStream", "ListObjectStream", "S3Client"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class S3Client:
    """Blocking S3 client with the reference's constructor and methods.

    Args:
        region: AWS region of the buckets.
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS.
        user_agent: User-agent prefix with extra comments.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``.

    Raises:
        TypeError: An argument has the wrong type.
    """

    def __init__(
        self,
        region: str,
        *,
        endpoint: Optional[str] = None,
        user_agent: Optional[UserAgent] = None,
        s3client_config: Optional[S3ClientConfig] = None,
    ) -> None:
        if not isinstance(region, str):
            raise TypeError(f"region must be a str, got {type(region).__name__}")
        if endpoint is not None and not isinstance(endpoint, str):
            raise TypeError(
                f"endpoint must be a str or None, got {type(endpoint).__name__}"
            )
        if s3client_config is not None and not isinstance(
            s3client_config, S3ClientConfig
        ):
            raise TypeError(
                "s3client_config must be an S3ClientConfig, got "
                f"{type(s3client_config).__name__}"
            )
        self._region = region
        self._endpoint = endpoint
        self._user_agent = user_agent or UserAgent()
        self._s3client_config = s3client_config or S3ClientConfig()
        self._bridge = Bridge(self._async_client)

    # -- reference properties ---------------------------------------------------------------

    @property
    def region(self) -> str:
        """The client's region."""
        return self._region

    @property
    def endpoint(self) -> Optional[str]:
        """The endpoint argument the client was built with."""
        return self._endpoint

    @property
    def s3client_config(self) -> S3ClientConfig:
        """The client's configuration."""
        return self._s3client_config

    @property
    def user_agent_prefix(self) -> str:
        """The user-agent prefix sent with every request."""
        return self._user_agent.prefix

    @property
    def bridge(self) -> Bridge:
        """How this client's sync objects reach the event loop (internal to the package)."""
        return self._bridge

    # -- plumbing ---------------------------------------------------------------------------

    def _async_client(self) -> AsyncS3Client:
        """The ``AsyncS3Client`` for this configuration on the runner's loop (loop thread only).

        Clients are shared per runner by configuration (arguments, the resolved endpoint and
        the environment read when a client opens) and closed when the runner drains, so an
        ``S3Client`` holds no connection state: it pickles as configuration and needs no
        finalizer, and a fork child builds its own on its own loop.
        """
        key = (
            self._region,
            client_fingerprint(self._endpoint),
            self._s3client_config,
            self._user_agent.prefix,
        )
        return get_runner().shared(key, self._new_async_client)

    def _new_async_client(self) -> AsyncS3Client:
        return AsyncS3Client(
            self._region,
            endpoint=self._endpoint,
            s3client_config=self._s3client_config,
            user_agent=self._user_agent,
        )

    # -- operations -------------------------------------------------------------------------

    def _get_object_stream(
        self,
        bucket: str,
        key: str,
        start: Optional[int] = None,
        end: Optional[int] = None,
    ) -> GetObjectStream:
        return GetObjectStream(self, bucket, key, start, end)

    def get_object(
        self,
        bucket: str,
        key: str,
        *,
        object_info: Optional[ObjectInfo] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
    ) -> S3Reader:
        """Return a reader for ``s3://bucket/key``; no request is sent until the first read.

        Args:
            bucket: Bucket name.
            key: Object key.
            object_info: Listing info; when given, the reader never sends a HEAD.
            reader_constructor: Reader factory from ``S3ReaderConstructor``; sequential by
                default.

        Raises:
            ValueError: ``bucket`` is empty (raised by the reader constructor).
        """
        logger.debug(
            "GetObject s3://%s/%s, object_info is None=%s",
            bucket,
            key,
            object_info is None,
        )
        return self._make_reader(
            bucket, key, object_info, reader_constructor, _GetStream(self, bucket, key)
        )

    def get_prefetched_object(
        self,
        bucket: str,
        key: str,
        *,
        object_info: ObjectInfo,
        data: Union[bytes, memoryview],
        etag: str,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
    ) -> S3Reader:
        """Return a reader that serves every read from ``data`` and sends no request.

        For the datasets' prefetch window: ``data`` is the whole object, already downloaded
        at version ``etag``. The DCP-optimized reader ignores the prefetched bytes.
        """
        stream = _GetStream(self, bucket, key, prefetched=PrefetchedObject(data, etag))
        return self._make_reader(bucket, key, object_info, reader_constructor, stream)

    def _make_reader(
        self,
        bucket: str,
        key: str,
        object_info: Optional[ObjectInfo],
        reader_constructor: Optional[S3ReaderConstructorProtocol],
        get_stream: _GetStream,
    ) -> S3Reader:
        from ..s3reader import S3ReaderConstructor

        constructor = reader_constructor or S3ReaderConstructor.default()
        get_object_info: Callable[[], Any]
        if object_info is None:
            get_object_info = _HeadObject(self, bucket, key)
        else:
            get_object_info = _Constant(object_info)
        return constructor(
            bucket=bucket,
            key=key,
            get_object_info=get_object_info,
            get_stream=get_stream,
        )

    def put_object(
        self, bucket: str, key: str, storage_class: Optional[str] = None
    ) -> S3Writer:
        """Return a writer that uploads to ``s3://bucket/key``; the object appears at ``close()``.

        No request is sent until data is written or the writer is closed.

        Args:
            bucket: Bucket name.
            key: Object key.
            storage_class: S3 storage class, e.g. ``"STANDARD_IA"``.

        Raises:
            TypeError: ``bucket`` or ``key`` is not a string.
            ValueError: ``bucket`` or ``key`` is empty.
        """
        logger.debug("PutObject s3://%s/%s", bucket, key)
        validate_bucket_key(bucket, key)
        return S3Writer(
            PutObjectStream(
                self._bridge, self._s3client_config, bucket, key, storage_class
            )
        )

    def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ListObjectStream:
        """Return a lazy iterator over listing pages (``ListObjectResult``).

        Raises:
            S3Exception: On iteration, e.g. ``Service error: The bucket does not exist``.
        """
        logger.debug("ListObjects s3://%s/%s", bucket, prefix)
        _validate_listing(bucket, prefix, delimiter, max_keys)
        return ListObjectStream(self, bucket, prefix, delimiter, max_keys)

    def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        """Return an object's metadata.

        Raises:
            S3Exception: ``Service error: The object was not found`` for a missing object.
        """
        logger.debug("HeadObject s3://%s/%s", bucket, key)
        return self._bridge.head_object(bucket, key)

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete an object (a missing key is not an error).

        Raises:
            S3Exception: ``Service error: The bucket does not exist`` for a missing bucket.
        """
        logger.debug("DeleteObject s3://%s/%s", bucket, key)
        self._bridge.delete_object(bucket, key)

    def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        """Copy an object server-side (at most 5 GiB).

        Raises:
            S3Exception: ``Service error: The object was not found`` for a missing source.
        """
        logger.debug(
            "CopyObject s3://%s/%s to s3://%s/%s",
            src_bucket,
            src_key,
            dst_bucket,
            dst_key,
        )
        self._bridge.copy_object(src_bucket, src_key, dst_bucket, dst_key)


def _validate_listing(bucket: Any, prefix: Any, delimiter: Any, max_keys: Any) -> None:
    if not isinstance(bucket, str):
        raise TypeError(f"bucket must be a str, got {type(bucket).__name__}")
    if not bucket:
        raise ValueError("bucket must be a non-empty string")
    for name, value in (("prefix", prefix), ("delimiter", delimiter)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not isinstance(max_keys, int) or isinstance(max_keys, bool):
        raise TypeError(f"max_keys must be an int, got {type(max_keys).__name__}")
    if not 1 <= max_keys <= 1000:
        raise ValueError(f"max_keys must be between 1 and 1000, got {max_keys}")


class _Constant:
    """Picklable ``get_object_info`` returning listing info.

    ``object_info`` exposes the value so readers know the size without calling it.
    """

    def __init__(self, value: ObjectInfo) -> None:
        self._value = value

    @property
    def object_info(self) -> ObjectInfo:
        return self._value

    def __call__(self) -> ObjectInfo:
        return self._value


class _HeadObject:
    """Picklable ``get_object_info`` that sends one HEAD."""

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key

    def __call__(self) -> HeadObjectResult:
        return self.client.head_object(self.bucket, self.key)


class PrefetchedObject(NamedTuple):
    """A whole object downloaded ahead of time: its bytes and the version they belong to."""

    data: Union[bytes, memoryview]
    etag: str


class _GetStream:
    """The ``get_stream(start=None, end=None)`` callable handed to reader constructors.

    Besides the reference's stream it exposes ``client``, ``bridge``, ``bucket`` and ``key`` so
    this package's readers can run the async core directly (parallel ranged GETs into buffers),
    ``prefetched`` (the object's bytes, already downloaded: readers then send no request) and
    ``part_size`` (ranged-GET size for reads; ``None`` means the client's ``part_size``).
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        prefetched: Optional[PrefetchedObject] = None,
        part_size: Optional[int] = None,
    ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.bridge = client.bridge
        self.prefetched = prefetched
        self.part_size = part_size

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        prefetched = state.get("prefetched")
        if prefetched is not None and isinstance(prefetched.data, memoryview):
            state["prefetched"] = PrefetchedObject(
                prefetched.data.tobytes(), prefetched.etag
            )
        return state

    def __call__(
        self, start: Optional[int] = None, end: Optional[int] = None
    ) -> GetObjectStream:
        # The reference's request hook: users patch it to trace or count requests.
        return self.client._get_object_stream(self.bucket, self.key, start, end)  # noqa: SLF001 - the reference's hook

    def is_untouched(self, stream: Any, start: int, end: int) -> bool:
        """Whether ``stream`` is the client's own lazy stream of ``[start, end)``, unread.

        A reader then fetches the range itself (parallel parts) instead of iterating it.
        """
        return (
            type(stream) is GetObjectStream
            and stream.opened_by(self.client, self.bucket, self.key, end)
            and stream.tell() == start
        )


class GetObjectStream:
    """Sync iterator over an object's bytes in ``part_size`` chunks (ranged GETs, version-pinned).

    Attributes:
        bucket: Bucket name.
        key: Object key.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        start: Optional[int],
        end: Optional[int],
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.key = key
        self._pos = start or 0
        self._end = end if start is not None else None
        self._version = ObjectVersion()
        self._done = False

    def tell(self) -> int:
        """Offset of the next byte this stream yields."""
        return self._pos

    def opened_by(self, client: S3Client, bucket: str, key: str, end: int) -> bool:
        """Whether ``client`` opened this stream on ``s3://bucket/key`` up to ``end``."""
        return (
            self._client is client
            and self.bucket == bucket
            and self.key == key
            and self._end == end
        )

    def __iter__(self) -> GetObjectStream:
        return self

    def __next__(self) -> bytes:
        size = self._version.size
        limit = self._end if self._end is not None else size
        if limit is not None and size is not None:
            limit = min(limit, size)
        if self._done or (limit is not None and self._pos >= limit):
            self._done = True
            raise StopIteration
        stop = self._pos + self._client.s3client_config.part_size
        if limit is not None:
            stop = min(stop, limit)
        try:
            result = self._client.bridge.get_range(
                self.bucket, self.key, self._pos, stop, self._version.etag
            )
        except S3Exception as exc:
            if exc.status == 416 and self._pos == 0:  # empty object
                self._done = True
                raise StopIteration from None
            raise
        self._version.observe(
            result.etag, result.object_size, bucket=self.bucket, key=self.key
        )
        self._pos += len(result.data)
        if not result.data:
            self._done = True
            raise StopIteration
        return result.data


class ListObjectStream(ListingCursor):
    """Lazy, picklable iterator over listing pages; a pickled stream resumes at the next page.

    Attributes:
        bucket: Bucket being listed.
        prefix: Key prefix of the listing.
        delimiter: Delimiter that groups keys into common prefixes (``""`` for none).
        max_keys: Keys per page (1..1000).
        continuation_token: Token of the next page.
        complete: No more pages remain.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        continuation_token: Optional[str] = None,
        complete: bool = False,
    ) -> None:
        super().__init__(
            bucket, prefix, delimiter, max_keys, continuation_token, complete
        )
        self._client = client

    def __iter__(self) -> Iterator[ListObjectResult]:
        return self

    def __next__(self) -> ListObjectResult:
        if self.complete:  # nothing to ask the event loop (or to start it for)
            raise StopIteration
        page = self._client.bridge.list_page(self)
        if page is None:
            raise StopIteration
        return page

    def close(self) -> None:
        """Cancel the page requested ahead, if any (the stream stays usable).

        From the second page on, the next page is requested while one is consumed; a stream
        dropped before its end cancels it too.
        """
        self.close_ahead()
