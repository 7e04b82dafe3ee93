"""Helpers shared by the client modules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Callable, Optional

from .._data import payload, verify_payload
from .._model import Job, MiB, Outcome

#: Stream-like writers get the payload in slices of this size (as a producer would).
WRITE_CHUNK = 8 * MiB


def read_len(reader: Any) -> int:
    """Dataset transform: read the whole object, hand back only its length (cheap to pickle)."""
    return len(reader.read())


def write_payload(job: Job) -> bytes:
    """The bytes case 3 writes (seed 1, distinct from the read object)."""
    return payload(job.sizes.write_size, seed=1)


def slices(data: bytes, chunk: int = WRITE_CHUNK) -> list[memoryview]:
    """Zero-copy slices of ``data``."""
    view = memoryview(data)
    return [view[i : i + chunk] for i in range(0, len(view), chunk)]


def read_outcome(data: Any, job: Job) -> Outcome:
    """Outcome of case 1: the object, verified against the payload after timing."""
    size = job.sizes.read_size
    return Outcome(
        nbytes=len(data), nobjects=1, check=lambda: verify_payload(data, size)
    )


def many_outcome(total: int, count: int, job: Job) -> Outcome:
    """Outcome of case 2: every small object read exactly once."""
    expected_count, size = job.sizes.small_count, job.sizes.small_size

    def check() -> None:
        if (count, total) != (expected_count, expected_count * size):
            raise AssertionError(
                f"read {count} objects / {total} bytes, expected "
                f"{expected_count} / {expected_count * size}"
            )

    return Outcome(nbytes=total, nobjects=count, check=check)


def list_outcome(count: int, job: Job) -> Outcome:
    """Outcome of case 4: every key listed exactly once."""
    expected = job.sizes.list_count

    def check() -> None:
        if count != expected:
            raise AssertionError(f"listed {count} keys, expected {expected}")

    return Outcome(nobjects=count, check=check)


class LoopHolder:
    """An event loop kept across setup (warm-up) and the timed run, closed afterwards."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to completion on the held loop."""
        return self.loop.run_until_complete(coro)

    def closer(
        self, aclose: Optional[Callable[[], Coroutine[Any, Any, Any]]]
    ) -> Callable[[], None]:
        """A cleanup callable: await ``aclose()`` (if given), then close the loop."""

        def cleanup() -> None:
            if aclose is not None:
                self.loop.run_until_complete(aclose())
            self.loop.close()

        return cleanup
