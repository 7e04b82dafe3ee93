"""boto3 with its default settings, path-style addressing, and a 10-thread ``TransferConfig``."""

from __future__ import annotations

import io
from typing import Any, Callable

from .._data import make_state_dict, state_dict_nbytes, verify_state_dict
from .._model import Job, Outcome
from ._common import list_outcome, many_outcome, read_outcome, write_payload

#: Threads for ``download_fileobj`` / ``upload_fileobj`` (the issue's setting).
TRANSFER_THREADS = 10


def make_client(job: Job) -> Any:
    """A boto3 S3 client for the target (pool sized for the transfer threads)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        region_name=job.target.region,
        endpoint_url=job.target.endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=TRANSFER_THREADS,
        ),
    )


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(max_concurrency=TRANSFER_THREADS)


def _warm(job: Job, s3: Any) -> None:
    s3.head_object(Bucket=job.target.bucket, Key=job.keys.warmup_object)


def get_object(job: Job) -> Callable[[], Outcome]:
    """Case 1: ``get_object()['Body'].read()``."""
    s3 = make_client(job)
    _warm(job, s3)

    def run() -> Outcome:
        body = s3.get_object(Bucket=job.target.bucket, Key=job.keys.read_object)
        return read_outcome(body["Body"].read(), job)

    return run


def download_fileobj(job: Job) -> Callable[[], Outcome]:
    """Case 1: ``download_fileobj`` into a ``BytesIO`` (10 threads)."""
    s3 = make_client(job)
    config = _transfer_config()
    _warm(job, s3)

    def run() -> Outcome:
        buf = io.BytesIO()
        s3.download_fileobj(job.target.bucket, job.keys.read_object, buf, Config=config)
        return read_outcome(buf.getbuffer(), job)

    return run


def loop(job: Job) -> Callable[[], Outcome]:
    """Case 2: list the prefix, then ``get_object()['Body'].read()`` each key (cold client)."""

    def run() -> Outcome:
        s3 = make_client(job)
        total = count = 0
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=job.target.bucket, Prefix=job.keys.small_prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=job.target.bucket, Key=item["Key"])
                total += len(body["Body"].read())
                count += 1
        return many_outcome(total, count, job)

    return run


def upload_fileobj(job: Job) -> Callable[[], Outcome]:
    """Case 3: ``upload_fileobj`` from a ``BytesIO`` (10 threads)."""
    s3 = make_client(job)
    config = _transfer_config()
    data = write_payload(job)
    _warm(job, s3)

    def run() -> Outcome:
        s3.upload_fileobj(
            io.BytesIO(data), job.target.bucket, job.keys.write_object, Config=config
        )
        return Outcome(nbytes=len(data), nobjects=1)

    return run


def list_keys(job: Job) -> Callable[[], Outcome]:
    """Case 4: the ``list_objects_v2`` paginator."""
    s3 = make_client(job)
    _warm(job, s3)

    def run() -> Outcome:
        count = 0
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=job.target.bucket, Prefix=job.keys.list_prefix
        )
        for page in pages:
            count += len(page.get("Contents", []))
        return list_outcome(count, job)

    return run


def checkpoint_save(job: Job) -> Callable[[], Outcome]:
    """Case 5: ``torch.save`` into a ``BytesIO``, then ``upload_fileobj`` (cold client)."""
    import torch

    size = job.sizes.checkpoint_size
    state = make_state_dict(size)

    def run() -> Outcome:
        s3 = make_client(job)
        buf = io.BytesIO()
        torch.save(state, buf)
        buf.seek(0)
        s3.upload_fileobj(
            buf, job.target.bucket, job.keys.checkpoint_save, Config=_transfer_config()
        )
        return Outcome(nbytes=state_dict_nbytes(size), nobjects=1)

    return run


def checkpoint_load(job: Job) -> Callable[[], Outcome]:
    """Case 5: ``download_fileobj`` into a ``BytesIO``, then ``torch.load`` (cold client)."""
    import torch

    size = job.sizes.checkpoint_size

    def run() -> Outcome:
        s3 = make_client(job)
        buf = io.BytesIO()
        s3.download_fileobj(
            job.target.bucket, job.keys.checkpoint_load, buf, Config=_transfer_config()
        )
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        return Outcome(
            nbytes=state_dict_nbytes(size),
            nobjects=1,
            check=lambda: verify_state_dict(state, size),
        )

    return run
