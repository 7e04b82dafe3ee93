"""Micro benchmark: aiohttp vs ``s3torch_async._core._http.HTTPPool`` on the hot S3 calls.

Against the local fast S3 server (its own process, so client CPU is clean): 500 GETs of
128 KiB objects at concurrency 8 (aiohttp reads with ``resp.content.readany()`` into a
bytearray, HTTPPool with ``readinto`` into a preallocated one), one 256 MiB GET into one buffer
and one 64 MiB PUT, 3 rounds interleaved. Reports objects/s (or MB/s) and this process's CPU.

With ``--parsers``, also the CPU of parsing one such response in-process (no sockets): our
sans-I/O parser (``_core/_h1.py``, the path ``HTTPPool`` runs) against h11 (request sent through
its state machine, response head and 128 KiB body fed in 64 KiB pieces, as h11 cannot hand a
body to a caller's buffer), and h11 on the head alone (a lower bound), each as a share of
HTTPPool's measured CPU per GET (issue 11's 15 % criterion).

Run: ``python -m benchmarks.http_micro [--rounds 3] [--objects 500] [--parsers]``
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
from s3torch_async._core._h1 import DONE, ResponseParser
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


S3_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"x-amz-id-2: 6Hv3pZ2VYm1mF4yq0m7gS1l8tH0g7XqkQ4n2C3m8wzY0o5QK1pQe0F1r3s9t+Z0aQ1bC2dE3fG4=\r\n"
    b"x-amz-request-id: 4442587FB7D0A2F9\r\n"
    b"Date: Sun, 06 Dec 2026 21:00:00 GMT\r\n"
    b"Last-Modified: Sun, 06 Dec 2026 20:00:00 GMT\r\n"
    b'ETag: "b1946ac92492d2347c6235b4d2611184"\r\n'
    b"x-amz-server-side-encryption: AES256\r\n"
    b"Accept-Ranges: bytes\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Server: AmazonS3\r\n"
    b"Content-Length: 131072\r\n\r\n"
)


def ours_per_response(n: int) -> float:
    """CPU µs per response: the head parse and body bookkeeping HTTPPool does per GET."""
    p = ResponseParser(64 << 10)
    head = len(S3_HEAD)
    p._in[:head] = S3_HEAD
    c0 = time.process_time()
    for _ in range(n):
        p._rpos = p._scan = 0
        p._wpos = head
        p._begin(False)
        p._parse_head()
        p._rpos = p._wpos
        p._took(
            SMALL
        )  # the body itself goes to the caller's buffer, not through the parser
        assert p._state == DONE
        assert p.status == 200
    return (time.process_time() - c0) / n * 1e6


def h11_per_response(n: int, with_body: bool) -> float:
    """CPU µs per response driven through h11 (one keep-alive connection, many cycles)."""
    import h11  # test extra; only for this measurement

    conn = h11.Connection(h11.CLIENT)
    body = bytes(SMALL)
    if with_body:
        pieces = [
            S3_HEAD + body[: 48 << 10],
            body[48 << 10 : 112 << 10],
            body[112 << 10 :],
        ]
    else:
        pieces = [S3_HEAD.replace(b"131072", b"0")]
    request = h11.Request(method="GET", target="/bucket/key", headers=[("Host", "s3")])
    c0 = time.process_time()
    for _ in range(n):
        conn.send(request)
        conn.send(h11.EndOfMessage())
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA or type(ev) is h11.EndOfMessage:
                    break
        assert type(ev) is h11.EndOfMessage
        conn.start_next_cycle()
    return (time.process_time() - c0) / n * 1e6


def parser_costs(cpu_ms_per_get: float, n: int = 20000) -> None:
    per_get_us = cpu_ms_per_get * 1000
    rows = [
        ("ours (_h1, HTTPPool's path)", min(ours_per_response(n) for _ in range(3))),
        (
            "h11 head + 128 KiB body",
            min(h11_per_response(n // 4, True) for _ in range(3)),
        ),
        (
            "h11 head only (lower bound)",
            min(h11_per_response(n, False) for _ in range(3)),
        ),
    ]
    print(
        f"\nparser CPU per response (min of 3), vs HTTPPool's {per_get_us:.0f} µs CPU per GET:"
    )
    ours = rows[0][1]
    for name, us in rows:
        extra = (us - ours) / per_get_us * 100
        print(
            f"  {name:<30} {us:8.2f} µs   {us / per_get_us * 100:5.1f} % of a GET"
            f"   (+{extra:.1f} % vs ours)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--parsers", action="store_true", help="also time h11 vs ours")
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
    if args.parsers:
        parser_costs(statistics.median(results["HTTPPool"]["cpu_ms/get"]))


if __name__ == "__main__":
    main()
