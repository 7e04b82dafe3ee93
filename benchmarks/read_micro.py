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
information gives it). Set ``S3TORCH_ASYNC_PREFAULT=0`` for the reader without
pre-faulted results.

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


def _ours(
    url: str, width: int, sized: bool, loop: asyncio.AbstractEventLoop
) -> Callable[[], int]:
    client = AsyncS3Client(
        REGION, endpoint=url, s3client_config=S3ClientConfig(force_path_style=True)
    )
    if width:
        settings = client._resolved()  # a benchmark knob, not an API
        client._settings = dataclasses.replace(settings, max_concurrency=width)
    loop.run_until_complete(client.__aenter__())
    head = loop.run_until_complete(client.head_object(BUCKET, KEY))  # warm connection

    async def go() -> int:
        reader = client.get_object(BUCKET, KEY, object_info=head if sized else None)
        data = await reader.read()
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
                    name, _, width = variant.partition(":")
                    read = _ours(url, int(width or 0), name == "ours+size", loop)
                _measure(variant, read, server)
        loop.close()


if __name__ == "__main__":
    main()
