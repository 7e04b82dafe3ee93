"""The internal-but-used ``S3Client`` and its configuration (reference module path)."""

from __future__ import annotations

from .._config import S3ClientConfig
from ._s3client import GetObjectStream, ListObjectStream, S3Client

__all__ = ["GetObjectStream", "ListObjectStream", "S3Client", "S3ClientConfig"]
