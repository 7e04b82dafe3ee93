"""Micro benchmark: one large object read whole, our reader against boto3, CPU split by thread.

Starts the local S3 server in its own process (``--also-s3like``: the same data on a loopback
and an S3-like port), uploads one object, then reads it ``--rounds`` times per variant,
variants interleaved within each round. Per read it prints MB/s, this process's CPU per GB,
the CPU and minor page faults per GB of the thread that receives (the event loop's, or
boto3's caller), the server's CPU per GB, the load average, and for our reader the widths it
measured (``StreamWidth.history``).

Variants: ``boto3`` (``get_object()['Body'].read()``), ``dlfo`` (``download_fileobj``, 10
threads), ``ours`` (``await AsyncS3Client.get_object(...).read()``, size unknown), ``ours:W`` (the
same with ``max_concurrency`` forced to ``W``), ``ours+size`` (the size passed in, as listing
information gives it), ``ours=W`` (exactly ``W`` streams from the first GET on, never
re-measured: the steady state of a width without the ramp). Set ``S3TORCH_ASYNC_PREFAULT=0`` for the reader without
pre-faulted results. ``--timeline`` also prints where our reads' time goes: per GET the
first-byte wait and body rate, the idle time between one stream's GETs, and the streams in
flight over the read.

Run: ``python -m benchmarks.read_micro [--profile loopback|s3like] [--size 1GiB]
[--rounds 3] [--variants boto3,ours]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import os
import resource
import time
from typing import Any, Callable, List

import boto3
import botocore.config
from boto3.s3.transfer import TransferConfig

from benchmarks._model import parse_size
from benchmarks.s3server import ServerProcess
from s3torch_async import AsyncS3Client, S3ClientConfig
from s3torch_async._core._planning import StreamWidth

BUCKET = "read-micro"
KEY = "big"
REGION = "us-east-1"


def _env() -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )


def _boto3(url: str) -> Any:
    config = botocore.config.Config(
        s3={"addressing_style": "path"}, max_pool_connections=10
    )
    return boto3.client("s3", endpoint_url=url, region_name=REGION, config=config)


def _measure(name: str, read: Callable[[], int], server: ServerProcess) -> None:
    thread0 = resource.getrusage(resource.RUSAGE_THREAD)
    cpu0 = time.process_time()
    server0 = server.cpu_seconds()
    t0 = time.perf_counter()
    nbytes = read()
    elapsed = time.perf_counter() - t0
    thread1 = resource.getrusage(resource.RUSAGE_THREAD)
    gb = nbytes / 1e9
    thread_cpu = (
        thread1.ru_utime + thread1.ru_stime - thread0.ru_utime - thread0.ru_stime
    )
    print(
        f"{name:14s} {nbytes / elapsed / 1e6:8.1f} MB/s  "
        f"client {(time.process_time() - cpu0) / gb:.2f} CPU-s/GB "
        f"(receiving thread {thread_cpu / gb:.2f}, "
        f"{(thread1.ru_minflt - thread0.ru_minflt) / gb / 1000:.0f}k faults/GB)  "
        f"server {(server.cpu_seconds() - server0) / gb:.2f} CPU-s/GB  "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )


class _Timeline:
    """Per-GET times of one read, recorded around the client's calls (a benchmark probe).

    Each GET is ``(task, sent, first_byte, done, nbytes)``; a read's GETs run in tasks that
    each fetch one piece after another, so GETs of one task are one stream's.
    """

    def __init__(self, client: AsyncS3Client, transport: Any) -> None:
        self.gets: List[List[Any]] = []
        self._heads: dict[Any, float] = {}
        get_range_into = client.get_range_into
        open_get = transport.open_get

        async def timed_open_get(*args: Any, **kwargs: Any) -> Any:
            body = await open_get(*args, **kwargs)
            self._heads[asyncio.current_task()] = time.perf_counter()
            return body

        async def timed_get(*args: Any, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            sent = time.perf_counter()
            meta = await get_range_into(*args, **kwargs)
            done = time.perf_counter()
            first = self._heads.pop(task, sent)
            self.gets.append([task, sent, first, done, meta.nbytes])
            return meta

        client.get_range_into = timed_get  # type: ignore[method-assign]
        transport.open_get = timed_open_get

    def report(self, began: float, ended: float) -> None:
        gets, self.gets = self.gets, []
        if not gets:
            return
        waits = sorted(g[2] - g[1] for g in gets)
        rates = sorted(g[4] / max(g[3] - g[2], 1e-9) / 1e6 for g in gets)
        gaps: List[float] = []
        by_task: dict[Any, List[List[Any]]] = {}
        for g in gets:
            by_task.setdefault(g[0], []).append(g)
        for mine in by_task.values():
            mine.sort(key=lambda g: g[1])
            gaps += [b[1] - a[3] for a, b in zip(mine, mine[1:])]
        gaps.sort()
        total = ended - began
        streams_time = sum(g[3] - g[1] for g in gets)

        def q(xs: List[float], f: float) -> float:
            return xs[min(len(xs) - 1, int(f * len(xs)))] if xs else 0.0

        print(
            f"   {len(gets)} GETs, {len(by_task)} streams; first byte ms p50 "
            f"{q(waits, 0.5) * 1e3:.1f} p90 {q(waits, 0.9) * 1e3:.1f}; body MB/s p10 "
            f"{q(rates, 0.1):.0f} p50 {q(rates, 0.5):.0f}; gap between a stream's GETs ms "
            f"p50 {q(gaps, 0.5) * 1e3:.1f} p90 {q(gaps, 0.9) * 1e3:.1f}; mean streams in "
            f"flight {streams_time / total:.1f}; waiting for first bytes "
            f"{sum(g[2] - g[1] for g in gets) / streams_time:.0%} of stream time"
        )
        first_sent = min(g[1] for g in gets)
        print(
            f"   ramp: first GET sent at {(first_sent - began) * 1e3:.1f} ms, the last "
            f"stream started at {(max(m[0][1] for m in by_task.values()) - began) * 1e3:.1f}"
            f" ms, the last GET done at {(max(g[3] for g in gets) - began) * 1e3:.1f} ms "
            f"of {total * 1e3:.1f}"
        )
        steps = 10
        counts = []
        for i in range(steps):
            t = began + total * (i + 0.5) / steps
            counts.append(sum(1 for g in gets if g[1] <= t < g[3]))
        print("   streams in flight per tenth of the read:", counts)


def _ours(
    url: str,
    width: int,
    sized: bool,
    loop: asyncio.AbstractEventLoop,
    timeline: bool = False,
    fixed: int = 0,
) -> Callable[[], int]:
    client = AsyncS3Client(
        REGION, endpoint=url, s3client_config=S3ClientConfig(force_path_style=True)
    )
    if width:
        settings = client._resolved()  # a benchmark knob, not an API
        client._settings = dataclasses.replace(settings, max_concurrency=width)
    loop.run_until_complete(client.__aenter__())
    head = loop.run_until_complete(client.head_object(BUCKET, KEY))  # warm connection
    probe = (
        _Timeline(client, loop.run_until_complete(client._client()))
        if timeline
        else None
    )

    async def go() -> int:
        reader = client.get_object(BUCKET, KEY, object_info=head if sized else None)
        if fixed:  # exactly `fixed` streams from the start, never re-measured
            target = client.s3client_config.throughput_target_gbps * 1e9 / 8
            reader._width = StreamWidth(fixed, target, start=fixed, reach=fixed)
        began = time.perf_counter()
        data = await reader.read()
        if probe is not None:
            probe.report(began, time.perf_counter())
        await reader.aclose()
        measured = getattr(reader, "_width", None)  # absent before the measured width
        history = measured.history if measured else []
        print("   widths", [(w, round(rate / 1e6)) for w, rate in history])
        return len(data)

    def read() -> int:
        try:
            return loop.run_until_complete(go())
        finally:
            loop.run_until_complete(client.aclose())

    return read


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.read_micro")
    parser.add_argument("--profile", choices=("loopback", "s3like"), default="loopback")
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="boto3,ours")
    parser.add_argument(
        "--timeline", action="store_true", help="per-GET times of our reads"
    )
    args = parser.parse_args(argv)
    _env()
    size = parse_size(args.size)
    with ServerProcess(extra_args=["--also-s3like"]) as server:
        url = server.urls[0] if args.profile == "loopback" else server.urls[1]
        setup = _boto3(server.urls[0])
        setup.create_bucket(Bucket=BUCKET)
        payload = os.urandom(1 << 20) * (size >> 20) + os.urandom(size % (1 << 20))
        setup.upload_fileobj(io.BytesIO(payload), BUCKET, KEY)
        del payload
        s3 = _boto3(url)
        loop = asyncio.new_event_loop()
        for _ in range(args.rounds):
            for variant in args.variants.split(","):
                if variant == "boto3":
                    read = lambda: len(  # noqa: E731
                        s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
                    )
                elif variant == "dlfo":

                    def read() -> int:
                        buf = io.BytesIO()
                        config = TransferConfig(max_concurrency=10)
                        s3.download_fileobj(BUCKET, KEY, buf, Config=config)
                        return len(buf.getbuffer())

                else:
                    name, _, fixed = variant.partition("=")
                    name, _, width = name.partition(":")
                    read = _ours(
                        url,
                        int(width or 0),
                        name == "ours+size",
                        loop,
                        args.timeline,
                        int(fixed or 0),
                    )
                _measure(variant, read, server)
        loop.close()


if __name__ == "__main__":
    main()
