"""Case 6 with several ranks: DCP save and load from a real gloo process group.

The rank processes are spawned and join the group (gloo over loopback) while the benchmark
prepares, untimed; the timed callable tells them to go and waits until every rank has finished
its ``dcp.save``/``dcp.load``. Both libraries run the same code (``package`` picks the module).

Every rank holds the whole state dict as plain (replicated) tensors: a save writes each tensor
once, DCP spreading them over the ranks; a load fills every rank's copy, so it moves
``world_size`` times the checkpoint. CPU figures cover the parent only (the ranks are reaped
after the measurement); requests are not counted.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import tempfile
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any, Callable, List

from .._data import (
    empty_state_dict,
    make_state_dict,
    state_dict_nbytes,
    verify_state_dict,
)
from .._model import Job, Outcome

_TIMEOUT = 600.0


def dcp_save_ranks(
    job: Job, package: str, world_size: int = 2
) -> Callable[[], Outcome]:
    """Case 6 (ranks): ``dcp.save`` of the state dict from ``world_size`` ranks at once."""
    return _timed(
        job, package, world_size, "save", state_dict_nbytes(job.sizes.dcp_size)
    )


def dcp_load_ranks(
    job: Job, package: str, world_size: int = 2
) -> Callable[[], Outcome]:
    """Case 6 (ranks): ``dcp.load`` of the checkpoint into every rank's state dict."""
    nbytes = world_size * state_dict_nbytes(job.sizes.dcp_size)
    return _timed(job, package, world_size, "load", nbytes)


def _timed(
    job: Job, package: str, world_size: int, op: str, nbytes: int
) -> Callable[[], Outcome]:
    pool = _RankPool(job, package, world_size, op)

    def run() -> Outcome:
        pool.go()
        # Closures, not bound methods: the worker deep-copies the Outcome (dataclasses.asdict),
        # and a copy of the pool would copy its processes.
        return Outcome(
            nbytes=nbytes,
            nobjects=1,
            check=lambda: pool.check(),
            cleanup=lambda: pool.close(),
        )

    return run


class _RankPool:
    def __init__(self, job: Job, package: str, world_size: int, op: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-ranks-")
        store = os.path.join(self._scratch.name, "rendezvous")
        self._conns: List[Connection] = []
        self._procs: List[Any] = []
        for rank in range(world_size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_rank_main,
                args=(rank, world_size, store, job, package, op, child),
                daemon=True,
            )
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        self._expect("ready")

    def _expect(self, what: str) -> None:
        for conn in self._conns:
            if not conn.poll(_TIMEOUT):
                raise TimeoutError(f"a rank did not report {what!r}")
            reply = conn.recv()
            if reply != what:
                raise RuntimeError(f"rank failed: {reply}")

    def go(self) -> None:
        for conn in self._conns:
            conn.send("go")
        self._expect("done")

    def check(self) -> None:
        for conn in self._conns:
            conn.send("check")
        self._expect("checked")

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send("stop")
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        self._scratch.cleanup()


def _rank_main(
    rank: int,
    world_size: int,
    store: str,
    job: Job,
    package: str,
    op: str,
    conn: Connection,
) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    try:
        import torch.distributed as dist
        from torch.distributed.checkpoint import state_dict_loader, state_dict_saver

        dist.init_process_group(
            "gloo",
            init_method=f"file://{store}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=_TIMEOUT),
        )
        dcp = importlib.import_module(f"{package}.dcp")
        s3client = importlib.import_module(f"{package}._s3client").S3Client
        config = importlib.import_module(package).S3ClientConfig(force_path_style=True)
        target = job.target
        client = s3client(
            target.region, endpoint=target.endpoint, s3client_config=config
        )
        client.head_object(target.bucket, job.keys.warmup_object)  # warm, untimed
        size = job.sizes.dcp_size
        if op == "save":
            state = make_state_dict(size)
            uri = target.uri(job.keys.dcp_save)
        else:
            state = empty_state_dict(size)
            uri = target.uri(job.keys.dcp_load)
        conn.send("ready")
        while True:
            command = conn.recv()
            if command == "stop":
                break
            if command == "check":
                if op == "load":
                    verify_state_dict(state, size)
                conn.send("checked")
                continue
            dist.barrier()
            if op == "save":
                writer = dcp.S3StorageWriter(target.region, uri, s3client_config=config)
                writer.fs = dcp.S3FileSystem(target.region, s3_client=client)
                state_dict_saver.save(state, storage_writer=writer)
            else:
                constructor = importlib.import_module(
                    f"{package}.s3reader"
                ).S3ReaderConstructor.dcp_optimized()
                reader = dcp.S3StorageReader(
                    target.region,
                    uri,
                    s3client_config=config,
                    reader_constructor=constructor,
                )
                reader.fs = dcp.S3FileSystem(
                    target.region, s3_client=client, reader_constructor=constructor
                )
                state_dict_loader.load(state, storage_reader=reader)
            dist.barrier()
            conn.send("done")
        dist.destroy_process_group()
    except BaseException as exc:  # report instead of hanging the parent
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")
        raise
