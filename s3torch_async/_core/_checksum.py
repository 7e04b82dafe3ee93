"""Object integrity: CRC32 checksums on uploads, full-object checksum checks on downloads.

Uploads carry ``x-amz-checksum-crc32`` (base64 of the big-endian CRC32 of the body), which S3
verifies before storing anything; multipart uploads are created with ``ChecksumAlgorithm=CRC32``
and completed with every part's checksum. The checksum is computed with ``zlib.crc32`` on the
buffer about to be sent (about 4.5 GB/s here); buffers of 1 MiB or more are hashed on a worker
thread (zlib releases the GIL), so hashing one part overlaps the upload of the previous ones,
while smaller ones are hashed inline, where the thread hop (~50 us) would cost more than it saves.
A writer whose caller already knows the CRC-32 of what it writes (the DCP writer hashes every
record for its zip) gets each part's checksum by combining those CRCs (:func:`crc32_combine`),
without hashing the part again.

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
import functools
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
    "crc32_combine",
    "crc32_to_b64",
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
    return crc32_to_b64(zlib.crc32(data, value))


# CRC-32 arithmetic on bit-reflected polynomials modulo the CRC's generator (zlib's method).
_REFLECTED_POLY = 0xEDB88320
_ONE = 1 << 31  # the polynomial 1 in reflected form


def _mulmod(a: int, b: int) -> int:
    """``a * b`` modulo the CRC-32 polynomial (both reflected)."""
    product = 0
    mask = _ONE
    while a:
        if a & mask:
            product ^= b
            a ^= mask
        mask >>= 1
        b = (b >> 1) ^ _REFLECTED_POLY if b & 1 else b >> 1
    return product


def _square_table() -> tuple[int, ...]:
    table = [1 << 30]  # x^(2^0) = x
    for _ in range(31):
        table.append(_mulmod(table[-1], table[-1]))
    return tuple(table)


_X_POW_2K = _square_table()  # x^(2^k) modulo the polynomial, k = 0..31


@functools.lru_cache(maxsize=64)
def _shift(nbytes: int) -> int:
    """``x^(8 * nbytes)`` modulo the polynomial: appending ``nbytes`` bytes to a CRC."""
    power = _ONE
    k = 3  # 8 bits per byte: x^(n * 2^3)
    while nbytes:
        if nbytes & 1:
            power = _mulmod(_X_POW_2K[k % 32], power)
        nbytes >>= 1
        k += 1
    return power


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``a + b`` from ``crc1 = crc32(a)``, ``crc2 = crc32(b)`` and ``len(b)``.

    zlib has this (``crc32_combine``) but CPython does not expose it. It lets a caller that
    already computed the CRC of its pieces give a part's CRC without reading the bytes again.
    """
    return _mulmod(_shift(len2), crc1) ^ crc2


def crc32_to_b64(crc: int) -> str:
    """Base64 of the big-endian CRC-32 ``crc``, as ``x-amz-checksum-crc32`` wants it."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


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
