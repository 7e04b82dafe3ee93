"""s3fs (fsspec over aiobotocore) with its default settings and path-style addressing."""

from __future__ import annotations

from typing import Any, Callable

from .._data import make_state_dict, state_dict_nbytes, verify_state_dict
from .._model import Job, Outcome
from ._common import list_outcome, many_outcome, read_outcome, write_payload


def make_fs(job: Job) -> Any:
    """A fresh (uncached) ``S3FileSystem`` for the target."""
    import s3fs

    return s3fs.S3FileSystem(
        endpoint_url=job.target.endpoint,
        client_kwargs={"region_name": job.target.region},
        config_kwargs={"s3": {"addressing_style": "path"}},
        skip_instance_cache=True,
    )


def _path(job: Job, key: str) -> str:
    return f"{job.target.bucket}/{key}"


def _warm(job: Job, fs: Any) -> None:
    fs.info(_path(job, job.keys.warmup_object))


def cat_file(job: Job) -> Callable[[], Outcome]:
    """Case 1: ``cat_file``."""
    fs = make_fs(job)
    _warm(job, fs)

    def run() -> Outcome:
        return read_outcome(fs.cat_file(_path(job, job.keys.read_object)), job)

    return run


def loop(job: Job) -> Callable[[], Outcome]:
    """Case 2: ``find`` the prefix, then ``cat_file`` each object (cold client)."""

    def run() -> Outcome:
        fs = make_fs(job)
        total = count = 0
        for path in fs.find(_path(job, job.keys.small_prefix)):
            total += len(fs.cat_file(path))
            count += 1
        return many_outcome(total, count, job)

    return run


def pipe(job: Job) -> Callable[[], Outcome]:
    """Case 3: ``pipe`` (multipart above s3fs's block size)."""
    fs = make_fs(job)
    data = write_payload(job)
    _warm(job, fs)

    def run() -> Outcome:
        fs.pipe(_path(job, job.keys.write_object), data)
        return Outcome(nbytes=len(data), nobjects=1)

    return run


def list_keys(job: Job) -> Callable[[], Outcome]:
    """Case 4: ``find`` (recursive ListObjectsV2)."""
    fs = make_fs(job)
    _warm(job, fs)

    def run() -> Outcome:
        return list_outcome(len(fs.find(_path(job, job.keys.list_prefix))), job)

    return run


def checkpoint_save(job: Job) -> Callable[[], Outcome]:
    """Case 5: ``torch.save`` into ``fs.open(..., "wb")`` (cold client)."""
    import torch

    size = job.sizes.checkpoint_size
    state = make_state_dict(size)

    def run() -> Outcome:
        fs = make_fs(job)
        with fs.open(_path(job, job.keys.checkpoint_save), "wb") as fh:
            torch.save(state, fh)
        return Outcome(nbytes=state_dict_nbytes(size), nobjects=1)

    return run


def checkpoint_load(job: Job) -> Callable[[], Outcome]:
    """Case 5: ``torch.load`` from ``fs.open(..., "rb")`` (cold client)."""
    import torch

    size = job.sizes.checkpoint_size

    def run() -> Outcome:
        fs = make_fs(job)
        with fs.open(_path(job, job.keys.checkpoint_load), "rb") as fh:
            state = torch.load(fh, weights_only=True)
        return Outcome(
            nbytes=state_dict_nbytes(size),
            nobjects=1,
            check=lambda: verify_state_dict(state, size),
        )

    return run
