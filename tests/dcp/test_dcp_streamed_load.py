"""``S3StorageReader`` loads tensors by copying their stored bytes into the destination.

A tensor item is ``torch.save`` output; the reader finds the storage bytes from the item's
first bytes and copies them as they arrive: into the destination tensor itself when it
matches the stored one, else into one staging tensor that is narrowed and copied, without
``torch.load``. Other layouts, byte items and stream transforms go through ``torch.load``.
"""

from __future__ import annotations

import io
from typing import IO, Any, Dict

import pytest
import torch
from torch.distributed.checkpoint import state_dict_loader
from torch.distributed.checkpoint._extension import (
    ExtensionRegistry,
    StreamTransformExtension,
)
from torch.distributed.checkpoint.filesystem import _StorageReaderTransforms

from s3torch_async.dcp import S3StorageReader
from s3torch_async.s3reader import S3ReaderConstructor
from tests.dcp._helpers import NO_RETRY, REGION, save

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]


def variety() -> Dict[str, Any]:
    torch.manual_seed(3)
    base = torch.randn(40, 30)
    return {
        "f32": torch.randn(64, 33),
        "bf16": torch.randn(17, 5).to(torch.bfloat16),
        "f16": torch.randn(9).half(),
        "bool": torch.rand(100) > 0.5,
        "i64_scalar": torch.tensor(7, dtype=torch.int64),
        "u8": torch.randint(0, 255, (3, 4, 5), dtype=torch.uint8),
        "complex": torch.randn(6, dtype=torch.complex64),
        "empty": torch.zeros(0, 4),
        "view_of_bigger": base[10:20],
        "transposed": base.t(),
        "channels_last": torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "step": 11,
    }


def blank(sd: Dict[str, Any]) -> Dict[str, Any]:
    return {
        name: torch.zeros_like(value) if isinstance(value, torch.Tensor) else None
        for name, value in sd.items()
    }


def reader(path: str, endpoint: str, constructor: Any = None) -> S3StorageReader:
    return S3StorageReader(
        REGION,
        path,
        s3client_config=NO_RETRY,
        reader_constructor=constructor,
        endpoint=endpoint,
    )


class TensorLoads:
    """Counts ``torch.load`` calls that return a tensor (byte items load other objects)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = torch.load

        def counting(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if isinstance(result, torch.Tensor):
                self.count += 1
            return result

        monkeypatch.setattr(torch, "load", counting)


def test_every_tensor_is_copied_into_its_destination_without_torch_load(
    moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = variety()
    path = f"s3://{bucket}/streamed"
    save(expected, path, moto_endpoint)
    loaded = blank(expected)
    pointers = {
        name: value.data_ptr()
        for name, value in loaded.items()
        if isinstance(value, torch.Tensor)
    }
    loads = TensorLoads(monkeypatch)
    state_dict_loader.load(loaded, storage_reader=reader(path, moto_endpoint))
    assert loads.count == 0  # torch's reader: one per tensor
    for name, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert loaded[name].dtype == value.dtype
            assert torch.equal(loaded[name], value), name
            assert loaded[name].data_ptr() == pointers[name]
        else:
            assert loaded[name] == value


def test_destinations_unlike_the_stored_tensor_are_filled_by_copy(
    moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(5)
    expected = {"a": torch.randn(12, 7), "b": torch.randn(5, 6), "c": torch.randn(8)}
    path = f"s3://{bucket}/unlike"
    save(expected, path, moto_endpoint)
    loaded = {
        "a": torch.zeros(7, 12).t(),  # not contiguous
        "b": torch.zeros(5, 6, dtype=torch.float64),  # another dtype: copy_ converts
        "c": torch.zeros(16)[::2],  # strided view
    }
    loads = TensorLoads(monkeypatch)
    state_dict_loader.load(loaded, storage_reader=reader(path, moto_endpoint))
    assert loads.count == 0
    assert torch.equal(loaded["a"], expected["a"])
    assert torch.equal(loaded["b"], expected["b"].double())
    assert torch.equal(loaded["c"], expected["c"])


@pytest.mark.parametrize("max_gap_size", [0, 64, float("inf")])
def test_partial_loads_fill_only_the_requested_tensors(
    moto_endpoint: str, bucket: str, max_gap_size: float
) -> None:
    expected = variety()
    path = f"s3://{bucket}/partial"
    save(expected, path, moto_endpoint)
    wanted = {"bf16": torch.zeros(17, 5, dtype=torch.bfloat16), "u8": None}
    wanted["u8"] = torch.zeros(3, 4, 5, dtype=torch.uint8)
    state_dict_loader.load(
        wanted,
        storage_reader=reader(
            path, moto_endpoint, S3ReaderConstructor.dcp_optimized(max_gap_size)
        ),
    )
    assert torch.equal(wanted["bf16"], expected["bf16"])
    assert torch.equal(wanted["u8"], expected["u8"])


def test_files_with_many_items_and_threads_round_trip(
    moto_endpoint: str, bucket: str
) -> None:
    torch.manual_seed(9)
    expected = {f"t{i}": torch.randn(i + 1, 50) for i in range(40)}
    path = f"s3://{bucket}/many"
    save(expected, path, moto_endpoint, thread_count=3)
    loaded = blank(expected)
    state_dict_loader.load(loaded, storage_reader=reader(path, moto_endpoint))
    for name, value in expected.items():
        assert torch.equal(loaded[name], value), name


class _Negate(StreamTransformExtension):
    """A stream transform for the test: every stored byte is inverted."""

    @staticmethod
    def registry_name() -> str:
        return "test.negate"

    @staticmethod
    def from_descriptor(version: str) -> _Negate:
        return _Negate()

    def get_descriptor(self) -> str:
        return f"{self.registry_name()}/1"

    def transform_to(self, output: IO[bytes]) -> IO[bytes]:
        class Writer(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                data = bytes(x ^ 0xFF for x in bytes(b))
                output.write(data)
                return len(data)

            def close(self) -> None:
                output.close()

        return Writer()  # type: ignore[return-value]

    def transform_from(self, input: IO[bytes]) -> IO[bytes]:
        return io.BytesIO(bytes(x ^ 0xFF for x in input.read()))


def test_items_written_through_a_stream_transform_load_through_torch(
    moto_endpoint: str, bucket: str
) -> None:
    expected = {"w": torch.arange(30, dtype=torch.float32).reshape(5, 6), "n": 3}
    path = f"s3://{bucket}/transformed"
    save(expected, path, moto_endpoint, _extensions=[_Negate()])
    loaded: Dict[str, Any] = {"w": torch.zeros(5, 6), "n": None}
    storage_reader = reader(path, moto_endpoint)
    registry = ExtensionRegistry()
    registry.register(_Negate)
    storage_reader.transforms = _StorageReaderTransforms(registry)
    state_dict_loader.load(loaded, storage_reader=storage_reader)
    assert torch.equal(loaded["w"], expected["w"])
    assert loaded["n"] == 3
