"""``S3MapDataset``: index the objects of a prefix or a URI list as a torch map-style Dataset."""

from __future__ import annotations

import array
import logging
import operator
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch.utils.data

from ._config import S3ClientConfig
from ._core.prefetch import shuffle_rng
from ._dataset_source import PrefixSource, UriSource, build_dataset
from ._s3bucket_key_data import S3BucketKeyData
from ._s3client import S3Client
from ._s3dataset_common import (
    PREFETCHABLE_READERS,
    identity,
    reader_for,
)
from ._user_agent import UserAgent
from .s3reader import S3Reader, S3ReaderConstructor
from .s3reader.protocol import S3ReaderConstructorProtocol

__all__ = ["S3MapDataset"]

logger = logging.getLogger(__name__)

#: A progress line is logged every this many listing pages (1000 keys each).
LISTING_PROGRESS_PAGES = 10
_LIST_PAGE_SIZE = 1000
_LISTING_PROGRESS_ITEMS = 10_000
#: Bytes one batch of ``__getitems__`` downloads ahead (the iterable dataset's window).
_BATCH_BUDGET = 64 * 1024 * 1024


class S3MapDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A map-style dataset over S3 objects; ``dataset[i]`` is ``transform(S3Reader)``.

    Build it with :meth:`from_prefix` or :meth:`from_objects`. The first ``len()`` or index
    lists everything once and caches the list (a progress line is logged every 10 listing pages,
    so a large prefix does not look hung); the list is pickled to DataLoader workers with the
    dataset. Each access builds a new reader; nothing is cached. Indexing works like a list's:
    negative indices count from the end and an out-of-range index raises ``IndexError``.

    ``shuffle=True`` (beyond the reference) maps index ``i`` to a seeded permutation of the
    objects that changes with :meth:`set_epoch`, so a plain sequential sampler, or a
    ``DistributedSampler(shuffle=False)``, sees a shuffled order that is identical on every rank.

    Args:
        region: AWS region of the bucket.
        get_dataset_objects: ``get_dataset_objects(client)`` returns the ``S3BucketKeyData`` items.
        endpoint: Endpoint URL (S3-compatible stores).
        transform: Applied to each ``S3Reader``; must be a module-level function for
            spawn/forkserver DataLoader workers.
        s3client_config: Client configuration.
        reader_constructor: From ``S3ReaderConstructor``; sequential by default.
        shuffle: Permute the index mapping per epoch.
        seed: Permutation seed.
    """

    def __init__(
        self,
        region: str,
        get_dataset_objects: Callable[[S3Client], Iterable[S3BucketKeyData]],
        endpoint: Optional[str] = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self._region = region
        self._endpoint = endpoint
        self._get_dataset_objects = get_dataset_objects
        self._transform = transform
        self._s3client_config = s3client_config
        self._reader_constructor = reader_constructor or S3ReaderConstructor.default()
        self._shuffle = shuffle
        self._seed = seed
        self._epoch = 0
        self._client: Optional[S3Client] = None
        self._bucket_key_pairs: Optional[List[S3BucketKeyData]] = None
        self._permutation: Optional[array.array[int]] = None

    @classmethod
    def from_objects(
        cls,
        object_uris: Union[str, Iterable[str]],
        *,
        region: str,
        endpoint: Optional[str] = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> S3MapDataset:
        """A dataset over the given object URIs, in that order.

        The URIs are parsed at the first ``len()`` or index.

        ``object_uris`` are ``s3://bucket/key`` URIs (a single string counts as one).
        The other arguments are the constructor's (see the class).

        Returns:
            The dataset.
        """
        return build_dataset(
            cls, UriSource(object_uris), "get_dataset_objects", locals()
        )

    @classmethod
    def from_prefix(
        cls,
        s3_uri: str,
        *,
        region: str,
        endpoint: Optional[str] = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> S3MapDataset:
        """A dataset over every object under ``s3_uri`` (recursive), in listing order.

        Listing happens at the first ``len()`` or index: an invalid URI raises ``ValueError``
        and a missing bucket ``S3Exception`` there; an empty prefix gives an empty dataset.

        The other arguments are the constructor's (see the class).

        Returns:
            The dataset.
        """
        return build_dataset(cls, PrefixSource(s3_uri), "get_dataset_objects", locals())

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
        """The epoch that seeds the permutation (see :meth:`set_epoch`)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation for ``shuffle=True`` (no effect otherwise).

        DataLoader workers receive a copy of the dataset at each epoch unless
        ``persistent_workers=True``; in that case set the epoch before the workers start.

        Args:
            epoch: Epoch number.
        """
        if epoch != self._epoch:
            self._epoch = epoch
            self._permutation = None

    def __getstate__(self) -> Dict[str, Any]:
        # Configuration and the listing (as the reference) only; no client.
        state = self.__dict__.copy()
        state["_client"] = None
        state["_permutation"] = None
        return state

    def _get_client(self) -> S3Client:
        if self._client is None:
            reader_type = S3ReaderConstructor.get_reader_type_string(
                self._reader_constructor
            )
            self._client = S3Client(
                self._region,
                endpoint=self._endpoint,
                user_agent=UserAgent([f"md/dataset#map md/reader_type#{reader_type}"]),
                s3client_config=self._s3client_config,
            )
        return self._client

    @property
    def _dataset_bucket_key_pairs(self) -> List[S3BucketKeyData]:
        if self._bucket_key_pairs is None:
            self._bucket_key_pairs = self._list()
        return self._bucket_key_pairs

    def _list(self) -> List[S3BucketKeyData]:
        client = self._get_client()
        given = self._get_dataset_objects
        if isinstance(given, PrefixSource):
            bucket, prefix = given.bucket_prefix()
            progress = _ListingProgress(f"s3://{bucket}/{prefix}")
            items = client.bridge.list_all(
                bucket, prefix, max_keys=_LIST_PAGE_SIZE, on_page=progress
            )
            progress.done(len(items))
            if not items:
                logger.warning(
                    "S3MapDataset: %s lists no objects; the dataset is empty",
                    progress.where,
                )
            return items
        items = []
        source = f"{type(self).__name__}"
        for item in self._get_dataset_objects(client):
            items.append(item)
            if len(items) % _LISTING_PROGRESS_ITEMS == 0:
                logger.info("%s: %d objects listed so far", source, len(items))
        return items

    def _index(self, i: int) -> int:
        pairs = self._dataset_bucket_key_pairs
        n = len(pairs)
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        if not self._shuffle:
            return i
        if self._permutation is None or len(self._permutation) != n:
            perm = array.array("q", range(n))
            shuffle_rng(self._seed, self._epoch).shuffle(perm)  # type: ignore[arg-type]
            self._permutation = perm
        return self._permutation[i]

    def __getitem__(self, i: int) -> Any:
        item = self._dataset_bucket_key_pairs[self._index(i)]
        reader = self._get_client().get_object(
            item.bucket,
            item.key,
            object_info=item.object_info,
            reader_constructor=self._reader_constructor,
        )
        return self._transform(reader)

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """``[self[i] for i in indices]``, with the batch's objects downloaded concurrently.

        A ``DataLoader`` with a ``batch_size`` asks for a whole batch at once: the objects
        whose listing size is at most ``min(64 MiB / 4, part_size)`` are fetched together
        (at most 64 MiB per batch), then each is transformed from its bytes. Others, and any
        whose download failed, are read by their reader as ``dataset[i]`` reads them (a
        failure raises there). The DCP-optimized reader reads every object itself.
        """
        pairs = self._dataset_bucket_key_pairs
        items = [pairs[self._index(i)] for i in indices]
        client = self._get_client()
        reader_type = S3ReaderConstructor.get_reader_type_string(
            self._reader_constructor
        )
        fetched: List[Optional[Tuple[bytes, str]]] = [None] * len(items)
        if len(items) > 1 and reader_type in PREFETCHABLE_READERS:
            fetched = client.bridge.fetch_batch(
                items,
                max_object_size=min(
                    _BATCH_BUDGET // 4, client.s3client_config.part_size
                ),
                budget_bytes=_BATCH_BUDGET,
            )
        out = []
        for item, got in zip(items, fetched):
            data, etag = got if got is not None else (None, None)
            reader = reader_for(client, item, data, etag, self._reader_constructor)
            out.append(self._transform(reader))
        return out

    def __len__(self) -> int:
        return len(self._dataset_bucket_key_pairs)


class _ListingProgress:
    """Logs a progress line every ``LISTING_PROGRESS_PAGES`` pages (called on the loop thread)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.pages = 0

    def __call__(self, pages: int, objects: int) -> None:
        self.pages = pages
        if pages % LISTING_PROGRESS_PAGES == 0 and pages:
            logger.info(
                "S3MapDataset listing %s: %d objects in %d pages so far",
                self.where,
                objects,
                pages,
            )

    def done(self, objects: int) -> None:
        if self.pages >= LISTING_PROGRESS_PAGES:
            logger.info(
                "S3MapDataset listed %s: %d objects in %d pages",
                self.where,
                objects,
                self.pages,
            )
