from __future__ import annotations

import math
from collections.abc import Iterable
from typing import List, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch_async._core._planning import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_WINDOW_ITEMS,
    MIN_PART_SIZE,
    WINDOW_HEADROOM,
    GiB,
    KiB,
    MiB,
    PrefetchWindow,
    TiB,
    concurrency_for,
    group_ranges,
    opening_window,
    part_size_for_part_number,
    pieces_with_data,
    split_spans,
    upload_concurrency_for,
    window_items,
)

# --------------------------------------------------------------------------
# strategies and helpers

range_pairs = st.tuples(
    st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=80)
).map(lambda t: (t[0], t[0] + t[1]))
range_lists = st.lists(range_pairs, max_size=20)
part_sizes = st.integers(min_value=1, max_value=120)


@st.composite
def sorted_disjoint(draw: st.DrawFn) -> List[Tuple[int, int]]:
    """Sorted, disjoint, non-empty ranges (what a DCP plan hands the reader)."""
    lengths = draw(st.lists(st.integers(1, 50), max_size=15))
    out, pos = [], draw(st.integers(0, 30))
    for length in lengths:
        out.append((pos, pos + length))
        pos += length + draw(st.integers(0, 40))
    return out


def _bytes_of(ranges: Iterable[Tuple[int, int]]) -> Set[int]:
    return {b for start, end in ranges for b in range(start, end)}


def test_constants_match_s3_limits():
    assert (KiB, MiB, GiB) == (1024, 1024**2, 1024**3)
    limits = (MIN_PART_SIZE, MAX_PART_SIZE, MAX_PARTS)
    assert limits == (5 * MiB, 5 * GiB, 10_000)


# --------------------------------------------------------------------------
# split_spans: the parts every multi-part ranged read requests


@given(range_lists, part_sizes)
def test_split_spans_tile_each_span_in_order_in_part_size_steps(spans, part_size):
    pieces = list(split_spans(spans, part_size))
    cursor = 0
    for start, end in spans:
        mine = []
        while cursor < len(pieces) and len(mine) * part_size < end - start:
            mine.append(pieces[cursor])
            cursor += 1
        assert [p for p in mine if p[1] > p[0]] == mine  # no empty piece
        assert (mine[0][0] if mine else start) == start
        assert (mine[-1][1] if mine else end) == end
        for (_, a_end), (b_start, _) in zip(mine, mine[1:]):
            assert a_end == b_start
        assert all(e - s == part_size for s, e in mine[:-1])
        assert all(0 < e - s <= part_size for s, e in mine)
    assert cursor == len(pieces)


def test_split_spans_of_an_object_and_of_nothing():
    assert list(split_spans([(0, 10)], 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(split_spans([(3, 3)], 4)) == []
    assert list(split_spans([], 4)) == []


@pytest.mark.parametrize(
    ("spans", "part_size", "message"),
    [
        ([(-1, 5)], 4, r"invalid span \[-1, 5\)"),
        ([(5, 4)], 4, r"invalid span \[5, 4\)"),
        ([(0, 5)], 0, "part_size must be >= 1, got 0"),
    ],
)
def test_split_spans_rejects_invalid_input(spans, part_size, message):
    with pytest.raises(ValueError, match=message):
        list(split_spans(spans, part_size))


# --------------------------------------------------------------------------
# group_ranges: which neighbouring ranges share one request


@given(sorted_disjoint(), st.integers(0, 60))
def test_groups_partition_the_ranges_and_split_exactly_at_large_gaps(ranges, gap):
    groups = group_ranges(ranges, gap)
    assert [i for g in groups for i in g] == list(range(len(ranges)))
    assert all(len(g) > 0 for g in groups)
    for g in groups:
        for i in g[1:]:
            assert ranges[i][0] - ranges[i - 1][1] <= gap
    for a, b in zip(groups, groups[1:]):
        assert ranges[b[0]][0] - ranges[a[-1]][1] > gap


@given(sorted_disjoint())
def test_an_infinite_gap_makes_one_group_and_zero_joins_only_adjacent(ranges):
    assert len(group_ranges(ranges, float("inf"))) == min(1, len(ranges))
    touching = sum(
        1 for a, b in zip(ranges, ranges[1:]) if b[0] == a[1]
    )  # adjacent pairs always share a request
    assert len(group_ranges(ranges, 0)) == max(0, len(ranges) - touching)


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ([(5, 3)], "Invalid range: 5-3"),
        ([(0, 4), (6, 6)], "Invalid range: 6-6"),
        ([(10, 20), (0, 5)], "Unsorted ranges: 10-20 and 0-5"),
        ([(0, 10), (5, 20)], "Overlapping ranges: 0-10 and 5-20"),
    ],
)
def test_group_ranges_names_the_offending_ranges(ranges, message):
    with pytest.raises(ValueError, match=message):
        group_ranges(ranges, 10)


