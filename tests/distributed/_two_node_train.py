"""A tiny DDP training loop run by torchrun on each of two "nodes" (one rank per node).

It reads its samples from S3 through a sharded ``S3IterableDataset`` and checkpoints with DCP,
then loads the checkpoint back into a fresh model. Each rank writes what it saw to
``<out_dir>/rank<N>.pt``. Usage: ``torchrun ... _two_node_train.py s3://bucket/data/ s3://bucket/ckpt OUT_DIR``.
"""

from __future__ import annotations

import gc
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from s3torch_async import S3ClientConfig, S3IterableDataset
from s3torch_async.dcp import S3StorageReader, S3StorageWriter

REGION = "us-east-1"
CONFIG = S3ClientConfig(max_attempts=1)


def to_sample(reader):  # module level: picklable
    values = torch.frombuffer(bytearray(reader.read()), dtype=torch.float32)
    return reader.key, values


def main(data_uri: str, ckpt_uri: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    dataset = S3IterableDataset.from_prefix(
        data_uri,
        region=REGION,
        transform=to_sample,
        s3client_config=CONFIG,
        enable_sharding=True,
    )
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for key, values in DataLoader(dataset, batch_size=None):
        seen.append(key)
        loss = model(values.view(1, 4)).square().mean()
        loss.backward()
        optim.step()
        optim.zero_grad()
    state = {"model": model.module.state_dict()}
    dcp.save(
        state, storage_writer=S3StorageWriter(REGION, ckpt_uri, s3client_config=CONFIG)
    )
    fresh = {"model": torch.nn.Linear(4, 1).state_dict()}
    dcp.load(
        fresh, storage_reader=S3StorageReader(REGION, ckpt_uri, s3client_config=CONFIG)
    )
    torch.save(
        {
            "seen": seen,
            "trained": state["model"],
            "loaded": fresh["model"],
            "world_size": dist.get_world_size(),
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    # Free DDP's reducer (it holds the gloo group) while both ranks are still connected:
    # destroyed at interpreter exit, after the peer has gone, its gloo threads can hang.
    dist.barrier()
    del model, optim
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
