"""Reference module path of ``S3ClientConfig``."""

from __future__ import annotations

from .._config import S3ClientConfig

__all__ = ["S3ClientConfig"]
