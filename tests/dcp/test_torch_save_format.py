"""The ``torch.save`` layout: read from a blob's first bytes, and written with fast checksums."""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any, List

import pytest
import torch

from s3torch_async.dcp._torch_save_format import (
    PREFIX_LIMIT,
    UnsupportedFormat,
    parse_prefix,
    save_tensor,
)

pytestmark = [pytest.mark.torch]


def saved(tensor: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.getvalue()


def written(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    save_tensor(tensor, buffer)
    return buffer.getvalue()


TENSORS = [
    torch.arange(12, dtype=torch.float32).reshape(3, 4),
    torch.tensor(True),
    torch.randn(4, 6)[1:3],
    torch.randn(5, 7).t(),
    torch.randn(3, 3).to(torch.bfloat16),
    torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    torch.randint(0, 9, (70_000,), dtype=torch.int64),
]
IDS = ["f32", "scalar", "view", "transposed", "bf16", "channels-last", "i64-big"]


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("tensor", [*TENSORS, torch.zeros(0)], ids=[*IDS, "empty"])
def test_prefix_locates_the_storage_bytes(tensor: torch.Tensor) -> None:
    blob = saved(tensor)
    stored = parse_prefix(blob[:PREFIX_LIMIT])
    assert stored is not None
    assert stored.dtype == tensor.dtype
    assert stored.size == tuple(tensor.size())
    assert stored.stride == tuple(tensor.stride())
    assert stored.storage_offset == tensor.storage_offset()
    raw = blob[stored.data_offset : stored.data_offset + stored.nbytes]
    assert raw == bytes(tensor.untyped_storage())
    assert stored.is_contiguous_whole() == (
        tensor.is_contiguous()
        and tensor.storage_offset() == 0
        and tensor.untyped_storage().nbytes() == tensor.nbytes
    )


def test_prefix_asks_for_more_bytes_until_it_reaches_the_storage() -> None:
    blob = saved(torch.arange(100, dtype=torch.int32))
    stored = parse_prefix(blob)
    assert stored is not None
    results: List[Any] = [parse_prefix(blob[:n]) for n in range(stored.data_offset)]
    assert results == [None] * stored.data_offset


@pytest.mark.parametrize(
    "obj",
    [
        torch.nn.Parameter(torch.ones(3)),
        [torch.ones(2)],
        {"a": torch.ones(2)},
        (torch.ones(2), torch.ones(2)),
    ],
    ids=["parameter", "list", "dict", "two-tensors"],
)
def test_prefix_rejects_anything_but_one_plain_tensor(obj: Any) -> None:
    with pytest.raises(UnsupportedFormat):
        parse_prefix(saved(obj))


def test_prefix_rejects_a_legacy_non_zip_blob() -> None:
    buffer = io.BytesIO()
    torch.save(torch.ones(3), buffer, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsupportedFormat):
        parse_prefix(buffer.getvalue())


# -- writing ------------------------------------------------------------------------------


def without_serialization_id(blob: bytes) -> bytes:
    """``blob`` with the random serialization id and its CRC-32 fields zeroed."""
    out = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        info = archive.getinfo("archive/.data/serialization_id")
        header = info.header_offset
        name_len, extra_len = struct.unpack_from("<HH", blob, header + 26)
        start = header + 30 + name_len + extra_len
        out[start : start + info.file_size] = bytes(info.file_size)
        descriptor = start + info.file_size
        assert out[descriptor : descriptor + 4] == b"PK\x07\x08"
        out[descriptor + 4 : descriptor + 8] = bytes(4)
        central = blob.index(b"PK\x01\x02")
        while blob[central + 46 : central + 46 + len(info.filename)] != (
            info.filename.encode()
        ):
            central = blob.index(b"PK\x01\x02", central + 4)
        out[central + 16 : central + 20] = bytes(4)
    return bytes(out)


@pytest.mark.parametrize("tensor", TENSORS, ids=IDS)
def test_written_blob_is_torch_saves_own_bytes(tensor: torch.Tensor) -> None:
    ours, torchs = written(tensor), saved(tensor)
    assert len(ours) == len(torchs)
    assert without_serialization_id(ours) == without_serialization_id(torchs)
    with zipfile.ZipFile(io.BytesIO(ours)) as archive:
        assert archive.testzip() is None  # every CRC-32 checks out
    loaded = torch.load(io.BytesIO(ours), weights_only=True)
    assert torch.equal(loaded, tensor)
    assert loaded.stride() == tensor.stride()


@pytest.mark.parametrize(
    "obj",
    [torch.zeros(0), torch.zeros(3, 0)],
    ids=["empty", "empty-2d"],
)
def test_writer_leaves_empty_storages_to_torch_save(obj: Any) -> None:
    stream = io.BytesIO()
    with pytest.raises(UnsupportedFormat):
        save_tensor(obj, stream)
    assert stream.getvalue() == b""


def test_this_torch_loads_what_the_writer_lays_out() -> None:
    from s3torch_async.dcp import _torch_save_format as fmt

    assert fmt._round_trips()


def test_writer_steps_aside_when_torch_would_not_load_its_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another torch release whose loader disagrees with the layout: nothing is written and
    # the caller falls back to torch.save.
    from s3torch_async.dcp import _torch_save_format as fmt

    monkeypatch.setattr(fmt, "_round_trips", lambda: False)
    buffer = io.BytesIO()
    with pytest.raises(UnsupportedFormat, match="does not load"):
        save_tensor(torch.ones(3), buffer)
    assert buffer.getvalue() == b""
