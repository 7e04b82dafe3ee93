"""Distributed checkpoint (DCP) to S3 from every rank, then load it back.

Each rank holds a model and one tensor of its own; ``dcp.save`` writes one file per rank plus
the metadata through ``S3StorageWriter``, and ``dcp.load`` reads them back with
``S3StorageReader`` (only the byte ranges each rank needs). Runs on CPU with the gloo backend:

    torchrun --standalone --nproc_per_node=2 examples/dcp_torchrun.py --bucket my-bucket

Without ``torchrun`` it runs as a single rank. The bucket must exist; the endpoint defaults to
``AWS_ENDPOINT_URL`` (else AWS). Needs ``pip install "s3torch-async[dcp]"``.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from s3torch_async.dcp import S3StorageReader, S3StorageWriter


def make_state(rank: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    return {
        "model": model.state_dict(),
        # a tensor only this rank has: it lands in this rank's data file
        f"rank{rank}_buffer": torch.full((1024,), float(seed + rank)),
        "step": seed,
    }


def init_process_group() -> None:
    if "RANK" not in os.environ:  # plain `python examples/dcp_torchrun.py`: one rank
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(
            RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
    dist.init_process_group("gloo")


def run(args: argparse.Namespace) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    uri = f"s3://{args.bucket}/{args.prefix.strip('/')}/step-{args.step}/"

    state = make_state(rank, seed=args.step)
    started = time.perf_counter()
    dcp.save(
        state, storage_writer=S3StorageWriter(args.region, uri, endpoint=args.endpoint)
    )
    saved = time.perf_counter() - started

    # Load into a state dict of the same structure with different values.
    target = make_state(rank, seed=args.step + 1000)
    started = time.perf_counter()
    dcp.load(
        target, storage_reader=S3StorageReader(args.region, uri, endpoint=args.endpoint)
    )
    loaded = time.perf_counter() - started

    ok = all(
        torch.equal(a, b)
        for a, b in zip(state["model"].values(), target["model"].values())
    )
    ok = ok and torch.equal(state[f"rank{rank}_buffer"], target[f"rank{rank}_buffer"])
    ok = ok and target["step"] == args.step
    print(
        f"rank {rank}/{world}: saved in {saved:.2f} s, loaded in {loaded:.2f} s, match={ok}"
    )
    flags = [None] * world
    dist.all_gather_object(flags, ok)
    if rank == 0:
        print(f"checkpoint {uri}: {'all ranks match' if all(flags) else 'MISMATCH'}")
    if not all(flags):
        raise SystemExit(1)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="my-bucket")
    parser.add_argument("--prefix", default="examples/dcp")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--endpoint",
        default=None,
        help="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument("--step", type=int, default=100)
    args = parser.parse_args(argv)
    init_process_group()
    try:
        run(args)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
