"""Sans-I/O planning: pure integer arithmetic behind every S3 transfer.

This module owns the decisions that do not need a network: how byte ranges
are grouped into requests and cut into ranged-GET parts, which multipart part
size to use, how many bytes may be in flight at once, and how many concurrent
requests a throughput target calls for.
Everything here is a pure function of integers (plus one tiny state
machine); it imports only the standard library and performs no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

#: Parts 1..STREAMING_FIRST_TIER_PARTS of a streaming upload use the base size.
STREAMING_FIRST_TIER_PARTS = 1000
#: After the first tier, the streaming part size doubles every this many parts.
STREAMING_DOUBLING_PARTS = 500

#: Sustained throughput of one S3 connection while a body flows, in bytes per second: AWS's
#: published figure, the low end of "one concurrent request for each 85-90 MB/s of desired
#: network throughput" (Amazon S3 User Guide, "Performance design patterns for Amazon S3",
#: section "Horizontal scaling and request parallelization for high throughput").
PER_CONNECTION_BYTES_PER_SEC = 85_000_000
#: Seconds every request waits for S3's first byte before its body flows (the low end of what
#: a client in the bucket's region sees; the S3-like benchmark profile uses the same figure).
FIRST_BYTE_LATENCY_S = 0.020
MIN_CONCURRENCY = 2
MAX_CONCURRENCY = 64
#: A large read that measured less than its throughput target at the planned concurrency may
#: widen on up to this many times that concurrency (at most :data:`MAX_CONCURRENCY`).
READ_STRETCH = 2


Span = Tuple[int, int]
"""A half-open byte range ``(start, end)``."""


def split_spans(spans: Iterable[Span], part_size: int) -> Iterator[Span]:
    """Cut each span into consecutive pieces of ``part_size`` bytes, in order.

    The last piece of a span may be shorter; an empty span gives no piece. Every ranged GET
    a reader sends for more than one part is planned here.

    Raises:
        ValueError: ``part_size`` is less than 1, or a span has a negative start or ends
            before it starts (raised when that span is reached).
    """
    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    for start, end in spans:
        if start < 0 or end < start:
            raise ValueError(f"invalid span [{start}, {end})")
        for piece in range(start, end, part_size):
            yield piece, min(piece + part_size, end)


def group_ranges(ranges: Sequence[Span], max_gap: Union[int, float]) -> List[range]:
    """Group sorted, disjoint, non-empty ``ranges`` that lie at most ``max_gap`` apart.

    A range joins the group before it when the gap from the previous range's end is at most
    ``max_gap`` (adjacent ranges always do).

    Returns:
        The groups as index ranges into ``ranges``, in order (they partition it). A group
        is fetched with one request covering its gaps.

    Raises:
        ValueError: ``Invalid range: s-e``, ``Unsorted ranges: a-b and c-d`` or
            ``Overlapping ranges: a-b and c-d`` (the DCP reader's messages).
    """
    if not ranges:
        return []
    start, end = ranges[0]
    if not 0 <= start <= end:
        raise ValueError(f"Invalid range: {start}-{end}")
    groups: List[range] = []
    first = 0
    for i in range(1, len(ranges)):
        (prev_start, prev_end), (start, end) = ranges[i - 1], ranges[i]
        if end <= start:
            raise ValueError(f"Invalid range: {start}-{end}")
        if start < prev_end:
            kind = "Unsorted" if start < prev_start else "Overlapping"
            raise ValueError(
                f"{kind} ranges: {prev_start}-{prev_end} and {start}-{end}"
            )
        if start - prev_end > max_gap:
            groups.append(range(first, i))
            first = i
    groups.append(range(first, len(ranges)))
    return groups


def pieces_with_data(
    groups: Iterable[Tuple[Span, Sequence[Span]]], part_size: int
) -> List[Span]:
    """Cut each group's span into ``part_size`` pieces, keeping those that hold wanted bytes.

    ``groups`` pairs a request span with the ranges wanted inside it. A group covers its
    gaps (that is what grouping buys: fewer requests), but a piece lying wholly inside a gap
    would fetch only bytes nobody reads, so it is dropped.
    """
    pieces: List[Span] = []
    for span, wanted in groups:
        items = sorted((start, end) for start, end in wanted if end > start)
        i = 0
        for start, end in split_spans([span], part_size):
            while i < len(items) and items[i][1] <= start:
                i += 1
            if i < len(items) and items[i][0] < end:
                pieces.append((start, end))
    return pieces


def _check_part_size(part_size: int) -> None:
    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    if part_size > MAX_PART_SIZE:
        raise ValueError(f"part_size must be <= {MAX_PART_SIZE}, got {part_size}")


def part_size_for_part_number(part_number: int, part_size: int) -> int:
    """Return the size of part ``part_number`` of a streaming upload.

    For uploads of unknown total size. With ``base = max(part_size,
    MIN_PART_SIZE)``, parts 1..1000 use ``base``; after that the size doubles
    every 500 parts (1001..1500 use ``2 * base``, 1501..2000 ``4 * base``,
    ...), capped at :data:`MAX_PART_SIZE`. From a 5 MiB base the 10,000
    parts carry about 24 TiB; from 8 MiB about 26 TiB. (Doubling every
    1000 parts would reach only ~4.9 TiB from 5 MiB, short of 5 TiB.)

    Raises:
        ValueError: If ``part_number`` is outside ``[1, MAX_PARTS]`` or
            ``part_size`` is outside ``[1, MAX_PART_SIZE]``.
    """
    if not 1 <= part_number <= MAX_PARTS:
        raise ValueError(f"part_number must be in [1, {MAX_PARTS}], got {part_number}")
    _check_part_size(part_size)
    base = max(part_size, MIN_PART_SIZE)
    if part_number <= STREAMING_FIRST_TIER_PARTS:
        return base
    doublings = (
        part_number - STREAMING_FIRST_TIER_PARTS - 1
    ) // STREAMING_DOUBLING_PARTS + 1
    if base << doublings >= MAX_PART_SIZE:
        return MAX_PART_SIZE
    return base << doublings


@dataclass
class PrefetchWindow:
    """Bounds the bytes and items in flight for a reader or dataset.

    An item is admitted while it keeps the window within ``budget_bytes`` and
    ``max_items``. When nothing is in flight any item is admitted, so a
    single item larger than the budget still makes progress.
    """

    budget_bytes: int
    max_items: int
    _bytes: int = field(default=0, init=False, repr=False)
    _items: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.budget_bytes < 1:
            raise ValueError(f"budget_bytes must be >= 1, got {self.budget_bytes}")
        if self.max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {self.max_items}")

    @property
    def in_flight_bytes(self) -> int:
        """Bytes admitted and not yet released."""
        return self._bytes

    @property
    def in_flight_items(self) -> int:
        """Items admitted and not yet released."""
        return self._items

    def can_admit(self, nbytes: int) -> bool:
        """Return whether an item of ``nbytes`` may be admitted now."""
        if self._items == 0:
            return True
        return (
            self._items < self.max_items and self._bytes + nbytes <= self.budget_bytes
        )

    def admit(self, nbytes: int, *, force: bool = False) -> None:
        """Record an item of ``nbytes`` as in flight.

        ``force`` admits it even past the bounds (a hedged second request for an item
        already in the window: counted, so nothing else starts until it is released).

        Raises:
            ValueError: If ``nbytes`` is negative or :meth:`can_admit` is false.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if not force and not self.can_admit(nbytes):
            raise ValueError(
                f"cannot admit nbytes={nbytes}: {self._items} items and "
                f"{self._bytes} bytes already in flight"
            )
        self._bytes += nbytes
        self._items += 1

    def release(self, nbytes: int) -> None:
        """Record that an in-flight item of ``nbytes`` has completed.

        Raises:
            ValueError: If ``nbytes`` is negative, nothing is in flight, or
                ``nbytes`` exceeds the bytes in flight.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if self._items == 0 or nbytes > self._bytes:
            raise ValueError(
                f"cannot release nbytes={nbytes}: {self._items} items and "
                f"{self._bytes} bytes in flight"
            )
        self._bytes -= nbytes
        self._items -= 1


#: Most items an adaptive prefetch window grows to, whatever its byte budget allows.
MAX_WINDOW_ITEMS = 256
#: Items an adaptive window keeps in flight beyond latency x demand (jitter, bursts).
WINDOW_HEADROOM = 1.5


def window_items(
    latency_s: float,
    interval_s: float,
    mean_cost: float,
    budget_bytes: int,
    floor: int,
    cap: int = MAX_WINDOW_ITEMS,
) -> int:
    """Return how many items a prefetch window should keep in flight (Little's law).

    To hand out an item every ``interval_s`` seconds when each takes ``latency_s`` seconds
    to fetch, ``latency_s / interval_s`` items must be in flight; the window keeps
    :data:`WINDOW_HEADROOM` times that plus one. When the window is too small, deliveries
    wait on fetches, the observed interval stretches to ``latency_s / items`` and the next
    answer is :data:`WINDOW_HEADROOM` times larger: the window widens until the consumer,
    the byte budget or ``cap`` is the limit.

    Args:
        latency_s: Observed seconds per fetch (first byte and transfer).
        interval_s: Observed seconds between deliveries, per item.
        mean_cost: Average bytes an item reserves (0 for items fetched without data).
        budget_bytes: The window's byte budget.
        floor: Fewest items (the configured window).
        cap: Most items.

    Raises:
        ValueError: A time or cost is negative, or ``floor`` / ``cap`` is below 1.
    """
    if latency_s < 0 or interval_s < 0 or mean_cost < 0:
        raise ValueError(
            f"latency_s, interval_s and mean_cost must be >= 0, got "
            f"{latency_s}, {interval_s}, {mean_cost}"
        )
    if floor < 1 or cap < 1:
        raise ValueError(f"floor and cap must be >= 1, got {floor} and {cap}")
    needed = math.ceil(latency_s / max(interval_s, 1e-6) * WINDOW_HEADROOM) + 1
    by_bytes = int(budget_bytes // mean_cost) if mean_cost >= 1 else cap
    return max(floor, min(needed, by_bytes, cap))


def concurrency_for(throughput_target_gbps: float, part_size: int) -> int:
    """Return how many concurrent ranged GETs or part uploads to run.

    One S3 connection carries about :data:`PER_CONNECTION_BYTES_PER_SEC` (85 MB/s, AWS's
    published per-request figure: "Performance design patterns for Amazon S3", "Horizontal
    scaling and request parallelization for high throughput") while a body flows, and each
    request first waits :data:`FIRST_BYTE_LATENCY_S` (20 ms), so one connection moving
    ``part_size``-byte parts sustains ``part_size / (latency + part_size / 85 MB/s)``. The
    target of ``throughput_target_gbps`` gigabits per second needs the ceiling of the target
    over that, clamped to ``[MIN_CONCURRENCY, MAX_CONCURRENCY]`` = ``[2, 64]``. For example,
    10 Gbps = 1.25 GB/s with 8 MiB parts (71 MB/s per connection) gives 18. (The reference's
    CRT plans more: 10 connections per 4 Gbps, 30 for 10 Gbps.) A large read that measures
    less than its target at this concurrency may go on to :func:`read_reach` of it.

    Raises:
        ValueError: If the target is not a positive finite number or
            ``part_size`` is less than 1.
    """
    return _clamp(math.ceil(_busy_connections(throughput_target_gbps, part_size)))


def _busy_connections(throughput_target_gbps: float, part_size: int) -> float:
    """Connections kept busy moving ``part_size`` parts at the target (unrounded); validates."""
    if not (math.isfinite(throughput_target_gbps) and throughput_target_gbps > 0):
        raise ValueError(
            "throughput_target_gbps must be positive and finite, "
            f"got {throughput_target_gbps}"
        )
    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    bytes_per_sec = throughput_target_gbps * 1e9 / 8
    seconds_per_part = FIRST_BYTE_LATENCY_S + part_size / PER_CONNECTION_BYTES_PER_SEC
    return bytes_per_sec * seconds_per_part / part_size


def _clamp(wanted: int) -> int:
    return max(MIN_CONCURRENCY, min(MAX_CONCURRENCY, wanted))


#: Share of its parts-in-flight window a streaming upload keeps busy on average. Parts start
#: only as the caller's data fills them, each waits a few ms between its connection's
#: previous answer and its own request reaching S3, and the window ramps up at the start and
#: drains at the end. Measured on the S3-like benchmark profile (1 GiB, 8 MiB parts): 0.80-0.84
#: for s3torch-async (16 and 24 in flight) and for s3torchconnector (25 in flight).
UPLOAD_WINDOW_BUSY = 0.8


def upload_concurrency_for(throughput_target_gbps: float, part_size: int) -> int:
    """Return how many parts a streaming upload keeps in flight.

    As :func:`concurrency_for` (one connection carries :data:`PER_CONNECTION_BYTES_PER_SEC`,
    85 MB/s), with what differs for uploads: a streaming upload keeps only
    :data:`UPLOAD_WINDOW_BUSY` (80 %) of its window busy on average, so the window is that
    much wider. Clamped to ``[MIN_CONCURRENCY, MAX_CONCURRENCY]``. For example, 10 Gbps with
    8 MiB parts gives 23 (reads: 18); every part in flight costs ``part_size`` of memory.

    Raises:
        ValueError: If the target is not a positive finite number or
            ``part_size`` is less than 1.
    """
    busy = _busy_connections(throughput_target_gbps, part_size)
    return _clamp(math.ceil(busy / UPLOAD_WINDOW_BUSY))


def read_reach(concurrency: int) -> int:
    """The most ranged GETs one large read may run: :data:`READ_STRETCH` times ``concurrency``.

    ``concurrency`` (from :func:`concurrency_for`) is planned from published averages; a read
    that measured less than its throughput target with that many streams widens on, up to
    this bound (at most :data:`MAX_CONCURRENCY`, and never below ``concurrency``), and keeps
    the extra streams only if they paid (``StreamWidth``). A read's GETs write into the
    result's own buffer, so more streams cost connections, not memory.
    """
    return max(concurrency, min(MAX_CONCURRENCY, READ_STRETCH * concurrency))


#: A wider read must deliver at least this fraction more throughput than the narrower width
#: it replaced, or it steps back: every stream costs a connection, and on a CPU-bound host
#: (loopback) more streams only share the same CPU.
WIDEN_MIN_GAIN = 0.25
#: Most parts one GET of a read settled at its widest spans (see ``StreamWidth.piece_parts``).
MAX_PIECE_PARTS = 4
#: GETs evened out over a read's rounds (:func:`round_piece`) are no shorter than
#: ``part_size`` over this: at S3's 20 ms and 85 MB/s half of an 8 MiB part still spends
#: 70 % of its time moving bytes; shorter GETs would mostly wait for their first byte.
MIN_PIECE_DIVISOR = 2


def round_piece(left: int, streams: int, length: int, least: int, busy: int = 0) -> int:
    """Bytes per GET for the next round of ``streams`` GETs, so that the rounds left are equal.

    ``left`` bytes take ``r = ceil(left / (streams * length))`` rounds of GETs of at most
    ``length``; each GET of them spans ``ceil(left / (streams * r))``, at least ``least``
    and at most ``left``. Whole ``length`` GETs would leave the last round partly idle:
    128 parts over 36 streams are 3 rounds and 20 GETs more, so 16 streams wait a whole
    GET's time for the last 20; cut into 4 rounds of 0.89 part, all 36 end together. When
    what whole rounds leave over is less than one ``length`` (its GET is short anyway),
    GETs stay ``length``.

    ``busy`` of the streams are still fetching a GET that is not part of ``left`` (the one
    that told a read the object's size): each stands for one GET of this round, so the
    round has ``streams - busy`` GETs and ``r`` rounds have ``streams * r - busy``.

    Raises:
        ValueError: ``streams``, ``length`` or ``least`` is below 1, ``left`` below 0, or
            ``busy`` outside ``[0, streams)``.
    """
    if streams < 1 or length < 1 or least < 1 or left < 0:
        raise ValueError(
            "streams, length and least must be >= 1 and left >= 0, got "
            f"{streams}, {length}, {least}, {left}"
        )
    if not 0 <= busy < streams:
        raise ValueError(f"busy must be in [0, {streams}), got {busy}")
    if left == 0:
        return 0
    if not busy and left >= streams * length and left % (streams * length) < length:
        return length
    rounds = -(-(left + busy * length) // (streams * length))
    return min(left, max(least, -(-left // (streams * rounds - busy))))


class StreamWidth:
    """How many ranged GETs of one large read run at once, chosen from measured throughput.

    A read begins with ``start`` streams (one, or what an earlier read settled at). Each
    finished GET is reported with the epoch
    (width) it was issued in, its bytes and its seconds from request to last byte. Once half
    the GETs of an epoch (at least one) finished, the epoch's throughput follows from
    Little's law, ``width * bytes / seconds``, and decides the next width:

    * The first epoch widens to the streams that reach ``target`` bytes per second at the
      rate one stream just delivered (``needed = ceil(target / per_stream)``), so a
      per-connection bandwidth cap (S3: ~85 MB/s a connection) is met by as many streams
      as the target needs in one step, while a stream that alone meets the target stays
      alone. When ``needed`` exceeds ``limit`` (the client's planned concurrency) the step
      goes straight to ``reach``: the plan is already known to fall short, and a step to
      ``limit`` first would cost the read one more measured epoch at a width it leaves.
    * A wider epoch is kept only if it delivered at least ``1 + min_gain`` times the
      narrower one's throughput; then it widens again, at least doubling (more if the target
      needs more), up to ``reach`` (default ``limit``; see :func:`read_reach`): also past
      ``target`` and ``limit``, as long as each step pays. Otherwise the read steps back to
      the narrower width. A step that could not add ``min_gain`` (``reach`` is near) is not
      taken.

    So the target sizes the first step, and measurement decides the rest: where streams
    share one bottleneck (a host's CPU on loopback, a NIC at the target) a wider step shows
    no gain and is undone; where each connection is capped (S3) the read keeps what pays. A
    width chosen to settle on is at least ``floor`` (two streams overlap one's request round
    trip and checksum hashing with the other's transfer). Once settled the width stays.

    Raises:
        ValueError: ``limit``, ``start`` or ``floor`` is below 1, ``reach`` is below
            ``limit``, ``target`` is not positive, or ``min_gain`` is negative.
    """

    def __init__(
        self,
        limit: int,
        target: float,
        *,
        start: int = 1,
        floor: int = 1,
        min_gain: float = WIDEN_MIN_GAIN,
        reach: Optional[int] = None,
    ) -> None:
        if limit < 1 or start < 1 or floor < 1:
            raise ValueError(
                f"limit, start and floor must be >= 1, got {limit}, {start}, {floor}"
            )
        reach = limit if reach is None else reach
        if reach < limit:
            raise ValueError(f"reach must be >= limit {limit}, got {reach}")
        if not (math.isfinite(target) and target > 0) or min_gain < 0:
            raise ValueError(
                f"target must be positive and min_gain >= 0, got {target}, {min_gain}"
            )
        self.limit = limit
        self.reach = reach
        self.target = target
        self.floor = min(floor, limit)
        self.min_gain = min_gain
        self.width = min(start, reach)
        self.settled = reach == 1  # else measured, also when starting at the limit
        self.epoch = 0
        #: Widths measured so far with their throughput (bytes per second), in order.
        self.history: List[Tuple[int, float]] = []
        self._kept: Optional[Tuple[int, float]] = None
        self._bytes = 0
        self._seconds = 0.0
        self._count = 0

    def record(self, epoch: int, nbytes: int, seconds: float) -> None:
        """Report a finished GET of ``nbytes`` issued in ``epoch`` that took ``seconds``."""
        if self.settled or epoch != self.epoch or nbytes <= 0:
            return
        self._bytes += nbytes
        self._seconds += max(seconds, 1e-6)
        self._count += 1
        if self._count < max(1, self.width // 2):
            return
        rate = self.width * self._bytes / self._seconds
        self.history.append((self.width, rate))
        kept = self._kept
        if kept is not None and rate < kept[1] * (1 + self.min_gain):
            self._settle(kept[0])
            return
        self._kept = (self.width, rate)
        needed = math.ceil(self.target / (rate / self.width))
        if kept is None:  # the first measurement: the target sizes the step
            if needed <= self.width:
                self._settle(self.width)
                return
            # Past the plan already: straight to the bound, not via the plan (a step there
            # only tells after half its GETs, ~0.1 s at S3's latency and 8 MiB parts).
            wider = self.reach if needed > self.limit else needed
        else:  # a wider step paid: try another while they pay
            wider = min(self.reach, max(needed, 2 * self.width))
        if wider < self.width * (1 + self.min_gain):
            self._settle(self.width)  # too small a step to show a gain
            return
        self._set(wider)

    def first_byte(self, wait: float, probe: int) -> bool:
        """Take the first step from a response's first-byte ``wait``, before a GET finished.

        ``probe`` is the length of the short GET that would otherwise measure the first
        stream. Its head would come about ``wait`` seconds after it was sent (the same
        store answered the read's first GET after ``wait``), so one stream moves at most
        ``probe / wait`` bytes per second with such GETs. When even that rate needs more
        streams than ``limit`` for the target, the probe's own measurement could only send
        the read to ``reach``: the step is taken now, the probe's round trip sooner, with
        that bound as the narrow width's rate (a wider step is still kept only if it pays
        against it). Returns whether the step was taken; nothing changes once a GET was
        measured.
        """
        if self.settled or self.history or self.epoch or wait <= 0 or probe < 1:
            return False
        bound = probe / wait
        if math.ceil(self.target / bound) <= self.limit:
            return False
        if self.reach < self.width * (1 + self.min_gain):
            return False
        self.history.append((self.width, self.width * bound))
        self._kept = self.history[-1]
        self._set(self.reach)
        return True

    def piece_parts(self, parts_left: int) -> int:
        """How many ``part_size`` parts the next GET of the read should span.

        One, except when the read settled at ``limit`` or wider and is still below ``target``:
        each stream then pays its first-byte latency per GET, and longer GETs (up to
        :data:`MAX_PIECE_PARTS` parts) pay it less often. Near the end (fewer than two GETs'
        worth left per stream) GETs shrink back to one part so the streams finish together.
        """
        if not (self.settled and self.width >= self.limit and self.history):
            return 1
        if self.history[-1][1] >= self.target:
            return 1
        return max(1, min(MAX_PIECE_PARTS, parts_left // (2 * self.width)))

    def _settle(self, width: int) -> None:
        self._set(max(width, self.floor))
        self.settled = True

    def _set(self, width: int) -> None:
        if width != self.width:
            self.width = width
            self.epoch += 1
        self._bytes = self._count = 0
        self._seconds = 0.0


#: A streaming upload whose parts take longer than planned may widen its window to this many
#: times :func:`upload_concurrency_for` (at most :data:`MAX_CONCURRENCY`) ...
UPLOAD_STRETCH = 2
#: ... but widening never takes the parts in flight past this many bytes (every part in flight
#: holds ``part_size`` bytes of memory when the caller's data had to be copied into it).
UPLOAD_WIDEN_BYTES = 256 * MiB
#: A wider upload window is kept only if the throughput measured with it rose by at least this
#: share of its relative widening (23 -> 28 parts, +22 %, must gain 11 %); else it steps back.
UPLOAD_STEP_PAY = 0.5
#: After a wider window paid, the next step adds at least this fraction of the width.
UPLOAD_STEP_MIN = 0.25
#: An upload window's width is judged once a quarter of its parts (at least one) finished:
#: parts start together and take alike, and a 1 GiB upload lasts only a few part times.
UPLOAD_EPOCH_SHARE = 4


def upload_window_reach(throughput_target_gbps: float, part_size: int) -> int:
    """The most parts a streaming upload may keep in flight once widened (see :class:`UploadWindow`).

    :data:`UPLOAD_STRETCH` times :func:`upload_concurrency_for`, at most
    :data:`MAX_CONCURRENCY` and at most :data:`UPLOAD_WIDEN_BYTES` (256 MiB) of parts, and never
    below the planned window itself. 10 Gbps with 8 MiB parts: planned 23, reach 32; with
    64 MiB parts the plan (19) already exceeds the byte cap and is not widened.

    Raises:
        ValueError: As :func:`upload_concurrency_for`.
    """
    planned = upload_concurrency_for(throughput_target_gbps, part_size)
    by_bytes = UPLOAD_WIDEN_BYTES // part_size
    return max(planned, min(MAX_CONCURRENCY, UPLOAD_STRETCH * planned, by_bytes))


class UploadWindow:
    """How many parts one streaming upload keeps in flight, widened from measured part times.

    :func:`upload_concurrency_for` plans the window from published figures (20 ms to S3's first
    byte, 85 MB/s a connection). Where parts take longer than that (a slower link, a busy
    server), the planned window falls short of ``target``. Each finished part is reported with
    the epoch (width) its slot was granted in, its bytes and its seconds from request to answer.
    Once a quarter of the parts of an epoch (at least one) finished, one part in flight moves
    ``bytes / seconds`` per second, and the window needs ``target`` over that, divided by
    :data:`UPLOAD_WINDOW_BUSY`, parts (Little's law, as the plan):

    * If that is no wider than the window, the window settles where it is.
    * Else it widens to that (at most ``reach``). A wider window is kept only if the throughput
      it measured (``width x bytes / seconds``) rose by at least :data:`UPLOAD_STEP_PAY` of its
      relative widening; then it may widen again (by at least :data:`UPLOAD_STEP_MIN` of its
      width, also past ``target``: where each connection is capped, as on S3, more parts in
      flight pay) until ``reach``. A step that did not pay is undone and the window settles:
      where the parts share one bottleneck (a host's CPU), more in flight only costs memory.

    The window never goes below ``planned``; once settled it stays. A part retried after
    throttling counts with its whole time: the wider window that follows raises nothing and
    is undone after one step.

    Raises:
        ValueError: ``planned`` is below 1, ``reach`` is below ``planned``, or ``target`` is not
            positive and finite.
    """

    def __init__(self, planned: int, reach: int, target: float) -> None:
        if planned < 1 or reach < planned:
            raise ValueError(
                f"need 1 <= planned <= reach, got planned={planned}, reach={reach}"
            )
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"target must be positive and finite, got {target}")
        self.planned = planned
        self.reach = reach
        self.target = target
        self.width = planned
        self.settled = reach == planned
        self.epoch = 0
        #: ``(width, parts in flight x bytes / seconds per part)`` judged so far, in order.
        self.history: List[Tuple[int, float]] = []
        self._paid: Optional[Tuple[int, float]] = None  # the widest width that paid
        self._tally = [0, 0.0, 0]  # this epoch's bytes, seconds and parts

    def record(self, epoch: int, nbytes: int, seconds: float) -> None:
        """Report a finished part of ``nbytes`` whose slot was granted in ``epoch``."""
        if self.settled or epoch != self.epoch or nbytes <= 0:
            return
        tally = self._tally
        tally[0] += nbytes
        tally[1] += max(seconds, 1e-6)
        tally[2] += 1
        if tally[2] < max(1, self.width // UPLOAD_EPOCH_SHARE):
            return
        per_part = tally[0] / tally[1]  # bytes per second one part in flight moves
        self.history.append((self.width, self.width * per_part))
        paid = self._paid
        if paid is not None and not self._step_paid(paid):
            self._set(paid[0])
            self.settled = True
            return
        self._paid = self.history[-1]
        wider = math.ceil(self.target / (per_part * UPLOAD_WINDOW_BUSY))
        if paid is not None:  # a wider window paid: keep widening while steps pay
            wider = max(wider, math.ceil(self.width * (1 + UPLOAD_STEP_MIN)))
        wider = min(wider, self.reach)
        if wider <= self.width:
            self.settled = True
            return
        self._set(wider)

    def _step_paid(self, narrower: Tuple[int, float]) -> bool:
        """Whether the current width raised the throughput enough over ``narrower``'s."""
        width, rate = self.history[-1]
        wanted = 1 + UPLOAD_STEP_PAY * (width / narrower[0] - 1)
        return rate >= narrower[1] * wanted

    def _set(self, width: int) -> None:
        if width != self.width:
            self.width = width
            self.epoch += 1
        self._tally = [0, 0.0, 0]


# -- a map-style dataset's look-ahead ---------------------------------------------------------

#: Most indices a map-style dataset fetches ahead of the batch it serves.
LOOKAHEAD_ITEMS = 128
#: A map-style dataset looks ahead only while its process was busy (CPU time) for at most
#: this share of the time it waited for a batch: the rest of the wait was latency to hide.
LOOKAHEAD_MAX_BUSY = 0.5


def index_run(indices: Sequence[int]) -> Optional[Tuple[int, int]]:
    """``(start, stop)`` when ``indices`` are ``start, start + 1, ..., stop - 1``, else ``None``."""
    if not indices:
        return None
    start = indices[0]
    stop = start + len(indices)
    return (start, stop) if list(indices) == list(range(start, stop)) else None


def next_runs(
    run: Tuple[int, int], stride: int, size: int, count: int
) -> List[Tuple[int, int]]:
    """The ``count`` runs after ``run`` at ``stride`` apart, each as long as ``run``.

    Runs are clipped to ``size`` indices and none starts past the end; ``stride`` below the
    run's length (overlapping runs) predicts nothing.
    """
    start, stop = run
    length = stop - start
    if length < 1 or stride < length:
        return []
    out = []
    for k in range(1, count + 1):
        begin = start + k * stride
        if begin >= size:
            break
        out.append((begin, min(begin + length, size)))
    return out
