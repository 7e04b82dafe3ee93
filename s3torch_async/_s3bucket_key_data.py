"""``S3BucketKeyData``: one dataset item before it is read (reference module path).

A leaf module (standard library and ``_types`` only), so the async core can produce these.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ._types import ObjectInfo

__all__ = ["S3BucketKeyData"]


class S3BucketKeyData(NamedTuple):
    """Where a dataset item lives, plus its listing info when it came from a listing.

    Attributes:
        bucket: Bucket name.
        key: Object key.
        object_info: The listing's ``ObjectInfo``; ``None`` for items built from URIs.
    """

    bucket: str
    key: str
    object_info: Optional[ObjectInfo] = None
