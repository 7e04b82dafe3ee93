"""``ObjectVersion``: what is known about the one version of an object that is being read.

Every layer that reads an object (the sync reader, its backend, the core reader, a prefetched
copy) holds the *same* ``ObjectVersion`` instance instead of its own copy of the size and
ETag, so what one layer learns the others see without being told. Sans-I/O: no request here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .._errors import S3Exception
from .._types import HeadObjectResult, ObjectInfo

__all__ = ["ObjectVersion"]


@dataclass
class ObjectVersion:
    """Size, ETag and last-modified time of the object version a reader serves.

    Fields are ``None`` until known. ``size`` and ``last_modified`` may come from a listing or
    a HEAD; ``etag`` is the version the reads are pinned to: set by the first response (or by
    the prefetched copy), then sent as ``If-Match`` on every later request.
    """

    size: Optional[int] = None
    etag: Optional[str] = None
    last_modified: Optional[int] = None

    @classmethod
    def from_info(
        cls, info: Union[ObjectInfo, HeadObjectResult, None]
    ) -> ObjectVersion:
        """A version whose size (and time) come from listing or HEAD info; not yet pinned."""
        if info is None:
            return cls()
        return cls(size=int(info.size), last_modified=info.last_modified)

    def learn_size(self, info: Union[ObjectInfo, HeadObjectResult]) -> int:
        """Take the size from listing or HEAD info unless already known; return the size."""
        if self.size is None:
            self.size = int(info.size)
            if self.last_modified is None:
                self.last_modified = info.last_modified
        return self.size

    def observe(self, etag: str, object_size: int, *, bucket: str, key: str) -> None:
        """Record a GET response's ETag and total size (``-1``: not reported).

        The first non-empty ETag pins the version.

        Raises:
            S3Exception: HTTP 412, the response belongs to another version of the object.
        """
        if etag:
            if self.etag is None:
                self.etag = etag
            elif etag != self.etag:
                raise S3Exception(
                    f"Service error: GetObject s3://{bucket}/{key} failed: "
                    f"PreconditionFailed (HTTP 412): the object changed while it was read "
                    f"(ETag {etag}, expected {self.etag})",
                    bucket=bucket,
                    key=key,
                    operation="GetObject",
                    code="PreconditionFailed",
                    status=412,
                )
        if object_size >= 0:
            self.size = object_size
