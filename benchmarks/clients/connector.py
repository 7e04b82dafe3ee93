"""The reference connector API, run against either package.

s3torch-async is a drop-in for s3torchconnector, so one implementation measures both:
``package`` is ``"s3torch_async"`` or ``"s3torchconnector"`` and every name is looked up under
the reference's module paths (``_s3client.S3Client``, ``s3reader.S3ReaderConstructor``,
``s3iterable_dataset.S3IterableDataset``, ``s3checkpoint.S3Checkpoint``, ``dcp``).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .._data import (
    empty_state_dict,
    make_state_dict,
    state_dict_nbytes,
    verify_state_dict,
)
from .._model import Job, Outcome
from ._common import (
    list_outcome,
    many_outcome,
    read_len,
    read_outcome,
    slices,
    write_payload,
)

#: Case 2's map-style DataLoader batch size.
MAP_BATCH_SIZE = 32


def _config(package: str) -> Any:
    return importlib.import_module(package).S3ClientConfig(force_path_style=True)


def _client(job: Job, package: str) -> Any:
    s3client = importlib.import_module(f"{package}._s3client").S3Client
    return s3client(
        job.target.region,
        endpoint=job.target.endpoint,
        s3client_config=_config(package),
    )


def _warm(job: Job, client: Any) -> None:
    client.head_object(job.target.bucket, job.keys.warmup_object)


def read(job: Job, package: str, reader: str = "sequential") -> Callable[[], Outcome]:
    """Case 1: ``S3Client.get_object(..., reader_constructor=...).read()``."""
    client = _client(job, package)
    constructors = importlib.import_module(f"{package}.s3reader").S3ReaderConstructor
    constructor = getattr(constructors, reader)()
    bucket, key = job.target.bucket, job.keys.read_object
    _warm(job, client)

    def run() -> Outcome:
        data = client.get_object(bucket, key, reader_constructor=constructor).read()
        return read_outcome(data, job)

    return run


def _from_prefix(job: Job, package: str, module: str, cls: str, **options: Any) -> Any:
    """``<cls>.from_prefix`` over case 2's objects, ``read_len`` as transform."""
    dataset_cls = getattr(importlib.import_module(f"{package}.{module}"), cls)
    return dataset_cls.from_prefix(
        job.target.uri(job.keys.small_prefix),
        region=job.target.region,
        endpoint=job.target.endpoint,
        transform=read_len,
        s3client_config=_config(package),
        **options,
    )


def dataset(job: Job, package: str, num_workers: int = 0) -> Callable[[], Outcome]:
    """Case 2: ``S3IterableDataset.from_prefix`` through a ``DataLoader`` (cold client)."""
    from torch.utils.data import DataLoader

    importlib.import_module(f"{package}.s3iterable_dataset")

    def run() -> Outcome:
        ds = _from_prefix(
            job,
            package,
            "s3iterable_dataset",
            "S3IterableDataset",
            enable_sharding=num_workers > 0,
        )
        loader = DataLoader(ds, batch_size=None, num_workers=num_workers)
        total = count = 0
        for size in loader:
            total += int(size)
            count += 1
        del loader  # joins the workers, so their CPU time reaches RUSAGE_CHILDREN
        return many_outcome(total, count, job)

    return run


def map_dataset(
    job: Job, package: str, num_workers: int = 0, shuffle: bool = False
) -> Callable[[], Outcome]:
    """Case 2: ``S3MapDataset.from_prefix`` through a ``DataLoader(batch_size=32)`` (cold client).

    ``shuffle`` is the DataLoader's (random access), not the dataset's.
    """
    from torch.utils.data import DataLoader

    importlib.import_module(f"{package}.s3map_dataset")

    def run() -> Outcome:
        ds = _from_prefix(job, package, "s3map_dataset", "S3MapDataset")
        loader = DataLoader(
            ds, batch_size=MAP_BATCH_SIZE, shuffle=shuffle, num_workers=num_workers
        )
        total = count = 0
        for sizes in loader:
            total += int(sizes.sum())
            count += len(sizes)
        del loader  # joins the workers, so their CPU time reaches RUSAGE_CHILDREN
        return many_outcome(total, count, job)

    return run


def write(job: Job, package: str) -> Callable[[], Outcome]:
    """Case 3: ``S3Client.put_object`` writer, fed 8 MiB slices."""
    client = _client(job, package)
    data = write_payload(job)
    pieces = slices(data)
    bucket, key = job.target.bucket, job.keys.write_object
    _warm(job, client)

    def run() -> Outcome:
        writer = client.put_object(bucket, key)
        for piece in pieces:
            writer.write(piece)
        writer.close()
        return Outcome(nbytes=len(data), nobjects=1, extra=_writer_bound(package))

    return run


