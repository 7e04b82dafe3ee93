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

Multipart uploads ask for a FULL_OBJECT CRC32 (``x-amz-checksum-type: FULL_OBJECT`` on
CreateMultipartUpload): CompleteMultipartUpload carries the CRC32 of the whole object, combined
from the part CRC32s (:func:`crc32_combine`), so the objects we write can be checked whole when
read back, whether they were written in one request or in parts.

Whole-object GETs ask for the stored checksum (``x-amz-checksum-mode: ENABLED``) and check the
body against a full-object CRC32 before delivering it. Whole objects read through ranged GETs
(the readers) are checked too: each range's CRC32 is recorded (:class:`Crc32Coverage`), the
ranges are combined as they touch, and once every byte of the object has arrived the result is
compared with the full-object CRC32 a HEAD reported (``_core/_wholecheck.py``). Not checked, by
design:

* reads of only part of an object (S3 has no checksum for a range);
* composite checksums of multipart objects (``"<base64>-<parts>"``: a checksum of the part
  checksums, which cannot be recomputed from the body without the part boundaries; also any
  checksum of an object whose ETag says multipart, ``"...-<parts>"``, unless the response says
  ``x-amz-checksum-type: FULL_OBJECT``: some servers report a composite value bare);
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
import bisect
import functools
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

