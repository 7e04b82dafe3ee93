"""Translation of botocore/aiohttp failures into ``S3Exception`` (the one place it happens)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

from .._errors import (
    BUCKET_NOT_FOUND,
    KEY_NOT_FOUND,
    NO_CREDENTIALS,
    OBJECT_NOT_FOUND,
    S3Exception,
)
from ._retry import aiohttp_errors, botocore_error, client_error_response, describe

__all__ = ["translate", "translating_errors"]

# Operations whose "not found" answer the reference reports as "The object was not found".
_OBJECT_LEVEL_NOT_FOUND = {"HeadObject", "CopyObject"}


def _where(bucket: Optional[str], key: Optional[str]) -> str:
    if bucket is None:
        return ""
    return f" s3://{bucket}/{key}" if key else f" s3://{bucket}"


def translate(
    exc: BaseException, *, operation: str, bucket: Optional[str], key: Optional[str]
) -> BaseException:
    """Return the exception to raise in place of ``exc`` (may be ``exc`` itself)."""
    attrs: dict[str, Any] = {"bucket": bucket, "key": key, "operation": operation}
    if isinstance(exc, S3Exception):
        if exc.operation is None:  # raised below the client: say where
            exc.bucket, exc.key, exc.operation = bucket, key, operation
        return exc
    response = client_error_response(exc)
    if response is not None:
        err = response.get("Error", {}) or {}
        meta = response.get("ResponseMetadata", {}) or {}
        code = str(err.get("Code", "")) or "Unknown"
        status = meta.get("HTTPStatusCode")
        request_id = meta.get("RequestId") or None
        attrs.update(code=code, status=status, request_id=request_id)
        not_found = code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound")
        if not_found and operation in _OBJECT_LEVEL_NOT_FOUND:
            return S3Exception(OBJECT_NOT_FOUND, **attrs)
        if code == "NoSuchKey":
            return S3Exception(KEY_NOT_FOUND, **attrs)
        if code == "NoSuchBucket":
            return S3Exception(BUCKET_NOT_FOUND, **attrs)
        message = err.get("Message") or response.get("Error", {}).get("Message") or ""
        detail = f"{code} (HTTP {status}, request id {request_id})"
        return S3Exception(
            f"Service error: {operation}{_where(bucket, key)} failed: {detail}: {message}".rstrip(
                ": "
            ),
            **attrs,
        )
    if isinstance(exc, botocore_error("NoCredentialsError")):
        return S3Exception(NO_CREDENTIALS, **attrs)
    if isinstance(exc, botocore_error("ParamValidationError")):
        return ValueError(f"{operation}{_where(bucket, key)}: {exc}")
    if isinstance(
        exc,
        (
            botocore_error("BotoCoreError"),
            *aiohttp_errors("ClientError"),
            asyncio.TimeoutError,
            OSError,
        ),
    ):
        return S3Exception(
            f"Client error: {operation}{_where(bucket, key)} failed: {describe(exc)}",
            **attrs,
        )
    return exc


@asynccontextmanager
async def translating_errors(
    operation: str, bucket: Optional[str] = None, key: Optional[str] = None
) -> AsyncIterator[None]:
    """Re-raise failures inside the block as ``S3Exception`` naming operation, bucket and key."""
    try:
        yield
    except Exception as exc:
        new = translate(exc, operation=operation, bucket=bucket, key=key)
        if new is exc:
            raise
        raise new from exc
