"""Regression tests for the HTTP/1.1 client defects of issue 11, each on a scripted loopback server.

Every test here failed on the client before the fix (wrong bytes, a hang until the read
timeout, a 512 MB allocation, a short read, a missing argument); the docstrings say how.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Awaitable
from typing import Callable

import pytest

from s3torch_async._core import _http
from s3torch_async._core._http import (
    HTTPConnectionError,
    HTTPPool,
    HTTPProtocolError,
    IncompleteBodyError,
)
from tests.core._rawserver import (
    Handler,
    RawServer,
    keep_alive_server,
    reply,
    start_servers,
)

Serve = Callable[[Handler], Awaitable[RawServer]]
serve = pytest.fixture(start_servers)


@pytest.fixture
async def pool() -> AsyncIterator[HTTPPool]:
    p = HTTPPool(limit=4, connect_timeout=5, read_timeout=30)
    yield p
    await p.aclose()


async def read_all_into(resp: _http.HTTPResponse, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    pos = 0
    while n := await resp.readinto(view[pos:]):
        pos += n
    return bytes(buf[:pos])


# -- defect 1: a connection is reused only when provably clean -------------------------------


async def test_bytes_past_content_length_never_become_the_next_response(
    serve: Serve, pool: HTTPPool
) -> None:
    """Before: the forged response after the body was returned as the second GET's object."""
    body = bytes(range(256)) * 800  # 200 KiB: larger than what is read with the headers
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nWRONG"

    async def oversends(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (head := await srv.read_request(reader)) is not None:
            path = head.split(b" ")[1]
            writer.write(reply(body) + forged if path == b"/big" else reply(path))

    srv = await serve(oversends)
    for _ in range(3):
        async with await pool.request("GET", srv.url("/big"), srv.host) as resp:
            assert await read_all_into(resp, len(body)) == body
        async with await pool.request("GET", srv.url("/next"), srv.host) as resp:
            assert await resp.read() == b"/next"
    # Each connection that over-sent was closed: /next always needed a new one (which the
    # following /big reused): 1 + 3.
    assert srv.connections == 4


@pytest.mark.parametrize(
    "extra",
    [
        "Connection: keep-alive\r\nConnection: close\r\n",
        "Connection: keep-alive\r\nConnection: x, Close\r\n",
    ],
)
async def test_close_in_any_connection_header_is_honoured(
    serve: Serve, pool: HTTPPool, extra: str
) -> None:
    """Before: only the first Connection header was read, so the connection was reused."""

    async def says_close_but_stays(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (head := await srv.read_request(reader)) is not None:
            writer.write(reply(head.split(b" ")[1], extra=extra))

    srv = await serve(says_close_but_stays)
    for path in ("/1", "/2"):
        async with await pool.request("GET", srv.url(path), srv.host) as resp:
            assert await resp.read() == path.encode()
    assert srv.connections == 2


# -- defect 2: interim responses while a large body is sent ----------------------------------


@pytest.mark.parametrize("when", ["before the body", "mid-body"])
async def test_large_put_answered_by_interim_responses_completes(
    serve: Serve, pool: HTTPPool, when: str
) -> None:
    """Before: the sender stopped at the 100's first byte; both sides waited for the timeout."""
    # 32 MiB: more than the loopback socket buffers hold, so the sender must go on writing
    # after the interim response for the server to get it all.
    body = bytes(range(256)) * (128 << 10)

    async def interim(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        got = b""
        if when == "before the body":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            got = await reader.readexactly(64 << 10)
            writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
            got += await reader.readexactly(length // 2)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        got += await reader.readexactly(length - len(got))
        srv.bodies.append(got)
        writer.write(reply(b"stored"))
        await keep_alive_server(srv, reader, writer)

    srv = await serve(interim)

    async def put() -> bytes:
        async with await pool.request("PUT", srv.url("/k"), srv.host, body) as resp:
            assert resp.status == 200
            return await resp.read()

    # Far below the 30 s read timeout: a hang shows as a TimeoutError here.
    assert await asyncio.wait_for(put(), 5) == b"stored"
    assert srv.bodies == [body]
    async with await pool.request("GET", srv.url("/after"), srv.host) as resp:
        assert await resp.read() == b"/after"
    assert srv.connections == 1  # the body was sent whole, so the connection is clean


# -- defect 3: allocation follows the bytes received; a cap for parsed bodies ----------------


async def test_huge_declared_length_with_a_short_body_allocates_little(
    serve: Serve, pool: HTTPPool
) -> None:
    """Before: read() allocated the declared 512 MB before the first body byte."""

    async def liar(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(
            b"HTTP/1.1 500 Oops\r\nContent-Length: 536870912\r\n\r\n<Error>short</Error>\n"
        )
        await writer.drain()

    srv = await serve(liar)
    tracemalloc.start()
    try:
        async with await pool.request("GET", srv.url(), srv.host) as resp:
            with pytest.raises(IncompleteBodyError, match="21 of 536870912"):
                await resp.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


@pytest.mark.parametrize("chunked", [False, True])
async def test_read_limit_refuses_a_larger_body_and_closes_the_connection(
    serve: Serve, pool: HTTPPool, chunked: bool
) -> None:
    """Before: read() had no limit argument."""
    big = b"x" * 5000

    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while (head := await srv.read_request(reader)) is not None:
            path = head.split(b" ")[1]
            data = big if path == b"/big" else path
            if chunked:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"".join(
                        b"%x\r\n%s\r\n" % (len(p), p) for p in (data[:3], data[3:])
                    )
                    + b"0\r\n\r\n"
                )
            else:
                writer.write(reply(data))

    srv = await serve(handler)
    async with await pool.request("GET", srv.url("/big"), srv.host) as resp:
        with pytest.raises(HTTPProtocolError, match="over the 4096-byte limit"):
            await resp.read(limit=4096)
    async with await pool.request("GET", srv.url("/small"), srv.host) as resp:
        assert await resp.read(limit=4096) == b"/small"
    async with await pool.request("GET", srv.url("/big"), srv.host) as resp:
        assert await resp.read(limit=5000) == big
    assert srv.connections == 2  # the refused body's connection was not reused


# -- defect 4: read() after a partial read of a chunked body ---------------------------------


async def test_read_after_a_partial_chunked_read_returns_the_whole_rest(
    serve: Serve, pool: HTTPPool
) -> None:
    """Before: read() returned only the rest of the current chunk (b"llo")."""

    async def chunked(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await reader.read()

    srv = await serve(chunked)
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        first = memoryview(bytearray(2))
        assert await resp.readinto(first) == 2
        assert bytes(first) == b"he"
        assert await resp.read() == b"llo world"


# -- defect 5: what RFC 9112 says a client parses, and what it rejects -----------------------


async def raw_response(
    serve: Serve, pool: HTTPPool, response: bytes
) -> tuple[int, dict[str, str], bytes]:
    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await srv.read_request(reader)
        writer.write(response)
        await reader.read()

    srv = await serve(handler)
    async with await pool.request("GET", srv.url(), srv.host) as resp:
        body = await asyncio.wait_for(resp.read(), 5)
        return resp.status, dict(resp.headers), body


async def test_bare_lf_line_ends_are_parsed(serve: Serve, pool: HTTPPool) -> None:
    """Before: the head was never found; the request waited for the read timeout."""
    response = b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\r\n\nhi"
    got = await asyncio.wait_for(raw_response(serve, pool, response), 5)
    assert got == (200, {"Content-Length": "2", "X-A": "1"}, b"hi")


async def test_bare_lf_head_and_trailers_with_crlf_chunks_are_parsed(
    serve: Serve, pool: HTTPPool
) -> None:
    response = (
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\n\n"
    )
    got = await asyncio.wait_for(raw_response(serve, pool, response), 5)
    assert got[2] == b"abcde"


async def test_bare_lf_in_chunk_framing_is_an_error_not_a_hang(
    serve: Serve, pool: HTTPPool
) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"
    )
    with pytest.raises(IncompleteBodyError, match="without CRLF"):
        await asyncio.wait_for(raw_response(serve, pool, response), 5)


async def test_obs_fold_is_replaced_with_a_space(serve: Serve, pool: HTTPPool) -> None:
    """Before: a folded header line was a protocol error."""
    response = (
        b"HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\n\tthree \r\nContent-Length: 0\r\n\r\n"
    )
    _, headers, _ = await raw_response(serve, pool, response)
    assert headers["X-A"] == "one two three"


@pytest.mark.parametrize(
    "header",
    [b"X-A: a\x00b", b"X-A: a\rb", b"X-A: a\nb", b"X-A: a\x0bb", b"X A: 1", b"X-A : 1"],
    ids=["NUL", "bare CR", "LF", "VT", "space in name", "space before colon"],
)
async def test_control_characters_in_a_header_are_rejected(
    serve: Serve, pool: HTTPPool, header: bytes
) -> None:
    """Before: NUL, bare CR, LF and VT inside a value were accepted."""
    response = b"HTTP/1.1 200 OK\r\n" + header + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(HTTPProtocolError):
        await raw_response(serve, pool, response)


@pytest.mark.parametrize("status", [b"000", b"099", b"042"])
async def test_status_below_100_is_rejected_not_skipped(
    serve: Serve, pool: HTTPPool, status: bytes
) -> None:
    """Before: 000 was skipped as an interim response and the next response returned."""
    response = b"HTTP/1.1 " + status + b" Zero\r\n\r\n" + reply(b"ok")
    with pytest.raises(HTTPProtocolError, match="bad status code"):
        await raw_response(serve, pool, response)


async def test_long_zero_padded_chunk_size_is_accepted(
    serve: Serve, pool: HTTPPool
) -> None:
    """Before: chunk sizes over 16 hex digits were rejected, whatever their value."""
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0000000000000000000a\r\n0123456789\r\n00000000000000000000000\r\n\r\n"
    )
    _, _, body = await raw_response(serve, pool, response)
    assert body == b"0123456789"


async def test_chunk_size_over_63_bits_is_rejected(
    serve: Serve, pool: HTTPPool
) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8000000000000000\r\n0123456789\r\n"
    )
    with pytest.raises(IncompleteBodyError, match="chunk size too large"):
        await raw_response(serve, pool, response)


async def test_upper_case_scheme_is_the_same_scheme(
    serve: Serve, pool: HTTPPool
) -> None:
    """Before: ``HTTP://`` and ``HTTPS://`` were "unsupported URL scheme" errors."""
    srv = await serve(keep_alive_server)
    async with await pool.request(
        "GET", f"HTTP://127.0.0.1:{srv.port}/a", srv.host
    ) as resp:
        assert await resp.read() == b"/a"

    first_bytes: list[bytes] = []

    async def sniff(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        first_bytes.append(await reader.read(1))

    tls = await serve(sniff)
    with pytest.raises(HTTPConnectionError):
        await pool.request("GET", f"HTTPS://127.0.0.1:{tls.port}/a", tls.host)
    assert first_bytes == [b"\x16"]  # a TLS handshake record: https it was


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "a\r\nEvil: 1"},
        {"X-A": "a\nb"},
        {"X-A": "a\rb"},
        {"X-A": "a\x00b"},
        {"X\r\nA": "1"},
    ],
)
async def test_cr_lf_nul_in_an_outgoing_header_is_an_invalid_header_error(
    serve: Serve, pool: HTTPPool, headers: dict[str, str]
) -> None:
    srv = await serve(keep_alive_server)
    with pytest.raises(
        _http.InvalidRequestHeaderError, match="request header 'X"
    ) as info:
        await pool.request("GET", srv.url(), {**srv.host, **headers})
    assert isinstance(info.value, ValueError)
    assert "Evil" not in str(info.value)  # values (maybe secrets) are not echoed
    assert srv.connections == 0