def _writer_bound(package: str) -> dict[str, Any]:
    """The writer's memory bound: part size x (parts in flight + the part being filled)."""
    if package != "s3torch_async":
        return {}
    config = _config(package)
    try:  # an internal helper: if it changes, the bound is simply not reported
        planning = importlib.import_module("s3torch_async._core._planning")
        rule = (  # the widest window, else the planned one (older: the reads' rule)
            getattr(planning, "upload_window_reach", None)
            or getattr(planning, "upload_concurrency_for", None)
            or planning.concurrency_for
        )
        in_flight = int(rule(config.throughput_target_gbps, config.part_size))
    except (ImportError, AttributeError, TypeError, ValueError):
        return {}
    # +2: the part being filled and one full part held back until more data arrives
    return {"rss_bound_bytes": config.part_size * (in_flight + 2)}


def list_keys(job: Job, package: str) -> Callable[[], Outcome]:
    """Case 4: ``S3Client.list_objects`` pages."""
    client = _client(job, package)
    bucket, prefix = job.target.bucket, job.keys.list_prefix
    _warm(job, client)

    def run() -> Outcome:
        count = 0
        for page in client.list_objects(bucket, prefix):
            count += len(page.object_info)
        return list_outcome(count, job)

    return run


def checkpoint_save(job: Job, package: str) -> Callable[[], Outcome]:
    """Case 5: ``torch.save`` into ``S3Checkpoint.writer`` (cold client)."""
    import torch

    module = importlib.import_module(f"{package}.s3checkpoint")
    size = job.sizes.checkpoint_size
    state = make_state_dict(size)
    uri = job.target.uri(job.keys.checkpoint_save)

    def run() -> Outcome:
        checkpoint = module.S3Checkpoint(
            job.target.region,
            endpoint=job.target.endpoint,
            s3client_config=_config(package),
        )
        with checkpoint.writer(uri) as writer:
            torch.save(state, writer)
        return Outcome(nbytes=state_dict_nbytes(size), nobjects=1)

    return run


def checkpoint_load(job: Job, package: str) -> Callable[[], Outcome]:
    """Case 5: ``torch.load`` from ``S3Checkpoint.reader`` (cold client)."""
    import torch

    module = importlib.import_module(f"{package}.s3checkpoint")
    size = job.sizes.checkpoint_size
    uri = job.target.uri(job.keys.checkpoint_load)

    def run() -> Outcome:
        checkpoint = module.S3Checkpoint(
            job.target.region,
            endpoint=job.target.endpoint,
            s3client_config=_config(package),
        )
        with checkpoint.reader(uri) as reader:
            state = torch.load(reader, weights_only=True)
        return Outcome(
            nbytes=state_dict_nbytes(size),
            nobjects=1,
            check=lambda: verify_state_dict(state, size),
        )

    return run


def _dcp_filesystem(job: Job, package: str, reader_constructor: Any = None) -> Any:
    # S3StorageWriter/Reader take no endpoint (the reference reads none); give them a file
    # system whose client points at the endpoint under test.
    dcp = importlib.import_module(f"{package}.dcp")
    kwargs: dict[str, Any] = {"s3_client": _client(job, package)}
    if reader_constructor is not None:
        kwargs["reader_constructor"] = reader_constructor
    return dcp.S3FileSystem(job.target.region, **kwargs)


def dcp_save(job: Job, package: str) -> Callable[[], Outcome]:
    """Case 6: ``torch.distributed.checkpoint.save`` with ``S3StorageWriter`` (cold client)."""
    from torch.distributed.checkpoint.state_dict_saver import save

    dcp = importlib.import_module(f"{package}.dcp")
    size = job.sizes.dcp_size
    state = make_state_dict(size)
    uri = job.target.uri(job.keys.dcp_save)

    def run() -> Outcome:
        writer = dcp.S3StorageWriter(
            job.target.region, uri, s3client_config=_config(package)
        )
        writer.fs = _dcp_filesystem(job, package)
        save(state, storage_writer=writer)
        return Outcome(nbytes=state_dict_nbytes(size), nobjects=1)

    return run


def dcp_load(job: Job, package: str) -> Callable[[], Outcome]:
    """Case 6: ``torch.distributed.checkpoint.load`` with ``S3StorageReader`` (cold client)."""
    from torch.distributed.checkpoint.state_dict_loader import load

    dcp = importlib.import_module(f"{package}.dcp")
    constructors = importlib.import_module(f"{package}.s3reader").S3ReaderConstructor
    size = job.sizes.dcp_size
    state = empty_state_dict(size)
    uri = job.target.uri(job.keys.dcp_load)

    def run() -> Outcome:
        constructor = constructors.dcp_optimized()
        reader = dcp.S3StorageReader(
            job.target.region,
            uri,
            s3client_config=_config(package),
            reader_constructor=constructor,
        )
        reader.fs = _dcp_filesystem(job, package, constructor)
        load(state, storage_reader=reader)
        return Outcome(
            nbytes=state_dict_nbytes(size),
            nobjects=1,
            check=lambda: verify_state_dict(state, size),
        )

    return run
