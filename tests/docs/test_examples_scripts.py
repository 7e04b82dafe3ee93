"""The programs in examples/ run against moto as documented (small sizes, CPU only).

Each script checks its own result (every sample seen once, checkpoints identical after a
reload, every rank's DCP state restored) and exits non-zero otherwise.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.docs._examples import ROOT, report, run_script

EXAMPLES = ROOT / "examples"

pytestmark = [pytest.mark.torch, pytest.mark.process, pytest.mark.timeout(200)]


def _prefix() -> str:
    return f"examples-test/{uuid.uuid4().hex[:8]}"


def test_train_dataloader_under_spawn(
    docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    # spawn, as on macOS: the transform and the script's __main__ guard must hold up
    args = [
        "--bucket",
        docs_bucket,
        "--prefix",
        _prefix(),
        "--samples",
        "48",
        "--batch-size",
        "8",
    ]
    result = run_script(
        EXAMPLES / "train_dataloader.py", moto_endpoint, args, cwd=tmp_path, timeout=180
    )
    assert result.returncode == 0, report(result)
    assert "epoch 0: 48 samples" in result.stdout
    assert "identical=True" in result.stdout


def test_async_pipeline(docs_bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    args = [
        "--bucket",
        docs_bucket,
        "--prefix",
        _prefix(),
        "--objects",
        "40",
        "--size",
        "4096",
    ]
    result = run_script(
        EXAMPLES / "async_pipeline.py", moto_endpoint, args, cwd=tmp_path, launcher=()
    )
    assert result.returncode == 0, report(result)
    assert "hashed 40 objects" in result.stdout


def test_dcp_with_torchrun_two_processes(
    docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    args = ["--bucket", docs_bucket, "--prefix", _prefix()]
    result = run_script(
        EXAMPLES / "dcp_torchrun.py",
        moto_endpoint,
        args,
        cwd=tmp_path,
        launcher=torchrun,
        timeout=180,
    )
    assert result.returncode == 0, report(result)
    assert "rank 0/2" in result.stdout
    assert "rank 1/2" in result.stdout
    assert "all ranks match" in result.stdout


def test_dcp_example_runs_as_a_single_rank_without_torchrun(
    docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    args = ["--bucket", docs_bucket, "--prefix", _prefix()]
    result = run_script(
        EXAMPLES / "dcp_torchrun.py", moto_endpoint, args, cwd=tmp_path, launcher=()
    )
    assert result.returncode == 0, report(result)
    assert "rank 0/1" in result.stdout
