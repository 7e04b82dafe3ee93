"""S3StorageWriter / S3StorageReader construction and planning hooks (no requests sent)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import MetadataIndex
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    ReadItem,
    SavePlan,
)

from s3torch_async import S3ClientConfig
from s3torch_async._user_agent import UserAgent
from s3torch_async.dcp import (
    DefaultPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3FileSystem,
    S3StorageReader,
    S3StorageWriter,
)
from s3torch_async.dcp.s3_file_system import StorageMetadata
from s3torch_async.s3reader import (
    DCPOptimizedConstructor,
    ItemRange,
    S3ReaderConstructor,
)
from tests.dcp._helpers import REGION

pytestmark = pytest.mark.torch

PATH = "s3://test-bucket/test-checkpoint/"


def _user_agent(reader_type: str) -> str:
    return UserAgent(["dcp", torch.__version__, f"md/reader_type#{reader_type}"]).prefix


# -- writer --------------------------------------------------------------------------------


def test_writer_defaults() -> None:
    writer = S3StorageWriter(REGION, PATH)
    assert isinstance(writer.fs, S3FileSystem)
    assert writer.path == PATH
    assert writer.fs._path == PATH
    assert writer.thread_count == 1
    assert writer.sync_files is False
    assert isinstance(writer.prefix_strategy, DefaultPrefixStrategy)
    assert writer.fs._client.user_agent_prefix == _user_agent("sequential")


def test_writer_passes_torch_options_through_and_never_syncs_files() -> None:
    writer = S3StorageWriter(
        REGION,
        PATH,
        thread_count=3,
        overwrite=False,
        single_file_per_rank=False,
        per_thread_copy_ahead=7,
    )
    assert writer.thread_count == 3
    assert writer.overwrite is False
    assert writer.single_file_per_rank is False
    assert writer.per_thread_copy_ahead == 7
    assert writer.sync_files is False


def test_writer_rejects_sync_files_since_it_is_forced() -> None:
    with pytest.raises(TypeError):
        S3StorageWriter(REGION, PATH, sync_files=True)


def test_writer_accepts_invalid_part_size_until_first_use() -> None:
    config = S3ClientConfig(part_size=756)
    writer = S3StorageWriter(REGION, PATH, s3client_config=config)
    assert writer.fs._client.s3client_config.part_size == 756


def test_writer_endpoint_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        S3StorageWriter(REGION, PATH, None, None, 1, "http://127.0.0.1:1")  # type: ignore[misc]
    writer = S3StorageWriter(REGION, PATH, endpoint="http://127.0.0.1:1")
    assert writer.fs._client.endpoint == "http://127.0.0.1:1"


def test_prepare_global_plan_assigns_strategy_prefix_per_rank() -> None:
    writer = S3StorageWriter(
        REGION, PATH, prefix_strategy=RoundRobinPrefixStrategy(["a", "b"], epoch_num=2)
    )
    plans = [SavePlan(items=[], planner_data=rank) for rank in range(3)]
    result = writer.prepare_global_plan(plans)
    assert [plan.storage_data for plan in result] == [
        StorageMetadata("a/epoch_2/__0_"),
        StorageMetadata("b/epoch_2/__1_"),
        StorageMetadata("a/epoch_2/__2_"),
    ]
    assert [plan.planner_data for plan in result] == [0, 1, 2]
    assert all(plan.storage_data is None for plan in plans)


def test_prepare_global_plan_default_prefix_matches_torch_naming() -> None:
    writer = S3StorageWriter(REGION, PATH)
    result = writer.prepare_global_plan([SavePlan(items=[]), SavePlan(items=[])])
    assert [plan.storage_data.prefix for plan in result] == ["__0_", "__1_"]
    assert dataclasses.fields(StorageMetadata)[0].name == "prefix"


@pytest.mark.parametrize("cls", [S3StorageWriter, S3StorageReader])
def test_validate_checkpoint_id_delegates_to_file_system(cls: Any) -> None:
    assert cls.validate_checkpoint_id("s3://bucket/ckpt") is True
    assert cls.validate_checkpoint_id("/local/dir") is False
    assert cls.validate_checkpoint_id("s3:///") is False


# -- reader --------------------------------------------------------------------------------


def test_reader_defaults_to_dcp_optimized() -> None:
    reader = S3StorageReader(REGION, PATH)
    assert isinstance(reader._reader_constructor, DCPOptimizedConstructor)
    assert reader.fs._reader_constructor is reader._reader_constructor
    assert reader.path == PATH
    assert reader.sync_files is False
    assert reader.fs._client.user_agent_prefix == _user_agent("dcp_optimized")


def test_reader_keeps_a_given_constructor() -> None:
    constructor = S3ReaderConstructor.range_based(buffer_size=0)
    reader = S3StorageReader(REGION, PATH, reader_constructor=constructor)
    assert reader.fs._reader_constructor is constructor
    assert reader.fs._client.user_agent_prefix == _user_agent("range_based")


def _plan(offsets: List[int], lengths: List[int]) -> tuple[LoadPlan, Dict[Any, Any]]:
    storage_data: Dict[Any, Any] = {}
    items = []
    for i, (offset, length) in enumerate(zip(offsets, lengths)):
        index = MetadataIndex(fqn=f"item{i}")
        storage_data[index] = _StorageInfo(
            relative_path=f"__{i % 3}_0.distcp", offset=offset, length=length
        )
        items.append(
            ReadItem(
                type=LoadItemType.BYTE_IO,
                dest_index=index,
                dest_offsets=torch.Size([0]),
                storage_index=index,
                storage_offsets=torch.Size([0]),
                lengths=torch.Size([length]),
            )
        )
    return LoadPlan(items), storage_data


def test_prepare_local_plan_accepts_an_empty_plan() -> None:
    reader = S3StorageReader(REGION, PATH)
    plan = LoadPlan([])
    assert reader.prepare_local_plan(plan) is plan
    assert plan.items == []


plans = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 10_000_000), min_size=n, max_size=n),
        st.lists(st.integers(1, 10_000_000), min_size=n, max_size=n),
    )
)


@given(plans)
def test_prepare_local_plan_sorts_items_in_place_by_offset(
    spec: tuple[List[int], List[int]],
) -> None:
    plan, storage_data = _plan(*spec)
    items_list = plan.items
    before = list(plan.items)
    reader = S3StorageReader(
        REGION, PATH, reader_constructor=S3ReaderConstructor.default()
    )
    reader.storage_data = storage_data

    result = reader.prepare_local_plan(plan)

    assert result is plan
    assert plan.items is items_list
    offsets = [storage_data[item.storage_index].offset for item in plan.items]
    assert offsets == sorted(offsets)
    assert sorted(map(id, plan.items)) == sorted(map(id, before))


class _RecordingConstructor(DCPOptimizedConstructor):
    def __init__(self) -> None:
        super().__init__()
        self.calls: List[tuple[Any, Any, Any]] = []

    def set_item_ranges_by_file(
        self, plan_items: List[Any], storage_data: Dict[Any, Any], base_path: Any
    ) -> None:
        self.calls.append((plan_items, storage_data, base_path))
        super().set_item_ranges_by_file(plan_items, storage_data, base_path)


@given(plans)
def test_prepare_local_plan_injects_ranges_once(
    spec: tuple[List[int], List[int]],
) -> None:
    plan, storage_data = _plan(*spec)
    constructor = _RecordingConstructor()
    reader = S3StorageReader(REGION, PATH, reader_constructor=constructor)
    reader.storage_data = storage_data

    reader.prepare_local_plan(plan)

    assert len(constructor.calls) == 1
    items, data, base = constructor.calls[0]
    assert items is plan.items
    assert data is storage_data
    assert base == PATH
    for item in plan.items:
        info = storage_data[item.storage_index]
        ranges = constructor._item_ranges_by_file[f"{PATH}{info.relative_path}"]
        assert ItemRange(info.offset, info.offset + info.length) in ranges
    for ranges in constructor._item_ranges_by_file.values():
        starts = [r.start for r in ranges]
        assert starts == sorted(starts)


@pytest.mark.parametrize(
    "constructor",
    [S3ReaderConstructor.sequential(), S3ReaderConstructor.range_based()],
    ids=["sequential", "range_based"],
)
def test_prepare_local_plan_only_sorts_for_other_constructors(constructor: Any) -> None:
    plan, storage_data = _plan([30, 10, 20], [5, 5, 5])
    reader = S3StorageReader(REGION, PATH, reader_constructor=constructor)
    reader.storage_data = storage_data
    reader.prepare_local_plan(plan)
    assert [storage_data[i.storage_index].offset for i in plan.items] == [10, 20, 30]
    assert not hasattr(constructor, "_item_ranges_by_file")
