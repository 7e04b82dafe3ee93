"""Partitioned listing: a large prefix listed by several key ranges at once, keys in order.

One ListObjectsV2 page (at most 1,000 keys) costs one round trip, so a plain listing of N keys
waits N / 1,000 page latencies one after another. :func:`list_partitioned` lists the first page
as usual (its keys are out within one page latency), then estimates from the keys seen so far
how far ahead the next 1,000 keys reach, and lists that many key ranges concurrently, each with
``StartAfter`` at the range's lower bound. Ranges are consumed in key order, so the keys come out
exactly as a plain listing yields them; a range that holds more keys than estimated simply takes
another page, and every range's result corrects the estimate for the ones after it.

Opt-in: it sends more requests than a plain listing when the keys are unevenly spread (a range
estimated too wide costs an extra page, one estimated too narrow an empty request).

Ranges need ``StartAfter``: requests go through ``AsyncS3Client.list_objects(...,
start_after=...)``. With ``partitions=1`` the listing is a plain one that requests the next page
while the current one is consumed (same keys, same order).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Deque, List, Optional, Tuple

from .._types import ObjectInfo
from .client import AsyncS3Client
from .prefetch import list_ahead

__all__ = [
    "DEFAULT_PARTITIONS",
    "KeySpace",
    "list_partitioned",
    "partitioned",
]

#: Key ranges listed at once after the first page.
DEFAULT_PARTITIONS = 8
#: Share of a page a range is sized for (a little under one page, so most take one request).
_FILL = 0.9
#: Lowest and highest byte a range bound may hold: printable ASCII keeps bounds valid keys.
_LOW, _HIGH = 0x20, 0x7E

#: One ListObjectsV2 page after a key: ``(objects, truncated)``.
Page = Tuple[List[ObjectInfo], bool]
#: ``page(start_after, max_keys)``: the page of keys after ``start_after`` ("": from the start).
PageFn = Callable[[str, int], Awaitable[Page]]


class KeySpace:
    """Keys under ``prefix`` mapped to integers in key order, to extrapolate range bounds.

    The bytes after the prefix, cut or padded to ``width``, are read as digits of one number
    whose digits are the printable ASCII bytes seen in the sample keys (0 is the padding, so a
    shorter key sorts first, as S3 sorts). Keys made only of those bytes keep their order
    exactly; others land next to their neighbours. Counting in the sample's own alphabet keeps
    the estimate close for the usual keys (decimal counters, hex digests), where a plain
    base-256 reading would see every decimal carry as a gap of 246 unused values.
    """

    def __init__(self, prefix: str, width: int, sample: Sequence[str]) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.prefix = prefix
        self._skip = len(prefix.encode("utf-8"))
        self.width = width
        seen = {b for key in sample for b in key.encode("utf-8")[self._skip :]}
        self.alphabet = bytes(sorted(b for b in seen if _LOW <= b <= _HIGH)) or b"0"
        self.base = len(self.alphabet) + 1
        # digit of every byte: its rank in the alphabet, or that of the largest one below it
        self._digit = [0] * 256
        rank = 0
        for b in range(256):
            if rank < len(self.alphabet) and self.alphabet[rank] == b:
                rank += 1
            self._digit[b] = rank
        self.end: int = self.base**width
        self.keys = 0
        self.span = 0

    def position(self, key: str) -> int:
        """The integer of ``key`` (which must start with the prefix)."""
        tail = key.encode("utf-8")[self._skip : self._skip + self.width]
        value = 0
        for b in tail:
            value = value * self.base + self._digit[b]
        scale: int = self.base ** (self.width - len(tail))
        return value * scale

    def learn(self, count: int, lo: str, hi: Optional[str]) -> None:
        """Record that ``count`` keys lie in ``(lo, hi]`` (``hi=None``: to the end)."""
        top = self.end if hi is None else self.position(hi)
        self.span += max(0, top - self.position(lo))
        self.keys += count

    def step(self, page_keys: int) -> int:
        """The integer width that holds about ``_FILL * page_keys`` keys at the density seen."""
        per_key = self.span / max(1, self.keys)
        return max(1, int(per_key * page_keys * _FILL))

    def key_at(self, value: int) -> str:
        """The key of ``value`` (digits past the first padding digit dropped)."""
        digits = []
        for _ in range(self.width):
            value, digit = divmod(value, self.base)
            digits.append(digit)
        out = bytearray()
        for digit in reversed(digits):
            if digit == 0:
                break
            out.append(self.alphabet[digit - 1])
        return self.prefix + out.decode("ascii")

    def bound(self, lo: str, step: int) -> Optional[str]:
        """A key about ``step`` above ``lo`` and strictly after it; ``None`` past the end."""
        base = self.position(lo)
        while True:
            value = base + step
            if value >= self.end:
                return None
            candidate = self.key_at(value)
            if candidate > lo:
                return candidate
            step *= 2


def _client_pages(client: AsyncS3Client, bucket: str, prefix: str) -> PageFn:
    async def page(start_after: str, max_keys: int) -> Page:
        pager = client.list_objects(
            bucket, prefix, "", max_keys, start_after=start_after
        )
        result = await pager.__anext__()
        return list(result.object_info), not pager.complete

    return page


async def _list_range(
    page: PageFn, lo: str, hi: Optional[str], max_keys: int
) -> Tuple[List[ObjectInfo], bool]:
    """Keys in ``(lo, hi]``, and whether the listing ends inside this range."""
    out: List[ObjectInfo] = []
    after = lo
    while True:
        infos, truncated = await page(after, max_keys)
        for info in infos:
            if hi is not None and info.key > hi:
                return out, False
            out.append(info)
        if not truncated or not infos:
            return out, True
        after = infos[-1].key


def _check(partitions: int, max_keys: int) -> None:
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise TypeError(f"partitions must be an int, got {type(partitions).__name__}")
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if not 1 <= max_keys <= 1000:
        raise ValueError(f"max_keys must be between 1 and 1000, got {max_keys}")


async def list_partitioned(
    client: AsyncS3Client,
    bucket: str,
    prefix: str = "",
    *,
    partitions: int = DEFAULT_PARTITIONS,
    max_keys: int = 1000,
) -> AsyncGenerator[ObjectInfo, None]:
    """Every object under ``prefix`` in key order, listing up to ``partitions`` key ranges at once.

    With ``partitions=1`` this is a plain listing that requests the next page while one is
    consumed (``list_ahead``).

    Args:
        client: The client to list with.
        bucket: Bucket name.
        prefix: Key prefix (recursive: no delimiter).
        partitions: Key ranges in flight after the first page (1 lists page after page).
        max_keys: Page size.

    Raises:
        TypeError: ``partitions`` is not an int.
        ValueError: ``partitions`` is below 1 or ``max_keys`` is not in 1..1000.
        S3Exception: A listing request failed (``Service error: The bucket does not exist``...).
    """
    _check(partitions, max_keys)
    if partitions > 1:
        source = partitioned(
            _client_pages(client, bucket, prefix), prefix, partitions, max_keys
        )
    else:
        source = list_ahead(client, bucket, prefix, max_keys=max_keys)
    try:
        async for info in source:
            yield info
    finally:
        await source.aclose()


async def partitioned(
    page: PageFn, prefix: str, partitions: int, max_keys: int
) -> AsyncGenerator[ObjectInfo, None]:
    """The keys :func:`list_partitioned` yields, with ``page`` sending the requests."""
    first, truncated = await page("", max_keys)
    if not truncated or not first:
        for info in first:
            yield info
        return
    space = _key_space(prefix, first)
    space.learn(len(first) - 1, first[0].key, first[-1].key)
    pending: Deque[
        Tuple[str, Optional[str], asyncio.Task[Tuple[List[ObjectInfo], bool]]]
    ]
    pending = deque()
    lo: Optional[str] = first[-1].key
    try:
        while True:
            while lo is not None and len(pending) < partitions:
                hi = space.bound(lo, space.step(max_keys))
                task = asyncio.ensure_future(_list_range(page, lo, hi, max_keys))
                pending.append((lo, hi, task))
                lo = hi
            if first:  # the ranges after the first page go out before its keys
                for info in first:
                    yield info
                first = []
            if not pending:
                return
            start, stop, task = pending.popleft()
            infos, ended = await task
            for info in infos:
                yield info
            if ended:
                return
            space.learn(len(infos), start, stop)
    finally:
        for _, _, task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*(t for _, _, t in pending), return_exceptions=True)


def _key_space(prefix: str, keys: Sequence[ObjectInfo]) -> KeySpace:
    skip = len(prefix.encode("utf-8"))
    longest = max(len(info.key.encode("utf-8")) - skip for info in keys)
    return KeySpace(prefix, max(1, longest) + 2, [info.key for info in keys])
