"""What a dataset reads, and how ``from_prefix`` / ``from_objects`` build every dataset.

``S3IterableDataset``, ``S3MapDataset`` and ``AsyncS3Dataset`` all take their source from here:
a :class:`PrefixSource` (``from_prefix``) or a :class:`UriSource` (``from_objects``). Each is
still a ``functools.partial`` of the reference's helper (``get_objects_from_prefix`` /
``get_objects_from_uris``), as the reference's ``get_dataset_objects`` is, so calling it with a
client gives the reference's iterator; and each says what it lists (``s3_uri`` /
``object_uris``), so a dataset asks its source instead of looking inside a partial.

No torch here: ``AsyncS3Dataset`` imports this module too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, List, Tuple, TypeVar, Union

from ._s3_bucket_iterable import S3BucketIterable
from ._s3bucket_key_data import S3BucketKeyData
from ._s3client import S3Client
from ._uri import parse_s3_uri

__all__ = [
    "DatasetSource",
    "PrefixSource",
    "UriSource",
    "build_dataset",
    "get_objects_from_prefix",
    "get_objects_from_uris",
    "parse_object_uris",
]

D = TypeVar("D")


def get_objects_from_prefix(s3_uri: str, client: S3Client) -> Iterator[S3BucketKeyData]:
    """Every object under ``s3_uri``, listed lazily (recursive, 1000 keys per page).

    Args:
        s3_uri: ``s3://bucket/prefix``; the prefix is used verbatim.
        client: Client to list with.

    Raises:
        ValueError: ``s3_uri`` is not an ``s3://`` URI with a bucket (raised here, eagerly).
        S3Exception: On iteration, e.g. ``Service error: The bucket does not exist``.
    """
    bucket, prefix = parse_s3_uri(s3_uri)
    return iter(S3BucketIterable(client, bucket, prefix))


def get_objects_from_uris(
    object_uris: Union[str, Iterable[str]], client: S3Client
) -> Iterator[S3BucketKeyData]:
    """One item per URI, without checking that the objects exist.

    Every URI is parsed when this is called (at iteration or listing time). A single string
    counts as one URI.

    Args:
        object_uris: ``s3://bucket/key`` URIs.
        client: Unused; kept for the reference's signature.

    Raises:
        ValueError: A URI is not an ``s3://`` URI with a bucket.
    """
    return iter(parse_object_uris(object_uris))


def parse_object_uris(object_uris: Union[str, Iterable[str]]) -> List[S3BucketKeyData]:
    """Parse ``object_uris`` into items (a single string counts as one URI).

    Raises:
        ValueError: A URI is not an ``s3://`` URI with a bucket.
    """
    if isinstance(object_uris, str):
        object_uris = [object_uris]
    return [S3BucketKeyData(*parse_s3_uri(uri)) for uri in object_uris]


if TYPE_CHECKING:
    _Partial = functools.partial[Iterator[S3BucketKeyData]]
else:
    _Partial = functools.partial


class PrefixSource(_Partial):
    """``from_prefix``'s source: every object under ``s3_uri`` (a partial of the helper).

    Attributes:
        s3_uri: ``s3://bucket/prefix``, as given (parsed when a dataset lists it).
    """

    s3_uri: str

    def __new__(cls, s3_uri: str) -> PrefixSource:
        self = super().__new__(cls, get_objects_from_prefix, s3_uri)
        self.s3_uri = s3_uri
        return self

    def __reduce__(self) -> Tuple[Any, ...]:
        return PrefixSource, (self.s3_uri,)

    def bucket_prefix(self) -> Tuple[str, str]:
        """``(bucket, prefix)``.

        Raises:
            ValueError: ``s3_uri`` is not an ``s3://`` URI with a bucket.
        """
        return parse_s3_uri(self.s3_uri)


class UriSource(_Partial):
    """``from_objects``'s source: the given object URIs, in order (a partial of the helper).

    Attributes:
        object_uris: The URIs as given (a one-shot iterator is consumed by the first use).
    """

    object_uris: Union[str, Iterable[str]]

    def __new__(cls, object_uris: Union[str, Iterable[str]]) -> UriSource:
        self = super().__new__(cls, get_objects_from_uris, object_uris)
        self.object_uris = object_uris
        return self

    def __reduce__(self) -> Tuple[Any, ...]:
        return UriSource, (self.object_uris,)

    def items(self) -> List[S3BucketKeyData]:
        """The URIs parsed into items.

        Raises:
            ValueError: A URI is not an ``s3://`` URI with a bucket.
        """
        return parse_object_uris(self.object_uris)


DatasetSource = Union[PrefixSource, UriSource]


def build_dataset(
    cls: Callable[..., D],
    source: DatasetSource,
    source_parameter: str,
    arguments: Mapping[str, Any],
) -> D:
    """What ``from_prefix`` and ``from_objects`` do for every dataset class.

    Logs at INFO as the reference does (on the dataset module's logger), then returns
    ``cls(**{source_parameter: source}, **options)``. ``arguments`` is the classmethod's
    ``locals()`` taken first thing: its keyword arguments, by name, so each signature (the
    reference's, kept exactly) is the only list of them.
    """
    name = getattr(cls, "__name__", "dataset")
    log = logging.getLogger(getattr(cls, "__module__", __name__))
    if isinstance(source, PrefixSource):
        log.info("Building %s from_prefix s3_uri=%r", name, source.s3_uri)
    else:
        log.info("Building %s from_objects", name)
    options = {k: v for k, v in arguments.items() if k not in _SOURCE_ARGUMENTS}
    return cls(**{source_parameter: source}, **options)


_SOURCE_ARGUMENTS = frozenset({"cls", "s3_uri", "object_uris"})
