"""Rank functions for the multi-rank DCP tests (module level: spawn imports them).

Every rank builds the same values from a seed, so the parent can recompute what was saved.
The S3 endpoint comes from ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from s3torch_async import S3ClientConfig
from s3torch_async.dcp import S3StorageReader, S3StorageWriter

REGION = "us-east-1"
CONFIG = S3ClientConfig(max_attempts=1)
ROWS = 12  # divisible by 2 and 3: even shards either way


def writer(path: str, **kwargs: Any) -> S3StorageWriter:
    return S3StorageWriter(REGION, path, s3client_config=CONFIG, **kwargs)


def reader(path: str) -> S3StorageReader:
    return S3StorageReader(REGION, path, s3client_config=CONFIG)


def trained_model(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A model and Adam optimizer after one step on fixed data (the same on every rank)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    )
    optim = torch.optim.Adam(model.parameters(), lr=0.01)
    step(model, optim, seed)
    return model, optim


def step(model: torch.nn.Module, optim: torch.optim.Optimizer, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    loss = model(torch.randn(5, 8, generator=gen)).square().mean()
    loss.backward()
    optim.step()
    optim.zero_grad()


def _flat(sd: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in sd.items():
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in _flat(value).items()})
        else:
            out[name] = value.clone() if isinstance(value, torch.Tensor) else value
    return out


def replicated_round_trip(rank: int, world_size: int, path: str) -> Dict[str, Any]:
    """DDP model + optimizer saved from every rank, loaded into a fresh pair on every rank."""
    model, optim = trained_model(seed=1)
    ddp = DistributedDataParallel(model)
    model_sd, optim_sd = get_state_dict(ddp, optim)
    saved = _flat({"model": model_sd, "optim": optim_sd})
    dcp.save({"model": model_sd, "optim": optim_sd}, storage_writer=writer(path))

    fresh, fresh_optim = trained_model(seed=2)
    fresh_ddp = DistributedDataParallel(fresh)
    model_sd, optim_sd = get_state_dict(fresh_ddp, fresh_optim)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, storage_reader=reader(path))
    set_state_dict(
        fresh_ddp,
        fresh_optim,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
    )
    loaded = _flat(
        dict(zip(("model", "optim"), get_state_dict(fresh_ddp, fresh_optim)))
    )
    return {"saved": saved, "loaded": loaded}


def full_weights(seed: int) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "sharded": torch.randn(ROWS, 5, generator=gen),
        "replicated": torch.randn(3, 3, generator=gen),
    }


def _dtensors(world_size: int, values: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    mesh = init_device_mesh("cpu", (world_size,))
    return {
        "sharded": distribute_tensor(values["sharded"], mesh, [Shard(0)]),
        "replicated": distribute_tensor(values["replicated"], mesh, [Replicate()]),
    }


def save_dtensors(rank: int, world_size: int, path: str, seed: int) -> None:
    """Save row-sharded and replicated DTensors from every rank."""
    dcp.save(_dtensors(world_size, full_weights(seed)), storage_writer=writer(path))


def load_dtensors(rank: int, world_size: int, path: str) -> Dict[str, Any]:
    """Load into DTensors sharded over this world size; this rank's shard and the full tensors."""
    zeros = {k: torch.zeros_like(v) for k, v in full_weights(0).items()}
    state = _dtensors(world_size, zeros)
    dcp.load(state, storage_reader=reader(path))
    return {
        "local": state["sharded"].to_local().clone(),
        "full": {k: v.full_tensor() for k, v in state.items()},
    }


def failed_overwrite(rank: int, world_size: int, path: str) -> bool:
    """Save again over ``path`` (the parent makes one rank's data file fail); True if it raised."""
    try:
        dcp.save(
            _dtensors(world_size, full_weights(seed=99)), storage_writer=writer(path)
        )
    except CheckpointException:
        return True
    return False


def async_save_while_training(rank: int, world_size: int, path: str) -> Dict[str, Any]:
    """``async_save`` a trained model, train another step while it uploads, load it back."""
    model, optim = trained_model(seed=3)
    ddp = DistributedDataParallel(model)
    model_sd, _ = get_state_dict(ddp, optim)
    snapshot = _flat(model_sd)
    # The save's collectives run in a background thread: on the group DDP all-reduces on,
    # the two threads' collectives interleave differently per rank (gloo: "Application
    # timeout caused pair closure"). A group of its own keeps them apart.
    checkpoint_group = dist.new_group(backend="gloo")
    future = dcp.async_save(
        {"model": model_sd},
        storage_writer=writer(path),
        process_group=checkpoint_group,
    )
    step(ddp, optim, seed=4)  # changes the parameters in place while the upload runs
    running = not future.done()
    future.result(timeout=120)
    after_step = _flat(get_state_dict(ddp, optim)[0])
    fresh, fresh_optim = trained_model(seed=5)
    state = {"model": get_state_dict(fresh, fresh_optim)[0]}
    dcp.load(state, storage_reader=reader(path))
    return {
        "snapshot": snapshot,
        "after_step": after_step,
        "loaded": _flat(state["model"]),
        "running_during_step": running,
    }


def world_of_two(rank: int, world_size: int, bucket: str) -> Dict[str, Any]:
    """Everything the 2-rank tests check, in one process group (start-ups dominate)."""
    out = {
        "replicated": replicated_round_trip(rank, world_size, f"s3://{bucket}/ddp-2")
    }
    save_dtensors(rank, world_size, f"s3://{bucket}/dtensors", 0)
    out["dtensors"] = load_dtensors(rank, world_size, f"s3://{bucket}/dtensors")
    out["async"] = async_save_while_training(rank, world_size, f"s3://{bucket}/async")
    return out


def world_of_three(rank: int, world_size: int, bucket: str) -> Dict[str, Any]:
    """The 3-rank checks: a replicated round trip, and the 2-rank DTensors resharded."""
    return {
        "replicated": replicated_round_trip(rank, world_size, f"s3://{bucket}/ddp-3"),
        "dtensors": load_dtensors(rank, world_size, f"s3://{bucket}/dtensors"),
    }


def failed_overwrite_then_load(rank: int, world_size: int, path: str) -> Dict[str, Any]:
    """A save over ``path`` that the parent makes fail, then a load of what is there."""
    failed = failed_overwrite(rank, world_size, path)
    return {"failed": failed, "loaded": load_dtensors(rank, world_size, path)}
