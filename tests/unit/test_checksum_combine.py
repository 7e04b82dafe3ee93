"""``crc32_combine`` and ``Crc32Coverage``: combining CRC32s of adjacent ranges, checked
against ``zlib.crc32`` of the concatenated bytes."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torch_async._core._checksum import (
    Crc32Coverage,
    crc32_combine,
    crc32_from_b64,
    crc32_to_b64,
    expected_crc32,
)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_combine_matches_crc_of_concatenation(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_combine_over_large_lengths() -> None:
    # Lengths past 2^32 bytes (more square-and-multiply steps) still agree with zlib's
    # running CRC over the same bytes, built from a repeated block.
    block = random.Random(1).randbytes(1 << 16)
    whole = 0
    for _ in range(64):
        whole = zlib.crc32(block, whole)
    combined = 0
    for _ in range(64):
        combined = crc32_combine(combined, zlib.crc32(block), len(block))
    assert combined == whole
    # Doubling: crc(X + X) from crc(X) alone, for |X| = 4 MiB * 2^k.
    x_crc, x_len = whole, 64 * len(block)
    for _ in range(12):
        doubled = crc32_combine(x_crc, x_crc, x_len)
        assert doubled != x_crc
        x_crc, x_len = doubled, 2 * x_len
    assert x_len > 1 << 32


def test_combine_with_empty_and_bad_lengths() -> None:
    assert crc32_combine(1234, 0, 0) == 1234
    assert crc32_combine(0, zlib.crc32(b"abc"), 3) == zlib.crc32(b"abc")
    with pytest.raises(ValueError, match="len_b"):
        crc32_combine(1, 2, -1)


@given(st.data())
def test_coverage_merges_ranges_in_any_order(data: st.DataObject) -> None:
    body = data.draw(st.binary(min_size=1, max_size=2000))
    cuts = (
        data.draw(st.sets(st.integers(1, len(body) - 1), max_size=30))
        if len(body) > 1
        else set()
    )
    bounds = [0, *sorted(cuts), len(body)]
    spans = list(zip(bounds, bounds[1:]))
    order = data.draw(st.permutations(spans))
    coverage = Crc32Coverage()
    for i, (start, end) in enumerate(order):
        assert coverage.whole(len(body)) is None
        assert coverage.gaps(start, end) == [(start, end)]
        coverage.add(start, end, zlib.crc32(body[start:end]))
        assert coverage.gaps(start, end) == []
        assert 1 <= len(coverage) <= i + 1
    assert coverage.whole(len(body)) == zlib.crc32(body)
    assert len(coverage) == 1


def test_coverage_gaps_and_overlap() -> None:
    coverage = Crc32Coverage()
    coverage.add(10, 20, 0)
    coverage.add(30, 40, 0)
    assert coverage.gaps(0, 50) == [(0, 10), (20, 30), (40, 50)]
    assert coverage.gaps(15, 35) == [(20, 30)]
    assert coverage.gaps(12, 18) == []
    with pytest.raises(ValueError, match="already covered"):
        coverage.add(15, 25, 0)
    with pytest.raises(ValueError, match="empty"):
        coverage.add(5, 5, 0)
    assert coverage.whole(40) is None
    coverage.clear()
    assert len(coverage) == 0


def test_b64_round_trip_and_malformed() -> None:
    value = zlib.crc32(b"hello")
    assert crc32_from_b64(crc32_to_b64(value)) == value
    assert crc32_from_b64("not base64!") is None
    assert crc32_from_b64("AAAAAAAA") is None  # 6 bytes, not 4


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-amz-checksum-crc32": "AAAAAA==", "etag": '"abc"'}, "AAAAAA=="),
        ({"x-amz-checksum-crc32": "AAAAAA==-3", "etag": '"abc-3"'}, None),
        # A bare value on a multipart object: composite unless the type says otherwise.
        ({"x-amz-checksum-crc32": "AAAAAA==", "etag": '"abc-3"'}, None),
        (
            {
                "x-amz-checksum-crc32": "AAAAAA==",
                "etag": '"abc-3"',
                "x-amz-checksum-type": "FULL_OBJECT",
            },
            "AAAAAA==",
        ),
        (
            {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-type": "COMPOSITE"},
            None,
        ),
        ({"etag": '"abc"'}, None),
    ],
)
def test_expected_crc32(headers: dict[str, str], expected: object) -> None:
    assert expected_crc32(headers) == expected
