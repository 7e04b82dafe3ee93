"""How many ranged GETs a large read runs at once: chosen from measured throughput.

The reader starts with one stream and widens while streams are slow (``StreamWidth``). Its
decisions depend on elapsed time, so these tests run it in virtual time (the loop of
test_prefetch.py: time passes only in sleeps) over a modelled link: a small in-memory
``ReadClient`` whose GETs take ``latency`` to the first byte and then move bytes at a
per-connection rate, all connections together at most a shared rate. That is the one thing
a real server cannot give deterministically; the same reader against moto (byte-exact reads,
faults, checksums) is covered in test_reader.py and tests/faults/.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async._core._checksum import ChecksumPolicy
from s3torch_async._core._interface import RangeMeta
from s3torch_async._core._planning import (
    MAX_PIECE_PARTS,
    StreamWidth,
    read_reach,
    round_piece,
)
from s3torch_async._core.reader import PROBE_DIVISOR, AsyncS3Reader
from s3torch_async._types import HeadObjectResult, ObjectInfo
from tests.core.test_prefetch import run_virtual

MB = 1_000_000
PART = 64 * 1024
_STEP = 8 * 1024


class _Link:
    """An object behind a modelled network; GETs copy its bytes and take virtual time.

    A GET waits ``latency``, then moves its bytes in small steps, each at
    ``min(per_stream, shared / n)`` with ``n`` the GETs transferring at that moment (the
    shared link, or CPU, divided fairly).
    """

    def __init__(
        self,
        data: bytes,
        *,
        limit: int,
        target_bytes_per_s: float,
        latency: float,
        per_stream: float = math.inf,
        shared: float = math.inf,
    ) -> None:
        self.data = data
        self.max_concurrency = limit
        self.s3client_config = S3ClientConfig(
            throughput_target_gbps=target_bytes_per_s * 8 / 1e9
        )
        self.latency = latency
        self.per_stream = per_stream
        self.shared = shared
        self.in_flight = 0
        self.transferring = 0
        self.peak = 0
        self.gets = 0
        self.spans: list[tuple[int, int]] = []
        self.times: list[tuple[int, float, float]] = []  # (start, sent, last byte)

    def first_byte(self) -> float:
        """Seconds the next GET waits for its first byte."""
        return self.latency

    def stream_rate(self) -> float:
        """Bytes per second the next GET's connection carries at most."""
        return self.per_stream

    async def checksum_policy(self) -> ChecksumPolicy:
        return ChecksumPolicy(send=False, validate=False)

    async def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        raise AssertionError("no HEAD expected")

    async def object_checksum(self, bucket: str, key: str) -> tuple[str, Optional[str]]:
        raise AssertionError("no checksum lookup expected")

    async def get_range_into(
        self,
        bucket: str,
        key: str,
        start: int,
        view: Union[memoryview, bytearray],
        *,
        if_match: Optional[str] = None,
        whole: bool = False,
        on_head: Optional[Callable[[int, str], None]] = None,
    ) -> RangeMeta:
        self.gets += 1
        sent = asyncio.get_running_loop().time()
        self.spans.append((start, min(start + len(view), len(self.data))))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            piece = self.data[start : start + len(view)]
            await asyncio.sleep(self.first_byte())
            if on_head is not None:
                on_head(len(self.data), '"e"')
            per_stream = self.stream_rate()
            self.transferring += 1
            try:
                for offset in range(0, len(piece), _STEP):
                    rate = min(per_stream, self.shared / self.transferring)
                    await asyncio.sleep(min(_STEP, len(piece) - offset) / rate)
            finally:
                self.transferring -= 1
            view[: len(piece)] = piece
            self.times.append((start, sent, asyncio.get_running_loop().time()))
            return RangeMeta(etag='"e"', object_size=len(self.data), nbytes=len(piece))
        finally:
            self.in_flight -= 1


def _s3like(parts: int) -> _Link:
    """S3-like at scale: 20 ms to the first byte, then a part's body in 93 ms (8 MiB at
    90 MB/s); limit 18, bound 36."""
    return _Link(
        os.urandom(parts * PART),
        limit=18,
        target_bytes_per_s=1250 * MB,
        latency=0.02,
        per_stream=PART / 0.093,
    )


def _read(link: _Link, *, known_size: bool) -> tuple[bytes, AsyncS3Reader]:
    info = ObjectInfo("k", '"e"', len(link.data), 0) if known_size else None

    async def main() -> tuple[bytes, AsyncS3Reader]:
        reader = AsyncS3Reader(link, "b", "k", object_info=info, part_size=PART)
        data = await reader.read()
        await reader.aclose()
        return data, reader

    return run_virtual(main())


