"""``S3BucketIterable``: the objects under a prefix, listed lazily page by page (reference path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, List

from ._s3bucket_key_data import S3BucketKeyData
from ._s3client import S3Client
from ._s3client._s3client import ListObjectStream

__all__ = ["S3BucketIterable"]

_MAX_KEYS = 1000


class S3BucketIterable:
    """Every object under ``prefix`` (recursive listing, 1000 keys per page), in listing order.

    Each ``iter()`` lists again. Pages are requested as the iterator reaches them; an iterator
    pickled mid-listing resumes from the next page (its continuation token).

    Args:
        client: Client to list with.
        bucket: Bucket name.
        prefix: Key prefix, sent verbatim (``"obj"`` also matches ``"objects/x"``).
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def __iter__(self) -> Iterator[S3BucketKeyData]:
        return _BucketKeyIterator(
            self._bucket,
            self._client.list_objects(self._bucket, self._prefix, "", _MAX_KEYS),
        )


class _BucketKeyIterator:
    """Flattens listing pages into ``S3BucketKeyData``; picklable at any point."""

    def __init__(self, bucket: str, pages: ListObjectStream) -> None:
        self._bucket = bucket
        self._pages = pages
        self._page: List[Any] = []
        self._index = 0

    def __iter__(self) -> _BucketKeyIterator:
        return self

    def __next__(self) -> S3BucketKeyData:
        while self._index >= len(self._page):
            self._page = next(self._pages).object_info
            self._index = 0
        info = self._page[self._index]
        self._index += 1
        return S3BucketKeyData(self._bucket, info.key, info)
