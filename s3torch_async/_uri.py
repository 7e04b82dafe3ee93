"""Parsing of ``s3://bucket/key`` URIs, with the reference's messages."""

from __future__ import annotations

from typing import Any, Tuple

__all__ = ["parse_s3_uri", "validate_bucket_key"]

_SCHEME = "s3://"


def parse_s3_uri(uri: Any) -> Tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``.

    The key is kept verbatim (no normalisation, no URL decoding); ``s3://bucket`` and
    ``s3://bucket/`` give an empty key.

    Raises:
        ValueError: The URI is empty, not a string starting with ``s3://``, or names no bucket.
    """
    if not uri or not isinstance(uri, str) or not uri.startswith(_SCHEME):
        raise ValueError("Only s3:// URIs are supported")
    bucket, _, key = uri[len(_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError("Bucket name must be non-empty")
    return bucket, key


def validate_bucket_key(bucket: Any, key: Any) -> None:
    """Reject a bucket or key that is not a non-empty string, naming the argument.

    Raises:
        TypeError: ``bucket`` or ``key`` is not a ``str``.
        ValueError: ``bucket`` or ``key`` is empty.
    """
    for name, value in (("bucket", bucket), ("key", key)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if not value:
            raise ValueError(f"{name} must be a non-empty string")
