"""Run a function on every rank of a real gloo process group (spawned processes, loopback only).

Rank functions live in module-level code so that ``spawn`` can import them. Each rank's return
value is pickled to a file and handed back to the test in rank order.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from datetime import timedelta
from typing import Any, Callable, List

import torch.distributed as dist
import torch.multiprocessing as mp

# gloo binds to the loopback interface only: no traffic leaves the machine.
LOOPBACK_ENV = {"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}


def run_ranks(
    fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 90.0
) -> List[Any]:
    """Start ``world_size`` spawned processes, each calling ``fn(rank, world_size, *args)``.

    The process group (gloo) exists while ``fn`` runs. Raises if any rank raised.
    """
    os.environ.update(LOOPBACK_ENV)
    with tempfile.TemporaryDirectory(prefix="s3torch-async-ranks-") as scratch:
        mp.start_processes(
            _rank_main,
            args=(fn, world_size, scratch, timeout, args),
            nprocs=world_size,
            join=True,
            start_method="spawn",
        )
        results = []
        for rank in range(world_size):
            with open(os.path.join(scratch, f"result-{rank}.pkl"), "rb") as f:
                results.append(pickle.load(f))
        return results


def _rank_main(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    scratch: str,
    timeout: float,
    args: tuple[Any, ...],
) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(scratch, 'rendezvous')}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout),
    )
    try:
        result = fn(rank, world_size, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(os.path.join(scratch, f"result-{rank}.pkl"), "wb") as f:
        pickle.dump(result, f)
