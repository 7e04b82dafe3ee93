from __future__ import annotations

import dataclasses
import pickle

import pytest

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async._config import validate_for_use

MiB = 1024 * 1024
GiB = 1024 * MiB


def test_defaults_match_reference():
    cfg = S3ClientConfig()
    assert dataclasses.asdict(cfg) == {
        "throughput_target_gbps": 10.0,
        "part_size": 8 * MiB,
        "unsigned": False,
        "force_path_style": False,
        "max_attempts": 10,
        "profile": None,
        "requester_pays": False,
    }
    assert [f.name for f in dataclasses.fields(cfg)] == [
        "throughput_target_gbps",
        "part_size",
        "unsigned",
        "force_path_style",
        "max_attempts",
        "profile",
        "requester_pays",
    ]


def test_config_is_frozen_hashable_and_compared_by_value():
    cfg = S3ClientConfig(part_size=16 * MiB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.part_size = 1  # type: ignore[misc]
    assert cfg == S3ClientConfig(part_size=16 * MiB)
    assert hash(cfg) == hash(S3ClientConfig(part_size=16 * MiB))
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_requester_pays_with_unsigned_fails_eagerly():
    with pytest.raises(
        ValueError, match=r"^requester_pays=True requires authenticated requests"
    ):
        S3ClientConfig(requester_pays=True, unsigned=True)


@pytest.mark.parametrize("part_size", [1, 2 * 1024, 5 * MiB - 1, 5 * GiB + 1, 6 * GiB])
def test_invalid_part_size_is_accepted_at_construction_and_fails_at_use(part_size):
    cfg = S3ClientConfig(part_size=part_size)  # must not raise: code relies on it
    with pytest.raises(
        S3Exception,
        match="invalid configuration: part size must be at between 5MiB and 5GiB",
    ) as info:
        validate_for_use(cfg)
    assert str(part_size) in str(info.value)


@pytest.mark.parametrize("part_size", [5 * MiB, 5 * GiB])
def test_part_size_bounds_are_inclusive(part_size):
    validate_for_use(S3ClientConfig(part_size=part_size))


@pytest.mark.parametrize("attempts", [0, -1])
def test_max_attempts_below_one_fails_at_use(attempts):
    cfg = S3ClientConfig(max_attempts=attempts)
    with pytest.raises(S3Exception, match="max_attempts"):
        validate_for_use(cfg)