# --------------------------------------------------------------------------
# pieces_with_data: the parts of grouped requests that hold wanted bytes


@given(sorted_disjoint(), st.integers(0, 60), part_sizes)
def test_pieces_cover_every_wanted_byte_and_each_holds_some(ranges, gap, part_size):
    groups = [
        ((ranges[g[0]][0], ranges[g[-1]][1]), [ranges[i] for i in g])
        for g in group_ranges(ranges, gap)
    ]
    pieces = pieces_with_data(groups, part_size)
    all_parts = list(split_spans([span for span, _ in groups], part_size))
    assert set(pieces) <= set(all_parts)
    assert pieces == sorted(pieces)
    assert _bytes_of(ranges) <= _bytes_of(pieces)
    wanted = _bytes_of(ranges)
    assert all(_bytes_of([p]) & wanted for p in pieces)


def test_a_part_wholly_inside_a_gap_is_not_fetched():
    group = ((0, 30), [(0, 5), (25, 30)])
    assert pieces_with_data([group], 10) == [(0, 10), (20, 30)]


# --------------------------------------------------------------------------
# part_size_for_part_number


def test_streaming_parts_start_at_part_size_then_double():
    base = 8 * MiB
    assert part_size_for_part_number(1, base) == base
    assert part_size_for_part_number(1000, base) == base
    assert part_size_for_part_number(1001, base) == 2 * base
    assert part_size_for_part_number(1500, base) == 2 * base
    assert part_size_for_part_number(1501, base) == 4 * base
    assert part_size_for_part_number(MAX_PARTS, base) == MAX_PART_SIZE


@pytest.mark.parametrize(
    ("part_number", "part_size", "message"),
    [
        (0, 8 * MiB, r"part_number.*0"),
        (MAX_PARTS + 1, 8 * MiB, r"part_number"),
        (1, 0, r"part_size.*0"),
    ],
)
def test_streaming_part_size_rejects_invalid_input(part_number, part_size, message):
    with pytest.raises(ValueError, match=message):
        part_size_for_part_number(part_number, part_size)


@settings(deadline=None, max_examples=25)
@given(st.integers(min_value=5 * MiB, max_value=64 * MiB))
def test_streaming_parts_carry_at_least_5_tib_within_part_limits(part_size):
    sizes = [part_size_for_part_number(n, part_size) for n in range(1, MAX_PARTS + 1)]
    assert sum(sizes) >= 5 * TiB
    assert all(MIN_PART_SIZE <= s <= MAX_PART_SIZE for s in sizes)
    assert sizes == sorted(sizes)


@given(
    st.integers(min_value=1, max_value=MAX_PARTS),
    st.integers(min_value=1, max_value=MAX_PART_SIZE),
)
def test_streaming_part_size_is_always_within_part_limits(part_number, part_size):
    size = part_size_for_part_number(part_number, part_size)
    assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
    assert size >= min(part_size, MAX_PART_SIZE)


# --------------------------------------------------------------------------
# PrefetchWindow


