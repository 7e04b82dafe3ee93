"""Two torchrun launchers on one machine ("two nodes", one rank each) with a c10d rendezvous
on loopback: a tiny DDP loop that reads from S3 and checkpoints with DCP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.distributed._harness import LOOPBACK_ENV

pytestmark = [
    pytest.mark.torch,
    pytest.mark.process,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

SCRIPT = Path(__file__).with_name("_two_node_train.py")
ROOT = Path(__file__).resolve().parents[2]
N_SAMPLES = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_over_two_nodes_reads_s3_and_checkpoints_with_dcp(
    tmp_path: Path, moto_endpoint: str, bucket: str, put: Any
) -> None:
    samples = {}
    for i in range(N_SAMPLES):
        values = torch.arange(4, dtype=torch.float32) + i
        samples[f"data/{i:02d}"] = values
        put(f"data/{i:02d}", values.numpy().tobytes())
    env = dict(os.environ, **LOOPBACK_ENV)
    env["AWS_ENDPOINT_URL"] = moto_endpoint
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    port = free_port()
    launchers = []
    for node in range(2):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}",
            "--rdzv-id=s3torch-async-two-nodes",
            # The first launcher hosts the rendezvous store; both would claim it on loopback.
            f"--rdzv-conf=is_host={int(node == 0)}",
            "--local-addr=127.0.0.1",
            "--max-restarts=0",
            str(SCRIPT),
            f"s3://{bucket}/data/",
            f"s3://{bucket}/ckpt",
            str(tmp_path),
        ]
        launchers.append(
            subprocess.Popen(
                cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for launcher in launchers:
        output, _ = launcher.communicate(timeout=240)
        assert launcher.returncode == 0, output[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = ranks[0]["seen"] + ranks[1]["seen"]
    assert sorted(seen) == sorted(samples)  # every sample once across the two nodes
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == N_SAMPLES // 2
    # DDP kept the replicas equal; the checkpoint holds them and loads back.
    for name, value in ranks[0]["trained"].items():
        assert torch.equal(ranks[1]["trained"][name], value)
        for r in ranks:
            assert torch.equal(r["loaded"][name], value)
    torch.manual_seed(0)  # the script's initial weights: training moved them
    untrained = torch.nn.Linear(4, 1)
    assert not torch.equal(ranks[0]["trained"]["weight"], untrained.weight.detach())
