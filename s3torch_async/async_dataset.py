"""``AsyncS3Dataset``: iterate the objects of a prefix or URI list from asyncio code.

It is the async twin of ``S3IterableDataset``: the same listing (with the next page requested
ahead), the same seeded shuffle, sharding and resumable position, and the same byte-bounded
prefetch window, but awaited directly on the caller's event loop, with no thread and no torch.
Each item is an :class:`S3Object` holding the whole object's bytes::

    async with AsyncS3Dataset.from_prefix("s3://bucket/train/", region="us-east-1") as ds:
        async for obj in ds:
            sample = decode(obj.data)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Dict, List, Optional, Union

from ._config import S3ClientConfig
from ._core._planning import MiB
from ._core.client import AsyncS3Client
from ._core.prefetch import (
    Selection,
    iterate_items,
    open_object_pipeline,
    opening_requests,
    prefix_items,
    shard_slot,
)
from ._dataset_source import DatasetSource, PrefixSource, UriSource, build_dataset
from ._s3bucket_key_data import S3BucketKeyData
from ._types import ObjectInfo
from ._user_agent import UserAgent

__all__ = ["AsyncS3Dataset", "S3Object"]

logger = logging.getLogger(__name__)

DEFAULT_PREFETCH_BYTES = 64 * MiB
# 16, half of S3IterableDataset's 32: there a larger start means fewer crossings to the I/O
# thread per object; an async consumer crosses no thread, and the window widens from the
# observed latency and delivery rate anyway.
DEFAULT_PREFETCH_COUNT = 16
DEFAULT_SHUFFLE_BUFFER_SIZE = 1000


@dataclass(frozen=True)
class S3Object:
    """One object delivered by :class:`AsyncS3Dataset`.

    Attributes:
        bucket: Bucket name.
        key: Object key.
        data: The whole object.
        etag: The ETag of the version read.
        object_info: Listing info (``None`` for datasets built from URIs).
    """

    bucket: str
    key: str
    data: bytes
    etag: str
    object_info: Optional[ObjectInfo] = None


class AsyncS3Dataset:
    """An async iterable over S3 objects, with listing ahead, shuffle, sharding and prefetching.

    Build it with :meth:`from_prefix` or :meth:`from_objects`; each ``async for`` is one pass
    (it lists again). Objects up to ``prefetch_bytes // 4`` bytes are downloaded ahead, at most
    ``prefetch_count`` objects and ``prefetch_bytes`` bytes at once; larger objects are
    downloaded when their turn comes. Items keep the listing order (or the shuffled order).
    A failed download raises ``S3Exception`` at that item.

    The dataset opens its own ``AsyncS3Client`` (closed by :meth:`aclose` or ``async with``)
    unless ``client`` is given, in which case the caller owns it. Like any ``AsyncS3Client``,
    it is bound to the event loop of its first use.

    Args:
        region: AWS region of the bucket.
        s3_uri: ``s3://bucket/prefix`` to list (exactly one of ``s3_uri`` and ``object_uris``).
        object_uris: ``s3://bucket/key`` URIs to read, in order.
        endpoint: Endpoint URL.
        s3client_config: Client configuration.
        client: An existing client to use instead of opening one.
        shuffle: Shuffle the order with a bounded buffer, seeded by ``seed`` and the epoch.
        seed: Shuffle seed.
        shuffle_buffer_size: Items held by the shuffle buffer.
        shard_index: This consumer's shard (round robin over the possibly shuffled order).
        shard_count: Number of shards.
        prefetch_bytes: Byte budget of the prefetch window; 0 disables prefetching.
        prefetch_count: Objects in the prefetch window at the start (it widens from the
            observed latency while ``prefetch_bytes`` allows); 0 disables prefetching.
        source: What to read as built by ``from_prefix``/``from_objects`` (instead of
            ``s3_uri`` or ``object_uris``).

    Raises:
        ValueError: Not exactly one source was given, or a parameter is out of range.
    """

    def __init__(
        self,
        region: str,
        *,
        s3_uri: Optional[str] = None,
        object_uris: Optional[Union[str, Iterable[str]]] = None,
        endpoint: Optional[str] = None,
        s3client_config: Optional[S3ClientConfig] = None,
        client: Optional[AsyncS3Client] = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
        shard_index: int = 0,
        shard_count: int = 1,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
        prefetch_count: int = DEFAULT_PREFETCH_COUNT,
        source: Optional[DatasetSource] = None,
    ) -> None:
        given = [s for s in (s3_uri, object_uris, source) if s is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of s3_uri and object_uris")
        for name, value in (
            ("shuffle_buffer_size", shuffle_buffer_size),
            ("prefetch_bytes", prefetch_bytes),
            ("prefetch_count", prefetch_count),
        ):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if shuffle and shuffle_buffer_size < 1:
            raise ValueError("shuffle_buffer_size must be >= 1 when shuffle=True")
        self._offset, self._stride = shard_slot(shard_index, shard_count, 0, 1)
        if s3_uri is not None:
            source = PrefixSource(s3_uri)
        elif object_uris is not None:
            source = UriSource(object_uris)
        if isinstance(source, UriSource):
            # Kept in a list, so every pass sees all of them (a string counts as one URI).
            uris = source.object_uris
            source = UriSource([uris] if isinstance(uris, str) else list(uris))
        assert source is not None
        self._region = region
        self._source = source
        self._endpoint = endpoint
        self._s3client_config = s3client_config
        self._client = client
        self._owns_client = client is None
        self._shuffle = shuffle
        self._seed = seed
        self._shuffle_buffer_size = shuffle_buffer_size
        self._prefetch_bytes = prefetch_bytes
        self._prefetch_count = prefetch_count
        self._epoch = 0
        self._resume_skip = 0
        self._yielded: Optional[List[int]] = None  # [epoch, yielded] of the last pass

    @classmethod
    def from_prefix(
        cls,
        s3_uri: str,
        *,
        region: str,
        endpoint: Optional[str] = None,
        s3client_config: Optional[S3ClientConfig] = None,
        client: Optional[AsyncS3Client] = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
        shard_index: int = 0,
        shard_count: int = 1,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
        prefetch_count: int = DEFAULT_PREFETCH_COUNT,
    ) -> AsyncS3Dataset:
        """A dataset over every object under ``s3_uri`` (recursive), in listing order.

        An invalid URI raises ``ValueError`` and a missing bucket ``S3Exception`` at the first
        item; an empty prefix gives no items. See the class for the other arguments.

        Returns:
            The dataset.
        """
        return build_dataset(cls, PrefixSource(s3_uri), "source", locals())

    @classmethod
    def from_objects(
        cls,
        object_uris: Union[str, Iterable[str]],
        *,
        region: str,
        endpoint: Optional[str] = None,
        s3client_config: Optional[S3ClientConfig] = None,
        client: Optional[AsyncS3Client] = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
        shard_index: int = 0,
        shard_count: int = 1,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
        prefetch_count: int = DEFAULT_PREFETCH_COUNT,
    ) -> AsyncS3Dataset:
        """A dataset over the given object URIs, in that order (a string counts as one URI).

        The URIs are kept in a list, so every pass sees all of them; they are parsed at the
        first item. See the class for the other arguments.

        Returns:
            The dataset.
        """
        return build_dataset(cls, UriSource(object_uris), "source", locals())

    # -- state --------------------------------------------------------------------------------

    @property
    def region(self) -> str:
        """The dataset's region."""
        return self._region

    @property
    def endpoint(self) -> Optional[str]:
        """The endpoint argument the dataset was built with."""
        return self._endpoint

    @property
    def epoch(self) -> int:
        """The epoch that seeds the shuffle."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next pass (it changes the shuffled order).

        Args:
            epoch: Epoch number.
        """
        self._epoch = epoch
        self._resume_skip = 0
        self._yielded = None

    def state_dict(self) -> Dict[str, int]:
        """The position of the current (or last) pass: ``{"epoch", "yielded"}``.

        Returns:
            A dict that :meth:`load_state_dict` accepts.
        """
        if self._yielded is not None:
            return {"epoch": self._yielded[0], "yielded": self._yielded[1]}
        return {"epoch": self._epoch, "yielded": self._resume_skip}

    def load_state_dict(self, state_dict: Dict[str, int]) -> None:
        """Make the next pass continue after the items already delivered.

        Args:
            state_dict: From :meth:`state_dict`.

        Raises:
            ValueError: The dict does not have that shape.
        """
        try:
            epoch, yielded = int(state_dict["epoch"]), int(state_dict["yielded"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"state_dict must be {{'epoch': int, 'yielded': int}}, got {state_dict!r}"
            ) from exc
        if yielded < 0:
            raise ValueError(f"state_dict['yielded'] must be >= 0, got {yielded}")
        self._epoch, self._resume_skip, self._yielded = epoch, yielded, None

    # -- lifecycle ----------------------------------------------------------------------------

    def _get_client(self) -> AsyncS3Client:
        if self._client is None:
            self._client = AsyncS3Client(
                self._region,
                endpoint=self._endpoint,
                s3client_config=self._s3client_config,
                user_agent=UserAgent(["md/dataset#async"]),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the client the dataset opened (not one that was passed in)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> AsyncS3Dataset:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    # -- iteration ----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[S3Object]:
        epoch, skip = self._epoch, self._resume_skip
        self._resume_skip = 0
        position = self._yielded = [epoch, skip]
        return self._iterate(epoch, skip, position)

    async def _iterate(
        self, epoch: int, skip: int, position: List[int]
    ) -> AsyncIterator[S3Object]:
        client = self._get_client()
        given = self._source
        source: AsyncIterator[S3BucketKeyData]
        if isinstance(given, PrefixSource):
            preconnect = opening_requests(self._prefetch_bytes, self._prefetch_count)
            source = prefix_items(client, *given.bucket_prefix(), preconnect=preconnect)
        else:
            source = iterate_items(given.items())
        selection = Selection(
            shuffle_buffer_size=self._shuffle_buffer_size if self._shuffle else 0,
            seed=self._seed,
            epoch=epoch,
            offset=self._offset,
            stride=self._stride,
            skip=skip,
        )
        pipeline = open_object_pipeline(
            client,
            source,
            selection=selection,
            prefetch_bytes=self._prefetch_bytes,
            prefetch_count=self._prefetch_count,
            max_object_size=self._prefetch_bytes // 4,
            deliver_errors=True,
        )
        try:
            async for prefetched in pipeline:
                item = prefetched.item
                if prefetched.data is None:
                    whole = await client.get_range(item.bucket, item.key)
                    data, etag = whole.data, whole.etag
                else:
                    data, etag = prefetched.data, prefetched.etag or ""
                position[1] += 1
                yield S3Object(item.bucket, item.key, data, etag, item.object_info)
        finally:
            await pipeline.aclose()


# Public as ``s3torch_async.AsyncS3Dataset`` / ``s3torch_async.S3Object`` (imported lazily there).
AsyncS3Dataset.__module__ = S3Object.__module__ = "s3torch_async"
