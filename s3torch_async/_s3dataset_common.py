"""Helpers shared by the datasets (reference module path)."""

from __future__ import annotations

from ._uri import parse_s3_uri

__all__ = ["parse_s3_uri"]
