"""UploadWindow / upload_window_reach: how far a streaming upload widens its parts in flight."""

from __future__ import annotations

import math

import pytest

from s3torch_async._core._planning import (
    FIRST_BYTE_LATENCY_S,
    PER_CONNECTION_BYTES_PER_SEC,
    UPLOAD_WIDEN_BYTES,
    MiB,
    UploadWindow,
    upload_concurrency_for,
    upload_window_reach,
)

PART = 8 * MiB
TARGET = 10e9 / 8  # 10 Gbps in bytes per second
#: Seconds one 8 MiB part takes where S3 behaves as planned (20 ms + 8 MiB at 85 MB/s).
PLANNED_S = FIRST_BYTE_LATENCY_S + PART / PER_CONNECTION_BYTES_PER_SEC


def finish(window: UploadWindow, seconds: float, count: int | None = None) -> None:
    """Report ``count`` parts (default: enough to judge the width) of the current epoch."""
    epoch = window.epoch
    for _ in range(count or max(1, window.width // 4)):
        window.record(epoch, PART, seconds)


def test_reach_is_twice_the_plan_within_256_mib_of_parts():
    assert upload_concurrency_for(10, PART) == 23
    assert upload_window_reach(10, PART) == 32 == UPLOAD_WIDEN_BYTES // PART
    assert upload_window_reach(0.5, 5 * MiB) == 2 * upload_concurrency_for(0.5, 5 * MiB)
    # 64 MiB parts: the plan (19 x 64 MiB) is already past the byte cap: never widened.
    assert upload_window_reach(10, 64 * MiB) == upload_concurrency_for(10, 64 * MiB)
    assert upload_window_reach(1000, 1 * MiB) == 64  # MAX_CONCURRENCY
    with pytest.raises(ValueError, match="throughput_target_gbps"):
        upload_window_reach(0, PART)


def test_parts_as_fast_as_planned_keep_the_planned_window():
    window = UploadWindow(23, 32, TARGET)
    finish(window, PLANNED_S)
    assert window.settled
    assert window.width == 23
    assert window.epoch == 0


def test_slow_parts_widen_to_what_the_target_needs():
    # Parts take twice the planned time: one part in flight moves half as much, so about
    # twice the parts are needed, capped at the reach.
    window = UploadWindow(23, 64, TARGET)
    finish(window, 1.5 * PLANNED_S)
    per_part = PART / (1.5 * PLANNED_S)
    assert window.width == math.ceil(TARGET / (per_part * 0.8)) == 34
    assert window.epoch == 1
    assert not window.settled


def test_a_step_that_paid_is_followed_by_another_up_to_the_reach():
    window = UploadWindow(23, 48, TARGET)
    finish(window, 1.5 * PLANNED_S)
    assert window.width == 34
    finish(window, 1.5 * PLANNED_S)  # same time per part with more in flight: it paid
    assert window.width == 43  # at least +25 %, past the target
    finish(window, 1.5 * PLANNED_S)
    assert window.width == 48  # the reach
    finish(window, 1.5 * PLANNED_S)
    assert window.settled
    assert window.width == 48
    assert [w for w, _ in window.history] == [23, 34, 43, 48]


def test_a_step_that_did_not_pay_is_undone():
    # Parts share one bottleneck (a CPU): with 34 in flight each takes 34/23 as long, so
    # the throughput stays flat and the window goes back to 23 and stays there.
    window = UploadWindow(23, 64, TARGET)
    finish(window, 1.5 * PLANNED_S)
    assert window.width == 34
    finish(window, 1.5 * PLANNED_S * 34 / 23)
    assert window.settled
    assert window.width == 23
    finish(window, 10.0)  # settled: later parts change nothing
    assert window.width == 23


def test_a_step_must_pay_half_its_widening():
    # 23 -> 34 is +48 %; the throughput must rise by at least 24 %.
    paid = UploadWindow(23, 34, TARGET)
    finish(paid, 1.5 * PLANNED_S)
    finish(paid, 1.5 * PLANNED_S * 34 / 23 / 1.25)  # +25 %
    assert paid.width == 34
    unpaid = UploadWindow(23, 34, TARGET)
    finish(unpaid, 1.5 * PLANNED_S)
    finish(unpaid, 1.5 * PLANNED_S * 34 / 23 / 1.2)  # +20 %
    assert unpaid.width == 23


def test_a_width_is_judged_on_its_own_parts_only():
    window = UploadWindow(23, 64, TARGET)
    finish(window, 1.5 * PLANNED_S)
    assert window.epoch == 1
    for _ in range(20):  # stragglers granted at the old width
        window.record(0, PART, 100.0)
    assert window.width == 34
    assert window.history == [(23, pytest.approx(23 * PART / (1.5 * PLANNED_S)))]
    window.record(1, 0, 1.0)  # nothing moved: ignored
    assert len(window.history) == 1


def test_a_window_planned_at_its_reach_never_moves():
    window = UploadWindow(19, 19, TARGET)
    assert window.settled
    finish(window, 10.0)
    assert window.width == 19


@pytest.mark.parametrize(
    ("planned", "reach", "target"),
    [(0, 4, TARGET), (5, 4, TARGET), (2, 4, 0.0), (2, 4, math.inf), (2, 4, math.nan)],
)
def test_bad_arguments_are_rejected(planned, reach, target):
    with pytest.raises(ValueError):
        UploadWindow(planned, reach, target)
