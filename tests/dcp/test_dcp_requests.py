"""What DCP save/load sends on the wire, observed through the fault proxy's request log."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from torch.distributed.checkpoint import state_dict_loader, state_dict_saver

from s3torch_async.dcp import S3StorageReader, S3StorageWriter
from s3torch_async.s3reader import S3ReaderConstructor
from tests._faultproxy import FaultProxy
from tests.dcp._helpers import NO_RETRY, REGION

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]

LAYERS = 3


def model_state() -> Dict[str, torch.Tensor]:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 64) for _ in range(LAYERS)]
    return dict(torch.nn.Sequential(*layers).state_dict())


def weights_only() -> Dict[str, torch.Tensor]:
    return {f"{i}.weight": torch.zeros(64, 64) for i in range(LAYERS)}


def distcp_requests(proxy: FaultProxy) -> List[Tuple[str, Optional[str]]]:
    out = []
    for method, raw_path, headers in proxy.requests:
        if ".distcp" in raw_path:
            lowered = {k.lower(): v for k, v in headers.items()}
            out.append((method, lowered.get("range")))
    return out


def byte_ranges(requests: List[Tuple[str, Optional[str]]]) -> List[Tuple[int, int]]:
    ranges = []
    for method, header in requests:
        assert method == "GET"
        assert header is not None, "every data-file GET is ranged"
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", header)
        assert match, header
        ranges.append((int(match.group(1)), int(match.group(2)) + 1))
    return ranges


@pytest.fixture
def checkpoint(endpoint: str, bucket: str, boto_s3: Any) -> Tuple[str, int]:
    path = f"s3://{bucket}/ckpt"
    writer = S3StorageWriter(REGION, path, s3client_config=NO_RETRY, endpoint=endpoint)
    state_dict_saver.save(model_state(), storage_writer=writer)
    size = boto_s3.head_object(Bucket=bucket, Key="ckpt/__0_0.distcp")["ContentLength"]
    return path, int(size)


def load_through(proxy: FaultProxy, path: str, constructor: Any) -> Dict[str, Any]:
    sd: Dict[str, Any] = weights_only()
    reader = S3StorageReader(
        REGION,
        path,
        s3client_config=NO_RETRY,
        reader_constructor=constructor,
        endpoint=proxy.url,
    )
    proxy.clear()
    state_dict_loader.load(sd, storage_reader=reader)
    return sd


def test_partial_load_coalesces_items_into_one_get_by_default(
    proxy: FaultProxy, checkpoint: Tuple[str, int]
) -> None:
    path, _ = checkpoint
    sd = load_through(proxy, path, None)
    for name, tensor in model_state().items():
        if name.endswith("weight"):
            assert torch.equal(sd[name], tensor)
    requests = distcp_requests(proxy)
    assert len(byte_ranges(requests)) == 1 < LAYERS


def weight_ranges(path: str, endpoint: str) -> List[Tuple[int, int]]:
    reader = S3StorageReader(REGION, path, s3client_config=NO_RETRY, endpoint=endpoint)
    storage = reader.read_metadata().storage_data
    return sorted(
        (info.offset, info.offset + info.length)
        for index, info in storage.items()
        if index.fqn.endswith("weight")
    )


def test_partial_load_without_gap_fetches_exactly_the_requested_items(
    proxy: FaultProxy, endpoint: str, checkpoint: Tuple[str, int]
) -> None:
    path, size = checkpoint
    load_through(proxy, path, S3ReaderConstructor.dcp_optimized(max_gap_size=0))
    ranges = byte_ranges(distcp_requests(proxy))
    # One writer thread keeps the module order, so each bias separates two weights.
    assert sorted(ranges) == weight_ranges(path, endpoint)
    assert len(ranges) == LAYERS
    assert sum(end - start for start, end in ranges) < size


def test_partial_load_with_unbounded_gap_sends_one_get(
    proxy: FaultProxy, endpoint: str, checkpoint: Tuple[str, int]
) -> None:
    path, _ = checkpoint
    load_through(proxy, path, S3ReaderConstructor.dcp_optimized(float("inf")))
    weights = weight_ranges(path, endpoint)
    assert byte_ranges(distcp_requests(proxy)) == [(weights[0][0], weights[-1][1])]


def test_dcp_optimized_reader_sends_no_head_for_data_files(
    proxy: FaultProxy, checkpoint: Tuple[str, int]
) -> None:
    path, _ = checkpoint
    load_through(proxy, path, None)
    assert [m for m, _ in distcp_requests(proxy) if m != "GET"] == []


def test_user_agent_on_the_wire_names_dcp_and_reader_type(
    proxy: FaultProxy, bucket: str
) -> None:
    path = f"s3://{bucket}/ua"
    writer = S3StorageWriter(REGION, path, s3client_config=NO_RETRY, endpoint=proxy.url)
    state_dict_saver.save(model_state(), storage_writer=writer)
    write_agents = {h.get("User-Agent", "") for _, _, h in proxy.requests}
    load_through(proxy, path, None)
    read_agents = {h.get("User-Agent", "") for _, _, h in proxy.requests}

    suffix = f"(dcp; {torch.__version__}; md/reader_type#"
    assert write_agents
    assert all(f"{suffix}sequential)" in agent for agent in write_agents)
    assert read_agents
    assert all(f"{suffix}dcp_optimized)" in agent for agent in read_agents)
