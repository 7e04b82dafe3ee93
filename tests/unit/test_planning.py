from __future__ import annotations

import math
from typing import List, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch_async._core._planning import (
    DEFAULT_COALESCE_GAP,
    DEFAULT_MAX_REQUEST_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_WINDOW_ITEMS,
    MIN_PART_SIZE,
    WINDOW_HEADROOM,
    ByteRange,
    CoalescedRequest,
    GiB,
    KiB,
    MiB,
    PrefetchWindow,
    TiB,
    coalesce_ranges,
    concurrency_for,
    part_size_for,
    part_size_for_part_number,
    split_parts,
    window_items,
)

# --------------------------------------------------------------------------
# strategies and helpers

range_pairs = st.tuples(
    st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=80)
).map(lambda t: (t[0], t[0] + t[1]))
range_lists = st.lists(range_pairs, max_size=20)
gaps = st.integers(min_value=0, max_value=40)
max_sizes = st.integers(min_value=1, max_value=120)


def _bytes_of(ranges: List[Tuple[int, int]]) -> Set[int]:
    return {b for start, end in ranges for b in range(start, end)}


def _plan(
    ranges: List[Tuple[int, int]], gap: int, max_request_size: int
) -> List[CoalescedRequest]:
    return coalesce_ranges(ranges, gap=gap, max_request_size=max_request_size)


# --------------------------------------------------------------------------
# constants and ByteRange


def test_constants_match_s3_limits():
    assert (KiB, MiB, GiB) == (1024, 1024**2, 1024**3)
    limits = (MIN_PART_SIZE, MAX_PART_SIZE, MAX_PARTS)
    assert limits == (5 * MiB, 5 * GiB, 10_000)
    defaults = (DEFAULT_COALESCE_GAP, DEFAULT_MAX_REQUEST_SIZE)
    assert defaults == (1 * MiB, 64 * MiB)


def test_byte_range_is_half_open_and_reports_its_size():
    r = ByteRange(3, 10)
    assert r.size == 7
    assert len(r) == 7
    assert ByteRange(4, 4).size == 0


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 4)])
def test_byte_range_rejects_invalid_bounds(start, end):
    with pytest.raises(ValueError, match=str(start if start < 0 else end)):
        ByteRange(start, end)


# --------------------------------------------------------------------------
# coalesce_ranges: explicit examples


def test_ranges_separated_by_exactly_gap_merge_into_one_request():
    assert coalesce_ranges([(0, 10), (20, 30)], gap=10) == [
        CoalescedRequest(0, 30, (ByteRange(0, 10), ByteRange(20, 30)))
    ]


def test_ranges_separated_by_more_than_gap_stay_separate():
    assert coalesce_ranges([(0, 10), (20, 30)], gap=9) == [
        CoalescedRequest(0, 10, (ByteRange(0, 10),)),
        CoalescedRequest(20, 30, (ByteRange(20, 30),)),
    ]


def test_duplicate_ranges_collapse_into_one_member():
    assert coalesce_ranges([(5, 9), ByteRange(5, 9), (5, 9)]) == [
        CoalescedRequest(5, 9, (ByteRange(5, 9),))
    ]


def test_unsorted_overlapping_ranges_merge():
    assert coalesce_ranges([(8, 20), (0, 10)], gap=0) == [
        CoalescedRequest(0, 20, (ByteRange(0, 10), ByteRange(8, 20)))
    ]


def test_empty_ranges_are_dropped():
    assert coalesce_ranges([(4, 4), (0, 0)]) == []
    assert coalesce_ranges([]) == []


def test_oversized_range_is_split_into_consecutive_pieces():
    assert coalesce_ranges([(0, 25)], max_request_size=10) == [
        CoalescedRequest(0, 10, (ByteRange(0, 10),)),
        CoalescedRequest(10, 20, (ByteRange(10, 20),)),
        CoalescedRequest(20, 25, (ByteRange(20, 25),)),
    ]


def test_merge_that_would_exceed_max_request_size_starts_a_new_request():
    assert coalesce_ranges([(0, 6), (6, 12)], gap=0, max_request_size=10) == [
        CoalescedRequest(0, 6, (ByteRange(0, 6),)),
        CoalescedRequest(6, 12, (ByteRange(6, 12),)),
    ]


def test_range_overlapping_an_earlier_request_is_shared_between_requests():
    requests = coalesce_ranges([(0, 8), (5, 12)], gap=0, max_request_size=10)
    assert requests == [
        CoalescedRequest(0, 8, (ByteRange(0, 8), ByteRange(5, 8))),
        CoalescedRequest(8, 12, (ByteRange(8, 12),)),
    ]


@pytest.mark.parametrize(
    ("ranges", "kwargs", "message"),
    [
        ([(-1, 5)], {}, r"ranges\[0\].*-1"),
        ([(0, 1), (7, 3)], {}, r"ranges\[1\].*3"),
        ([(0, 1)], {"gap": -1}, r"gap.*-1"),
        ([(0, 1)], {"max_request_size": 0}, r"max_request_size.*0"),
    ],
)
def test_coalesce_rejects_invalid_input_naming_argument_and_value(
    ranges, kwargs, message
):
    with pytest.raises(ValueError, match=message):
        coalesce_ranges(ranges, **kwargs)


# --------------------------------------------------------------------------
# coalesce_ranges: properties


@settings(deadline=None)
@given(range_lists, gaps, max_sizes)
def test_coalesced_requests_cover_every_requested_byte(ranges, gap, max_size):
    covered = _bytes_of([(r.start, r.end) for r in _plan(ranges, gap, max_size)])
    assert _bytes_of(ranges) <= covered


