"""The CRC32 backends: ISA-L (``fast-crc`` extra) and zlib compute the same checksums."""

from __future__ import annotations

import base64
import mmap
import os
import subprocess
import sys
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torch_async._core import _checksum


def _backend_in_child(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("S3TORCH_ASYNC_CRC32", None)
    if env_value is not None:
        env["S3TORCH_ASYNC_CRC32"] = env_value
    code = "from s3torch_async._core import _checksum as c; print(c.CRC32_BACKEND)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_zlib_can_be_forced_by_environment() -> None:
    assert _backend_in_child("zlib") == "zlib"
    assert _backend_in_child(" ZLIB ") == "zlib"


def test_the_fast_backend_is_picked_when_installed() -> None:
    try:
        import isal  # noqa: F401
    except ImportError:
        expected = "zlib"
    else:
        expected = "isal"
    assert _backend_in_child(None) == expected


@given(data=st.binary(max_size=4096), start=st.integers(0, 2**32 - 1))
def test_crc32_matches_zlib(data: bytes, start: int) -> None:
    assert _checksum.crc32(data, start) == zlib.crc32(data, start)


def test_crc32_reads_every_buffer_kind_the_writer_hands_it() -> None:
    payload = os.urandom(3 << 20)
    with mmap.mmap(-1, len(payload)) as buf:
        buf[:] = payload
        view = memoryview(buf)
        try:
            got = _checksum.crc32(view[1:])
        finally:
            view.release()
    assert got == zlib.crc32(payload[1:])
    assert _checksum.crc32(bytearray(payload)) == zlib.crc32(payload)


@pytest.mark.asyncio
async def test_large_buffers_hash_on_a_thread_with_the_same_result() -> None:
    payload = os.urandom(_checksum.THREAD_MIN_BYTES + 1)
    expected = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    assert await _checksum.crc32_b64_async(payload) == expected
    assert (
        await _checksum.checksum_mismatch(expected, [payload[:10], payload[10:]])
        is None
    )