def _widths(reader: AsyncS3Reader) -> list[int]:
    width = reader._width  # what the reader decided is what is tested
    assert width is not None
    return [w for w, _rate in width.history]


@pytest.mark.parametrize("known_size", [False, True])
def test_a_read_widens_past_the_limit_when_each_connection_is_capped(known_size):
    # S3-like: 20 ms to the first byte, 90 MB/s per connection, a 1.25 GB/s target
    data = os.urandom(320 * PART)
    link = _Link(
        data, limit=13, target_bytes_per_s=1250 * MB, latency=0.02, per_stream=90 * MB
    )
    got, reader = _read(link, known_size=known_size)
    assert got == data
    # One stream measured: at its rate the target needs more streams than the planned limit,
    # so the read goes straight to its bound, twice the limit (not via the limit first).
    assert _widths(reader) == [1, 26]
    assert link.peak == read_reach(13) == 26
    # Settled there below the target: later GETs span several parts (the first-byte
    # latency paid less often), the last ones one part again; no byte is fetched twice.
    spans = sorted(link.spans)
    assert [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]
    sizes = [b - a for a, b in link.spans]
    # The first GET measures: a short probe when the size is known, the part that tells
    # the size otherwise.
    assert sizes[0] == (PART // PROBE_DIVISOR if known_size else PART)
    assert max(sizes) > PART
    assert all(size <= PART for size in sizes[-26:])  # the end: one part per GET
    assert link.gets < 320


@pytest.mark.parametrize("known_size", [False, True])
def test_the_streams_of_a_read_run_out_of_work_together(known_size):
    # S3-like: after the first step 36 streams share ~128 parts: in whole parts that is 3
    # rounds and 20 GETs more, 16 streams idle for the last GET's 113 ms. Cut into rounds
    # of one size, every stream fetches 4 GETs of 0.89 part.
    link = _s3like(129)
    got, reader = _read(link, known_size=known_size)
    assert got == link.data
    assert _widths(reader) == [1, 36]
    times = sorted(link.times, key=lambda t: t[1])
    sizes = sorted(b - a for a, b in link.spans)
    if known_size:  # a probe, then every GET of one size but the object's last one
        assert sizes[0] == PART // PROBE_DIVISOR
        assert len(set(sizes[2:])) == 1
        assert sizes[-1] < PART
        widened = times[0][2]  # when the probe was done
        assert len(link.spans) == 1 + 4 * 36
    else:
        # the part that told the size showed the 20 ms wait: no probe; that GET counts
        # as one of the first round's, so the streams run 4 rounds of 36 in all
        assert sizes[0] > PART // PROBE_DIVISOR
        widened = times[1][1]
        assert len(link.spans) == 4 * 36
    end = max(done for _, _, done in link.times)
    # four rounds of shorter GETs, each 20 ms + 0.89 x 93 ms, after the widening
    assert end - widened < 4 * (0.02 + 0.093 * 0.92)


def test_a_read_of_unknown_size_counts_its_first_get_among_its_streams():
    # The GET that tells the size is still in flight while the rest starts: with a limit
    # of 1 (a bound of 2), the rest runs one stream until that GET is done.
    data = os.urandom(9 * PART)
    link = _Link(
        data,
        limit=1,
        target_bytes_per_s=1250 * MB,
        latency=1e-5,
        per_stream=1 * MB,
        shared=50 * MB,
    )
    got, reader = _read(link, known_size=False)
    assert got == data
    assert _widths(reader)[-1] == 2
    assert link.peak == read_reach(1) == 2


def test_the_stream_of_the_get_that_told_the_size_takes_a_piece_when_it_is_done():
    # S3-like: that GET (one part) is done at 113 ms, the first round's after the probe
    # (20 ms + 0.89 part) some 20 ms later; its stream does not wait for theirs to go on.
    link = _s3like(64)
    got, _ = _read(link, known_size=False)
    assert got == link.data
    first_done = next(done for start, _, done in link.times if start == 0)
    round_one_done = min(done for start, _, done in link.times if start > PART)
    assert first_done < round_one_done - 0.005
    assert any(abs(sent - first_done) < 1e-6 for _, sent, _ in link.times)


def test_a_read_of_unknown_size_goes_on_once_the_first_answer_tells_the_size():
    # The first GET's head comes after 20 ms and tells the size; its body then takes 66 ms
    # (one part at 1 MB/s). The rest of the read is not held back by that body.
    data = os.urandom(96 * PART)
    link = _Link(
        data, limit=13, target_bytes_per_s=1250 * MB, latency=0.02, per_stream=1 * MB
    )
    got, _ = _read(link, known_size=False)
    assert got == data
    first_done = next(done for start, _, done in link.times if start == 0)
    second_sent = min(sent for start, sent, _ in link.times if start != 0)
    assert second_sent < first_done
    assert sorted(link.spans)[1][0] == PART  # the first part is not fetched twice
    assert len(link.spans) == len(set(link.spans))


def test_a_read_of_unknown_size_widens_at_the_first_answer_when_its_wait_says_so():
    # S3-like: the GET that tells the size waited 20 ms for its head. A 512 KiB probe
    # (1/16 part) waiting as long moves at most 1/16 part per 20 ms, far below what the
    # target needs of 18 streams: the probe could only send the read to its bound, so the
    # read goes there at once, the probe's ~26 ms sooner.
    link = _s3like(128)
    got, reader = _read(link, known_size=False)
    assert got == link.data
    assert _widths(reader) == [1, 36]
    sent = sorted(sent for _, sent, _ in link.times)
    assert sent[0] == 0
    # the rest went out when the first head came, 35 GETs beside the first one
    assert sent[1:36] == [pytest.approx(0.02)] * 35
    assert link.peak == 36
    assert min(b - a for a, b in link.spans) > PART // PROBE_DIVISOR


def test_a_read_of_unknown_size_probes_after_the_part_that_told_the_size():
    # loopback-like: the rest starts with a short probe while the first GET's body (0.66 ms
    # at 100 MB/s) still flows
    data = os.urandom(64 * PART)
    link = _Link(
        data,
        limit=13,
        target_bytes_per_s=1250 * MB,
        latency=1e-6,
        per_stream=100 * MB,
        shared=3000 * MB,
    )
    got, _ = _read(link, known_size=False)
    assert got == data
    assert sorted(link.spans)[1] == (PART, PART + PART // PROBE_DIVISOR)


def test_a_small_read_of_unknown_size_waits_for_its_one_get():
    # Too small to gain from starting early (under two parts): one GET, as before.
    data = os.urandom(PART + 10)
    link = _Link(
        data, limit=13, target_bytes_per_s=1250 * MB, latency=0.02, per_stream=1 * MB
    )
    got, _ = _read(link, known_size=False)
    assert got == data
    assert sorted(link.spans) == [(0, PART), (PART, PART + 10)]


def test_a_clients_next_read_starts_at_the_width_its_last_read_settled_at():
    data = os.urandom(96 * PART)
    link = _Link(
        data, limit=13, target_bytes_per_s=1250 * MB, latency=0.02, per_stream=90 * MB
    )
    _read(link, known_size=True)
    link.spans.clear()
    link.times.clear()
    got, reader = _read(link, known_size=True)
    assert got == data
    assert _widths(reader)[0] == 26  # measured at 26 from the start: no narrow trial
    # No short probe GET: the first GET is one of the first round's, so the 96 parts are
    # 4 rounds of 26 equal GETs that end together, not one GET more that runs alone
    # for its whole time after the others.
    assert len(link.spans) == 4 * 26
    assert len({b - a for a, b in link.spans[:-1]}) == 1
    assert link.spans[0][1] - link.spans[0][0] >= PART // 2
    ends = sorted(done for _, _, done in link.times)
    assert ends[-1] - ends[-26] < 1e-3
    began = min(sent for _, sent, _ in link.times)
    # 4 x (20 ms + 60495 B at 90 MB/s)
    assert ends[-1] - began < 4 * (0.02 + 60_500 / (90 * MB)) + 1e-3


def test_a_read_stays_narrow_when_one_stream_already_meets_the_target():
    # loopback: no latency to speak of, one connection alone carries 3 GB/s of a link (the
    # CPU) that all connections share. (The short probe's rate includes its request's own
    # latency: 1 us here, as a 128 us request overhead is to a real 8 MiB part.)
    data = os.urandom(64 * PART)
    link = _Link(
        data, limit=13, target_bytes_per_s=1250 * MB, latency=1e-6, shared=3000 * MB
    )
    got, reader = _read(link, known_size=True)
    assert got == data
    assert _widths(reader) == [1]
    assert link.peak == 2  # the floor: one stream's request gap hidden by the other


def test_a_read_steps_back_when_more_streams_do_not_raise_throughput():
    # a shared 300 MB/s link: one stream is below the 1.25 GB/s target, so the reader tries
    # the streams the target would need, sees no gain, and goes back to the narrow width
    data = os.urandom(128 * PART)
    link = _Link(
        data, limit=13, target_bytes_per_s=1250 * MB, latency=1e-6, shared=300 * MB
    )
    got, reader = _read(link, known_size=True)
    assert got == data
    assert _widths(reader) == [1, 5]
    width = reader._width
    assert width is not None
    assert (width.width, width.settled) == (2, True)


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(1, 16),
    latency=st.sampled_from([1e-5, 1e-3, 0.02, 0.2]),
    per_stream=st.sampled_from([1 * MB, 20 * MB, 90 * MB, math.inf]),
    shared=st.sampled_from([50 * MB, 400 * MB, 5000 * MB, math.inf]),
    parts=st.integers(1, 40),
    tail=st.integers(0, PART - 1),
    known_size=st.booleans(),
)
def test_widening_never_exceeds_twice_the_limit_and_reads_stay_exact(
    limit, latency, per_stream, shared, parts, tail, known_size
):
    data = os.urandom(parts * PART + tail)
    link = _Link(
        data,
        limit=limit,
        target_bytes_per_s=1250 * MB,
        latency=latency,
        per_stream=per_stream,
        shared=shared,
    )
    got, _ = _read(link, known_size=known_size)
    assert got == data
    assert link.peak <= read_reach(limit) <= 2 * limit
    spans = sorted(link.spans)
    assert spans[0][0] == 0
    assert spans[-1][1] == len(data)
    assert [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]  # each byte once
    assert all(b - a <= MAX_PIECE_PARTS * PART for a, b in spans)


class _Failing(_Link):
    """The link whose GET holding offset ``bad`` fails once its head came."""

    def __init__(self, *args, bad: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad = bad
        self.cancelled = 0

    async def get_range_into(self, bucket, key, start, view, **kwargs) -> RangeMeta:
        try:
            if start <= self.bad < start + len(view):
                await asyncio.sleep(self.latency)
                raise S3Exception("GetObject failed: the bad range", status=500)
            return await super().get_range_into(bucket, key, start, view, **kwargs)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def test_a_failed_get_cancels_the_reads_other_gets_and_is_raised_as_itself():
    link = _Failing(
        os.urandom(128 * PART),
        limit=18,
        target_bytes_per_s=1250 * MB,
        latency=0.02,
        per_stream=PART / 0.093,
        bad=40 * PART,
    )

    async def main() -> None:
        info = ObjectInfo("k", '"e"', len(link.data), 0)
        reader = AsyncS3Reader(link, "b", "k", object_info=info, part_size=PART)
        reader._width = StreamWidth(18, 1250 * MB, start=36, reach=36)
        with pytest.raises(S3Exception, match="the bad range") as raised:
            await reader.read_at(0, bytearray(len(link.data)))
        assert not raised.value.__class__.__name__.endswith("ExceptionGroup")
        assert link.in_flight == 0  # every other GET ended before the read raised
        assert link.cancelled >= 30  # ... cancelled, not finished
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run_virtual(main())


def test_a_cancelled_read_leaves_no_get_running():
    link = _s3like(128)

    async def main() -> None:
        info = ObjectInfo("k", '"e"', len(link.data), 0)
        reader = AsyncS3Reader(link, "b", "k", object_info=info, part_size=PART)
        reader._width = StreamWidth(18, 1250 * MB, start=36, reach=36)
        task = asyncio.ensure_future(reader.read_at(0, bytearray(len(link.data))))
        await asyncio.sleep(0.05)
        assert link.in_flight == 36
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert link.in_flight == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run_virtual(main())


def test_a_wide_read_does_not_load_anyios_backend():
    # Importing anyio's asyncio backend (its task groups) costs ~15 ms, which the first
    # large read of every process would pay on its timed path.
    code = (
        "import sys\n"
        "from tests.core.test_read_widening import _read, _s3like\n"
        "link = _s3like(64)\n"
        "assert _read(link, known_size=True)[0] == link.data and link.peak == 36\n"
        "print(sorted(m for m in sys.modules if m.startswith('anyio._backends')))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


# -- StreamWidth on its own --------------------------------------------------------------


def test_stream_width_validates_its_arguments():
    with pytest.raises(ValueError, match="limit, start and floor"):
        StreamWidth(0, 1.0)
    with pytest.raises(ValueError, match="target must be positive"):
        StreamWidth(4, 0.0)
    with pytest.raises(ValueError, match="min_gain"):
        StreamWidth(4, 1.0, min_gain=-0.1)


def test_stream_width_validates_its_reach():
    with pytest.raises(ValueError, match="reach must be >= limit 8"):
        StreamWidth(8, 1.0, reach=7)


def test_stream_width_goes_past_the_limit_and_the_target_only_while_it_pays():
    width = StreamWidth(8, 100.0, reach=16)
    width.record(0, 20, 1.0)  # 20 B/s alone: 5 streams for the target, 8 planned
    assert width.width == 5  # the first step: what the target needs
    for _ in range(3):
        width.record(1, 24, 1.0)  # 120 B/s over 5: the target is met, and the step paid
    assert (width.width, width.settled) == (10, False)  # so on, past the target
    for _ in range(5):
        width.record(2, 13, 1.0)  # 130 B/s over 10: +8 %, not worth it
    assert (width.width, width.settled) == (5, True)
    assert [w for w, _ in width.history] == [1, 5, 10]


def test_stream_width_goes_straight_to_its_reach_when_the_plan_falls_short():
    width = StreamWidth(8, 100.0, reach=16)
    width.record(0, 10, 1.0)  # 10 B/s alone: 10 streams for the target, 8 planned
    assert (width.width, width.epoch) == (16, 1)  # not 8 first: 16 at once
    for _ in range(8):
        width.record(1, 10, 1.0)  # 160 B/s over 16: kept, and nowhere wider to go
    assert (width.width, width.settled) == (16, True)
    assert [w for w, _ in width.history] == [1, 16]


def test_stream_width_steps_back_from_its_reach_to_the_floor_when_it_did_not_pay():
    width = StreamWidth(8, 100.0, reach=16, floor=2)
    width.record(0, 10, 1.0)  # 10 B/s alone: straight to 16
    for _ in range(8):
        width.record(1, 0.7, 1.0)  # 11 B/s over 16: the streams share one bottleneck
    assert (width.width, width.settled) == (2, True)  # back to one stream, at the floor


def test_stream_width_takes_no_step_too_small_to_pay():
    width = StreamWidth(8, 1000.0, start=8, reach=9)  # an earlier read settled at 8
    for _ in range(4):
        width.record(0, 10, 1.0)  # 80 B/s at 8: below target; 9 cannot add 25 %
    assert (width.width, width.settled) == (8, True)


def test_stream_width_starting_past_the_limit_stays_within_reach():
    width = StreamWidth(8, 1000.0, start=16, reach=16)  # an earlier read settled at 16
    assert width.width == 16
    for _ in range(8):
        width.record(0, 10, 1.0)  # 160 B/s: below the target, and nowhere left to go
    assert (width.width, width.settled) == (16, True)


def test_stream_width_ignores_gets_issued_at_an_earlier_width():
    width = StreamWidth(8, 100.0)
    width.record(0, 10, 1.0)  # 10 B/s alone: the target needs 10 streams, 8 allowed
    assert (width.width, width.epoch) == (8, 1)
    for _ in range(10):
        width.record(0, 1, 100.0)  # stale: would read as a collapse
    assert (width.width, width.settled) == (8, False)
    for _ in range(4):
        width.record(1, 10, 1.0)  # 80 B/s at 8 streams: kept, and the limit is reached
    assert (width.width, width.settled) == (8, True)


def test_stream_width_takes_its_first_step_from_a_first_byte_wait():
    # 1/16 of an 8 MiB part waiting 20 ms: at most 26 MB/s a stream, 48 streams for
    # 1.25 GB/s, more than the limit of 18: to the reach at once
    width = StreamWidth(18, 1.25e9, reach=36, floor=2)
    assert width.first_byte(0.020, 524_288)
    assert (width.width, width.epoch, width.settled) == (36, 1, False)
    assert width.history == [(1, pytest.approx(524_288 / 0.020))]
    # the wider step is still judged against that bound: 36 streams that did not move
    # 1.25 times as much step back
    for _ in range(18):
        width.record(1, 524_288, 36 * 0.020)
    assert (width.width, width.settled) == (2, True)


def test_stream_width_ignores_a_first_byte_wait_that_decides_nothing():
    width = StreamWidth(18, 1.25e9, reach=36)
    assert not width.first_byte(0.005, 524_288)  # 12 streams: within the plan
    assert not width.first_byte(0.0, 524_288)
    assert (width.width, width.epoch, width.history) == (1, 0, [])
    width.record(0, 524_288, 0.030)  # measured: a wait tells nothing more
    assert width.history
    assert not width.first_byte(0.020, 524_288)
    # already at its reach: no step to take
    assert not StreamWidth(18, 1.25e9, reach=36, start=36).first_byte(0.02, 524_288)


def test_stream_width_settles_at_the_limit():
    width = StreamWidth(64, 1000.0)
    width.record(0, 10, 1.0)
    assert width.width == 64  # the target needs 100 streams: straight to the limit
    for _ in range(32):
        width.record(1, 120, 64.0)  # 120 B/s over 64 streams, >= 1.25 x 10 B/s: kept
    assert (width.width, width.settled) == (64, True)


def test_stream_width_widens_again_while_each_step_pays_and_steps_back_when_not():
    width = StreamWidth(64, 1000.0)
    width.record(0, 100, 1.0)  # 100 B/s alone: 10 streams for the target
    assert width.width == 10
    for _ in range(5):
        width.record(1, 50, 1.0)  # 500 B/s over 10: kept; 50 B/s each asks for 20
    assert (width.width, width.settled) == (20, False)
    for _ in range(10):
        width.record(2, 30, 1.0)  # 600 B/s over 20: +20 %, below the 25 % threshold
    assert (width.width, width.settled) == (10, True)
    assert [w for w, _ in width.history] == [1, 10, 20]


def test_stream_width_prefers_the_narrower_width_within_the_gain_threshold():
    width = StreamWidth(16, 1000.0, floor=1)
    width.record(0, 100, 1.0)  # 100 B/s: 10 streams would reach the target
    assert width.width == 10
    for _ in range(5):
        width.record(1, 112, 10.0)  # 112 B/s in all: +12 %, not worth 9 more streams
    assert (width.width, width.settled) == (1, True)


def test_round_piece_evens_out_the_rounds_left():
    # 128 parts of 90 over 36 streams: 4 rounds of 8/9 part, not 3 and 20 whole parts more
    assert round_piece(128 * 90, 36, 90, 45) == 80
    assert round_piece(36 * 90, 36, 90, 45) == 90  # a whole round: whole parts
    assert round_piece(72 * 90 + 89, 36, 90, 45) == 90  # and what is left over is short
    assert round_piece(72 * 90 + 90, 36, 90, 45) == 61  # a whole part over: 3 rounds
    assert round_piece(20 * 90, 36, 90, 45) == 50  # the last round: 20 parts over 36
    assert round_piece(10 * 90, 36, 90, 45) == 45  # but no GET under `least`
    assert round_piece(30, 36, 90, 45) == 30  # nor past the end
    assert round_piece(0, 36, 90, 45) == 0
    with pytest.raises(ValueError, match="streams, length and least must be >= 1"):
        round_piece(10, 0, 90, 45)
    with pytest.raises(ValueError, match="left >= 0"):
        round_piece(-1, 4, 90, 45)


def test_round_piece_counts_a_get_in_flight_as_one_of_the_first_round():
    # 8 parts over 4 streams are 2 rounds of whole parts; with one stream still fetching
    # the part that told the size, they do not fit 2 rounds (7 GETs) and take 3 (11 GETs)
    assert round_piece(8 * 90, 4, 90, 45) == 90
    assert round_piece(8 * 90, 4, 90, 45, busy=1) == 66
    # 35 parts and one busy stream: one round of whole parts, not two of half ones
    assert round_piece(35 * 90, 36, 90, 45, busy=1) == 90
    with pytest.raises(ValueError, match="busy must be in"):
        round_piece(10, 4, 90, 45, busy=4)


def test_stream_width_lengthens_gets_only_when_settled_at_the_limit_below_target():
    width = StreamWidth(4, 1000.0)
    assert width.piece_parts(100) == 1  # still measuring
    width.record(0, 10, 1.0)
    for _ in range(2):
        width.record(1, 10, 1.0)  # 40 B/s at the limit of 4, far below 1,000
    assert (width.width, width.settled) == (4, True)
    assert width.piece_parts(100) == MAX_PIECE_PARTS
    assert width.piece_parts(20) == 2  # 20 parts left: two GETs' worth per stream
    assert width.piece_parts(7) == 1  # the end: one part per GET
    fast = StreamWidth(4, 10.0)
    fast.record(0, 100, 1.0)  # one stream meets the target: settled narrow
    assert fast.piece_parts(100) == 1
