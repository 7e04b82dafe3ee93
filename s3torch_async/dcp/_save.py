"""Writing a rank's data files: torch's ``FileSystemWriter`` layout, tensors via ``save_tensor``.

The files, their names, which items go in which file and in what order, and the write results
are those of torch's ``FileSystemWriter.write_data``; each tensor item's bytes are those of
``torch.save`` as well, but written by :func:`save_tensor`, whose checksums do not hold the
GIL (torch's writer computes them holding it, which stalls the upload threads). A thread that
fails stops the others from starting new files, and the first error is raised.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any, List, Optional, Tuple

import torch
from torch.distributed.checkpoint.filesystem import DEFAULT_SUFFIX
from torch.distributed.checkpoint.planner import (
    SavePlan,
    SavePlanner,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import WriteResult

from ._torch_save_format import UnsupportedFormat, save_tensor

try:  # torch internals this writer shares with FileSystemWriter; if a release drops them,
    # can_write says so and the save goes through torch's own write_data instead.
    from torch.distributed.checkpoint.filesystem import (
        _split_by_size_and_type,
        _StorageInfo,
    )
except ImportError:  # pragma: no cover - depends on the torch release
    _INTERNALS = False
else:
    _INTERNALS = True

__all__ = ["can_write", "write_plan"]

_File = Tuple[str, str, List[WriteItem]]


def write_plan(
    fs: Any,
    path: Any,
    plan: SavePlan,
    planner: SavePlanner,
    thread_count: int,
    single_file_per_rank: bool,
) -> List[WriteResult]:
    """Write ``plan``'s items to data files under ``path``, ``thread_count`` files at a time.

    Args:
        fs: The file system (``concat_path``, ``create_stream``).
        path: The checkpoint path.
        plan: This rank's final save plan (``storage_data.prefix`` names its files).
        planner: Resolves each item's data.
        thread_count: Files written at once.
        single_file_per_rank: One file per thread (torch's default), else one per item.

    Returns:
        One result per item.

    Raises:
        Exception: The first error of any file.
    """
    prefix = plan.storage_data.prefix
    if single_file_per_rank:
        buckets = _split_by_size_and_type(thread_count, plan.items)
    else:
        buckets = [[item] for item in plan.items]
    files: queue.Queue[_File] = queue.Queue()
    for number, items in enumerate(buckets):
        name = f"{prefix}{number}{DEFAULT_SUFFIX}"
        files.put((fs.concat_path(path, name), name, items))
    results: List[WriteResult] = []
    errors: List[BaseException] = []

    def work() -> None:
        while not errors:
            try:
                file_path, name, items = files.get_nowait()
            except queue.Empty:
                return
            try:
                results.extend(_write_file(fs, file_path, name, items, planner))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(1, thread_count)]
    for thread in threads:
        thread.start()
    work()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _write_file(
    fs: Any, path: str, name: str, items: List[WriteItem], planner: SavePlanner
) -> List[WriteResult]:
    results: List[WriteResult] = []
    with fs.create_stream(path, "wb") as stream:
        for item in items:
            if item.type == WriteItemType.BYTE_IO:
                data = planner.resolve_data(item)
                if not isinstance(data, io.BytesIO):
                    raise AssertionError(
                        "Data must be io.BytesIO for BYTE_IO write items"
                    )
                offset = stream.tell()
                stream.write(data.getbuffer())
                results.append(_result(item, name, offset, stream.tell() - offset))
        for item in items:
            if item.type != WriteItemType.BYTE_IO:
                tensor = _cpu_tensor(planner.resolve_data(item))
                offset = stream.tell()
                try:
                    save_tensor(tensor, stream)
                except UnsupportedFormat:
                    torch.save(tensor, stream)
                results.append(_result(item, name, offset, stream.tell() - offset))
    return results


def _cpu_tensor(data: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise AssertionError("Data must be torch.Tensor for non-BYTE_IO write items")
    tensor = data.detach().cpu()
    if tensor.untyped_storage().size() != tensor.nbytes:
        # As torch: save only the viewed elements, not the whole storage.
        tensor = tensor.clone()
    return tensor


def _result(item: WriteItem, name: str, offset: int, length: int) -> WriteResult:
    return WriteResult(
        index=item.index,
        size_in_bytes=length,
        storage_data=_StorageInfo(name, offset, length),
    )


def can_write(writer: Any) -> Optional[str]:
    """Why ``write_plan`` cannot serve ``writer`` (a ``FileSystemWriter``), or None."""
    if not _INTERNALS:
        return "this torch has no _split_by_size_and_type/_StorageInfo"
    if getattr(writer, "serialization_format", None) is None:
        return "unknown serialization format"
    if writer.serialization_format.value != "torch_save":
        return "not torch.save"
    if getattr(writer.transforms, "extensions", None):
        return "stream transforms"
    return None
