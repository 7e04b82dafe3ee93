"""Object integrity: CRC32 checksums on uploads, full-object checksum checks on downloads.

Uploads carry ``x-amz-checksum-crc32`` (base64 of the big-endian CRC32 of the body), which S3
verifies before storing anything; multipart uploads are created with ``ChecksumAlgorithm=CRC32``
and completed with every part's checksum. The checksum is computed on the buffer about to be sent.
Large buffers are hashed on a worker thread (both backends release the GIL), so hashing one part
overlaps the upload of the previous ones; small ones inline, where the thread hop (~50 us) would
cost more than it saves.

Backends (:data:`CRC32_BACKEND`): ``isal`` (the ``fast-crc`` extra, Intel ISA-L's vectorised
CRC32, ~19 GB/s on this project's 2-core benchmark machine) when it is installed, else the
standard library's ``zlib.crc32`` (~2 GB/s there: about 0.5 CPU-s per GB uploaded).  Both compute
the same CRC32; ``S3TORCH_ASYNC_CRC32=zlib`` forces the standard library.

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
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

__all__ = [
    "CRC32_BACKEND",
    "CRC32_HEADER",
    "CREATE_HEADERS",
    "GET_HEADERS",
    "ChecksumPolicy",
    "checksum_mismatch",
    "crc32",
    "crc32_b64",
    "crc32_b64_async",
    "expected_crc32",
    "upload_headers",
]

CRC32_HEADER = "x-amz-checksum-crc32"
_VALUES = ("when_supported", "when_required")

Buffer = Union[bytes, bytearray, memoryview]
Crc32 = Callable[[Buffer, int], int]


def _pick_backend() -> tuple[str, Crc32, int]:
    """The fastest CRC32 installed, its name, and the size worth a worker-thread hop.

    A hop costs ~50 us: hashing 1 MiB with zlib (~2 GB/s) costs ~0.5 ms of loop time, so zlib
    goes to a thread from 1 MiB; ISA-L (~19 GB/s) hashes 1 MiB in ~55 us, so from 8 MiB.
    """
    if os.environ.get("S3TORCH_ASYNC_CRC32", "").strip().lower() != "zlib":
        try:
            from isal import isal_zlib
        except ImportError:
            pass
        else:
            return "isal", isal_zlib.crc32, 8 << 20
    return "zlib", zlib.crc32, 1 << 20


#: ``"isal"`` or ``"zlib"``: which implementation computes CRC32s in this process.
CRC32_BACKEND, _crc32, THREAD_MIN_BYTES = _pick_backend()


def crc32(data: Buffer, value: int = 0) -> int:
    """The CRC32 of ``data`` continuing from ``value`` (``zlib.crc32``'s contract)."""
    return _crc32(data, value)


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
    return base64.b64encode(_crc32(data, value).to_bytes(4, "big")).decode("ascii")


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
                value = _crc32(piece, value)
            return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")

        size = sum(len(p) for p in pieces)
    else:
        body = chunks

        def compute() -> str:
            return crc32_b64(body)

        size = len(body)
    actual = compute() if size < THREAD_MIN_BYTES else await asyncio.to_thread(compute)
    return None if actual == expected else actual
