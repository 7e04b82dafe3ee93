"""obstore (Rust ``object_store``) with its default settings and path-style requests."""

from __future__ import annotations

import io
from typing import Any, Callable

from .._data import make_state_dict, state_dict_nbytes, verify_state_dict
from .._model import Job, Outcome
from ._common import list_outcome, many_outcome, read_outcome, write_payload


def make_store(job: Job) -> Any:
    """An ``S3Store`` for the target's bucket (credentials from the environment)."""
    from obstore.store import S3Store

    kwargs: dict[str, Any] = {"region": job.target.region}
    if job.target.endpoint:
        kwargs.update(
            endpoint=job.target.endpoint,
            allow_http=job.target.endpoint.startswith("http://"),
            virtual_hosted_style_request=False,
        )
    return S3Store(job.target.bucket, **kwargs)


def _warm(job: Job, store: Any) -> None:
    import obstore

    obstore.head(store, job.keys.warmup_object)


def get(job: Job) -> Callable[[], Outcome]:
    """Case 1: ``obstore.get(...).bytes()``."""
    import obstore

    store = make_store(job)
    _warm(job, store)

    def run() -> Outcome:
        data = obstore.get(store, job.keys.read_object).bytes()
        return read_outcome(memoryview(data), job)

    return run


def loop(job: Job) -> Callable[[], Outcome]:
    """Case 2: ``obstore.list`` the prefix, then ``get(...).bytes()`` each object (cold client)."""
    import obstore

    def run() -> Outcome:
        store = make_store(job)
        total = count = 0
        for batch in obstore.list(store, job.keys.small_prefix):
            for meta in batch:
                total += len(obstore.get(store, meta["path"]).bytes())
                count += 1
        return many_outcome(total, count, job)

    return run


#: Requests in flight for :func:`loop16` (the issue's "obstore with 16 in flight").
_IN_FLIGHT = 16


def loop16(job: Job) -> Callable[[], Outcome]:
    """Case 2: ``obstore.list`` the prefix, then ``get_async`` with 16 requests in flight."""
    import asyncio

    import obstore

    async def fetch_all() -> tuple[int, int]:
        store = make_store(job)
        paths = [
            m["path"] for b in obstore.list(store, job.keys.small_prefix) for m in b
        ]
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def one(path: str) -> int:
            async with gate:
                result = await obstore.get_async(store, path)
                return len(await result.bytes_async())

        sizes = await asyncio.gather(*(one(p) for p in paths))
        return sum(sizes), len(sizes)

    def run() -> Outcome:
        total, count = asyncio.run(fetch_all())
        return many_outcome(total, count, job)

    return run


def put(job: Job) -> Callable[[], Outcome]:
    """Case 3: ``obstore.put`` of the whole buffer (multipart above 5 MB, 12 in flight)."""
    import obstore

    store = make_store(job)
    data = write_payload(job)
    _warm(job, store)

    def run() -> Outcome:
        obstore.put(store, job.keys.write_object, data)
        return Outcome(nbytes=len(data), nobjects=1)

    return run


def list_keys(job: Job) -> Callable[[], Outcome]:
    """Case 4: ``obstore.list`` batches."""
    import obstore

    store = make_store(job)
    _warm(job, store)

    def run() -> Outcome:
        count = sum(len(batch) for batch in obstore.list(store, job.keys.list_prefix))
        return list_outcome(count, job)

    return run


def checkpoint_save(job: Job) -> Callable[[], Outcome]:
    """Case 5: ``torch.save`` into a ``BytesIO``, then ``obstore.put`` (cold client)."""
    import obstore
    import torch

    size = job.sizes.checkpoint_size
    state = make_state_dict(size)

    def run() -> Outcome:
        store = make_store(job)
        buf = io.BytesIO()
        torch.save(state, buf)
        obstore.put(store, job.keys.checkpoint_save, buf.getbuffer())
        return Outcome(nbytes=state_dict_nbytes(size), nobjects=1)

    return run


def checkpoint_load(job: Job) -> Callable[[], Outcome]:
    """Case 5: ``obstore.get(...).bytes()``, then ``torch.load`` (cold client)."""
    import obstore
    import torch

    size = job.sizes.checkpoint_size

    def run() -> Outcome:
        store = make_store(job)
        data = obstore.get(store, job.keys.checkpoint_load).bytes()
        state = torch.load(io.BytesIO(memoryview(data)), weights_only=True)
        return Outcome(
            nbytes=state_dict_nbytes(size),
            nobjects=1,
            check=lambda: verify_state_dict(state, size),
        )

    return run
