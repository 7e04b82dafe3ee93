"""The fault matrix over every entry point (issue 12): each fault against each public way in.

Table-driven: ``READS`` and ``WRITES`` list the entry points, ``READ_FAULTS`` and
``WRITE_FAULTS`` the faults with the behaviour required, and every pair runs through the real
fault proxy (``verify_checksums=True``: the proxy plays S3's upload checks, which moto lacks).
``NOT_APPLICABLE`` says which pairs do not apply and why; ``test_every_pair_is_covered`` keeps
the table complete. Objects span two parts (5 MiB parts), so whole reads go through ranged GETs.

The pairs run on the lean transport only (skipped on ``[botocore]``): what they check sits
above the transport (retries, resumes, checks, aborts), and the transports are compared fault
by fault in ``test_fault_matrix.py`` and the other modules here. The DataLoader worker killed
mid-read is ``test_fault_matrix.py::test_worker_killed_mid_read_...``.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest

from s3torch_async import AsyncS3Client, S3Exception
from s3torch_async._s3client import S3Client
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.faults._helpers import assert_nothing_left, part_config, payload

REGION = "us-east-1"
PART = 5 * 1024 * 1024
SIZE = PART + 4321  # two ranged GETs for a whole read
READ_TIMEOUT = 0.5
SILENCE = 3.0

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]


@pytest.fixture(autouse=True)
def lean_only(s3_transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if s3_transport != "lean":
        pytest.skip(
            "entry-point matrix: run on the lean transport (see module docstring)"
        )
    monkeypatch.setenv("S3TORCH_ASYNC_READ_TIMEOUT", str(READ_TIMEOUT))


@pytest.fixture
def proxy(checking_proxy: FaultProxy) -> FaultProxy:
    return checking_proxy


@dataclass
class Ctx:
    """What an entry point needs: where to go and how many attempts it has."""

    bucket: str
    url: str
    attempts: int

    def sync(self) -> S3Client:
        return S3Client(
            REGION, endpoint=self.url, s3client_config=part_config(PART, self.attempts)
        )

    def run(self, coro_fn: Callable[[AsyncS3Client], Any]) -> Any:
        import asyncio

        async def main() -> Any:
            async with AsyncS3Client(
                REGION,
                endpoint=self.url,
                s3client_config=part_config(PART, self.attempts),
            ) as c:
                return await coro_fn(c)

        return asyncio.run(main())


# -- read entry points: (prepare the object with boto3, read it through us) ----------------------


def _put_blob(boto_s3: Any, bucket: str, key: str) -> bytes:
    data = payload(SIZE, 17)
    boto_s3.put_object(Bucket=bucket, Key=key, Body=data)  # boto3 stores a CRC32
    return data


def _sync_reader(constructor: str) -> Callable[[Ctx], bytes]:
    def read(ctx: Ctx) -> bytes:
        from s3torch_async.s3reader import S3ReaderConstructor

        make = getattr(S3ReaderConstructor, constructor)()
        return bytes(
            ctx.sync().get_object(ctx.bucket, "blob", reader_constructor=make).read()
        )

    return read


def _dcp_optimized(ctx: Ctx) -> bytes:
    # The reader DCP loads use, given item ranges that cover the file (a full load).
    from s3torch_async.s3reader import S3ReaderConstructor
    from s3torch_async.s3reader.dcp_optimized import ItemRange

    constructor = S3ReaderConstructor.dcp_optimized()
    items = [ItemRange(0, 1000), ItemRange(1000, PART + 7), ItemRange(PART + 7, SIZE)]
    constructor._item_ranges_by_file = {f"s3://{ctx.bucket}/blob": items}
    reader = ctx.sync().get_object(ctx.bucket, "blob", reader_constructor=constructor)
    out = io.BytesIO()
    for item in items:
        reader.seek(item.start)
        out.write(reader.read(item.end - item.start))
    return out.getvalue()


def _async_reader(ctx: Ctx) -> bytes:
    async def read(c: AsyncS3Client) -> bytes:
        return await c.get_object(ctx.bucket, "blob").read()

    return bytes(ctx.run(read))


def _dataset(workers: int) -> Callable[[Ctx], bytes]:
    def read(ctx: Ctx) -> bytes:
        from s3torch_async import S3IterableDataset

        dataset = S3IterableDataset.from_prefix(
            f"s3://{ctx.bucket}/blob",
            region=REGION,
            endpoint=ctx.url,
            s3client_config=part_config(PART, ctx.attempts),
            transform=lambda r: r.read(),
        )
        if not workers:
            (data,) = list(dataset)
            return bytes(data)
        from torch.utils.data import DataLoader

        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            multiprocessing_context="fork",
        )
        (data,) = list(loader)
        return bytes(data)

    return read


def _checkpoint_prepare(boto_s3: Any, bucket: str) -> Any:
    import torch

    buffer = io.BytesIO()
    state = {"w": torch.arange(SIZE // 8, dtype=torch.float64)}
    torch.save(state, buffer)
    boto_s3.put_object(Bucket=bucket, Key="blob", Body=buffer.getvalue())
    return state["w"]


def _checkpoint_load(ctx: Ctx) -> Any:
    import torch

    from s3torch_async import S3Checkpoint

    checkpoint = S3Checkpoint(
        REGION, endpoint=ctx.url, s3client_config=part_config(PART, ctx.attempts)
    )
    with checkpoint.reader(f"s3://{ctx.bucket}/blob") as reader:
        return torch.load(reader)["w"]


def _dcp_state() -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    return {"big": torch.randn(SIZE // 4), "step": 7}


def _dcp_prepare(boto_s3: Any, bucket: str) -> Any:
    # Saved through moto directly (not through the proxy): the fault is for the load.
    from torch.distributed.checkpoint import state_dict_saver

    from s3torch_async.dcp import S3StorageWriter

    endpoint = boto_s3.meta.endpoint_url
    state = _dcp_state()
    writer = S3StorageWriter(
        REGION,
        f"s3://{bucket}/dcp",
        endpoint=endpoint,
        s3client_config=part_config(PART),
    )
    state_dict_saver.save(state, storage_writer=writer)
    return state["big"]


def _dcp_load(ctx: Ctx) -> Any:
    import torch
    from torch.distributed.checkpoint import state_dict_loader

    from s3torch_async.dcp import S3StorageReader

    state = {"big": torch.zeros(SIZE // 4), "step": 0}
    reader = S3StorageReader(
        REGION,
        f"s3://{ctx.bucket}/dcp",
        endpoint=ctx.url,
        s3client_config=part_config(PART, ctx.attempts),
    )
    state_dict_loader.load(state, storage_reader=reader)
    return state["big"]


@dataclass(frozen=True)
class Read:
    prepare: Callable[
        [Any, str], Any
    ]  # (boto_s3, bucket) -> the value a read must return
    read: Callable[[Ctx], Any]
    target: str = "/blob"  # the requests the fault hits
    torch: bool = False


READS: dict[str, Read] = {
    "async-reader": Read(lambda s3, b: _put_blob(s3, b, "blob"), _async_reader),
    "sequential": Read(
        lambda s3, b: _put_blob(s3, b, "blob"), _sync_reader("sequential")
    ),
    "range_based": Read(
        lambda s3, b: _put_blob(s3, b, "blob"), _sync_reader("range_based")
    ),
    "dcp_optimized": Read(lambda s3, b: _put_blob(s3, b, "blob"), _dcp_optimized),
    "dataset": Read(lambda s3, b: _put_blob(s3, b, "blob"), _dataset(0)),
    "dataset-1-worker": Read(
        lambda s3, b: _put_blob(s3, b, "blob"), _dataset(1), torch=True
    ),
    "checkpoint-load": Read(_checkpoint_prepare, _checkpoint_load, torch=True),
    "dcp-load": Read(_dcp_prepare, _dcp_load, target="distcp", torch=True),
}


@dataclass(frozen=True)
class ReadFault:
    rule: Callable[[str], FaultRule]  # target -> the rule
    attempts: int
    error: Optional[str]  # a regex the S3Exception must match; None: the read succeeds


READ_FAULTS: dict[str, ReadFault] = {
    # One bit flipped in the first GET of the object, headers kept: caught, never delivered.
    "bit-flip": ReadFault(
        lambda t: FaultRule(
            Fault.flip_response_bit(999), method="GET", path_contains=t
        ),
        attempts=1,
        error="does not match",
    ),
    # No byte for longer than the read timeout: timed out, retried, right bytes.
    "slow-first-byte": ReadFault(
        lambda t: FaultRule(Fault.delay(SILENCE), method="GET", path_contains=t),
        attempts=2,
        error=None,
    ),
    "stalled-body": ReadFault(
        lambda t: FaultRule(Fault.stall(2000, SILENCE), method="GET", path_contains=t),
        attempts=2,
        error=None,
    ),
    # Content-Length larger than the body sent: resumed, never short data.
    "short-body": ReadFault(
        lambda t: FaultRule(Fault.truncate(3000), method="GET", path_contains=t),
        attempts=2,
        error=None,
    ),
    "slowdown-retry-after": ReadFault(
        lambda t: FaultRule(
            Fault.status(503, "SlowDown", retry_after=30),
            method="GET",
            path_contains=t,
        ),
        attempts=2,
        error=None,
    ),
    # ListObjectsV2 failing once: retried, every key once. Only datasets list.
    "list-page-failing": ReadFault(
        lambda t: FaultRule(
            Fault.status(500, "InternalError"),
            method="GET",
            query_contains="list-type=2",
        ),
        attempts=2,
        error=None,
    ),
}


# -- write entry points ----------------------------------------------------------------------


def _async_writer(ctx: Ctx, data: bytes) -> None:
    async def write(c: AsyncS3Client) -> None:
        async with c.put_object(ctx.bucket, "out") as writer:
            await writer.write(data)

    ctx.run(write)


def _sync_writer(ctx: Ctx, data: bytes) -> None:
    with ctx.sync().put_object(ctx.bucket, "out") as writer:
        writer.write(data)


def _checkpoint_save(ctx: Ctx, data: bytes) -> None:
    from s3torch_async import S3Checkpoint

    checkpoint = S3Checkpoint(
        REGION, endpoint=ctx.url, s3client_config=part_config(PART, ctx.attempts)
    )
    with checkpoint.writer(f"s3://{ctx.bucket}/out") as writer:
        writer.write(data)


def _dcp_save(ctx: Ctx, data: bytes) -> None:
    import torch
    from torch.distributed.checkpoint import state_dict_saver

    from s3torch_async.dcp import S3StorageWriter

    writer = S3StorageWriter(
        REGION,
        f"s3://{ctx.bucket}/out",
        endpoint=ctx.url,
        s3client_config=part_config(PART, ctx.attempts),
    )
    state = {"big": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    state_dict_saver.save(state, storage_writer=writer)


def _read_back_blob(boto_s3: Any, bucket: str) -> bytes:
    return bytes(boto_s3.get_object(Bucket=bucket, Key="out")["Body"].read())


def _read_back_dcp(boto_s3: Any, bucket: str) -> bytes:
    import torch
    from torch.distributed.checkpoint import state_dict_loader

    from s3torch_async.dcp import S3StorageReader

    state = {"big": torch.zeros(SIZE, dtype=torch.uint8)}
    reader = S3StorageReader(
        REGION, f"s3://{bucket}/out", endpoint=boto_s3.meta.endpoint_url
    )
    state_dict_loader.load(state, storage_reader=reader)
    return bytes(state["big"].numpy())


def _nothing_left_dcp(boto_s3: Any, bucket: str) -> None:
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    listed = boto_s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
    assert not any(o["Key"].endswith(".metadata") for o in listed)  # nothing committed


@dataclass(frozen=True)
class Write:
    write: Callable[[Ctx, bytes], None]
    read_back: Callable[[Any, str], bytes]
    nothing_left: Callable[[Any, str], None]
    torch: bool = False


WRITES: dict[str, Write] = {
    "AsyncS3Writer": Write(
        _async_writer, _read_back_blob, lambda s3, b: assert_nothing_left(s3, b, "out")
    ),
    "S3Writer": Write(
        _sync_writer, _read_back_blob, lambda s3, b: assert_nothing_left(s3, b, "out")
    ),
    "checkpoint-save": Write(
        _checkpoint_save,
        _read_back_blob,
        lambda s3, b: assert_nothing_left(s3, b, "out"),
    ),
    "dcp-save": Write(_dcp_save, _read_back_dcp, _nothing_left_dcp, torch=True),
}

UPLOAD_PART = {"method": "PUT", "query_contains": "partNumber=1"}
COMPLETE = {"method": "POST", "query_contains": "uploadId="}


@dataclass(frozen=True)
class WriteFault:
    rule: Callable[[], FaultRule]
    attempts: int
    error: Optional[str]  # None: the object is stored exactly; else nothing is left


WRITE_FAULTS: dict[str, WriteFault] = {
    # A bit flipped on the way up, checksum header kept: S3 refuses it, the upload is aborted.
    "bit-flip": WriteFault(
        lambda: FaultRule(Fault.flip_request_bit(11), **UPLOAD_PART),
        attempts=1,
        error="BadDigest",
    ),
    # The part's answer comes after the read timeout: retried (the same part may land twice).
    "slow-answer": WriteFault(
        lambda: FaultRule(Fault.delay(SILENCE), **UPLOAD_PART), attempts=2, error=None
    ),
    "slowdown-retry-after": WriteFault(
        lambda: FaultRule(Fault.status(503, "SlowDown", retry_after=30), **UPLOAD_PART),
        attempts=2,
        error=None,
    ),
    "complete-500-once": WriteFault(
        lambda: FaultRule(Fault.status(500, "InternalError"), **COMPLETE),
        attempts=2,
        error=None,
    ),
    # S3 can answer CompleteMultipartUpload with 200 and an <Error> body; every time here.
    "complete-200-error-always": WriteFault(
        lambda: FaultRule(Fault.status(200, "InternalError"), times=None, **COMPLETE),
        attempts=2,
        error="InternalError",
    ),
}

NOT_APPLICABLE: dict[tuple[str, str], str] = {
    **{
        (entry, "list-page-failing"): "lists nothing"
        for entry in [*READS, *WRITES]
        if not entry.startswith("dataset")
    },
    # Stalled and short bodies are response-body faults; upload answers carry no body to cut
    # (a silent upload answer is "slow-answer").
    **{(entry, "stalled-body"): "no response body" for entry in WRITES},
    **{(entry, "short-body"): "no response body" for entry in WRITES},
    **{(entry, "slow-first-byte"): "see slow-answer" for entry in WRITES},
    **{(entry, "slow-answer"): "see slow-first-byte" for entry in READS},
    **{(entry, "complete-500-once"): "commits nothing" for entry in READS},
    **{(entry, "complete-200-error-always"): "commits nothing" for entry in READS},
}


def _read_cases() -> Iterator[Any]:
    for entry in READS:
        for fault in READ_FAULTS:
            if (entry, fault) not in NOT_APPLICABLE:
                yield pytest.param(entry, fault, id=f"{entry}-{fault}")


def _write_cases() -> Iterator[Any]:
    for entry in WRITES:
        for fault in WRITE_FAULTS:
            if (entry, fault) not in NOT_APPLICABLE:
                yield pytest.param(entry, fault, id=f"{entry}-{fault}")


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bytes):
        return bool(actual == expected)
    import torch

    return bool(torch.equal(actual, expected))


@pytest.mark.parametrize(("entry", "fault"), list(_read_cases()))
def test_read_entry_point_under_fault(proxy, bucket, boto_s3, entry, fault):
    spec, case = READS[entry], READ_FAULTS[fault]
    if spec.torch:
        pytest.importorskip("torch")
    expected = spec.prepare(boto_s3, bucket)
    proxy.add_fault(case.rule(spec.target))
    ctx = Ctx(bucket, proxy.url, case.attempts)
    started = time.monotonic()
    if case.error is None:
        assert _equal(spec.read(ctx), expected)
    else:
        with pytest.raises(BaseException) as info:  # DCP: CheckpointException
            spec.read(ctx)
        # A DataLoader worker's S3Exception is re-raised by type in the parent; DCP gathers
        # rank failures into a CheckpointException.
        text = _messages(info.value)
        assert re.search(case.error, text), text
        assert isinstance(info.value, S3Exception) or "S3Exception" in text
    assert proxy.faults_injected >= 1
    assert time.monotonic() - started < SILENCE + 10  # never a hang


@pytest.mark.parametrize(("entry", "fault"), list(_write_cases()))
def test_write_entry_point_under_fault(proxy, bucket, boto_s3, entry, fault):
    spec, case = WRITES[entry], WRITE_FAULTS[fault]
    if spec.torch:
        pytest.importorskip("torch")
    data = payload(SIZE, 23)  # two parts: a multipart upload
    proxy.add_fault(case.rule())
    ctx = Ctx(bucket, proxy.url, case.attempts)
    if case.error is None:
        spec.write(ctx, data)
        assert spec.read_back(boto_s3, bucket) == data
    else:
        with pytest.raises(BaseException) as info:  # DCP: CheckpointException
            spec.write(ctx, data)
        text = _messages(info.value)
        assert re.search(case.error, text), text
        spec.nothing_left(boto_s3, bucket)
    assert proxy.faults_injected >= 1


def test_every_pair_is_covered() -> None:
    # Every entry point meets every fault, or the table says why it does not apply.
    faults = set(READ_FAULTS) | set(WRITE_FAULTS)
    for entry in [*READS, *WRITES]:
        mine = READ_FAULTS if entry in READS else WRITE_FAULTS
        for fault in faults:
            runs = fault in mine and (entry, fault) not in NOT_APPLICABLE
            assert runs or (entry, fault) in NOT_APPLICABLE, (entry, fault)
    for entry, fault in NOT_APPLICABLE:
        assert entry in READS or entry in WRITES
        assert fault in faults


def _messages(exc: BaseException) -> str:
    """The text of ``exc`` and of the failures it carries (DCP's CheckpointException)."""
    parts = [repr(exc), str(exc)]
    for failure in getattr(exc, "failures", {}).values():
        parts.append(repr(failure))
        inner = getattr(failure, "exception", None)
        if inner is not None:
            parts.append(repr(inner))
    return "\n".join(parts)