def test_prefetch_window_admits_oversized_item_only_when_empty():
    window = PrefetchWindow(budget_bytes=100, max_items=4)
    assert window.can_admit(500)
    window.admit(500)
    assert (window.in_flight_bytes, window.in_flight_items) == (500, 1)
    assert not window.can_admit(1)
    with pytest.raises(ValueError, match="cannot admit"):
        window.admit(1)
    window.release(500)
    assert (window.in_flight_bytes, window.in_flight_items) == (0, 0)


def test_prefetch_window_limits_item_count():
    window = PrefetchWindow(budget_bytes=100, max_items=2)
    window.admit(1)
    window.admit(1)
    assert not window.can_admit(0)


def test_prefetch_window_release_more_than_admitted_raises():
    window = PrefetchWindow(budget_bytes=100, max_items=2)
    with pytest.raises(ValueError, match="release"):
        window.release(0)
    window.admit(10)
    with pytest.raises(ValueError, match="nbytes=11"):
        window.release(11)


@pytest.mark.parametrize(
    ("budget", "items", "message"),
    [(0, 1, r"budget_bytes.*0"), (1, 0, r"max_items.*0")],
)
def test_prefetch_window_rejects_invalid_limits(budget, items, message):
    with pytest.raises(ValueError, match=message):
        PrefetchWindow(budget_bytes=budget, max_items=items)


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=1, max_value=8),
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=1500)),
        max_size=60,
    ),
)
def test_prefetch_window_never_exceeds_budget_except_single_oversized_item(
    budget, max_items, ops
):
    window = PrefetchWindow(budget_bytes=budget, max_items=max_items)
    in_flight: List[int] = []
    for is_admit, value in ops:
        if is_admit:
            if window.can_admit(value):
                window.admit(value)
                in_flight.append(value)
        elif in_flight:
            window.release(in_flight.pop(value % len(in_flight)))
        assert window.in_flight_bytes == sum(in_flight)
        assert window.in_flight_items == len(in_flight)
        assert window.in_flight_items <= max_items
        assert window.in_flight_bytes <= budget or window.in_flight_items == 1
    if in_flight:
        with pytest.raises(ValueError, match="release"):
            window.release(sum(in_flight) + 1)
    for nbytes in in_flight:
        window.release(nbytes)
    assert (window.in_flight_bytes, window.in_flight_items) == (0, 0)
    with pytest.raises(ValueError, match="release"):
        window.release(0)


# --------------------------------------------------------------------------
# concurrency_for


def test_concurrency_for_ten_gbps_is_eighteen_with_8_mib_parts():
    # 8 MiB at AWS's 85 MB/s per connection after 20 ms to the first byte: 71 MB/s each.
    assert concurrency_for(10, 8 * MiB) == 18


def test_concurrency_for_needs_more_connections_for_smaller_parts():
    # The first-byte wait weighs more on a small part: 5 MiB parts carry 64 MB/s per
    # connection (20 for 10 Gbps), 64 MiB parts 83 MB/s (16).
    assert concurrency_for(10, 5 * MiB) == 20
    assert concurrency_for(10, 64 * MiB) == 16


def test_concurrency_for_is_clamped():
    assert concurrency_for(0.001, 8 * MiB) == 2
    assert concurrency_for(10_000, 8 * MiB) == 64


def test_upload_concurrency_for_ten_gbps_is_23_with_8_mib_parts():
    # 8 MiB at 85 MB/s after 20 ms: 71 MB/s per connection, 17.7 parts busy for 10 Gbps,
    # and a streaming upload keeps 80 % of its window busy: 22.1, so 23.
    assert upload_concurrency_for(10, 8 * MiB) == 23
    assert upload_concurrency_for(10, 64 * MiB) == 19
    assert upload_concurrency_for(0.5, 5 * MiB) == 2
    assert upload_concurrency_for(1, 5 * MiB) == 3


def test_upload_concurrency_for_is_clamped_and_checks_like_concurrency_for():
    assert upload_concurrency_for(0.001, 8 * MiB) == 2
    assert upload_concurrency_for(10_000, 8 * MiB) == 64
    with pytest.raises(ValueError, match="throughput_target_gbps"):
        upload_concurrency_for(0, 8 * MiB)
    with pytest.raises(ValueError, match="part_size"):
        upload_concurrency_for(10, 0)


