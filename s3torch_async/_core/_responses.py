"""S3 response helpers shared by both transports: error and listing shapes botocore's way.

Light on purpose: the lean transport uses these without loading aiobotocore, aiohttp or
botocore's client machinery; botocore's exception module is imported only to build an error.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Optional

from .._errors import S3Exception
from .._types import RestoreStatus

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from botocore.exceptions import ClientError

__all__ = [
    "check_key_count",
    "client_error",
    "epoch",
    "local_name",
    "parse_xml",
    "restore_status",
    "text_of",
]


def epoch(value: Any) -> int:
    """Seconds since the epoch from botocore's datetimes (or a number)."""
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(value or 0)


def restore_status(value: Any) -> Optional[RestoreStatus]:
    """``RestoreStatus`` from a listing's dict or HEAD's ``x-amz-restore`` header."""
    if not value:
        return None
    if isinstance(value, dict):
        expiry = value.get("RestoreExpiryDate")
        return RestoreStatus(
            bool(value.get("IsRestoreInProgress")), epoch(expiry) if expiry else None
        )
    # HEAD's x-amz-restore header: ongoing-request="false", expiry-date="..."
    return RestoreStatus('ongoing-request="true"' in str(value), None)


def check_key_count(declared: Any, keys: int, prefixes: int) -> None:
    """Raise when a listing page's ``KeyCount`` disagrees with the entries parsed from it.

    S3 counts keys and common prefixes; a server that counts keys alone is accepted too.
    """
    if declared is None or declared == "":
        return
    try:
        count = int(declared)
    except (TypeError, ValueError):
        return
    if count not in (keys + prefixes, keys):
        raise S3Exception(
            f"Client error: ListObjectsV2 page declares KeyCount {count} but "
            f"{keys} keys and {prefixes} prefixes were parsed from it"
        )


def local_name(tag: Any) -> str:
    # "{namespace}Name" -> "Name": S3-compatible servers answer under other namespaces or none.
    return str(tag).rpartition("}")[2]


def parse_xml(body: bytes) -> Optional[ET.Element]:
    """The XML document in ``body``, ``None`` if it does not parse."""
    # ElementTree costs ~3 ms to import: loaded with the first error or unusual listing.
    import xml.etree.ElementTree as ET

    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def text_of(elem: ET.Element, name: str) -> Optional[str]:
    for child in elem:
        if local_name(child.tag) == name:
            return child.text or ""
    return None


def client_error(status: int, body: bytes, headers: Any, operation: str) -> ClientError:
    code, message = str(status), ""
    request_id = headers.get("x-amz-request-id", "")
    if body:
        root = parse_xml(body)
        if root is not None:
            code = text_of(root, "Code") or code
            message = text_of(root, "Message") or ""
            request_id = text_of(root, "RequestId") or request_id
    if not message:  # as botocore: the reason phrase stands in for a missing error body
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = ""
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": request_id},
    }
    from botocore.exceptions import ClientError  # loaded on the first error only

    return ClientError(response, operation)  # type: ignore[arg-type]
