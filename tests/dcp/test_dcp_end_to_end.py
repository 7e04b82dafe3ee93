"""torch.distributed.checkpoint save/load through S3StorageWriter/S3StorageReader on moto.

Single process, no process group: torch warns that it assumes a single process.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, Dict

import pytest
import torch
from torch.distributed.checkpoint import state_dict_loader, state_dict_saver
from torch.distributed.checkpoint.api import CheckpointException

from s3torch_async._s3client import S3Client
from s3torch_async.dcp import (
    HexPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3FileSystem,
    S3PrefixStrategyBase,
    S3StorageReader,
    S3StorageWriter,
)
from s3torch_async.s3reader import S3ReaderConstructor
from tests.dcp._helpers import NO_RETRY, REGION, load, save

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]

READERS: Dict[str, Callable[[], Any]] = {
    "default": lambda: None,
    "dcp_optimized_no_gap": lambda: S3ReaderConstructor.dcp_optimized(0),
    "sequential": S3ReaderConstructor.sequential,
    "range_based": S3ReaderConstructor.range_based,
    "range_based_unbuffered": lambda: S3ReaderConstructor.range_based(buffer_size=0),
}


@pytest.fixture(params=list(READERS))
def reader_constructor(request: pytest.FixtureRequest) -> Any:
    return READERS[request.param]()


def state_dict(seed: int = 0) -> Dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32)
    )
    return {
        "model": model.state_dict(),
        "big": torch.randn(256, 256),
        "ints": torch.arange(1000, dtype=torch.int64),
        "step": 42 + seed,
        "meta": {"name": f"run-{seed}", "lr": [0.1, 0.01]},
    }


def zeros_like(sd: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in sd.items():
        if isinstance(value, torch.Tensor):
            out[name] = torch.zeros_like(value)
        elif isinstance(value, dict):
            out[name] = zeros_like(value)
        else:
            out[name] = None
    return out


def assert_equal(actual: Any, expected: Any) -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for name in expected:
            assert_equal(actual[name], expected[name])
    else:
        assert actual == expected


def keys(boto_s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = boto_s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_save_writes_one_data_file_and_metadata(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    save(state_dict(), f"s3://{bucket}/ckpt", endpoint)
    assert keys(boto_s3, bucket) == ["ckpt/.metadata", "ckpt/__0_0.distcp"]


def test_load_restores_every_value(
    endpoint: str, bucket: str, reader_constructor: Any
) -> None:
    expected = state_dict()
    path = f"s3://{bucket}/ckpt"
    save(expected, path, endpoint)
    loaded = zeros_like(expected)
    load(loaded, path, endpoint, reader_constructor)
    assert_equal(loaded, expected)


def test_partial_load_restores_only_requested_keys(
    endpoint: str, bucket: str, reader_constructor: Any
) -> None:
    expected = state_dict()
    path = f"s3://{bucket}/ckpt"
    save(expected, path, endpoint)
    partial: Dict[str, Any] = {
        "model": {
            "0.weight": torch.zeros(128, 64),
            "2.weight": torch.zeros(32, 128),
        },
        "step": None,
    }
    load(partial, path, endpoint, reader_constructor)
    assert torch.equal(partial["model"]["0.weight"], expected["model"]["0.weight"])
    assert torch.equal(partial["model"]["2.weight"], expected["model"]["2.weight"])
    assert partial["step"] == 42
    assert set(partial["model"]) == {"0.weight", "2.weight"}


def test_thread_count_writes_one_file_per_thread_plus_metadata(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    expected = state_dict()
    path = f"s3://{bucket}/ckpt"
    save(expected, path, endpoint, thread_count=2)
    assert keys(boto_s3, bucket) == [
        "ckpt/.metadata",
        "ckpt/__0_0.distcp",
        "ckpt/__0_1.distcp",
    ]
    loaded = zeros_like(expected)
    load(loaded, path, endpoint)
    assert_equal(loaded, expected)


def test_overwrite_false_refuses_an_existing_checkpoint(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    path = f"s3://{bucket}/ckpt"
    save(state_dict(0), path, endpoint)
    before = boto_s3.get_object(Bucket=bucket, Key="ckpt/.metadata")["Body"].read()
    with pytest.raises(CheckpointException, match="Checkpoint already exists"):
        save(state_dict(1), path, endpoint, overwrite=False)
    after = boto_s3.get_object(Bucket=bucket, Key="ckpt/.metadata")["Body"].read()
    assert after == before


@pytest.mark.filterwarnings("ignore:Detected an existing checkpoint:UserWarning")
def test_overwrite_replaces_an_existing_checkpoint(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    path = f"s3://{bucket}/ckpt"
    save(state_dict(0), path, endpoint)
    second = state_dict(1)
    save(second, path, endpoint)
    # The new data file has a name of its own; the superseded one is gone.
    now = keys(boto_s3, bucket)
    assert now[0] == "ckpt/.metadata"
    assert len(now) == 2
    assert now[1] != "ckpt/__0_0.distcp"
    assert now[1].startswith("ckpt/__0_")
    loaded = zeros_like(second)
    load(loaded, path, endpoint)
    assert_equal(loaded, second)


@pytest.mark.parametrize(
    ("strategy", "data_key"),
    [
        (
            RoundRobinPrefixStrategy(["shard1", "shard2"], epoch_num=5),
            "shard1/epoch_5/__0_0",
        ),
        (HexPrefixStrategy(prefix_count=4), "0000000000/__0_0"),
    ],
    ids=["round_robin", "hex"],
)
def test_prefix_strategy_places_data_files_under_its_prefix(
    endpoint: str,
    bucket: str,
    boto_s3: Any,
    strategy: S3PrefixStrategyBase,
    data_key: str,
) -> None:
    expected = state_dict()
    path = f"s3://{bucket}/ckpt"
    save(expected, path, endpoint, prefix_strategy=strategy)
    assert keys(boto_s3, bucket) == ["ckpt/.metadata", f"ckpt/{data_key}.distcp"]
    loaded = zeros_like(expected)
    load(loaded, path, endpoint)
    assert_equal(loaded, expected)


def test_checkpoint_id_redirects_writer_and_reader(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    expected = state_dict()
    writer = S3StorageWriter(
        REGION, f"s3://{bucket}/unused", s3client_config=NO_RETRY, endpoint=endpoint
    )
    state_dict_saver.save(
        expected, checkpoint_id=f"s3://{bucket}/other", storage_writer=writer
    )
    assert keys(boto_s3, bucket) == ["other/.metadata", "other/__0_0.distcp"]
    reader = S3StorageReader(
        REGION, f"s3://{bucket}/unused", s3client_config=NO_RETRY, endpoint=endpoint
    )
    loaded = zeros_like(expected)
    state_dict_loader.load(
        loaded, checkpoint_id=f"s3://{bucket}/other", storage_reader=reader
    )
    assert_equal(loaded, expected)


def test_dcp_optimized_reader_without_planned_ranges_points_to_the_fallback(
    endpoint: str, bucket: str
) -> None:
    path = f"s3://{bucket}/ckpt"
    save(state_dict(), path, endpoint)
    reader = S3StorageReader(REGION, path, s3client_config=NO_RETRY, endpoint=endpoint)
    # .metadata always gets the sequential reader; data files need prepare_local_plan first.
    assert reader.read_metadata().storage_data
    with (
        pytest.raises(ValueError) as info,
        reader.fs.create_stream(f"{path}/__0_0.distcp", "rb") as stream,
    ):
        stream.read(1)
    message = str(info.value)
    assert message.startswith(f"No ranges found for {path}/__0_0.distcp.")
    assert "S3ReaderConstructor.default()" in message


def test_async_save_commits_a_loadable_checkpoint(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    expected = state_dict()
    path = f"s3://{bucket}/ckpt"
    writer = S3StorageWriter(REGION, path, s3client_config=NO_RETRY, endpoint=endpoint)
    future = state_dict_saver.async_save(expected, storage_writer=writer)
    assert isinstance(future, Future)
    metadata = future.result(timeout=60)
    assert metadata.storage_meta is not None
    assert metadata.storage_meta.checkpoint_id == path
    assert keys(boto_s3, bucket) == ["ckpt/.metadata", "ckpt/__0_0.distcp"]
    loaded = zeros_like(expected)
    load(loaded, path, endpoint)
    assert_equal(loaded, expected)


def test_replacing_the_file_system_still_gets_planned_ranges(
    endpoint: str, bucket: str
) -> None:
    # The reference's workaround for its missing endpoint argument keeps working.
    expected = state_dict()
    path = f"s3://{bucket}/ckpt"
    save(expected, path, endpoint)
    reader = S3StorageReader(REGION, path)
    reader.fs = S3FileSystem(
        REGION,
        s3_client=S3Client(REGION, endpoint=endpoint, s3client_config=NO_RETRY),
        reader_constructor=S3ReaderConstructor.dcp_optimized(),
    )
    loaded = zeros_like(expected)
    state_dict_loader.load(loaded, storage_reader=reader)
    assert_equal(loaded, expected)
