"""Errors raised by s3torch-async and the one place where service errors are translated.

Exception tree::

    Exception
    └── S3Exception            every S3 service or transport failure
    ValueError / TypeError     misuse, raised before any I/O
    RuntimeError               runner misuse, cross-loop use, use after close

Messages for the common service errors are the reference connector's exact strings
(``Service error: The key does not exist``...), because user code compares ``str(e)``. The
bucket and key still reach the user: ``repr(e)`` shows every known attribute, and on Python
3.11+ a note such as ``s3://bucket/key (GetObject)`` is printed under the traceback.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "BUCKET_NOT_FOUND",
    "KEY_NOT_FOUND",
    "NO_CREDENTIALS",
    "OBJECT_NOT_FOUND",
    "S3Exception",
]

KEY_NOT_FOUND = "Service error: The key does not exist"
BUCKET_NOT_FOUND = "Service error: The bucket does not exist"
OBJECT_NOT_FOUND = "Service error: The object was not found"
NO_CREDENTIALS = "Client error: No signing credentials found"
INVALID_PART_SIZE = "invalid configuration: part size must be at between 5MiB and 5GiB"


_ATTRIBUTES = ("bucket", "key", "operation", "code", "status", "request_id")


class S3Exception(Exception):
    """An S3 request failed.

    ``str(e)`` is the message; the keyword attributes say where and why, when known. When the
    bucket is known and the message does not already name it, the exception carries a note
    (``add_note``, Python 3.11+) naming the object and the operation.

    Args:
        message: Human-readable description (the reference connector's wording where one exists).
        bucket: Bucket of the failed request.
        key: Key of the failed request.
        operation: S3 operation name, e.g. ``GetObject``.
        code: S3 error code, e.g. ``NoSuchKey``.
        status: HTTP status code.
        request_id: The ``x-amz-request-id`` of the failed response.
    """

    bucket: Optional[str]
    key: Optional[str]
    operation: Optional[str]
    code: Optional[str]
    status: Optional[int]
    request_id: Optional[str]

    def __init__(
        self,
        *args: Any,
        bucket: Optional[str] = None,
        key: Optional[str] = None,
        operation: Optional[str] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(*args)
        self.bucket = bucket
        self.key = key
        self.operation = operation
        self.code = code
        self.status = status
        self.request_id = request_id
        note = location_note(self)
        if note and hasattr(self, "add_note"):
            self.add_note(note)

    def __repr__(self) -> str:
        parts = [repr(arg) for arg in self.args]
        parts += [
            f"{name}={getattr(self, name, None)!r}"
            for name in _ATTRIBUTES
            if getattr(self, name, None) is not None
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep args and the keyword attributes across pickling (DataLoader workers).
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def location(bucket: Optional[str], key: Optional[str]) -> str:
    """``s3://bucket/key`` (or ``s3://bucket``), or ``""`` when the bucket is unknown."""
    if not bucket:
        return ""
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def location_note(exc: S3Exception) -> str:
    """``s3://bucket/key (Operation)`` for ``exc``, or ``""`` if its message already names it.

    Also ``""`` when the bucket is unknown.
    """
    where = location(exc.bucket, exc.key)
    if not where or any(where in str(arg) for arg in exc.args):
        return ""
    return f"{where} ({exc.operation})" if exc.operation else where


def _rebuild(
    cls: type[S3Exception], args: tuple[Any, ...], state: dict[str, Any]
) -> S3Exception:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc
