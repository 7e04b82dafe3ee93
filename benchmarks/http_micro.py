"""Micro benchmark: aiohttp vs ``s3torch_async._core._http.HTTPPool`` on the hot S3 calls.

Against the local fast S3 server (its own process, so client CPU is clean): 500 GETs of
128 KiB objects at concurrency 8 (aiohttp reads with ``resp.content.readany()`` into a
bytearray, HTTPPool with ``readinto`` into a preallocated one), one 256 MiB GET into one buffer
and one 64 MiB PUT, 3 rounds interleaved. Reports objects/s (or MB/s) and this process's CPU.

Run: ``python -m benchmarks.http_micro [--rounds 3] [--objects 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import time
from collections.abc import Awaitable
from typing import Any, Callable

import aiohttp
import boto3
import botocore.config
from yarl import URL

from benchmarks.s3server import ServerProcess
from s3torch_async._core._http import HTTPPool

BUCKET = "http-micro"
SMALL = 128 << 10
BIG = 256 << 20
PUT_SIZE = 64 << 20
CONCURRENCY = 8


class Client:
    """One HTTP stack with the three operations under test."""

    name = ""

    async def get_into(self, url: str, host: str, view: memoryview) -> int:
        raise NotImplementedError

    async def put(self, url: str, host: str, body: bytes) -> int:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class AiohttpClient(Client):
    """Configured as the lean transport configures its session."""

    name = "aiohttp"

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=60),
            auto_decompress=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding", "Accept"),
            read_bufsize=2**20,
        )

    async def get_into(self, url: str, host: str, view: memoryview) -> int:
        resp = await self.session.get(URL(url, encoded=True), headers={"Host": host})
        async with resp:
            assert resp.status == 200, resp.status
            pos = 0
            while chunk := await resp.content.readany():
                n = len(chunk)
                view[pos : pos + n] = chunk
                pos += n
            return pos

    async def put(self, url: str, host: str, body: bytes) -> int:
        resp = await self.session.put(
            URL(url, encoded=True), headers={"Host": host}, data=io.BytesIO(body)
        )
        async with resp:
            await resp.read()
            return resp.status

    async def aclose(self) -> None:
        await self.session.close()


class PoolClient(Client):
    name = "HTTPPool"

    def __init__(self) -> None:
        self.pool = HTTPPool(limit=64, connect_timeout=10, read_timeout=60)

    async def get_into(self, url: str, host: str, view: memoryview) -> int:
        resp = await self.pool.request("GET", url, {"Host": host})
        async with resp:
            assert resp.status == 200, resp.status
            pos = 0
            while n := await resp.readinto(view[pos:]):
                pos += n
            return pos

    async def put(self, url: str, host: str, body: bytes) -> int:
        resp = await self.pool.request("PUT", url, {"Host": host}, body)
        async with resp:
            await resp.read()
            return resp.status

    async def aclose(self) -> None:
        await self.pool.aclose()


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one awaited call."""
    c0, t0 = time.process_time(), time.perf_counter()
    await fn()
    return time.perf_counter() - t0, time.process_time() - c0


async def small_gets(client: Client, base: str, host: str, count: int) -> None:
    keys = iter(range(count))

    async def worker() -> None:
        view = memoryview(bytearray(SMALL))
        for i in keys:
            n = await client.get_into(f"{base}/{BUCKET}/small/{i:05d}", host, view)
            assert n == SMALL, n

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def run(url: str, rounds: int, count: int) -> dict[str, dict[str, list[float]]]:
    host = url.split("://", 1)[1]
    clients: list[Client] = [AiohttpClient(), PoolClient()]
    keys = ("obj/s", "cpu_ms/get", "get_MBps", "get_cpu_s", "put_MBps", "put_cpu_s")
    results: dict[str, dict[str, list[float]]] = {
        c.name: {k: [] for k in keys} for c in clients
    }
    big_buf = memoryview(bytearray(BIG))
    put_body = os.urandom(PUT_SIZE)
    try:
        for c in clients:  # warm up: connections, code paths
            await small_gets(c, url, host, min(count, 64))
        for _ in range(rounds):
            for c in clients:
                r = results[c.name]

                async def gets(c: Client = c) -> None:
                    await small_gets(c, url, host, count)

                wall, cpu = await timed(gets)
                r["obj/s"].append(count / wall)
                r["cpu_ms/get"].append(cpu * 1000 / count)

                async def big(c: Client = c) -> None:
                    n = await c.get_into(f"{url}/{BUCKET}/big", host, big_buf)
                    assert n == BIG, n

                wall, cpu = await timed(big)
                r["get_MBps"].append(BIG / wall / 1e6)
                r["get_cpu_s"].append(cpu)

                async def put(c: Client = c) -> None:
                    status = await c.put(f"{url}/{BUCKET}/put", host, put_body)
                    assert status == 200, status

                wall, cpu = await timed(put)
                r["put_MBps"].append(PUT_SIZE / wall / 1e6)
                r["put_cpu_s"].append(cpu)
    finally:
        for c in clients:
            await c.aclose()
    return results


def populate(url: str, count: int) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=BUCKET)
    small = os.urandom(SMALL)
    for i in range(count):
        s3.put_object(Bucket=BUCKET, Key=f"small/{i:05d}", Body=small)
    s3.put_object(Bucket=BUCKET, Key="big", Body=os.urandom(BIG))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=500)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b", AWS_REGION="us-east-1"
    )
    with ServerProcess(etag_mode="fast") as srv:
        populate(srv.url, args.objects)
        results = asyncio.run(run(srv.url, args.rounds, args.objects))
    cols = (
        ("GET 128K obj/s", "obj/s", "{:.0f}"),
        ("CPU ms/GET", "cpu_ms/get", "{:.3f}"),
        ("GET 256M MB/s", "get_MBps", "{:.0f}"),
        ("GET 256M CPU s", "get_cpu_s", "{:.3f}"),
        ("PUT 64M MB/s", "put_MBps", "{:.0f}"),
        ("PUT 64M CPU s", "put_cpu_s", "{:.3f}"),
    )
    print(
        f"{args.objects} x 128 KiB GETs at concurrency {CONCURRENCY}, one 256 MiB GET, "
        f"one 64 MiB PUT; {args.rounds} interleaved rounds: median (min-max)"
    )
    width = 24
    print(f"{'client':<10}" + "".join(title.rjust(width) for title, _, _ in cols))
    for name, r in results.items():
        cells = []
        for _, key, fmt in cols:
            v = r[key]
            med, lo, hi = (
                fmt.format(x) for x in (statistics.median(v), min(v), max(v))
            )
            cells.append(f"{med} ({lo}-{hi})".rjust(width))
        print(f"{name:<10}" + "".join(cells))


if __name__ == "__main__":
    main()
