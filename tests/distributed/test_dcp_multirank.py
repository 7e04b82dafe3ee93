"""DCP through S3StorageWriter/S3StorageReader from real gloo process groups of 2 and 3 ranks.

The ranks reach moto through a fault proxy (``AWS_ENDPOINT_URL``), which also injects the
failure and the upload delay. Process start-ups dominate, so one 2-rank and one 3-rank run
(module fixtures) serve most tests.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Iterator, List

import pytest
import torch

from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.distributed import _jobs_dcp as jobs
from tests.distributed._harness import run_ranks

pytestmark = [
    pytest.mark.torch,
    pytest.mark.process,
    pytest.mark.slow,
    pytest.mark.timeout(400),
]


@pytest.fixture(scope="module")
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as running, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", running.url)  # inherited by the spawned ranks
        yield running


@pytest.fixture(scope="module")
def module_bucket(boto_s3: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:20]}"
    boto_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def two(proxy: FaultProxy, module_bucket: str) -> Dict[str, Any]:
    # The async checkpoint's uploads wait 2 s each at the proxy: training goes on meanwhile.
    delay = proxy.add_fault(
        FaultRule(Fault.delay(2.0), method="PUT", path_contains="/async/", times=None)
    )
    try:
        results = run_ranks(jobs.world_of_two, 2, module_bucket)
    finally:
        proxy.clear()
    return {"results": results, "delayed": delay.hits}


@pytest.fixture(scope="module")
def three(two: Dict[str, Any], module_bucket: str) -> List[Dict[str, Any]]:
    return run_ranks(jobs.world_of_three, 3, module_bucket)


def keys(boto_s3: Any, bucket: str, prefix: str) -> list[str]:
    listing = boto_s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def assert_flat_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[name], value), name
        else:
            assert actual[name] == value, name


def assert_dtensors(results: List[Dict[str, Any]]) -> None:
    full = jobs.full_weights(0)
    rows = jobs.ROWS // len(results)
    for rank, result in enumerate(results):
        assert torch.equal(result["full"]["sharded"], full["sharded"])
        assert torch.equal(result["full"]["replicated"], full["replicated"])
        assert torch.equal(
            result["local"], full["sharded"][rank * rows : (rank + 1) * rows]
        )


@pytest.mark.parametrize("world_size", [2, 3])
def test_replicated_model_and_optimizer_round_trip(
    two: Dict[str, Any],
    three: List[Dict[str, Any]],
    module_bucket: str,
    boto_s3: Any,
    world_size: int,
) -> None:
    results = [r["replicated"] for r in (two["results"] if world_size == 2 else three)]
    expected = results[0]["saved"]
    assert any(name.startswith("optim.state") for name in expected)
    for result in results:
        assert_flat_equal(
            result["saved"], expected
        )  # replicated: the same on every rank
        assert_flat_equal(result["loaded"], expected)
    # A fresh path keeps the reference's data file names.
    names = keys(boto_s3, module_bucket, f"ddp-{world_size}/")
    assert f"ddp-{world_size}/.metadata" in names
    assert f"ddp-{world_size}/__0_0.distcp" in names


def test_sharded_dtensors_load_on_every_rank(two: Dict[str, Any]) -> None:
    assert_dtensors([r["dtensors"] for r in two["results"]])


def test_dtensors_saved_by_two_ranks_reshard_onto_three(
    three: List[Dict[str, Any]],
) -> None:
    assert_dtensors([r["dtensors"] for r in three])


def test_async_save_uploads_while_training_continues(two: Dict[str, Any]) -> None:
    assert two["delayed"] >= 2  # both ranks' data files were held at the proxy
    for result in (r["async"] for r in two["results"]):
        assert result["running_during_step"]
        # The checkpoint holds the parameters at async_save time, not after the later step.
        assert_flat_equal(result["loaded"], result["snapshot"])
        snapshot = result["snapshot"]
        assert any(
            not torch.equal(t, snapshot[n]) for n, t in result["after_step"].items()
        )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_failure_on_one_ranks_file_keeps_the_previous_checkpoint(
    proxy: FaultProxy, two: Dict[str, Any], module_bucket: str, boto_s3: Any
) -> None:
    path = f"s3://{module_bucket}/dtensors"
    before = {
        k: boto_s3.head_object(Bucket=module_bucket, Key=k)["ETag"]
        for k in keys(boto_s3, module_bucket, "dtensors/")
    }
    assert "dtensors/__1_0.distcp" in before
    rule = proxy.add_fault(
        FaultRule(
            Fault.status(500, "InternalError"), method="PUT", path_contains="/__1_"
        )
    )
    results = run_ranks(jobs.failed_overwrite_then_load, 2, path)
    assert rule.hits == 1
    assert [r["failed"] for r in results] == [True, True]  # every rank sees the failure
    assert_dtensors([r["loaded"] for r in results])  # the previous checkpoint, intact
    after = keys(boto_s3, module_bucket, "dtensors/")
    for key, etag in before.items():
        assert boto_s3.head_object(Bucket=module_bucket, Key=key)["ETag"] == etag
    # Only rank 0's file of the failed save may remain (nothing refers to it).
    assert len(set(after) - set(before)) <= 1
    assert boto_s3.list_multipart_uploads(Bucket=module_bucket).get("Uploads", []) == []
