"""Whole GET bodies (``HTTPResponse.read_body``) against scripted loopback servers.

A body read whole borrows a receive buffer only while its bytes arrive, so GETs waiting for
their answers hold no memory of their bodies' size (case 2 on S3-like keeps hundreds of GETs
waiting at once). The bytes come out as one ``bytes`` object, whole or, when the body breaks
off, as far as it came.
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Awaitable
from typing import Callable

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig
from s3torch_async._core._http import HTTPPool, IncompleteBodyError
from tests.core._rawserver import Handler, RawServer, start_servers

serve = pytest.fixture(start_servers)

SIZE = 256 << 10
PREFIX = 1000  # body bytes sent with the head


def _head(size: int) -> bytes:
    return (
        f'HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nETag: "e1"\r\n'
        "Last-Modified: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n"
    ).encode()


def _pieces(data: bytes, heads_sent: Callable[[], None] = lambda: None) -> Handler:
    """Answer each request with the head and the first bytes, the rest once released."""

    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(_head(len(data)) + data[:PREFIX])
            await writer.drain()
            heads_sent()
            await srv.release.wait()
            for start in range(PREFIX, len(data), 50_000):
                writer.write(data[start : start + 50_000])
                await writer.drain()
                await asyncio.sleep(0.001)

    return handler


async def test_gets_waiting_for_their_bodies_hold_no_buffer_of_the_body_size(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    data = os.urandom(SIZE)
    gets = 16
    sent = 0
    all_sent = asyncio.Event()

    def heads_sent() -> None:
        nonlocal sent
        sent += 1
        if sent == gets:
            all_sent.set()

    srv = await serve(_pieces(data, heads_sent))
    async with AsyncS3Client(
        "us-east-1",
        endpoint=srv.url(""),
        s3client_config=S3ClientConfig(force_path_style=True, max_attempts=1),
    ) as client:
        tracemalloc.start()
        try:
            tasks = [
                asyncio.ensure_future(client.get_range("bkt", f"k{i}"))
                for i in range(gets)
            ]
            await all_sent.wait()
            # Every GET has its head and first bytes and waits for the rest.
            await asyncio.sleep(0.3)
            held, _ = tracemalloc.get_traced_memory()
            srv.release.set()
            results = await asyncio.gather(*tasks)
        finally:
            tracemalloc.stop()
    assert [r.data for r in results] == [data] * gets
    # Before: each waiting GET held a receive buffer of its body's size (4 MiB here).
    assert held < gets * SIZE // 4, held


async def test_a_body_in_pieces_comes_as_one_bytes_object(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    data = os.urandom(SIZE)
    srv = await serve(_pieces(data))
    srv.release.set()
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    try:
        for _ in range(2):
            resp = await pool.request("GET", srv.url("/k"), srv.host)
            chunks: list[bytes] = []
            async with resp:
                assert await resp.read_body(chunks) == SIZE
            assert chunks == [data]
            assert type(chunks[0]) is bytes
    finally:
        await pool.aclose()
    assert srv.connections == 1  # read to its end: the connection was reused


async def test_a_body_that_breaks_off_gives_what_came_then_raises(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    data = os.urandom(SIZE)

    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(_head(SIZE) + data[:PREFIX])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(data[PREFIX:70_000])
        await writer.drain()

    srv = await serve(handler)
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    try:
        resp = await pool.request("GET", srv.url("/k"), srv.host)
        chunks: list[bytes] = []
        with pytest.raises(IncompleteBodyError, match="70000 of 262144"):
            await resp.read_body(chunks)
        resp.release()
        assert chunks == [data[:70_000]]
    finally:
        await pool.aclose()


async def test_a_cancelled_body_read_keeps_what_came_and_frees_its_buffer(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    data = os.urandom(SIZE)
    first_part = asyncio.Event()

    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(_head(SIZE) + data[:PREFIX])
            await writer.drain()
            if srv.connections == 1:  # the first GET: a part, then silence
                await asyncio.sleep(0.05)
                writer.write(data[PREFIX:60_000])
                await writer.drain()
                first_part.set()
                await asyncio.sleep(30)
            writer.write(data[PREFIX:])
            await writer.drain()

    srv = await serve(handler)
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    try:
        resp = await pool.request("GET", srv.url("/k"), srv.host)
        chunks: list[bytes] = []
        task = asyncio.ensure_future(resp.read_body(chunks))
        await first_part.wait()
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        resp.release()
        assert b"".join(chunks) == data[: len(b"".join(chunks))]
        assert len(b"".join(chunks)) >= PREFIX
        # The borrowed buffer went back: the next body reads whole and right.
        resp = await pool.request("GET", srv.url("/k"), srv.host)
        again: list[bytes] = []
        async with resp:
            assert await resp.read_body(again) == SIZE
        assert again == [data]
    finally:
        await pool.aclose()
    assert srv.connections == 2  # the cancelled one was closed, not reused
