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
from tests.dcp._helpers import NO_RETRY, REGION, load

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


# -- the reference's request hook: S3Client._get_object_stream --------------------------------


@pytest.fixture
def hook_calls(monkeypatch: pytest.MonkeyPatch) -> List[Tuple[str, Any, Any]]:
    """Count and trace ``S3Client._get_object_stream`` calls as the reference's users do."""
    from s3torch_async._s3client import S3Client

    calls: List[Tuple[str, Any, Any]] = []
    original = S3Client._get_object_stream

    def traced(
        self: Any, bucket: str, key: str, start: Any = None, end: Any = None
    ) -> Any:
        calls.append((key, start, end))
        return original(self, bucket, key, start=start, end=end)

    monkeypatch.setattr(S3Client, "_get_object_stream", traced)
    return calls


def data_file_calls(calls: List[Tuple[str, Any, Any]]) -> List[Tuple[int, int]]:
    return [(start, end) for key, start, end in calls if key.endswith(".distcp")]


@pytest.mark.parametrize("gap", [0, float("inf")], ids=["gap_0", "gap_inf"])
def test_full_load_opens_one_hooked_stream_per_file(
    endpoint: str, checkpoint: Tuple[str, int], hook_calls: list, gap: float
) -> None:
    path, size = checkpoint
    sd: Dict[str, Any] = {k: torch.zeros_like(v) for k, v in model_state().items()}
    load(sd, path, endpoint, S3ReaderConstructor.dcp_optimized(gap))
    for name, tensor in model_state().items():
        assert torch.equal(sd[name], tensor)
    calls = data_file_calls(hook_calls)
    assert len(calls) == 1
    assert calls[0][1] <= size


@pytest.mark.parametrize(
    ("gap", "expected_calls"),
    [(0, LAYERS), (float("inf"), 1)],
    ids=["gap_0", "gap_inf"],
)
def test_partial_load_opens_one_hooked_stream_per_group_in_ascending_order(
    endpoint: str,
    checkpoint: Tuple[str, int],
    hook_calls: list,
    gap: float,
    expected_calls: int,
) -> None:
    path, _ = checkpoint
    sd: Dict[str, Any] = weights_only()
    load(sd, path, endpoint, S3ReaderConstructor.dcp_optimized(gap))
    calls = data_file_calls(hook_calls)
    assert len(calls) == expected_calls
    weights = weight_ranges(path, endpoint)
    if expected_calls == LAYERS:
        assert calls == weights  # ascending, exactly the items
    else:
        assert calls == [(weights[0][0], weights[-1][1])]
    for (_s, prev_end), (start, _e) in zip(calls, calls[1:]):
        assert start - prev_end >= gap


def test_a_stream_returned_by_a_patched_hook_is_what_gets_read(
    endpoint: str, checkpoint: Tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3torch_async._s3client import S3Client

    original = S3Client._get_object_stream
    delivered: List[int] = []

    def wrapped(
        self: Any, bucket: str, key: str, start: Any = None, end: Any = None
    ) -> Any:
        stream = original(self, bucket, key, start=start, end=end)
        for chunk in stream:  # a user's own stream: the bytes must come from here
            delivered.append(len(chunk))
            yield chunk

    monkeypatch.setattr(S3Client, "_get_object_stream", wrapped)
    path, _ = checkpoint
    sd: Dict[str, Any] = weights_only()
    load(sd, path, endpoint, S3ReaderConstructor.dcp_optimized(0))
    for name, tensor in model_state().items():
        if name.endswith("weight"):
            assert torch.equal(sd[name], tensor)
    weights = weight_ranges(path, endpoint)
    assert sum(delivered) >= sum(end - start for start, end in weights)


def test_range_based_reader_reads_through_the_hook(
    endpoint: str, checkpoint: Tuple[str, int], hook_calls: list
) -> None:
    path, _ = checkpoint
    sd: Dict[str, Any] = weights_only()
    load(sd, path, endpoint, S3ReaderConstructor.range_based(buffer_size=0))
    for name, tensor in model_state().items():
        if name.endswith("weight"):
            assert torch.equal(sd[name], tensor)
    calls = data_file_calls(hook_calls)
    assert calls
    assert all(start is not None and end > start for start, end in calls)
