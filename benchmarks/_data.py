"""Deterministic payloads and state dicts, so any process can rebuild and verify them.

Object bodies repeat a random block of odd length: cheap to build in one allocation (no
transient second copy that would inflate a worker's peak RSS), and a misplaced byte range would
go unnoticed only if it were off by a multiple of the block length.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Dict, Union

if TYPE_CHECKING:
    import torch

_BLOCK = 1_000_003
#: State dict tensors are this many bytes each (float32), the last one shorter.
TENSOR_BYTES = 16 << 20
#: Bytes compared at each sample offset by :func:`verify_payload`.
_SAMPLE = 4096


@lru_cache(maxsize=4)
def _block(seed: int) -> bytes:
    return random.Random(seed).randbytes(_BLOCK)


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic bytes for ``seed``."""
    block = _block(seed)
    full, rest = divmod(size, _BLOCK)
    return b"".join([block] * full + [block[:rest]])


def payload_slice(start: int, stop: int, seed: int = 0) -> bytes:
    """Bytes ``[start, stop)`` of :func:`payload` without building the whole payload."""
    block = _block(seed)
    out = bytearray()
    pos = start
    while pos < stop:
        offset = pos % _BLOCK
        take = min(_BLOCK - offset, stop - pos)
        out += block[offset : offset + take]
        pos += take
    return bytes(out)


def sample_offsets(size: int) -> list[int]:
    """A few offsets worth checking in an object of ``size`` bytes (start, middle, end)."""
    if size <= _SAMPLE:
        return [0] if size else []
    candidates = {0, size // 3, size // 2, (2 * size) // 3, size - _SAMPLE}
    return sorted(candidates)


def verify_payload(
    data: Union[bytes, bytearray, memoryview], size: int, seed: int = 0
) -> None:
    """Check length and sampled contents of ``data`` against ``payload(size, seed)``.

    Raises:
        AssertionError: The data differs.
    """
    view = memoryview(data).cast("B")
    if len(view) != size:
        raise AssertionError(f"read {len(view)} bytes, expected {size}")
    for offset in sample_offsets(size):
        stop = min(size, offset + _SAMPLE)
        if view[offset:stop] != payload_slice(offset, stop, seed):
            raise AssertionError(f"bytes at offset {offset} differ from the payload")


def tensor_sizes(total_bytes: int) -> list[int]:
    """Element counts (float32) of the state dict's tensors for ``total_bytes``."""
    counts = []
    remaining = total_bytes
    while remaining > 0:
        take = min(TENSOR_BYTES, remaining)
        counts.append(max(1, take // 4))
        remaining -= take
    return counts


def make_state_dict(total_bytes: int) -> Dict[str, torch.Tensor]:
    """A state dict of float32 tensors totalling about ``total_bytes``; tensor ``i`` is seeded by ``i``."""
    import torch

    out: Dict[str, torch.Tensor] = {}
    for i, count in enumerate(tensor_sizes(total_bytes)):
        gen = torch.Generator().manual_seed(i)
        out[f"layer{i:03d}.weight"] = torch.rand(count, generator=gen)
    return out


def empty_state_dict(total_bytes: int) -> Dict[str, torch.Tensor]:
    """Zeroed tensors of the same shapes, the template a DCP load fills in place."""
    import torch

    return {
        f"layer{i:03d}.weight": torch.zeros(count)
        for i, count in enumerate(tensor_sizes(total_bytes))
    }


def verify_state_dict(state: Dict[str, Any], total_bytes: int) -> None:
    """Check names and shapes of every tensor and the contents of the first and last.

    Raises:
        AssertionError: The state dict differs.
    """
    import torch

    counts = tensor_sizes(total_bytes)
    names = [f"layer{i:03d}.weight" for i in range(len(counts))]
    if sorted(state) != names:
        raise AssertionError(f"state dict keys differ: {sorted(state)[:3]}...")
    for name, count in zip(names, counts):
        if tuple(state[name].shape) != (count,):
            raise AssertionError(f"{name} has shape {tuple(state[name].shape)}")
    for i in {0, len(counts) - 1}:
        gen = torch.Generator().manual_seed(i)
        if not torch.equal(state[names[i]], torch.rand(counts[i], generator=gen)):
            raise AssertionError(f"{names[i]} differs from the saved tensor")


def state_dict_nbytes(total_bytes: int) -> int:
    """The exact tensor bytes of :func:`make_state_dict` (``total_bytes`` rounded to floats)."""
    return 4 * sum(tensor_sizes(total_bytes))
