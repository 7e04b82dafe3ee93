"""Checking whole objects that were read through ranged GETs against their full-object CRC32.

S3 returns no checksum for a ranged GET, yet the readers fetch even whole objects in ranges
(parallel parts, read-ahead). :class:`WholeReadCheck` closes that gap for one reader:

* A whole object that one GET holds (its size known beforehand, e.g. from listing) is fetched
  without ``Range``: S3 sends the checksum with it and the client checks it; nothing more.
* Otherwise, once the reader's GETs run on from offset 0 (a second GET continuing the first),
  a HEAD with ``x-amz-checksum-mode: ENABLED`` goes out alongside them, so the full-object
  CRC32 is known by the time the last byte arrives: one request more per such reader, no added
  latency. A read of the whole object whose size is unknown (``read()`` from offset 0) sends
  the HEAD with its first GET, which is ranged and so carries no checksum: one request more,
  no round trip more (also on a client's very first request to an endpoint, which otherwise
  goes alone until the endpoint answered: the HEAD goes with it, see ``_http.ALONGSIDE``). Other
  reads of unknown size that one ranged GET turns out to cover whole (``read(n)`` loops over a
  small object) send the HEAD when that GET is done: one round trip more. Reads of one range, random access and reads with gaps (DCP
  loads of some items) send none.
* Every range the reader receives once the HEAD is under way (and the one at offset 0) is
  hashed right there, in the task that fetched it (on a worker thread for ranges of 1 MiB or
  more), before its bytes go anywhere. Ranges fetched again (backward seeks) are not hashed
  twice. The CRC32s are combined as ranges touch
  (:class:`~._checksum.Crc32Coverage`).
* When the ranges cover the whole object, the combined CRC32 is compared with the HEAD's, in
  the task of the range that completed the coverage; a mismatch raises ``S3Exception``
  (``code="ChecksumMismatch"``) from that range's fetch.

What that guarantees: a caller that reads the whole object never gets all of it when it does
not match. ``read()`` of the whole object (and every load of the whole object into one buffer:
``torch.load`` through ``SequentialS3Reader``, a whole ``RangedS3Reader.read()``) raises before
returning any byte. A streaming reader (small reads, ``async for``) has already handed out the
parts before the one that completed the coverage; it raises at the latest in place of the last
part, so it never reaches the end of a corrupted object. Not checked, and documented: reads of
part of an object (nothing to compare with), objects without a full-object CRC32 (composite
multipart checksums, other algorithms, uploads without checksums: the hashing then stops as
soon as the HEAD says so), and an object replaced between the first GET and the HEAD (the
checksum belongs to another version; the reader's bytes are still of one version, pinned by
``If-Match``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from .._errors import S3Exception
from ._checksum import (
    THREAD_MIN_BYTES,
    Crc32Coverage,
    crc32,
    crc32_from_b64,
    crc32_to_b64,
)
from ._http import ALONGSIDE
from ._interface import ReadClient

__all__ = ["WholeReadCheck"]

logger = logging.getLogger(__name__)


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A HEAD nobody waits for (partial reads) may fail; mark its error as seen.
    if not task.cancelled():
        task.exception()


class WholeReadCheck:
    """The full-object CRC32 check of one reader's ranged reads (see the module docstring)."""

    def __init__(self, client: ReadClient, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._coverage = Crc32Coverage()
        self._active = True
        self._prefix_end = (
            0  # the GETs issued so far cover [0, _prefix_end) back to back
        )
        self._head: Optional[asyncio.Future[tuple[str, Optional[str]]]] = None

    def issued(self, start: int, nbytes: int) -> None:
        """Note a GET of ``nbytes`` at ``start`` about to be sent (in the order sent).

        The second GET that continues the run from offset 0 sends the HEAD, alongside: a
        read that goes on front to back is likely to become a whole read, while one request
        (``read(10)``), random access or reads with gaps (DCP loads of some items) send none.
        """
        if start != self._prefix_end:
            return
        self._prefix_end = start + nbytes
        if start > 0:
            self._lookup()

    def look_up(self) -> None:
        """Send the HEAD now: the reader is about to read the whole object from offset 0."""
        self._lookup()

    def _lookup(self) -> asyncio.Future[tuple[str, Optional[str]]]:
        if self._head is None:
            self._head = asyncio.ensure_future(self._checksum())
            self._head.add_done_callback(_retrieve)
        return self._head

    async def _checksum(self) -> tuple[str, Optional[str]]:
        # The HEAD accompanies the reader's GETs: on a client's first read it goes out with
        # the first GET instead of waiting for the endpoint's first answer (ALONGSIDE).
        ALONGSIDE.set(True)  # this task's own context only
        return await self._client.object_checksum(self._bucket, self._key)

    @property
    def active(self) -> bool:
        """Whether ranges are still being recorded (no verdict yet, a checksum to compare)."""
        head = self._head
        if (
            self._active
            and head is not None
            and head.done()
            and not head.cancelled()
            and head.exception() is None
            and head.result()[1] is None
        ):
            self._stop("the object has no full-object CRC32")
        return self._active

    def _stop(self, why: str) -> None:
        logger.debug("s3://%s/%s not checked whole: %s", self._bucket, self._key, why)
        self._active = False
        self._coverage.clear()

    def close(self) -> None:
        """Stop; cancel the HEAD if it is still under way."""
        self._active = False
        if self._head is not None:
            self._head.cancel()

    async def record(
        self, start: int, data: memoryview, size: Optional[int], etag: Optional[str]
    ) -> None:
        """Hash the bytes ``data`` received at ``start``; check the object once all arrived.

        ``size`` and ``etag`` are the object's as the reader knows them.

        Raises:
            S3Exception: The whole object arrived and its CRC32 does not match the one S3
                stored (``code="ChecksumMismatch"``), or the HEAD failed.
        """
        if not self.active or not len(data):
            return
        if start != 0 and self._head is None:
            return  # not (yet) a read from the front: hashing would likely be wasted
        end = start + len(data)
        gaps = self._coverage.gaps(start, end)
        if not gaps:
            return
        if sum(b - a for a, b in gaps) < THREAD_MIN_BYTES:
            crcs = [crc32(data[a - start : b - start]) for a, b in gaps]
        else:
            crcs = await asyncio.to_thread(
                lambda: [crc32(data[a - start : b - start]) for a, b in gaps]
            )
        if not self._active:
            return
        for (a, b), crc in zip(gaps, crcs):
            # Another range may have landed meanwhile: record only what is still missing.
            for c, d in self._coverage.gaps(a, b):
                value = crc if (c, d) == (a, b) else crc32(data[c - start : d - start])
                self._coverage.add(c, d, value)
        if size is None or size == 0:
            return
        actual = self._coverage.whole(size)
        if actual is not None:
            await self._verdict(actual, etag)

    async def _verdict(self, actual: int, etag: Optional[str]) -> None:
        self._active = False  # one verdict; later records are free
        head_etag, expected = await self._lookup()
        if expected is None:
            self._stop("the object has no full-object CRC32")
            return
        if etag and head_etag and head_etag != etag:
            self._stop(f"replaced while read (ETag {head_etag}, read {etag})")
            return
        if crc32_from_b64(expected) == actual:
            return
        # Forget: a read repeated after this error fetches, hashes and checks again.
        self._coverage.clear()
        self._active = True
        raise S3Exception(
            f"Client error: GetObject s3://{self._bucket}/{self._key} failed: the CRC32 of "
            f"the bytes read, {crc32_to_b64(actual)}, does not match the object's checksum "
            f"{expected}; the data was corrupted on the way",
            bucket=self._bucket,
            key=self._key,
            operation="GetObject",
            code="ChecksumMismatch",
        )