# -- defect 9: idle expiry and a total bound across hosts ------------------------------------


async def test_idle_connection_is_closed_after_idle_timeout(serve: Serve) -> None:
    """Before: idle connections were reused however old (HTTPPool had no idle_timeout)."""
    closed = asyncio.Event()

    async def handler(
        srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await keep_alive_server(srv, reader, writer)
        closed.set()  # the client closed this connection

    srv = await serve(handler)
    pool = HTTPPool(limit=4, connect_timeout=5, read_timeout=10, idle_timeout=0.2)
    try:
        for path in ("/1", "/2"):
            async with await pool.request("GET", srv.url(path), srv.host) as resp:
                assert await resp.read() == path.encode()
        assert srv.connections == 1  # reused while fresh
        await asyncio.sleep(0.3)
        async with await pool.request("GET", srv.url("/3"), srv.host) as resp:
            assert await resp.read() == b"/3"
        assert srv.connections == 2
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        await pool.aclose()


async def test_default_idle_timeout_is_below_s3s_idle_limit() -> None:
    pool = HTTPPool(limit=1, connect_timeout=5, read_timeout=10)
    assert pool.idle_timeout is not None
    assert 0 < pool.idle_timeout < 20


async def test_connections_are_bounded_in_total_across_hosts(serve: Serve) -> None:
    """Before: the limit was per host, so three hosts got three connections at limit=2."""
    servers = [await serve(keep_alive_server) for _ in range(3)]
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    try:
        a = await pool.request("GET", servers[0].url("/a"), servers[0].host)
        b = await pool.request("GET", servers[1].url("/b"), servers[1].host)
        c = asyncio.ensure_future(
            pool.request("GET", servers[2].url("/c"), servers[2].host)
        )
        await asyncio.sleep(0.1)
        assert not c.done()
        assert servers[2].connections == 0
        assert await a.read() == b"/a"
        a.release()  # its slot goes to the waiter for another host
        async with await asyncio.wait_for(c, 5) as resp:
            assert await resp.read() == b"/c"
        b.release()
        # Idle connections of other hosts are closed to make room, not waited for.
        async with await asyncio.wait_for(
            pool.request("GET", servers[0].url("/a2"), servers[0].host), 5
        ) as resp:
            assert await resp.read() == b"/a2"
        assert len(pool._conns) <= 2
    finally:
        await pool.aclose()
    assert [s.connections for s in servers] == [2, 1, 1]


async def test_limit_per_host_bounds_one_host(serve: Serve) -> None:
    srv = await serve(keep_alive_server)
    other = await serve(keep_alive_server)
    pool = HTTPPool(limit=4, limit_per_host=1, connect_timeout=5, read_timeout=10)
    try:
        held = await pool.request("GET", srv.url("/1"), srv.host)
        waiting = asyncio.ensure_future(pool.request("GET", srv.url("/2"), srv.host))
        async with await pool.request("GET", other.url("/o"), other.host) as resp:
            assert await resp.read() == b"/o"  # another host is not blocked
        assert not waiting.done()
        assert await held.read() == b"/1"
        held.release()
        async with await asyncio.wait_for(waiting, 5) as resp:
            assert await resp.read() == b"/2"
    finally:
        await pool.aclose()
    assert srv.connections == 1


# -- stale-connection retry under the caller's budget ----------------------------------------


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
    await keep_alive_server(srv, reader, writer)


async def test_stale_connection_raises_without_retry_when_asked(
    serve: Serve, pool: HTTPPool
) -> None:
    """Before: request() had no retry_stale argument and always retried once."""
    srv = await serve(dies_on_second_request)
    async with await pool.request("GET", srv.url("/1"), srv.host) as resp:
        assert await resp.read() == b"/1"
    with pytest.raises(_http.StaleConnectionError, match="before the response started"):
        await pool.request("GET", srv.url("/2"), srv.host, retry_stale=False)
    assert issubclass(_http.StaleConnectionError, HTTPConnectionError)
    assert srv.connections == 1
    assert len(srv.heads) == 2  # no second attempt
    async with await pool.request("GET", srv.url("/3"), srv.host) as resp:
        assert (
            await resp.read() == b"/3"
        )  # default: still retried (here: nothing to retry)
