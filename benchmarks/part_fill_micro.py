"""CPU to copy 1 GiB into upload part buffers and take its CRC32, per way of doing it.

The writer copies mutable input into 8 MiB part buffers (``PartAssembler``), reusing up to 27
of them (23 parts in flight, one held, one filling: case 3's shape). This measures, in one
process and interleaved, the CPU seconds per GiB of::

    shared-8M-then-hash   shared anonymous mmap (``mmap.mmap(-1, n)``), part copied whole,
                          then hashed whole (the old writer, minus the worker-thread hop; there
                          the hash ran later still, from memory)
    shared-256K-fused     the same buffers, each 256 KiB slice hashed right after its copy
    private-256K-fused    private anonymous buffers, fused
    populate-256K-fused   private buffers mapped at once (``MAP_POPULATE``), fused (the writer
                          now, past the first part)
    populate-copy-only    the copy alone, for reference

Run: ``python -m benchmarks.part_fill_micro`` (``--repeat``). Numbers of this session are in
``benchmarks/results/writecpu-issue16.md``.
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import time

from s3torch_async._core._checksum import CRC32_BACKEND, crc32

PART = 8 << 20
BUFFERS = 27
_PRIVATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def fill(src: memoryview, kind: str, piece: int, hashing: bool) -> float:
    """CPU seconds to copy ``src`` into part buffers ``piece`` bytes at a time (and hash)."""
    started = time.process_time()
    bufs: list[mmap.mmap] = []
    for number, pos in enumerate(range(0, len(src), PART)):
        if number < BUFFERS:
            if kind == "shared":
                bufs.append(mmap.mmap(-1, PART))
            elif kind == "private":
                bufs.append(mmap.mmap(-1, PART, flags=_PRIVATE))
            else:
                bufs.append(mmap.mmap(-1, PART, flags=_PRIVATE | _POPULATE))
        buf = bufs[number % BUFFERS]
        value = 0
        for at in range(0, PART, piece):
            buf[at : at + piece] = src[pos + at : pos + at + piece]
            if hashing and piece < PART:
                value = crc32(memoryview(buf)[at : at + piece], value)
        if hashing and piece == PART:
            value = crc32(buf)
    return time.process_time() - started


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.part_fill_micro")
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    src = memoryview(bytearray(os.urandom(1 << 30)))
    ways = {
        "shared-8M-then-hash": ("shared", PART, True),
        "shared-256K-fused": ("shared", 256 << 10, True),
        "private-256K-fused": ("private", 256 << 10, True),
        "populate-256K-fused": ("populate", 256 << 10, True),
        "populate-copy-only": ("populate", PART, False),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for rep in range(args.repeat):
        order = list(ways) if rep % 2 == 0 else list(reversed(ways))
        for name in order:
            results[name].append(fill(src, *ways[name]))
    print(f"CRC32 backend {CRC32_BACKEND}; CPU-s per GiB, median of {args.repeat}:")
    for name, values in results.items():
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"  {name:22} {statistics.median(values):.3f}  [{runs}]")


if __name__ == "__main__":
    main()
