"""Prefix strategies: where each rank's DCP data files go under the checkpoint path.

S3 scales request rates per key prefix, so spreading the ranks' ``.distcp`` files over several
prefixes avoids throttling when many ranks save at once. A strategy maps a rank to the
file-name prefix ``S3StorageWriter`` gives that rank's files (``{prefix}{n}.distcp``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, List, Optional

import torch.distributed as dist

__all__ = [
    "BinaryPrefixStrategy",
    "DefaultPrefixStrategy",
    "HexPrefixStrategy",
    "NumericPrefixStrategy",
    "RoundRobinPrefixStrategy",
    "S3PrefixStrategyBase",
]


def _epoch_segment(epoch_num: Optional[int]) -> str:
    return "" if epoch_num is None else f"epoch_{epoch_num}/"


class S3PrefixStrategyBase(ABC):
    """Base class of the strategies that generate a rank's storage prefix.

    Subclasses implement :meth:`generate_prefix`; calling the strategy delegates to it.
    """

    def __call__(self, rank: int) -> str:
        """Generate the prefix for ``rank`` (same as :meth:`generate_prefix`).

        Args:
            rank: Process rank in the distributed job.

        Returns:
            str: The prefix of the rank's data files.
        """
        return self.generate_prefix(rank)

    @abstractmethod
    def generate_prefix(self, rank: int) -> str:
        """Generate the storage prefix for ``rank``.

        Args:
            rank: Process rank in the distributed job.

        Returns:
            str: The prefix of the rank's data files.
        """


class DefaultPrefixStrategy(S3PrefixStrategyBase):
    """Torch's naming: every rank's files directly under the checkpoint path (``__{rank}_``)."""

    def generate_prefix(self, rank: int) -> str:
        """Generate ``__{rank}_``.

        Args:
            rank: Process rank in the distributed job.

        Returns:
            str: The prefix, e.g. ``"__3_"``.
        """
        return f"__{rank}_"


class NumericPrefixStrategy(S3PrefixStrategyBase):
    """Base class of the strategies that spread ranks over reversed base-N number prefixes.

    ``prefix_count`` prefixes are generated: the numbers ``0 .. prefix_count - 1`` written in
    ``base`` with at least ``min_prefix_length`` digits, then reversed so that the fastest
    changing digit comes first (S3 partitions on the leading characters). Rank ``r`` uses
    prefix ``r % prefix_count``: ``{prefix}/[epoch_{epoch_num}/]__{r}_``.

    Args:
        base: Numeric base of the prefixes, e.g. 2 or 16.
        epoch_num: Epoch number added as an ``epoch_{n}/`` path segment; ``None`` for none.
        min_prefix_length: Minimum number of digits of each prefix.
        prefix_count: Number of distinct prefixes; defaults to the world size when
            ``torch.distributed`` is initialized when the strategy is built, otherwise 1.

    Raises:
        ValueError: ``min_prefix_length`` is less than 1, ``epoch_num`` is not ``None`` or an
            integer, or ``prefix_count`` is not a positive integer.
    """

    def __init__(
        self,
        base: int,
        epoch_num: Optional[int] = None,
        min_prefix_length: int = 10,
        prefix_count: Optional[int] = None,
    ) -> None:
        if min_prefix_length < 1:
            raise ValueError(
                f"Minimum prefix length must be positive, got {min_prefix_length}"
            )
        if epoch_num is not None and not isinstance(epoch_num, int):
            raise ValueError(
                f"Epoch number must be None or an integer, got {epoch_num}"
            )
        if prefix_count is not None and (
            not isinstance(prefix_count, int) or prefix_count < 1
        ):
            raise ValueError(
                f"Prefix count must be a positive integer, got {prefix_count}"
            )
        super().__init__()
        self.base = base
        self.epoch_num = epoch_num
        self.min_prefix_len = min_prefix_length
        if prefix_count is None:
            prefix_count = _world_size()
        self.prefix_count = prefix_count
        self.prefix_map = self._generate_prefix_map()

    def generate_prefix(self, rank: int) -> str:
        """Generate ``{prefix}/[epoch_{epoch_num}/]__{rank}_`` for ``rank``.

        Args:
            rank: Process rank in the distributed job.

        Returns:
            str: The prefix, e.g. ``"a000000000/__10_"`` for rank 10 with hex prefixes.
        """
        prefix = self.prefix_map[rank % len(self.prefix_map)]
        return f"{prefix}/{_epoch_segment(self.epoch_num)}__{rank}_"

    def _generate_prefix_map(self) -> List[str]:
        length = max(self._calculate_prefix_length(), self.min_prefix_len)
        return [
            self._format_number(number, length)[::-1]
            for number in range(self.prefix_count)
        ]

    def _calculate_prefix_length(self) -> int:
        """Fewest digits (at least one) that give ``prefix_count`` distinct numbers."""
        digits, capacity = 1, self.base
        while capacity < self.prefix_count:
            digits += 1
            capacity *= self.base
        return digits

    @abstractmethod
    def _format_number(self, number: int, length: int) -> str:
        """``number`` in this strategy's base, zero-padded to ``length`` digits."""


