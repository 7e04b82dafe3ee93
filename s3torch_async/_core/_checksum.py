"""Object integrity: CRC32 checksums on uploads, full-object checksum checks on downloads.

Uploads carry ``x-amz-checksum-crc32`` (base64 of the big-endian CRC32 of the body), which S3
verifies before storing anything; multipart uploads are created with ``ChecksumAlgorithm=CRC32``
and completed with every part's checksum. The checksum is computed with ``zlib.crc32`` on the
buffer about to be sent (about 4.5 GB/s here); buffers of 1 MiB or more are hashed on a worker
thread (zlib releases the GIL), so hashing one part overlaps the upload of the previous ones,
while smaller ones are hashed inline, where the thread hop (~50 us) would cost more than it saves.

Whole-object GETs ask for the stored checksum (``x-amz-checksum-mode: ENABLED``) and check the
body against a full-object CRC32 before delivering it. Not checked, by design:

* ranged GETs (S3 returns no checksum for a range);
* composite checksums of multipart objects (``"<base64>-<parts>"``: a checksum of the part
  checksums, which cannot be recomputed from the body without the part boundaries);
* algorithms other than CRC32 (CRC32C, CRC64NVME, SHA-1, SHA-256): no cheap pure-Python
  implementation ships with CPython's standard library besides ``zlib.crc32`` (SHA digests are
  cheap but S3 returns them only when the uploader chose them; they are left for later).

Both switches are botocore's own, read where botocore reads them (``AWS_REQUEST_CHECKSUM_CALCULATION``
/ ``AWS_RESPONSE_CHECKSUM_VALIDATION``, else ``request_checksum_calculation`` /
``response_checksum_validation`` in the profile's config): ``when_supported`` (the default) sends
and checks checksums, ``when_required`` sends none (for S3-compatible stores that reject them).
"""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

__all__ = [
    "CRC32_HEADER",
    "CREATE_HEADERS",
    "GET_HEADERS",
    "ChecksumPolicy",
    "checksum_mismatch",
    "crc32_b64",
    "crc32_b64_async",
    "expected_crc32",
    "upload_headers",
]

CRC32_HEADER = "x-amz-checksum-crc32"
_VALUES = ("when_supported", "when_required")
# Hashing below this size is cheaper inline than a worker-thread hop (measured: hop ~50 us,
# CRC32 ~4.5 GB/s, so 1 MiB costs ~0.2 ms of loop time).
THREAD_MIN_BYTES = 1 << 20

Buffer = Union[bytes, bytearray, memoryview]

# Sent as plain headers on both transports (botocore's own checksum handling stays off:
# its client config says ``when_required``, and it computes nothing for a request that
# already carries an ``x-amz-checksum-*`` header).
#: A whole-object GET asks for the stored checksum.
GET_HEADERS = {"x-amz-checksum-mode": "ENABLED"}
#: CreateMultipartUpload with ``ChecksumAlgorithm=CRC32``.
CREATE_HEADERS = {"x-amz-checksum-algorithm": "CRC32"}


def upload_headers(checksum: Optional[str]) -> dict[str, str]:
    """The headers of a PutObject/UploadPart carrying ``checksum`` (none for ``None``)."""
    if checksum is None:
        return {}
    # x-amz-sdk-checksum-algorithm is what AWS SDKs send alongside; S3 ignores it when the
    # value header is present, and some servers (moto) store the checksum only with it.
    return {CRC32_HEADER: checksum, "x-amz-sdk-checksum-algorithm": "CRC32"}


@dataclass(frozen=True)
class ChecksumPolicy:
    """Whether uploads carry a CRC32 (``send``) and whole-object GETs are checked (``validate``)."""

    send: bool = True
    validate: bool = True

    @classmethod
    def from_session(cls, session: Any) -> ChecksumPolicy:
        """The policy a botocore session's configuration (environment, profile) asks for.

        Raises:
            ValueError: A setting is neither ``when_supported`` nor ``when_required``.
        """
        values = []
        for name in ("request_checksum_calculation", "response_checksum_validation"):
            value = str(session.get_config_variable(name) or "when_supported").lower()
            if value not in _VALUES:
                raise ValueError(
                    f"{name} must be one of {', '.join(_VALUES)}, got {value!r}"
                )
            values.append(value == "when_supported")
        return cls(send=values[0], validate=values[1])


def crc32_b64(data: Buffer, value: int = 0) -> str:
    """Base64 of the big-endian CRC32 of ``data``, as S3's ``x-amz-checksum-crc32`` wants it."""
    return base64.b64encode(zlib.crc32(data, value).to_bytes(4, "big")).decode("ascii")


async def crc32_b64_async(data: Buffer) -> str:
    """:func:`crc32_b64`, on a worker thread for large buffers (overlaps other transfers)."""
    if len(data) < THREAD_MIN_BYTES:
        return crc32_b64(data)
    return await asyncio.to_thread(crc32_b64, data)


def expected_crc32(headers: Mapping[str, Any]) -> Optional[str]:
    """The full-object CRC32 a response announces, ``None`` if there is none to check.

    Composite (multipart) checksums, ``"<base64>-<parts>"``, cannot be checked against the
    body and count as none.
    """
    value = headers.get(CRC32_HEADER)
    if not value or "-" in value:
        return None
    return str(value)


async def checksum_mismatch(
    expected: str, chunks: Union[Buffer, list[bytes]]
) -> Optional[str]:
    """Compare the CRC32 of the body (one buffer or its chunks) with ``expected``.

    Returns:
        ``None`` when they agree, else the checksum actually computed.
    """
    if isinstance(chunks, list):
        pieces = chunks

        def compute() -> str:
            value = 0
            for piece in pieces:
                value = zlib.crc32(piece, value)
            return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")

        size = sum(len(p) for p in pieces)
    else:
        body = chunks

        def compute() -> str:
            return crc32_b64(body)

        size = len(body)
    actual = compute() if size < THREAD_MIN_BYTES else await asyncio.to_thread(compute)
    return None if actual == expected else actual