__all__ = [
    "CRC32_BACKEND",
    "CRC32_HEADER",
    "CREATE_HEADERS",
    "FULL_OBJECT_HEADERS",
    "GET_HEADERS",
    "ChecksumPolicy",
    "Crc32Coverage",
    "checksum_mismatch",
    "crc32",
    "crc32_b64",
    "crc32_b64_async",
    "crc32_combine",
    "crc32_from_b64",
    "crc32_to_b64",
    "expected_crc32",
    "full_object_headers",
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
#: CreateMultipartUpload with ``ChecksumAlgorithm=CRC32``, ``ChecksumType=FULL_OBJECT``.
CREATE_HEADERS = {
    "x-amz-checksum-algorithm": "CRC32",
    "x-amz-checksum-type": "FULL_OBJECT",
}
#: The type header of a CompleteMultipartUpload that carries the whole object's CRC32.
FULL_OBJECT_HEADERS = {"x-amz-checksum-type": "FULL_OBJECT"}
CHECKSUM_TYPE_HEADER = "x-amz-checksum-type"


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
        return cls.from_settings(session.get_config_variable)

    @classmethod
    def from_settings(cls, setting: Callable[[str], Any]) -> ChecksumPolicy:
        """The policy from ``setting(name)`` for botocore's two setting names (``None``: unset).

        Raises:
            ValueError: A setting is neither ``when_supported`` nor ``when_required``.
        """
        values = []
        for name in ("request_checksum_calculation", "response_checksum_validation"):
            value = str(setting(name) or "when_supported").lower()
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


def full_object_headers(crc: str) -> dict[str, str]:
    """The headers of a CompleteMultipartUpload carrying the whole object's CRC32 ``crc``."""
    return {CRC32_HEADER: crc, **FULL_OBJECT_HEADERS}


def expected_crc32(headers: Mapping[str, Any]) -> Optional[str]:
    """The full-object CRC32 a GET or HEAD response announces, ``None`` if none can be checked.

    ``headers`` has lower-case (or case-insensitive) names. Composite (multipart) checksums,
    ``"<base64>-<parts>"``, cannot be checked against the body and count as none; so does a
    bare value on a multipart object (ETag ``"...-<parts>"``) unless the response says
    ``x-amz-checksum-type: FULL_OBJECT`` (moto, for one, reports a composite value bare on HEAD).
    """
    value = headers.get(CRC32_HEADER)
    if not value or "-" in value:
        return None
    kind = str(headers.get(CHECKSUM_TYPE_HEADER) or "").upper()
    if kind == "COMPOSITE":
        return None
    if kind != "FULL_OBJECT" and "-" in str(headers.get("etag") or ""):
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


# -- combining CRC32s of adjacent byte ranges --------------------------------------------------
#
# CRC32 is linear over GF(2): for byte strings A and B,
#     crc32(A + B) == crc32(A) * x^(8 * len(B)) mod P  xor  crc32(B)
# (the initial and final inversions zlib applies cancel out). Polynomials are held in
# CRC32's reflected bit order: bit 31 is the coefficient of x^0, bit 0 that of x^31.

_POLY = 0xEDB88320  # P, the CRC-32 polynomial, reflected (x^32 implied)
_TOP = 1 << 31  # x^0


def _mulmod(a: int, b: int) -> int:
    """``a * b mod P`` (reflected polynomials)."""
    product = 0
    while a:
        if a & _TOP:
            product ^= b
        a = (a << 1) & 0xFFFFFFFF
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _square_powers() -> list[int]:
    # x^(2^k) mod P for k = 0..63: enough for any byte count below 2^61.
    powers = [_TOP >> 1]  # x^1
    for _ in range(63):
        powers.append(_mulmod(powers[-1], powers[-1]))
    return powers


_X_2K = _square_powers()


@functools.lru_cache(maxsize=64)
def _byte_shift(nbytes: int) -> int:
    """``x^(8 * nbytes) mod P``; cached, as most ranges of a transfer share a few lengths."""
    shift = _TOP  # x^0
    bits = 8 * nbytes
    k = 0
    while bits:
        if bits & 1:
            shift = _mulmod(shift, _X_2K[k])
        bits >>= 1
        k += 1
    return shift


def crc32_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """The CRC32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``.

    Raises:
        ValueError: ``len_b`` is negative.
    """
    if len_b < 0:
        raise ValueError(f"len_b must not be negative, got {len_b}")
    if len_b == 0:
        return crc_a
    return _mulmod(_byte_shift(len_b), crc_a) ^ crc_b


def crc32_to_b64(value: int) -> str:
    """``x-amz-checksum-crc32`` form of a CRC32 value."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def crc32_from_b64(text: str) -> Optional[int]:
    """The CRC32 value of an ``x-amz-checksum-crc32`` header, ``None`` if it is malformed."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return None
    return int.from_bytes(raw, "big") if len(raw) == 4 else None


class Crc32Coverage:
    """CRC32s of disjoint byte spans of one object, merged whenever two spans touch.

    Spans arrive in any order (parallel ranged GETs); adjacent ones are combined with
    :func:`crc32_combine`, so a whole object read in any number of ranges ends as one span.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._spans: list[
            tuple[int, int, int]
        ] = []  # (start, end, crc), sorted, disjoint

    def __len__(self) -> int:
        return len(self._spans)

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` no recorded span covers, in order."""
        out = []
        pos = start
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        for s, e, _ in self._spans[i:]:
            if s >= end:
                break
            if e <= pos:
                continue
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
            if pos >= end:
                break
        if pos < end:
            out.append((pos, end))
        return out

    def add(self, start: int, end: int, crc: int) -> None:
        """Record the CRC32 of ``[start, end)``, which must overlap no recorded span.

        Raises:
            ValueError: The span is empty or overlaps a recorded one.
        """
        if end <= start or self.gaps(start, end) != [(start, end)]:
            raise ValueError(f"span [{start}, {end}) is empty or already covered")
        i = bisect.bisect_left(self._starts, start)
        if i > 0 and self._spans[i - 1][1] == start:
            left_start, _, left_crc = self._spans[i - 1]
            crc = crc32_combine(left_crc, crc, end - start)
            start = left_start
            i -= 1
            del self._spans[i], self._starts[i]
        if i < len(self._spans) and self._spans[i][0] == end:
            _, right_end, right_crc = self._spans[i]
            crc = crc32_combine(crc, right_crc, right_end - end)
            end = right_end
            del self._spans[i], self._starts[i]
        self._spans.insert(i, (start, end, crc))
        self._starts.insert(i, start)

    def whole(self, size: int) -> Optional[int]:
        """The CRC32 of ``[0, size)`` once one span covers exactly that, else ``None``."""
        if len(self._spans) == 1 and self._spans[0][:2] == (0, size):
            return self._spans[0][2]
        return None

    def clear(self) -> None:
        """Forget every span."""
        self._starts.clear()
        self._spans.clear()
