"""Prefix strategies: every documented example and validation message."""

from __future__ import annotations

from typing import Any

import pytest
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st

import s3torch_async.dcp as dcp_pkg
from s3torch_async.dcp import (
    BinaryPrefixStrategy,
    DefaultPrefixStrategy,
    HexPrefixStrategy,
    NumericPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3PrefixStrategyBase,
    s3_prefix_strategy,
)

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    ("rank", "expected"), [(0, "__0_"), (1, "__1_"), (100, "__100_"), (-1, "__-1_")]
)
def test_default_strategy_prefixes_rank_like_torch(rank: int, expected: str) -> None:
    strategy = DefaultPrefixStrategy()
    assert strategy.generate_prefix(rank) == expected
    assert strategy(rank) == expected


def test_base_strategy_is_abstract() -> None:
    with pytest.raises(TypeError):
        S3PrefixStrategyBase()  # type: ignore[abstract]


def test_numeric_strategy_needs_a_number_format() -> None:
    with pytest.raises(TypeError):
        NumericPrefixStrategy(base=16)  # type: ignore[abstract]


def test_custom_strategy_is_called_through_generate_prefix() -> None:
    class PerRank(S3PrefixStrategyBase):
        def generate_prefix(self, rank: int) -> str:
            return f"rank_{rank}/data_"

    assert PerRank()(2) == "rank_2/data_"


def test_binary_strategy_reverses_digits_so_entropy_comes_first() -> None:
    strategy = BinaryPrefixStrategy(prefix_count=4)
    assert strategy.prefix_map == [
        "0000000000",
        "1000000000",
        "0100000000",
        "1100000000",
    ]
    assert [strategy(rank) for rank in range(5)] == [
        "0000000000/__0_",
        "1000000000/__1_",
        "0100000000/__2_",
        "1100000000/__3_",
        "0000000000/__4_",
    ]


def test_hex_strategy_rank_ten_uses_prefix_a() -> None:
    assert HexPrefixStrategy(prefix_count=16)(10) == "a000000000/__10_"


def test_hex_strategy_grows_digits_and_wraps_ranks_past_prefix_count() -> None:
    strategy = HexPrefixStrategy(prefix_count=257)
    assert strategy(256) == "0010000000/__256_"
    assert strategy(257) == "0000000000/__257_"


def test_epoch_number_adds_a_path_segment() -> None:
    assert HexPrefixStrategy(epoch_num=5, prefix_count=16)(10) == (
        "a000000000/epoch_5/__10_"
    )
    assert BinaryPrefixStrategy(epoch_num=0, prefix_count=2)(1) == (
        "1000000000/epoch_0/__1_"
    )


def test_short_minimum_length_still_fits_every_prefix() -> None:
    assert HexPrefixStrategy(min_prefix_length=1, prefix_count=16).prefix_map[15] == "f"
    # 17 prefixes need two hex digits: 16 is "10", reversed "01".
    strategy = HexPrefixStrategy(min_prefix_length=1, prefix_count=17)
    assert strategy(16) == "01/__16_"
    assert strategy(1) == "10/__1_"


def test_prefix_count_defaults_to_one_without_a_process_group() -> None:
    assert not dist.is_initialized()
    strategy = HexPrefixStrategy()
    assert strategy.prefix_count == 1
    assert {strategy(rank).split("/")[0] for rank in range(8)} == {"0000000000"}


def test_prefix_count_defaults_to_world_size_read_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 4)
    strategy = BinaryPrefixStrategy()
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 8)
    assert strategy.prefix_count == 4
    assert len(strategy.prefix_map) == 4
    assert strategy(4) == "0000000000/__4_"


@pytest.mark.parametrize("value", [0, -1])
def test_min_prefix_length_must_be_positive(value: int) -> None:
    with pytest.raises(ValueError) as info:
        HexPrefixStrategy(min_prefix_length=value)
    assert str(info.value) == f"Minimum prefix length must be positive, got {value}"


@pytest.mark.parametrize("value", ["5", 1.5, [1]])
def test_epoch_number_must_be_none_or_int(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        BinaryPrefixStrategy(epoch_num=value)
    assert str(info.value) == f"Epoch number must be None or an integer, got {value}"


@pytest.mark.parametrize("value", [0, -3, "3", 2.0])
def test_prefix_count_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        HexPrefixStrategy(prefix_count=value)
    assert str(info.value) == f"Prefix count must be a positive integer, got {value}"


def test_min_prefix_length_is_checked_before_the_other_arguments() -> None:
    with pytest.raises(ValueError, match=r"^Minimum prefix length"):
        HexPrefixStrategy(epoch_num="x", min_prefix_length=0, prefix_count=0)  # type: ignore[arg-type]


@given(
    base_cls=st.sampled_from([BinaryPrefixStrategy, HexPrefixStrategy]),
    prefix_count=st.integers(1, 600),
    min_len=st.integers(1, 12),
    rank=st.integers(0, 10_000),
)
def test_numeric_prefixes_are_distinct_fixed_width_and_cycle_by_rank(
    base_cls: Any, prefix_count: int, min_len: int, rank: int
) -> None:
    strategy = base_cls(min_prefix_length=min_len, prefix_count=prefix_count)
    prefixes = strategy.prefix_map
    alphabet = (
        set("01") if base_cls is BinaryPrefixStrategy else set("0123456789abcdef")
    )
    assert len(prefixes) == prefix_count
    assert len(set(prefixes)) == prefix_count
    assert len({len(p) for p in prefixes}) == 1
    assert len(prefixes[0]) >= min_len
    assert all(set(p) <= alphabet for p in prefixes)
    base = 2 if base_cls is BinaryPrefixStrategy else 16
    assert int(prefixes[rank % prefix_count][::-1], base) == rank % prefix_count
    assert strategy(rank) == f"{prefixes[rank % prefix_count]}/__{rank}_"


def test_round_robin_cycles_through_user_prefixes() -> None:
    strategy = RoundRobinPrefixStrategy(["shard1", "shard2", "shard3"])
    assert [strategy(rank) for rank in range(4)] == [
        "shard1/__0_",
        "shard2/__1_",
        "shard3/__2_",
        "shard1/__3_",
    ]


def test_round_robin_with_epoch() -> None:
    strategy = RoundRobinPrefixStrategy(["shard1", "shard2"], epoch_num=5)
    assert strategy(0) == "shard1/epoch_5/__0_"
    assert strategy.generate_prefix(3) == "shard2/epoch_5/__3_"


def test_round_robin_rejects_empty_prefix_list() -> None:
    with pytest.raises(ValueError) as info:
        RoundRobinPrefixStrategy([])
    assert str(info.value) == "user_prefixes must not be empty"


def test_round_robin_is_exported_from_the_package_and_its_module() -> None:
    assert (
        dcp_pkg.RoundRobinPrefixStrategy is s3_prefix_strategy.RoundRobinPrefixStrategy
    )
    assert "RoundRobinPrefixStrategy" in dcp_pkg.__all__


def test_package_exports_are_the_reference_names_plus_round_robin() -> None:
    assert sorted(dcp_pkg.__all__) == [
        "BinaryPrefixStrategy",
        "DefaultPrefixStrategy",
        "HexPrefixStrategy",
        "NumericPrefixStrategy",
        "RoundRobinPrefixStrategy",
        "S3FileSystem",
        "S3PrefixStrategyBase",
        "S3StorageReader",
        "S3StorageWriter",
    ]
    for name in dcp_pkg.__all__:
        assert hasattr(dcp_pkg, name)