class _FixedBasePrefixStrategy(NumericPrefixStrategy):
    """A numeric strategy whose base is fixed by the subclass (``_BASE``)."""

    _BASE: int

    def __init__(
        self,
        epoch_num: Optional[int] = None,
        min_prefix_length: int = 10,
        prefix_count: Optional[int] = None,
    ) -> None:
        super().__init__(
            base=self._BASE,
            epoch_num=epoch_num,
            min_prefix_length=min_prefix_length,
            prefix_count=prefix_count,
        )


class BinaryPrefixStrategy(_FixedBasePrefixStrategy):
    """Reversed binary prefixes (``0000000000``, ``1000000000``, ``0100000000``, ...).

    Args:
        epoch_num: Epoch number added as an ``epoch_{n}/`` path segment; ``None`` for none.
        min_prefix_length: Minimum number of digits of each prefix.
        prefix_count: Number of distinct prefixes; defaults to the world size (or 1).

    Raises:
        ValueError: An argument is invalid (see :class:`NumericPrefixStrategy`).
    """

    _BASE = 2

    def _format_number(self, number: int, length: int) -> str:
        return format(number, f"0{length}b")


class HexPrefixStrategy(_FixedBasePrefixStrategy):
    """Reversed hexadecimal prefixes (``0000000000``, ``1000000000``, ... ``a000000000``, ...).

    Args:
        epoch_num: Epoch number added as an ``epoch_{n}/`` path segment; ``None`` for none.
        min_prefix_length: Minimum number of digits of each prefix.
        prefix_count: Number of distinct prefixes; defaults to the world size (or 1).

    Raises:
        ValueError: An argument is invalid (see :class:`NumericPrefixStrategy`).
    """

    _BASE = 16

    def _format_number(self, number: int, length: int) -> str:
        return format(number, f"0{length}x")


class RoundRobinPrefixStrategy(S3PrefixStrategyBase):
    """Spread ranks over prefixes of your choice, in turn.

    Rank ``r`` uses ``{user_prefixes[r % len(user_prefixes)]}/[epoch_{epoch_num}/]__{r}_``.

    Args:
        user_prefixes: The prefixes to cycle through.
        epoch_num: Epoch number added as an ``epoch_{n}/`` path segment; ``None`` for none.

    Raises:
        ValueError: ``user_prefixes`` is empty.
    """

    def __init__(
        self, user_prefixes: List[str], epoch_num: Optional[int] = None
    ) -> None:
        super().__init__()
        if not user_prefixes:
            raise ValueError("user_prefixes must not be empty")
        self.user_prefixes = user_prefixes
        self.epoch_num = epoch_num

    def generate_prefix(self, rank: int) -> str:
        """Generate ``{user_prefix}/[epoch_{epoch_num}/]__{rank}_`` for ``rank``.

        Args:
            rank: Process rank in the distributed job.

        Returns:
            str: The prefix, e.g. ``"shard1/epoch_5/__0_"``.
        """
        prefix = self.user_prefixes[rank % len(self.user_prefixes)]
        return f"{prefix}/{_epoch_segment(self.epoch_num)}__{rank}_"


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        size: Any = dist.get_world_size()
        return int(size)
    return 1