@pytest.mark.parametrize("target", [0, -1, math.nan, math.inf, -math.inf])
def test_concurrency_for_rejects_non_positive_or_non_finite_target(target):
    with pytest.raises(ValueError, match="throughput_target_gbps"):
        concurrency_for(target, 8 * MiB)


def test_concurrency_for_rejects_invalid_part_size():
    with pytest.raises(ValueError, match=r"part_size.*0"):
        concurrency_for(10, 0)


@given(
    st.floats(min_value=1e-6, max_value=1e6),
    st.floats(min_value=1e-6, max_value=1e6),
)
def test_concurrency_for_is_bounded_and_monotone_in_target(a, b):
    low, high = sorted((a, b))
    n_low, n_high = concurrency_for(low, 8 * MiB), concurrency_for(high, 8 * MiB)
    assert 2 <= n_low <= n_high <= 64
    # enough connections (8 MiB per 20 ms + 8 MiB / 100 MB/s each) to meet the target
    per_connection = 8 * MiB / (0.020 + 8 * MiB / 100e6)
    assert n_high == 64 or n_high * per_connection >= high * 1e9 / 8


# --------------------------------------------------------------------------
# window_items: the adaptive prefetch window's size
# --------------------------------------------------------------------------


def test_window_covers_latency_times_delivery_rate_with_headroom():
    # 20 ms per fetch, one item wanted every 0.5 ms: 40 in flight, x1.5, + 1
    assert window_items(0.020, 0.0005, 128 * KiB, 64 * MiB, floor=8) == 61
    assert WINDOW_HEADROOM == 1.5


def test_window_never_shrinks_below_its_floor():
    # loopback: the fetch is faster than the consumer
    assert window_items(0.0005, 0.001, 128 * KiB, 64 * MiB, floor=32) == 32


def test_window_is_bounded_by_bytes_and_by_its_cap():
    assert window_items(1.0, 0.0001, 4 * MiB, 64 * MiB, floor=2) == 16
    assert window_items(1.0, 0.0001, 1, 10**12, floor=2) == MAX_WINDOW_ITEMS
    assert (
        window_items(1.0, 0.0, 0.0, 100, floor=2, cap=40) == 40
    )  # no data: count only


def test_a_stalled_window_grows_by_its_headroom():
    # every delivery waited on a fetch: the interval is latency / window
    items = 16
    assert window_items(0.02, 0.02 / items, 1000, 10**9, floor=4) == 25


def test_opening_window_after_a_far_stores_first_page():
    # a first page ~60 ms away: a GET is taken to wait (60 - 20) / 2 = 20 ms and a
    # consumer to take an item every 0.15 ms: 133 x 1.5 + 1
    assert opening_window(0.060, 128 * KiB, 64 * MiB, floor=32) == 201
    # farther: the cap, or the byte budget first
    assert opening_window(0.2, 128 * KiB, 64 * MiB, floor=32) == MAX_WINDOW_ITEMS
    assert opening_window(0.2, 4 * MiB, 64 * MiB, floor=4) == 16
    assert opening_window(0.2, 0.0, 1, floor=4, cap=100) == 100  # sizes unknown


def test_opening_window_of_one_of_several_consumers_of_a_listing():
    # two DataLoader workers take every other item each: each at half the pace
    assert opening_window(0.060, 128 * KiB, 64 * MiB, floor=32, consumers=2) == 101


@pytest.mark.parametrize("page_s", [0.0, 0.002, 0.010, 0.020])
def test_opening_window_of_a_near_store_is_its_floor(page_s):
    # loopback answers a page in ~1.5 ms; its parse takes a few more, a busy machine more
    assert opening_window(page_s, 128 * KiB, 64 * MiB, floor=32) == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1.0, 0.1, 1.0, 10, 1), "latency_s"),
        ((0.1, -0.1, 1.0, 10, 1), "interval_s"),
        ((0.1, 0.1, 1.0, 10, 0), "floor"),
    ],
)
def test_window_items_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        window_items(*args)