@settings(deadline=None)
@given(range_lists, gaps, max_sizes)
def test_coalesced_requests_are_sorted_and_never_overlap(ranges, gap, max_size):
    requests = _plan(ranges, gap, max_size)
    for req in requests:
        assert req.start < req.end
    for prev, nxt in zip(requests, requests[1:]):
        assert prev.end <= nxt.start


@settings(deadline=None)
@given(range_lists, gaps, max_sizes)
def test_no_coalesced_request_exceeds_max_request_size(ranges, gap, max_size):
    assert all(req.size <= max_size for req in _plan(ranges, gap, max_size))


@settings(deadline=None)
@given(range_lists, gaps, max_sizes)
def test_consecutive_requests_are_far_apart_or_too_big_to_merge(ranges, gap, max_size):
    requests = _plan(ranges, gap, max_size)
    for prev, nxt in zip(requests, requests[1:]):
        assert nxt.start - prev.end > gap or nxt.end - prev.start > max_size


@settings(deadline=None)
@given(range_lists, gaps, max_sizes)
def test_members_lie_inside_their_request_and_are_exactly_the_requested_bytes(
    ranges, gap, max_size
):
    requests = _plan(ranges, gap, max_size)
    member_bytes: Set[int] = set()
    for req in requests:
        assert req.members
        assert len(set(req.members)) == len(req.members)
        for m in req.members:
            assert req.start <= m.start < m.end <= req.end
            member_bytes |= set(range(m.start, m.end))
    assert member_bytes == _bytes_of(ranges)


@settings(deadline=None)
@given(range_lists, gaps, max_sizes, st.randoms(use_true_random=False))
def test_coalescing_does_not_depend_on_input_order(ranges, gap, max_size, rnd):
    shuffled = list(ranges)
    rnd.shuffle(shuffled)
    assert _plan(shuffled, gap, max_size) == _plan(ranges, gap, max_size)


# --------------------------------------------------------------------------
# split_parts


def test_split_parts_last_part_may_be_shorter():
    assert split_parts(10, 4) == [ByteRange(0, 4), ByteRange(4, 8), ByteRange(8, 10)]


def test_split_parts_of_empty_object_is_empty():
    assert split_parts(0, 4) == []


@pytest.mark.parametrize(
    ("size", "part_size", "message"),
    [(-1, 4, r"size.*-1"), (10, 0, r"part_size.*0")],
)
def test_split_parts_rejects_invalid_input(size, part_size, message):
    with pytest.raises(ValueError, match=message):
        split_parts(size, part_size)


@given(
    st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=500)
)
def test_split_parts_tile_the_object_in_part_size_steps(size, part_size):
    parts = split_parts(size, part_size)
    assert len(parts) == math.ceil(size / part_size)
    assert sum(p.size for p in parts) == size
    position = 0
    for i, part in enumerate(parts):
        assert part.start == position
        if i < len(parts) - 1:
            assert part.size == part_size
        else:
            assert 1 <= part.size <= part_size
        position = part.end


# --------------------------------------------------------------------------
# part_size_for


def test_part_size_for_small_upload_uses_requested_size_but_at_least_minimum():
    assert part_size_for(100 * MiB, 8 * MiB) == 8 * MiB
    assert part_size_for(100 * MiB, 1 * MiB) == MIN_PART_SIZE
    assert part_size_for(None, 1) == MIN_PART_SIZE


def test_part_size_for_grows_to_fit_max_parts_in_whole_mib():
    total = 100_000 * MiB + 1
    size = part_size_for(total, 8 * MiB)
    assert size == 11 * MiB
    assert math.ceil(total / size) <= MAX_PARTS


def test_part_size_for_largest_uploadable_size_is_max_part_size():
    assert part_size_for(MAX_PART_SIZE * MAX_PARTS, 8 * MiB) == MAX_PART_SIZE


@pytest.mark.parametrize(
    ("total", "part_size", "message"),
    [
        (MAX_PART_SIZE * MAX_PARTS + 1, 8 * MiB, r"total_size"),
        (-1, 8 * MiB, r"total_size.*-1"),
        (10, 0, r"part_size.*0"),
        (10, MAX_PART_SIZE + 1, r"part_size"),
    ],
)
def test_part_size_for_rejects_invalid_input(total, part_size, message):
    with pytest.raises(ValueError, match=message):
        part_size_for(total, part_size)


@given(
    st.one_of(st.none(), st.integers(min_value=0, max_value=MAX_PART_SIZE * MAX_PARTS)),
    st.integers(min_value=1, max_value=MAX_PART_SIZE),
)
def test_part_size_for_is_bounded_and_fits_total_in_max_parts(total, part_size):
    size = part_size_for(total, part_size)
    assert max(part_size, MIN_PART_SIZE) <= size <= MAX_PART_SIZE
    if total is not None:
        assert math.ceil(total / size) <= MAX_PARTS
        if size > max(part_size, MIN_PART_SIZE):
            # grown: a whole number of MiB and no larger than necessary
            assert size % MiB == 0
            assert math.ceil(total / (size - MiB)) > MAX_PARTS


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


def test_concurrency_for_ten_gbps_is_thirteen():
    assert concurrency_for(10, 8 * MiB) == 13


def test_concurrency_for_is_clamped():
    assert concurrency_for(0.001, 8 * MiB) == 2
    assert concurrency_for(10_000, 8 * MiB) == 64


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
    # enough 100 MB/s connections to meet the target, unless capped
    assert n_high == 64 or n_high * 100e6 >= high * 1e9 / 8


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
