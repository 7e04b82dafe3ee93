"""The lean HTTP/1.1 client against moto and against scripted raw servers (real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest

from s3torch_async._core import _http
from s3torch_async._core._http import (
    HTTPConnectionError,
    HTTPPool,
    HTTPProtocolError,
    IncompleteBodyError,
)
from s3torch_async._core._lean import EMPTY_SHA256, SigV4Signer
from tests.core._rawserver import (
    Handler,
    RawServer,
    keep_alive_server,
    reply,
    start_servers,
)

serve = pytest.fixture(start_servers)


@pytest.fixture
async def pool() -> AsyncIterator[HTTPPool]:
    p = HTTPPool(limit=4, connect_timeout=5, read_timeout=10)
    yield p
    await p.aclose()


class _Creds:
    access_key = secret_key = token = "testing"


def moto_url(
    endpoint: str, bucket: str, key: str, method: str = "GET", body: bool = False
) -> tuple[str, dict[str, str]]:
    """URL and signed headers (moto refuses anonymous GETs of private objects)."""
    host = urlsplit(endpoint).netloc
    headers: dict[str, str] = {}
    SigV4Signer("us-east-1").sign(
        method,
        host,
        f"/{bucket}/{key}",
        [],
        headers,
        _Creds(),
        payload_hash="UNSIGNED-PAYLOAD" if body else EMPTY_SHA256,
    )
    return f"{endpoint}/{bucket}/{key}", {"Host": host, **headers}


# -- against moto (real S3 semantics) ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3 << 20])
async def test_put_then_get_round_trips_the_bytes(
    pool: HTTPPool, endpoint: str, bucket: str, size: int
) -> None:
    data = os.urandom(size)
    url, host = moto_url(endpoint, bucket, f"obj-{size}", "PUT", body=True)
    async with await pool.request("PUT", url, host, data) as resp:
        assert resp.status == 200, await resp.read()
        assert resp.headers["ETag"]
        await resp.read()
    url, host = moto_url(endpoint, bucket, f"obj-{size}")
    async with await pool.request("GET", url, host) as resp:
        assert resp.status == 200
        assert resp.content_length == size
        assert await resp.read() == data


async def test_get_with_range_header_returns_that_slice(
    pool: HTTPPool, endpoint: str, bucket: str, put: Callable[..., None]
) -> None:
    data = os.urandom(100_000)
    put("ranged", data)
    url, host = moto_url(endpoint, bucket, "ranged")
    async with await pool.request(
        "GET", url, {**host, "Range": "bytes=1000-50999"}
    ) as resp:
        assert resp.status == 206
        assert resp.content_length == 50_000
        assert await resp.read() == data[1000:51000]


async def test_readinto_fills_a_preallocated_buffer_with_the_object(
    pool: HTTPPool, endpoint: str, bucket: str, put: Callable[..., None]
) -> None:
    data = os.urandom(3 << 20)
    put("big", data)
    url, host = moto_url(endpoint, bucket, "big")
    buf = bytearray(len(data) + 10)
    view = memoryview(buf)
    async with await pool.request("GET", url, host) as resp:
        pos = 0
        while n := await resp.readinto(view[pos:]):
            pos += n
    assert pos == len(data)
    assert buf[:pos] == data
    assert buf[pos:] == bytes(10)


async def test_missing_key_error_body_is_readable(
    pool: HTTPPool, endpoint: str, bucket: str
) -> None:
    url, host = moto_url(endpoint, bucket, "absent")
    async with await pool.request("GET", url, host) as resp:
        assert resp.status == 404
        assert b"NoSuchKey" in await resp.read()


async def test_cancelled_readinto_leaves_the_pool_usable(
    endpoint: str, bucket: str, put: Callable[..., None]
) -> None:
    data = os.urandom(3 << 20)
    put("c", data)
    url, host = moto_url(endpoint, bucket, "c")
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    try:
        resp = await pool.request("GET", url, host)
        buf = bytearray(len(data))
        task = asyncio.ensure_future(resp.readinto(memoryview(buf)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        resp.release()
        async with await pool.request("GET", url, host) as again:
            assert await again.read() == data
    finally:
        await pool.aclose()


# -- request bytes ----------------------------------------------------------------------------


async def test_request_head_is_sent_as_given_with_only_content_length_added(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    srv = await serve(keep_alive_server)
    path = "/b/a%2Fb%20c?x=1%20&y=%7E"
    headers = {**srv.host, "X-Amz-Date": "20260101T000000Z"}
    async with await pool.request("GET", srv.url(path), headers) as resp:
        assert await resp.read() == path.encode()
    async with await pool.request("PUT", srv.url("/p"), headers) as resp:
        await resp.read()
    async with await pool.request("PUT", srv.url("/q"), headers, b"abc") as resp:
        await resp.read()
    host = srv.host["Host"].encode()
    assert srv.heads == [
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"X-Amz-Date: 20260101T000000Z\r\n\r\n",
        b"PUT /p HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"X-Amz-Date: 20260101T000000Z\r\nContent-Length: 0\r\n\r\n",
        b"PUT /q HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"X-Amz-Date: 20260101T000000Z\r\nContent-Length: 3\r\n\r\n",
    ]
    assert srv.bodies[2] == b"abc"
    assert srv.connections == 1


async def test_header_with_crlf_is_rejected(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    srv = await serve(keep_alive_server)
    with pytest.raises(ValueError, match="CR or LF"):
        await pool.request("GET", srv.url(), {**srv.host, "X": "a\r\nEvil: 1"})


async def test_large_put_body_arrives_intact(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    srv = await serve(keep_alive_server)
    data = os.urandom(5 << 20)
    async with await pool.request(
        "PUT", srv.url("/big"), srv.host, memoryview(data)
    ) as resp:
        assert resp.status == 200
        await resp.read()
    assert srv.bodies == [data]


async def test_large_put_to_a_slow_reader_arrives_intact_and_reuses(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    # The server reads the body in small steps with pauses: the socket fills and the client
    # waits for room again and again (each wait shorter than the read timeout).
    async def slow(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = bytearray()
            while len(body) < length:
                body += await reader.read(min(256 << 10, length - len(body)))
                await asyncio.sleep(0.005)
            srv.bodies.append(bytes(body))
            writer.write(reply(head.split(b" ")[1]))

    srv = await serve(slow)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=2)
    data = os.urandom(12 << 20)
    try:
        for path in ("/a", "/b"):
            resp = await pool.request("PUT", srv.url(path), srv.host, memoryview(data))
            async with resp:
                assert await resp.read() == path.encode()
    finally:
        await pool.aclose()
    assert srv.bodies == [data, data]
    assert srv.connections == 1


async def test_server_that_stops_reading_an_upload_hits_the_read_timeout(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def stop_reading(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1 << 20)
        srv.requested.set()
        await srv.release.wait()  # neither reads nor answers

    srv = await serve(stop_reading)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=0.3)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await pool.request("PUT", srv.url("/big"), srv.host, bytes(64 << 20))
    finally:
        srv.release.set()
        await pool.aclose()


async def test_reset_during_an_upload_raises_a_connection_error(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def reset(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/big" not in head:
            writer.write(reply(head.split(b" ")[1]))
            await keep_alive_server(srv, reader, writer)
            return
        await reader.readexactly(1 << 20)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST while the client is still sending

    srv = await serve(reset)
    with pytest.raises(HTTPConnectionError):
        await pool.request("PUT", srv.url("/big"), srv.host, bytes(64 << 20))
    async with await pool.request("GET", srv.url("/ok"), srv.host) as resp:
        assert await resp.read() == b"/ok"  # the pool recovers


# -- pooling ----------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    srv = await serve(keep_alive_server)
    for i in range(5):
        async with await pool.request("GET", srv.url(f"/{i}"), srv.host) as resp:
            assert await resp.read() == f"/{i}".encode()
    assert srv.connections == 1


async def test_requests_above_limit_wait_and_all_complete(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    active = 0
    peak = 0

    async def slow(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            while (head := await srv.read_request(reader)) is not None:
                await asyncio.sleep(0.01)
                writer.write(reply(head.split(b" ")[1]))
                await writer.drain()
        finally:
            active -= 1

    srv = await serve(slow)
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    try:

        async def one(i: int) -> bytes:
            async with await pool.request("GET", srv.url(f"/{i}"), srv.host) as r:
                return await r.read()

        got = await asyncio.gather(*(one(i) for i in range(12)))
    finally:
        await pool.aclose()
    assert got == [f"/{i}".encode() for i in range(12)]
    assert srv.connections == 2
    assert peak == 2


async def test_cancelled_waiter_does_not_leak_the_slot(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    srv = await serve(keep_alive_server)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    try:
        first = await pool.request("GET", srv.url("/1"), srv.host)
        waiting = asyncio.ensure_future(pool.request("GET", srv.url("/2"), srv.host))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await first.read() == b"/1"
        first.release()
        async with await pool.request("GET", srv.url("/3"), srv.host) as resp:
            assert await resp.read() == b"/3"
    finally:
        await pool.aclose()
    assert srv.connections == 1


async def test_unread_response_closes_its_connection(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    srv = await serve(keep_alive_server)
    resp = await pool.request("GET", srv.url("/unread-body"), srv.host)
    resp.release()
    resp.release()  # idempotent
    async with await pool.request("GET", srv.url("/2"), srv.host) as resp:
        assert await resp.read() == b"/2"
    assert srv.connections == 2


async def test_response_dropped_without_release_frees_its_connection(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    srv = await serve(keep_alive_server)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    try:
        resp = await pool.request("GET", srv.url("/dropped"), srv.host)
        del resp
        gc.collect()
        async with await pool.request("GET", srv.url("/next"), srv.host) as resp2:
            assert await resp2.read() == b"/next"
    finally:
        await pool.aclose()
    assert srv.connections == 2


async def test_bytes_beyond_the_body_or_while_idle_retire_the_connection(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def chatty(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (head := await srv.read_request(reader)) is not None:
            path = head.split(b" ")[1]
            if path == b"/extra":
                writer.write(reply(path) + b"junk")
            else:
                writer.write(reply(path))
                if path == b"/later":
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    writer.write(b"unsolicited")

    srv = await serve(chatty)
    for path in ("/extra", "/a", "/later", "/b"):
        async with await pool.request("GET", srv.url(path), srv.host) as resp:
            assert await resp.read() == path.encode()
        await asyncio.sleep(0.05)
    # /extra's connection is closed, /a reuses nothing, /later's gets junk while idle.
    assert srv.connections == 3


async def test_closing_the_pool_wakes_requests_waiting_for_a_slot(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    srv = await serve(keep_alive_server)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    held = await pool.request("GET", srv.url("/held"), srv.host)
    waiting = asyncio.ensure_future(pool.request("GET", srv.url("/w"), srv.host))
    await asyncio.sleep(0.01)
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    held.release()


async def test_closed_pool_refuses_requests(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    srv = await serve(keep_alive_server)
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    async with await pool.request("GET", srv.url("/x"), srv.host) as resp:
        await resp.read()
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.request("GET", srv.url("/x"), srv.host)


async def test_connect_failure_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
        try:
            with pytest.raises(HTTPConnectionError, match="cannot connect"):
                await pool.request("GET", f"http://127.0.0.1:{port}/", {})
        finally:
            await pool.aclose()


# -- keep-alive edge cases --------------------------------------------------------------------


async def test_connection_close_header_is_honoured(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def closing(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(reply(b"bye", extra="Connection: close\r\n"))
        await reader.read()  # the client closes

    srv = await serve(closing)
    for _ in range(2):
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            assert await resp.read() == b"bye"
    assert srv.connections == 2


@pytest.mark.parametrize("with_length", [True, False])
async def test_http10_response_is_read_and_not_reused(
    serve: Callable[[Handler], Awaitable[RawServer]],
    pool: HTTPPool,
    with_length: bool,
) -> None:
    async def http10(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        length = "Content-Length: 5\r\n" if with_length else ""
        writer.write(f"HTTP/1.0 200 OK\r\n{length}\r\nhello".encode())
        if with_length:
            await reader.read()
        # else: end of body = our close

    srv = await serve(http10)
    for _ in range(2):
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            assert resp.content_length == (5 if with_length else None)
            assert await resp.read() == b"hello"
    assert srv.connections == 2


async def test_idle_connection_closed_by_server_does_not_fail_the_next_request(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def one_per_connection(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await srv.read_request(reader)
        assert head is not None
        writer.write(reply(head.split(b" ")[1]))
        await writer.drain()
        # then close while the client keeps the connection idle

    srv = await serve(one_per_connection)
    async with await pool.request("GET", srv.url("/1"), srv.host) as resp:
        assert await resp.read() == b"/1"
    await asyncio.sleep(0.05)
    async with await pool.request("GET", srv.url("/2"), srv.host) as resp:
        assert await resp.read() == b"/2"
    assert srv.connections == 2


async def test_reused_connection_dying_before_the_response_is_retried_once(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def dies_on_second_request(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await srv.read_request(reader)
        assert head is not None
        writer.write(reply(head.split(b" ")[1]))
        await writer.drain()
        if srv.connections == 1:
            await srv.read_request(reader)  # the server "timed out" this idle socket
            return
        while (head := await srv.read_request(reader)) is not None:
            writer.write(reply(head.split(b" ")[1]))

    srv = await serve(dies_on_second_request)
    async with await pool.request("GET", srv.url("/1"), srv.host) as resp:
        assert await resp.read() == b"/1"
    async with await pool.request("PUT", srv.url("/2"), srv.host, b"body") as resp:
        assert await resp.read() == b"/2"
    assert srv.connections == 2
    assert srv.bodies[1:] == [b"body", b"body"]


async def test_new_connection_dying_before_the_response_is_not_retried(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def hang_up(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)

    srv = await serve(hang_up)
    with pytest.raises(HTTPConnectionError, match="before the response started"):
        await pool.request("GET", srv.url(), srv.host)
    assert srv.connections == 1


# -- framing ----------------------------------------------------------------------------------


def chunked_server(
    payload: bytes,
) -> Handler:
    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: x-amz-checksum-crc32\r\n\r\n"
            )
            for i in range(0, len(payload), 7000):
                piece = payload[i : i + 7000]
                writer.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n")

    return handler


@pytest.mark.parametrize("how", ["read", "readany", "readinto"])
async def test_chunked_body_with_trailers_is_decoded_and_reused(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool, how: str
) -> None:
    payload = os.urandom(100_000)
    srv = await serve(chunked_server(payload))
    for _ in range(2):
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            assert resp.content_length is None
            if how == "read":
                got = await resp.read()
            elif how == "readany":
                parts = []
                while chunk := await resp.readany():
                    parts.append(chunk)
                got = b"".join(parts)
            else:
                buf = bytearray(150_000)
                pos = 0
                while n := await resp.readinto(memoryview(buf)[pos : pos + 30_000]):
                    pos += n
                got = bytes(buf[:pos])
            assert got == payload
    assert srv.connections == 1


@pytest.mark.parametrize("how", ["readany", "readinto"])
async def test_chunked_body_arriving_in_tiny_pieces_is_decoded(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool, how: str
) -> None:
    rng = random.Random(7)
    payload = bytes(rng.randrange(256) for _ in range(3000))
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    pos = 0
    while pos < len(payload):
        n = rng.randrange(1, 400)
        wire += b"%X\r\n%s\r\n" % (len(payload[pos : pos + n]), payload[pos : pos + n])
        pos += n
    wire += b"0\r\nx-trailer: 1\r\n\r\n"

    async def dribble(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await srv.read_request(reader) is not None:
            i = 0
            while i < len(wire):
                step = rng.randrange(1, 60)
                writer.write(wire[i : i + step])
                i += step
                await writer.drain()
                await asyncio.sleep(0.001)

    srv = await serve(dribble)
    for _ in range(2):
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            parts = []
            if how == "readany":
                while chunk := await resp.readany():
                    parts.append(chunk)
            else:
                buf = memoryview(bytearray(97))
                while n := await resp.readinto(buf):
                    parts.append(bytes(buf[:n]))
            assert b"".join(parts) == payload
    assert srv.connections == 1


async def test_bad_chunk_size_is_an_incomplete_body(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def bad(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"3\r\nabc\r\nzz\r\n")
        await reader.read()

    srv = await serve(bad)
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        with pytest.raises(IncompleteBodyError, match="chunk size"):
            await resp.read()


@pytest.mark.parametrize("how", ["read", "readinto"])
async def test_body_shorter_than_content_length_raises(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool, how: str
) -> None:
    async def truncated(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        writer.write(b"x" * 60_000)
        await writer.drain()

    srv = await serve(truncated)
    buf = memoryview(bytearray(100_000))
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        if how == "read":
            with pytest.raises(IncompleteBodyError, match="60000 of 100000"):
                await resp.read()
        else:
            # The bytes stored before the error come back first, then the error.
            assert await resp.readinto(buf) == 60_000
            with pytest.raises(IncompleteBodyError, match="60000 of 100000"):
                await resp.readinto(buf[60_000:])


async def test_reset_mid_body_raises_a_connection_error(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def reset(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        writer.write(b"x" * 1000)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    srv = await serve(reset)
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        with pytest.raises(HTTPConnectionError):
            await resp.read()
    # The pool recovers.
    srv.handler = keep_alive_server
    async with await pool.request("GET", srv.url("/ok"), srv.host) as resp:
        assert await resp.read() == b"/ok"


@pytest.mark.parametrize("value", ["abc", "-1", "1, 2", "٣"])
async def test_invalid_content_length_is_a_protocol_error(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool, value: str
) -> None:
    async def bad(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n".encode())
        await reader.read()

    srv = await serve(bad)
    with pytest.raises(HTTPProtocolError, match="Content-Length"):
        await pool.request("GET", srv.url(), srv.host)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 << 10) + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 << 10),  # and no end in sight
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    ],
)
async def test_bad_response_head_is_a_protocol_error(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool, head: bytes
) -> None:
    async def bad(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(head)
        await reader.read()

    srv = await serve(bad)
    with pytest.raises(HTTPProtocolError):
        await pool.request("GET", srv.url(), srv.host)


async def test_head_and_204_and_interim_responses_have_empty_bodies(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def bodiless(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (head := await srv.read_request(reader)) is not None:
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            elif b"/nc" in head:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"after 100"))

    srv = await serve(bodiless)
    async with await pool.request("HEAD", srv.url("/k"), srv.host) as resp:
        assert resp.status == 200
        assert resp.content_length == 1234  # the header; there is no body
        assert await resp.read() == b""
        assert await resp.readinto(memoryview(bytearray(10))) == 0
    async with await pool.request("DELETE", srv.url("/nc"), srv.host) as resp:
        assert (resp.status, resp.reason) == (204, "No Content")
        assert await resp.readany() == b""
    async with await pool.request("GET", srv.url("/g"), srv.host) as resp:
        assert resp.status == 200
        assert await resp.read() == b"after 100"
    assert srv.connections == 1


async def test_headers_are_case_insensitive_and_keep_repeats(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(reply(b"", extra='ETag: "abc"\r\nX-A:1\r\nx-a:  2 \r\n'))
        await reader.read()

    srv = await serve(handler)
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        assert resp.headers["etag"] == '"abc"'
        assert resp.headers.getall("X-A") == ["1", "2"]


async def test_head_and_body_beyond_a_new_connections_buffer_are_read_and_reused(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    # A new connection's receive buffer is small (a head and the start of a body); a
    # larger head, and a body left to pile up in it, make it grow, and a reused
    # connection is back within the usual size.
    meta = "".join(f"x-amz-meta-k{n}: {'v' * 100}\r\n" for n in range(300))
    body = os.urandom(200_000)

    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(reply(body, extra=meta))
            await writer.drain()

    srv = await serve(handler)
    for _ in range(2):
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            conn = resp._conn
            assert conn is not None
            assert len(resp.headers.getall("x-amz-meta-k299")) == 1
            await asyncio.sleep(0.05)  # the body waits in the connection's buffer
            assert await resp.read() == body
        assert len(conn._in) <= _http._BUF_SIZE
    assert srv.connections == 1


# -- early responses, flow control, timeouts, cancellation -------------------------------------


async def test_early_error_response_to_a_large_put_is_readable(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def refuse(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/big" in head:
            writer.write(reply(b"<Error>AccessDenied</Error>", "403 Forbidden"))
            await (
                srv.release.wait()
            )  # never read the body; the client must stop sending
            return
        writer.write(reply(head.split(b" ")[1]))
        await keep_alive_server(srv, reader, writer)

    srv = await serve(refuse)
    body = bytes(64 << 20)
    async with await pool.request("PUT", srv.url("/big"), srv.host, body) as resp:
        assert resp.status == 403
        assert await resp.read() == b"<Error>AccessDenied</Error>"
    srv.release.set()
    async with await pool.request("GET", srv.url("/next"), srv.host) as resp:
        assert await resp.read() == b"/next"
    assert srv.connections == 2  # the half-sent connection was not reused


async def test_unread_large_body_pauses_reading_and_still_arrives(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    data = os.urandom(12 << 20)

    async def big(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(reply(data))
        await writer.drain()
        await reader.read()

    srv = await serve(big)
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        conn = resp._conn
        assert conn is not None
        for _ in range(500):
            if conn._paused:
                break
            await asyncio.sleep(0.01)
        assert conn._paused
        assert conn._wpos - conn._rpos < 4 << 20  # bounded, not the whole body
        assert await resp.read() == data


async def test_readinto_receives_large_bodies_without_growing_the_buffer(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    data = os.urandom(8 << 20)

    async def big(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(reply(data))
        await reader.read()

    srv = await serve(big)
    buf = bytearray(len(data))
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        conn = resp._conn
        assert conn is not None
        assert await resp.readinto(memoryview(buf)) == len(data)
        assert len(conn._in) == _http._FIRST_BUF_SIZE  # the kernel wrote into `buf`
        assert await resp.readinto(memoryview(buf)) == 0
    assert buf == data


async def test_silent_server_hits_the_read_timeout(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def stall(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await srv.read_request(reader)
        if head is not None and b"/body" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await reader.read()

    srv = await serve(stall)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=0.2)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await pool.request("GET", srv.url("/head"), srv.host)
        resp = await pool.request("GET", srv.url("/body"), srv.host)
        with pytest.raises(asyncio.TimeoutError):
            await resp.read()
        resp.release()
    finally:
        await pool.aclose()
    assert srv.connections == 2


async def test_host_that_never_answered_fails_after_the_first_answer_timeout(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def silent(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        await reader.read()

    srv = await serve(silent)
    pool = HTTPPool(
        limit=1, connect_timeout=5, read_timeout=30, first_answer_timeout=0.2
    )
    try:
        with pytest.raises(_http.NoResponseError) as info:
            await pool.request("GET", srv.url("/x"), srv.host)
    finally:
        await pool.aclose()
    origin = f"http://127.0.0.1:{srv.port}"
    assert str(info.value) == (
        f"no HTTP response from {origin} within 0.2 s, to the request or to a probe: "
        "is this an S3 endpoint?"
    )
    assert srv.connections == 2  # the request's, and the probe's
    assert isinstance(info.value, asyncio.TimeoutError)


async def test_first_answer_timeout_ends_once_the_host_answered(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    # The first request is answered at once; the second after 0.6 s, past the 0.2 s
    # first-answer timeout: the host has answered, so only the read timeout applies. A
    # large upload to a host that never answered keeps the read timeout too.
    async def slower(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (head := await srv.read_request(reader)) is not None:
            if len(srv.heads) > 1:
                await asyncio.sleep(0.6)
            writer.write(reply(head.split(b" ")[1]))
            await writer.drain()

    srv = await serve(slower)
    pool = HTTPPool(
        limit=1, connect_timeout=5, read_timeout=30, first_answer_timeout=0.2
    )
    try:
        for path in ("/a", "/b"):
            async with await pool.request("GET", srv.url(path), srv.host) as resp:
                assert await resp.read() == path.encode()
    finally:
        await pool.aclose()

    srv = await serve(slower)
    srv.heads.append(b"")  # this server answers every request after 0.6 s
    pool = HTTPPool(
        limit=1, connect_timeout=5, read_timeout=30, first_answer_timeout=0.2
    )
    try:
        with pytest.raises(_http.NoResponseError):
            await pool.request("PUT", srv.url("/small"), srv.host, b"x")
        body = bytes(_http.FIRST_ANSWER_BODY + 1)
        resp = await pool.request("PUT", srv.url("/big"), srv.host, body)
        async with resp:
            assert await resp.read() == b"/big"
    finally:
        await pool.aclose()


async def test_slow_but_steady_body_is_not_a_timeout(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def trickle(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for i in range(10):
            await asyncio.sleep(0.1)
            writer.write(b"%d" % i)
        await reader.read()

    srv = await serve(trickle)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=0.5)
    try:
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            buf = bytearray(10)
            assert await resp.readinto(memoryview(buf)) == 10  # 1 s in total
            assert buf == b"0123456789"
    finally:
        await pool.aclose()


async def test_cancelled_request_frees_its_slot(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def first_stalls(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if srv.connections == 1:
            await srv.read_request(reader)
            await reader.read()
            return
        await keep_alive_server(srv, reader, writer)

    srv = await serve(first_stalls)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    try:
        task = asyncio.ensure_future(pool.request("GET", srv.url("/s"), srv.host))
        await srv.requested.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with await pool.request("GET", srv.url("/ok"), srv.host) as resp:
            assert await resp.read() == b"/ok"
    finally:
        await pool.aclose()
    assert srv.connections == 2


async def test_cancelled_direct_readinto_never_writes_the_buffer_afterwards(
    serve: Callable[[Handler], Awaitable[RawServer]], pool: HTTPPool
) -> None:
    async def two_parts(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n")
        await writer.drain()
        await srv.release.wait()
        writer.write(b"y" * 2000)
        await reader.read()

    srv = await serve(two_parts)
    resp = await pool.request("GET", srv.url(), srv.host)
    buf = bytearray(2000)
    task = asyncio.ensure_future(resp.readinto(memoryview(buf)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    srv.release.set()
    await asyncio.sleep(0.05)
    assert buf == bytes(2000)
    with pytest.raises(HTTPConnectionError):
        await resp.read()
    resp.release()


async def test_unknown_scheme_is_rejected(pool: HTTPPool) -> None:
    with pytest.raises(ValueError, match="scheme"):
        await pool.request("GET", f"ftp://{uuid.uuid4().hex}/x", {})


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(server, client) SSL contexts around a throwaway self-signed cert for 127.0.0.1."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    cert_pem = d / "cert.pem"
    key_pem = d / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_pem, key_pem)
    client = ssl.create_default_context(cafile=str(cert_pem))
    return server, client


async def test_https_round_trip_reads_into_the_buffer_and_reuses(
    tls_contexts: tuple[Any, Any],
) -> None:
    server_ctx, client_ctx = tls_contexts
    data = os.urandom(3 << 20)
    connections = 0
    uploads: list[bytes] = []

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                if head.startswith(b"PUT"):
                    length = head.lower().split(b"content-length:")[1]
                    uploads.append(await reader.readexactly(int(length.split()[0])))
                writer.write(reply(data))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10, ssl_context=client_ctx)
    try:
        for _ in range(2):
            buf = bytearray(len(data))
            resp = await pool.request(
                "GET", f"https://127.0.0.1:{port}/k", {"Host": f"127.0.0.1:{port}"}
            )
            async with resp:
                assert await resp.readinto(memoryview(buf)) == len(data)
                assert await resp.readinto(memoryview(buf)) == 0
            assert buf == data
        # A large body goes through the TLS transport (never raw to the socket).
        body = os.urandom(6 << 20)
        resp = await pool.request(
            "PUT", f"https://127.0.0.1:{port}/k", {"Host": f"127.0.0.1:{port}"}, body
        )
        async with resp:
            assert await resp.read() == data
        assert uploads == [body]
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
    assert connections == 1


async def test_https_with_untrusted_certificate_is_a_connection_error(
    tls_contexts: tuple[Any, Any], serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    server_ctx, _ = tls_contexts

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)  # system CAs only
    try:
        with pytest.raises(HTTPConnectionError, match="certificate"):
            await pool.request("GET", f"https://127.0.0.1:{port}/", {})
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


# -- connections opened ahead (preconnect) and work while a request is answered ---------------
#
# A caller about to send a burst of requests (a dataset's first GETs once its listing page is
# in) asks the pool to open their connections while it waits anyway. The scripted servers
# count the connections they accept; nothing here measures time.


def _origin(srv: RawServer) -> str:
    return f"http://127.0.0.1:{srv.port}"


async def _settled(pool: HTTPPool) -> None:
    """Until every connection opened ahead is up (or failed)."""
    while pool._warming:
        await asyncio.gather(*pool._warming, return_exceptions=True)


async def test_preconnect_opens_idle_connections_that_requests_then_use(
    pool: HTTPPool, serve
) -> None:
    srv = await serve(keep_alive_server)
    assert pool.preconnect(_origin(srv), 3) == 3
    await _settled(pool)
    assert srv.connections == 3
    # three requests at once go out on those three: no new connection
    resps = await asyncio.gather(
        *(pool.request("GET", srv.url(f"/{i}"), srv.host) for i in range(3))
    )
    assert [await r.read() for r in resps] == [b"/0", b"/1", b"/2"]
    assert srv.connections == 3
    # already open: asking again opens nothing
    assert pool.preconnect(_origin(srv), 3) == 0


async def test_preconnect_stays_within_the_pool_limit_and_evicts_nothing(
    pool: HTTPPool, serve
) -> None:
    other = await serve(keep_alive_server)
    srv = await serve(keep_alive_server)
    async with await pool.request("GET", other.url("/x"), other.host) as resp:
        await resp.read()  # one idle connection to another host
    assert pool.preconnect(_origin(srv), 10) == 3  # the limit is 4
    await _settled(pool)
    assert srv.connections == 3
    assert len(pool._hosts[("http", "127.0.0.1", other.port)].idle) == 1


async def test_preconnect_takes_no_slot_a_waiting_request_needs(serve) -> None:
    async def hold(srv: RawServer, reader, writer) -> None:
        while await srv.read_request(reader) is not None:
            await srv.release.wait()
            writer.write(reply(b"ok"))
            await writer.drain()

    srv = await serve(hold)
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    try:
        first = asyncio.ensure_future(pool.request("GET", srv.url("/a"), srv.host))
        await srv.requested.wait()
        second = asyncio.ensure_future(pool.request("GET", srv.url("/b"), srv.host))
        await asyncio.sleep(0)  # the second request's first step: it waits for a slot
        assert pool._waiters
        assert pool.preconnect(_origin(srv), 5) == 0
        srv.release.set()
        for fut in (first, second):
            async with await fut as resp:
                assert await resp.read() == b"ok"
        assert srv.connections == 1
    finally:
        await pool.aclose()


async def test_a_failed_preconnect_frees_its_slots_and_stays_silent(
    pool: HTTPPool,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert pool.preconnect(f"http://127.0.0.1:{port}", 3) == 3
    await _settled(pool)
    assert pool._open == 0
    # the request that needs the host reports the failure
    with pytest.raises(HTTPConnectionError, match="cannot connect"):
        await pool.request(
            "GET", f"http://127.0.0.1:{port}/", {"Host": f"127.0.0.1:{port}"}
        )


async def test_closing_the_pool_cancels_connections_being_opened(serve) -> None:
    srv = await serve(keep_alive_server)
    pool = HTTPPool(limit=4, connect_timeout=5, read_timeout=10)
    assert pool.preconnect(_origin(srv), 4) == 4
    await pool.aclose()  # before any of them is up
    assert not pool._warming
    assert pool._open == 0
    assert pool.preconnect(_origin(srv), 4) == 0


async def test_after_send_runs_once_the_request_is_written_before_its_answer(
    pool: HTTPPool, serve
) -> None:
    ran = asyncio.Event()
    calls = []

    async def answer_after_the_hook(srv: RawServer, reader, writer) -> None:
        await srv.read_request(reader)
        await ran.wait()  # no answer until the client's hook has run
        writer.write(reply(b"ok"))
        await writer.drain()

    srv = await serve(answer_after_the_hook)

    def hook() -> None:
        calls.append(len(srv.heads))
        ran.set()

    async with await pool.request(
        "GET", srv.url("/a"), srv.host, after_send=hook
    ) as resp:
        assert await resp.read() == b"ok"
    assert len(calls) == 1


async def test_after_send_runs_once_when_a_stale_connection_is_retried(
    pool: HTTPPool, serve
) -> None:
    async def close_on_the_second_request(srv: RawServer, reader, writer) -> None:
        # The first connection answers one request, then closes as the next one arrives
        # (a kept-alive connection the server dropped): the pool resends on a new one.
        number = srv.connections
        while await srv.read_request(reader) is not None:
            if number == 1 and len(srv.heads) == 2:
                return
            writer.write(reply(b"ok"))
            await writer.drain()

    srv = await serve(close_on_the_second_request)
    async with await pool.request("GET", srv.url("/a"), srv.host) as resp:
        await resp.read()
    calls = []
    async with await pool.request(
        "GET", srv.url("/b"), srv.host, after_send=lambda: calls.append(1)
    ) as resp:
        assert await resp.read() == b"ok"
    assert srv.connections == 2  # the stale one and its replacement
    assert len(srv.heads) == 3  # /b was sent twice
    assert calls == [1]


async def test_https_body_read_whole_borrows_the_spare_through_tls(
    tls_contexts: tuple[Any, Any],
) -> None:
    server_ctx, client_ctx = tls_contexts
    bodies = [os.urandom(3 << 20), os.urandom(200 << 10)]

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            for body in bodies:
                await reader.readuntil(b"\r\n\r\n")
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head.encode() + body[:1000])
                for start in range(1000, len(body), 70_000):  # several TLS records
                    writer.write(body[start : start + 70_000])
                    await writer.drain()
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10, ssl_context=client_ctx)
    try:
        for body in bodies:
            resp = await pool.request(
                "GET", f"https://127.0.0.1:{port}/k", {"Host": f"127.0.0.1:{port}"}
            )
            chunks: list[bytes] = []
            async with resp:
                assert await resp.read_body(chunks) == len(body)
            assert chunks == [body]
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
