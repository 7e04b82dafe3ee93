"""Plain value types returned by the client (the reference's native result types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ["HeadObjectResult", "ListObjectResult", "ObjectInfo", "RestoreStatus"]


@dataclass(frozen=True)
class RestoreStatus:
    """Restore state of an archived object.

    Attributes:
        in_progress: A restore is running.
        expiry: When the restored copy expires (seconds since the epoch), if known.
    """

    in_progress: bool
    expiry: Optional[int] = None


@dataclass(frozen=True)
class ObjectInfo:
    """One object as seen by a listing.

    Attributes:
        key: Object key.
        etag: Entity tag, quoted as S3 returns it.
        size: Size in bytes.
        last_modified: Last modification time, seconds since the epoch.
        storage_class: Storage class, when S3 reports one.
        restore_status: Restore state of archived objects, when S3 reports one.
    """

    key: str
    etag: str
    size: int
    last_modified: int
    storage_class: Optional[str] = None
    restore_status: Optional[RestoreStatus] = None


@dataclass(frozen=True)
class HeadObjectResult:
    """Result of a HEAD request (no key, as in the reference).

    Attributes:
        etag: Entity tag, quoted as S3 returns it.
        size: Size in bytes.
        last_modified: Last modification time, seconds since the epoch.
        storage_class: Storage class, when S3 reports one.
        restore_status: Restore state of archived objects, when S3 reports one.
    """

    etag: str
    size: int
    last_modified: int
    storage_class: Optional[str] = None
    restore_status: Optional[RestoreStatus] = None


@dataclass(frozen=True)
class ListObjectResult:
    """One page of a listing.

    Attributes:
        object_info: Objects on this page, in listing order.
        common_prefixes: Common prefixes on this page (only with a delimiter).
    """

    object_info: List[ObjectInfo] = field(default_factory=list)
    common_prefixes: List[str] = field(default_factory=list)
