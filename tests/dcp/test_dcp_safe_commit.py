"""Safe commit: replacing a checkpoint never leaves it without ``.metadata`` or with data
files the old ``.metadata`` does not describe, even when the new save fails midway.

Faults come from the fault proxy in front of moto (single process, no process group).
"""

from __future__ import annotations

import re
from typing import Any, Dict
from urllib.parse import unquote

import pytest
import torch
from torch.distributed.checkpoint import state_dict_loader, state_dict_saver
from torch.distributed.checkpoint.api import CheckpointException

from s3torch_async import S3ClientConfig
from s3torch_async.dcp import S3StorageReader, S3StorageWriter
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.dcp._helpers import REGION

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
    pytest.mark.filterwarnings("ignore:Detected an existing checkpoint:UserWarning"),
]

# 5 MiB parts and ~6 MiB per data file: every data file is a multipart upload.
CONFIG = S3ClientConfig(max_attempts=1, part_size=5 * 1024 * 1024)
THREADS = 2


def state_dict(seed: int) -> Dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(1536, 1024, generator=gen),
        "b": torch.randn(1536, 1024, generator=gen),
        "step": seed,
    }


def save(sd: Dict[str, Any], path: str, endpoint: str) -> None:
    writer = S3StorageWriter(
        REGION, path, s3client_config=CONFIG, endpoint=endpoint, thread_count=THREADS
    )
    state_dict_saver.save(sd, storage_writer=writer)


def load(path: str, endpoint: str) -> Dict[str, Any]:
    sd: Dict[str, Any] = {"a": torch.zeros(1536, 1024), "b": torch.zeros(1536, 1024)}
    sd["step"] = None
    reader = S3StorageReader(REGION, path, s3client_config=CONFIG, endpoint=endpoint)
    state_dict_loader.load(sd, storage_reader=reader)
    return sd


def keys(boto_s3: Any, bucket: str) -> list[str]:
    listing = boto_s3.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def assert_same(actual: Dict[str, Any], expected: Dict[str, Any]) -> None:
    assert torch.equal(actual["a"], expected["a"])
    assert torch.equal(actual["b"], expected["b"])
    assert actual["step"] == expected["step"]


# torch lets the error of its extra write thread escape that thread (the writer still sees it).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("failing_file", [0, 1], ids=["file_0", "file_1"])
def test_failed_overwrite_leaves_the_previous_checkpoint_intact(
    proxy: FaultProxy, bucket: str, boto_s3: Any, failing_file: int
) -> None:
    path = f"s3://{bucket}/ckpt"
    first = state_dict(0)
    save(first, path, proxy.url)
    before = keys(boto_s3, bucket)
    assert before == ["ckpt/.metadata", "ckpt/__0_0.distcp", "ckpt/__0_1.distcp"]
    # The new save's file fails at its second part, after its first part was uploaded.
    proxy.add_fault(
        FaultRule(
            Fault.status(500, "InternalError"),
            method="PUT",
            path_contains=f"_{failing_file}.distcp",
            query_contains="partNumber=2",
        )
    )
    with pytest.raises(CheckpointException, match="InternalError"):
        save(state_dict(1), path, proxy.url)
    assert proxy.faults_injected == 1
    # Nothing of the failed save is left: no object, no pending multipart upload.
    assert keys(boto_s3, bucket) == before
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert_same(load(path, proxy.url), first)


def test_replacing_commits_with_one_metadata_put_then_deletes_old_files(
    proxy: FaultProxy, bucket: str, boto_s3: Any
) -> None:
    path = f"s3://{bucket}/ckpt"
    save(state_dict(0), path, proxy.url)
    old_files = ["ckpt/__0_0.distcp", "ckpt/__0_1.distcp"]
    start = len(proxy.requests)
    second = state_dict(1)
    save(second, path, proxy.url)
    sent = [
        (m, unquote(raw.partition("?")[0])) for m, raw, _h in proxy.requests[start:]
    ]
    # .metadata is written once, directly; never deleted, copied or staged as .metadata.tmp.
    touching = [(m, p) for m, p in sent if ".metadata" in p and m != "HEAD"]
    metadata = f"/{bucket}/ckpt/.metadata"
    assert [(m, p) for m, p in touching if m != "GET"] == [("PUT", metadata)]
    assert all(p == metadata for _m, p in touching)
    # The new data files have names of their own; the old ones go only after the commit.
    now = keys(boto_s3, bucket)
    assert now[0] == "ckpt/.metadata"
    assert len(now) == 3
    assert all(re.fullmatch(r"ckpt/__0_[0-9a-f]{12}_[01]\.distcp", k) for k in now[1:])
    commit = sent.index(("PUT", metadata))
    deletes = [i for i, (m, _p) in enumerate(sent) if m == "DELETE"]
    assert sorted(sent[i][1] for i in deletes) == [f"/{bucket}/{k}" for k in old_files]
    assert min(deletes) > commit
    assert_same(load(path, proxy.url), second)
    # A third save replaces the second's files in turn.
    third = state_dict(2)
    save(third, path, proxy.url)
    latest = keys(boto_s3, bucket)
    assert len(latest) == 3
    assert not set(latest[1:]) & set(now[1:])
    assert_same(load(path, proxy.url), third)


def test_commit_removes_files_left_by_a_save_that_failed_on_another_rank(
    proxy: FaultProxy, bucket: str, boto_s3: Any, put: Any
) -> None:
    path = f"s3://{bucket}/ckpt"
    save(state_dict(0), path, proxy.url)
    # What a save that failed on another rank leaves: a file with a save token, unreferenced.
    put("ckpt/__1_0123456789ab_0.distcp", b"orphan")
    # Not ours to delete: other names, and another checkpoint's files in a sub-folder.
    put("ckpt/notes.txt", b"keep")
    put("ckpt/nested/__0_0123456789ab_0.distcp", b"keep")
    put("ckpt/nested/.metadata", b"keep")
    second = state_dict(1)
    save(second, path, proxy.url)
    now = keys(boto_s3, bucket)
    assert "ckpt/__1_0123456789ab_0.distcp" not in now
    for kept in ("ckpt/notes.txt", "ckpt/nested/__0_0123456789ab_0.distcp"):
        assert kept in now
    assert_same(load(path, proxy.url), second)


def test_without_collectives_the_rank_commits_its_own_metadata_safely(
    endpoint: str, bucket: str, boto_s3: Any
) -> None:
    path = f"s3://{bucket}/ckpt"

    def save_alone(sd: Dict[str, Any]) -> None:
        writer = S3StorageWriter(
            REGION, path, s3client_config=CONFIG, endpoint=endpoint
        )
        state_dict_saver.save(sd, storage_writer=writer, use_collectives=False)

    save_alone(state_dict(0))
    first = keys(boto_s3, bucket)
    assert first == ["ckpt/__0.metadata", "ckpt/__0_0.distcp"]  # torch's names
    save_alone(state_dict(1))
    second = keys(boto_s3, bucket)
    assert second[0] == "ckpt/__0.metadata"
    assert len(second) == 2
    assert re.fullmatch(r"ckpt/__0_[0-9a-f]{12}_0\.distcp", second[1])
