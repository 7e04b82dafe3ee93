"""A small HTTP/1.1 client for the lean S3 data plane.

aiohttp's per-request machinery (request/response objects, connector, timers, StreamReader
copies) dominates event-loop CPU for small GETs. This client does only what our own signed S3
requests need: keep-alive pools per origin, Content-Length / chunked / read-to-EOF framing, a
read timeout, and bodies received straight into caller buffers. A connection is one
``asyncio.BufferedProtocol`` that parses the response in place; while ``readinto`` waits,
``get_buffer`` hands the socket the caller's memory so the kernel writes the body there.

Not supported (not needed for S3): proxies, redirects, cookies, decompression, pipelining,
``Expect: 100-continue``, upgrades.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl as _ssl
from collections.abc import Mapping
from typing import Any, Optional, Union

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "HTTPConnectionError",
    "HTTPPool",
    "HTTPProtocolError",
    "HTTPResponse",
    "IncompleteBodyError",
]

Body = Union[bytes, bytearray, memoryview]


class HTTPConnectionError(ConnectionError):
    """Connect failure, reset, or EOF in the middle of a response."""


class IncompleteBodyError(HTTPConnectionError):
    """The body ended before its Content-Length, or its chunked framing is broken."""


class HTTPProtocolError(HTTPConnectionError):
    """Unparsable status line or headers."""


_MAX_HEAD = 64 << 10  # status line + headers (also the trailer block)
_MAX_CHUNK_LINE = 4 << 10
_BUF_SIZE = 64 << 10  # receive buffer per connection while nobody reads into their own
_MIN_FREE = 16 << 10  # grow or compact the receive buffer below this much tail space
_HEAD_READ = 16 << 10  # socket read size while the headers are not in
_PAUSE_AT = 1 << 20  # buffered, unread body bytes that pause the socket
_RESUME_AT = 256 << 10
_SMALL_BODY = 256 << 10  # bodies up to this go out in one write with the headers
_SLICE = 1 << 20  # larger bodies: slices of this size, with flow control

# Parser states of a connection.
_IDLE = 0  # no request in flight
_HEAD = 1  # waiting for the status line and headers
_DATA = 2  # in body data: _seg_left bytes left (-1: until EOF)
_CHUNK_SIZE = 3
_CHUNK_END = 4  # CRLF after chunk data
_TRAILERS = 5
_DONE = 6

_NO_BODY_STATUS = frozenset((204, 304))
_HEX = b"0123456789abcdefABCDEF"


class _Conn(asyncio.BufferedProtocol):
    """One connection and the parse state of its current response."""

    def __init__(self, host: _HostPool) -> None:
        self._host = host
        self._loop = host.loop
        self._timeout = host.pool.read_timeout
        self._transport: Any = None  # a selector or SSL transport
        buf = bytearray(_BUF_SIZE)
        self._in = buf
        self._inmv = memoryview(buf)
        self._rpos = 0
        self._wpos = 0
        self._scan = 0  # where the search for the end of the header block resumes
        self._state = _IDLE
        self._head_method = False  # current request is HEAD
        self._seg_left = 0
        self._chunked = False
        self._keep_alive = False
        self._reusable = True  # false once the request body was cut short
        self._got = False  # any response byte received for the current request
        self._eof = False
        self._lost = False
        self._exc: Optional[BaseException] = None
        self._lost_exc: Optional[BaseException] = None
        self._waiter: Optional[asyncio.Future[None]] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._rx_time = 0.0
        self._paused = False
        self._write_paused = False
        self._dview: Optional[memoryview] = None  # caller's memory the socket fills
        self._dpos = 0
        self._dlen = 0
        self._slot = False  # holds one of the host's `limit` slots
        self._idle = False
        self.reused = False
        # Parsed head of the current response.
        self.status = 0
        self.reason = ""
        self.headers: Optional[CIMultiDictProxy[str]] = None
        self.content_length: Optional[int] = None

    # -- protocol callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._host.pool._conns.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        dview = self._dview
        if dview is not None:
            return dview[self._dpos :]
        wpos = self._wpos
        if len(self._in) - wpos < _MIN_FREE:
            self._make_room()
            wpos = self._wpos
        if self._state == _HEAD:
            # Take little beyond the headers: the body should land in the caller's buffer
            # once readinto() runs (the task resumes before the socket is read again).
            return self._inmv[wpos : wpos + _HEAD_READ]
        return self._inmv[wpos:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._timeout is not None:
            self._rx_time = self._loop.time()
        self._got = True
        if self._dview is not None:
            self._dpos += nbytes
            if self._seg_left > 0:
                self._seg_left -= nbytes
            if self._dpos >= self._dlen:
                # Full: later reads (SSL reads ahead) must not get an empty buffer.
                self._dview = None
                self._wake()
            return
        self._wpos += nbytes
        state = self._state
        if state == _HEAD:
            self._parse_head()
        elif state == _IDLE:
            self._fail(HTTPProtocolError("unexpected data on an idle connection"))
            return
        if self._waiter is not None:
            self._wake()
        if not self._paused and self._wpos - self._rpos > _PAUSE_AT:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        self._eof = True
        self._lost_exc = exc
        self._dview = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop()
        self._wake()
        pool = self._host.pool
        pool._conns.discard(self)
        drained = pool._drained
        if not pool._conns and drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._timeout is not None:
            self._rx_time = self._loop.time()  # send progress counts as activity
        self._wake()

    # -- helpers ------------------------------------------------------------------------------

    def _make_room(self) -> None:
        used = self._wpos - self._rpos
        size = len(self._in)
        if self._rpos and size - used >= max(_MIN_FREE, size >> 2):
            self._inmv[:used] = self._inmv[self._rpos : self._wpos]  # memmove
        else:
            while size - used < max(_MIN_FREE, size >> 2):
                size *= 2
            buf = bytearray(size)
            buf[:used] = self._inmv[self._rpos : self._wpos]
            self._in = buf
            self._inmv = memoryview(buf)
        self._rpos = 0
        self._wpos = used
        self._scan = 0

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def _arm(self) -> asyncio.Future[None]:
        """A future for the next event (data, drain, EOF, error); callers re-check the state.

        Whoever awaits it must abort() the connection if cancelled.
        """
        loop = self._loop
        fut = loop.create_future()
        self._waiter = fut
        if self._timeout is not None:
            self._rx_time = now = loop.time()
            if self._timer is None:
                self._timer = loop.call_at(now + self._timeout, self._on_timer)
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        return fut

    async def _wait(self) -> None:
        fut = self._arm()
        try:
            await fut
        except BaseException:
            self.abort()
            raise

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # nobody waits: disarmed until the next wait
        assert self._timeout is not None
        deadline = self._rx_time + self._timeout
        if self._loop.time() >= deadline:
            self._fail(
                asyncio.TimeoutError(f"no data received for {self._timeout:g} s")
            )
        else:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        self.abort()
        self._wake()

    def abort(self) -> None:
        """Close now, discarding buffered output; frees the pool slot."""
        self._dview = None
        self._eof = True
        if self._exc is None:  # a read-to-EOF body must not look complete
            self._exc = HTTPConnectionError("connection was closed by the client")
        t = self._transport
        if t is not None and not self._lost:
            t.abort()
        self._drop()

    def _close(self) -> None:
        self._eof = True
        t = self._transport
        if t is not None and not t.is_closing():
            t.close()
        self._drop()

    def _drop(self) -> None:
        if self._slot:
            self._slot = False
            host = self._host
            if self._idle:
                self._idle = False
                host.idle.remove(self)
            host.release_slot()

    def usable(self) -> bool:
        t = self._transport
        return not self._eof and t is not None and not t.is_closing()

    def _end_error(self) -> BaseException:
        """The error for needing more response bytes on a closed or failed connection."""
        if self._exc is not None:
            return self._exc
        state = self._state
        exc: HTTPConnectionError
        if state in (_HEAD, _IDLE):
            if self._got:
                exc = HTTPConnectionError(
                    "connection closed while reading the response headers"
                )
            else:
                exc = HTTPConnectionError(
                    "connection closed before the response started"
                )
        elif self.content_length is not None:
            got = self.content_length - self._seg_left
            exc = IncompleteBodyError(
                f"response body ended early: {got} of {self.content_length} bytes"
            )
        elif self._chunked:
            exc = IncompleteBodyError("chunked response body ended early")
        else:
            exc = HTTPConnectionError("connection lost while reading the response body")
        exc.__cause__ = self._lost_exc
        return exc

    # -- request ------------------------------------------------------------------------------

    def start(self, data: bytes, head_method: bool) -> None:
        """Begin a request by writing ``data`` (all of it, or the head of a large one)."""
        self._state = _HEAD
        self._head_method = head_method
        self._got = False
        self._reusable = True
        self._exc = None
        self.headers = None
        self._transport.write(data)

    async def send_body(self, body: memoryview) -> None:
        """Write a large body in slices; stop (and never reuse) if the server answers first."""
        t = self._transport
        size = body.nbytes
        pos = 0
        while pos < size:
            if self._got or self._eof:
                break
            t.write(body[pos : pos + _SLICE])
            pos += _SLICE
            while self._write_paused and not (self._got or self._eof):
                await self._wait()
                if self._exc is not None:
                    raise self._exc
        if pos < size:
            self._reusable = False

    def _parse_head(self) -> None:
        buf = self._in
        while True:
            rpos = self._rpos
            end = buf.find(b"\r\n\r\n", max(self._scan, rpos), self._wpos)
            if end < 0:
                if self._wpos - rpos > _MAX_HEAD:
                    self._fail(HTTPProtocolError("response header block over 64 KiB"))
                else:
                    self._scan = max(rpos, self._wpos - 3)
                return
            if end - rpos > _MAX_HEAD:
                self._fail(HTTPProtocolError("response header block over 64 KiB"))
                return
            self._rpos = end + 4
            self._scan = end + 4
            try:
                if self._apply_head(
                    str(self._inmv[rpos:end], "utf-8", "surrogateescape")
                ):
                    return
            except HTTPProtocolError as exc:
                self._fail(exc)
                return

    def _apply_head(self, text: str) -> bool:
        """Parse one header block; False for an interim (1xx) response."""
        lines = text.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if (
            not version.startswith("HTTP/1.")
            or len(code) != 3
            or not (code.isascii() and code.isdigit())
            or (len(rest) > 3 and rest[3] != " ")
        ):
            raise HTTPProtocolError(f"bad status line: {lines[0][:100]!r}")
        status = int(code)
        if status < 200:
            return False
        pairs = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t" or name[0] in " \t":
                raise HTTPProtocolError(f"bad header line: {line[:100]!r}")
            pairs.append((name, value.strip(" \t")))
        headers = CIMultiDictProxy(CIMultiDict(pairs))
        self.status = status
        self.reason = rest[4:]
        self.headers = headers
        keep_alive = version == "HTTP/1.1"
        connection = headers.get("Connection")
        if connection is not None and "close" in connection.lower():
            keep_alive = keep_alive and "close" not in [
                t.strip() for t in connection.lower().split(",")
            ]
        self._chunked = False
        chunked = False
        length: Optional[int] = None
        if "Transfer-Encoding" in headers:
            te = headers.getall("Transfer-Encoding")[-1].rsplit(",", 1)[-1]
            chunked = te.strip().lower() == "chunked"
            if "Content-Length" in headers:
                keep_alive = False  # RFC 9112 6.3: a smuggling signal, do not reuse
        elif "Content-Length" in headers:
            values = headers.getall("Content-Length")
            value = values[0].strip()
            if not (value.isascii() and value.isdigit()) or any(
                v.strip() != value for v in values[1:]
            ):
                raise HTTPProtocolError(f"bad Content-Length: {values!r}")
            length = int(value)
        if self._head_method or status in _NO_BODY_STATUS:
            # No body whatever the headers say; content_length still reports the header.
            self.content_length = 0 if length is None and not chunked else length
            self._state = _DONE
        elif chunked:
            self.content_length = None
            self._chunked = True
            self._state = _CHUNK_SIZE
        elif length is not None:
            self.content_length = length
            self._seg_left = length
            self._state = _DATA if length else _DONE
        else:  # read until the server closes
            self.content_length = None
            self._seg_left = -1
            self._state = _DATA
            keep_alive = False
        self._keep_alive = keep_alive
        return True

    def _advance(self) -> bool:
        """Consume chunk framing at the read position; False when more bytes are needed."""
        state = self._state
        buf = self._in
        rpos = self._rpos
        wpos = self._wpos
        if state == _CHUNK_SIZE:
            eol = buf.find(b"\r\n", rpos, wpos)
            if eol < 0:
                if wpos - rpos > _MAX_CHUNK_LINE:
                    self._fail(HTTPProtocolError("chunk size line too long"))
                return False
            size = bytes(buf[rpos:eol]).split(b";", 1)[0].strip(b" \t")
            if not size or size.lstrip(_HEX) or len(size) > 16:
                self._fail(IncompleteBodyError(f"bad chunk size line: {size[:40]!r}"))
                return False
            n = int(size, 16)
            self._rpos = eol + 2
            if n:
                self._seg_left = n
                self._state = _DATA
            else:
                self._state = _TRAILERS
            return True
        if state == _CHUNK_END:
            if wpos - rpos < 2:
                return False
            if buf[rpos : rpos + 2] != b"\r\n":
                self._fail(IncompleteBodyError("missing CRLF after chunk data"))
                return False
            self._rpos = rpos + 2
            self._state = _CHUNK_SIZE
            return True
        # _TRAILERS: header lines up to an empty line; trailers are dropped.
        if buf.startswith(b"\r\n", rpos, wpos):
            self._rpos = rpos + 2
            self._state = _DONE
            return True
        end = buf.find(b"\r\n\r\n", rpos, wpos)
        if end < 0:
            if wpos - rpos > _MAX_HEAD:
                self._fail(HTTPProtocolError("trailer block over 64 KiB"))
            return False
        self._rpos = end + 4
        self._state = _DONE
        return True

    def _consumed(self) -> None:
        if self._rpos == self._wpos:
            self._rpos = self._wpos = self._scan = 0
        if self._paused and self._wpos - self._rpos < _RESUME_AT:
            self._paused = False
            self._transport.resume_reading()

    def finish(self) -> bool:
        """End of a response: back to the pool if it was read fully, else close. Reused?"""
        while self._state in (_CHUNK_SIZE, _CHUNK_END, _TRAILERS) and self._advance():
            pass
        if (
            self._state == _DONE
            and self._keep_alive
            and self._reusable
            and self._rpos == self._wpos
            and self._exc is None
            and self.usable()
        ):
            self._state = _IDLE
            self._rpos = self._wpos = self._scan = 0
            if self._paused:
                self._paused = False
                self._transport.resume_reading()
            if len(self._in) > _BUF_SIZE:
                self._in = bytearray(_BUF_SIZE)
                self._inmv = memoryview(self._in)
            self._host.put_idle(self)
            return True
        if self._state == _DONE and self._exc is None:
            self._close()
        else:
            self.abort()
        return False


class _HostPool:
    """Connections to one (scheme, host, port)."""

    def __init__(
        self, pool: HTTPPool, host: str, port: int, ssl: Optional[_ssl.SSLContext]
    ) -> None:
        assert pool._loop is not None
        self.pool = pool
        self.loop = pool._loop
        self.host = host
        self.port = port
        self.ssl = ssl
        self.limit = pool.limit
        self.open = 0
        self.idle: list[_Conn] = []
        # A waiter gets a connection handed over, or None: a slot to connect with.
        self.waiters: collections.deque[asyncio.Future[Optional[_Conn]]] = (
            collections.deque()
        )

    def take(self) -> Optional[_Conn]:
        """An idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            conn._idle = False
            if conn.usable():
                conn.reused = True
                return conn
            conn.abort()
        return None

    async def acquire(self, fresh: bool = False) -> _Conn:
        """A connection; ``fresh``: a new one, closing the oldest idle one if at the limit."""
        while True:
            conn = None if fresh else self.take()
            if conn is not None:
                return conn
            if self.pool._closed:
                raise RuntimeError("HTTPPool is closed")
            if self.open < self.limit:
                self.open += 1
                return await self._connect()
            if self.idle:  # fresh: take over the slot of the oldest idle connection
                victim = self.idle.pop(0)
                victim._idle = False
                victim._slot = False
                victim.abort()
                return await self._connect()
            fut: asyncio.Future[Optional[_Conn]] = self.loop.create_future()
            self.waiters.append(fut)
            try:
                got = await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._pass_on(fut.result())
                else:
                    with contextlib.suppress(ValueError):
                        self.waiters.remove(fut)
                raise
            if self.pool._closed:
                if got is not None:
                    got.abort()
                raise RuntimeError("HTTPPool is closed")
            if got is None:
                return await self._connect()
            if got.usable():
                got.reused = True
                return got
            got.abort()

    def _pass_on(self, got: Optional[_Conn]) -> None:
        if got is None:
            self.release_slot()
        else:
            self.put_idle(got)

    def put_idle(self, conn: _Conn) -> None:
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        conn._idle = True
        self.idle.append(conn)

    def release_slot(self) -> None:
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                return
        self.open -= 1

    async def _connect(self) -> _Conn:
        """Open a connection with a slot already reserved; the slot is freed on failure."""
        pool = self.pool
        conn = _Conn(self)
        try:
            coro = self.loop.create_connection(
                lambda: conn,
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None,
            )
            if pool.connect_timeout is not None:
                await asyncio.wait_for(coro, pool.connect_timeout)
            else:
                await coro
        except asyncio.TimeoutError:
            self.release_slot()
            raise asyncio.TimeoutError(
                f"connecting to {self.host}:{self.port} timed out"
            ) from None
        except OSError as exc:
            self.release_slot()
            raise HTTPConnectionError(
                f"cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        except BaseException:
            self.release_slot()
            raise
        conn._slot = True
        if pool._closed:
            conn.abort()
            raise RuntimeError("HTTPPool is closed")
        return conn


class HTTPResponse:
    """Status, headers and body of one response; release it (or use ``async with``)."""

    __slots__ = ("_conn", "_done", "content_length", "headers", "reason", "status")

    def __init__(self, conn: _Conn) -> None:
        self._conn: Optional[_Conn] = conn
        self._done = False
        self.status = conn.status
        self.reason = conn.reason
        assert conn.headers is not None
        self.headers: CIMultiDictProxy[str] = conn.headers
        self.content_length = conn.content_length

    def _gone(self) -> int:
        if self._done:
            return 0
        raise HTTPConnectionError("response was released before its body was read")

    async def readinto(self, view: memoryview) -> int:
        """Read body bytes into ``view`` until it is full or the body ends; 0 = end of body.

        After an error mid-way the bytes already stored are returned; the next call raises.
        """
        conn = self._conn
        if conn is None:
            return self._gone()
        if not isinstance(view, memoryview):
            view = memoryview(view)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if view.readonly:
            raise TypeError("readinto() needs a writable buffer")
        size = len(view)
        pos = 0
        while pos < size:
            state = conn._state
            if state == _DATA:
                rpos = conn._rpos
                avail = conn._wpos - rpos
                left = conn._seg_left
                if avail:
                    k = size - pos
                    if avail < k:
                        k = avail
                    if 0 <= left < k:
                        k = left
                    view[pos : pos + k] = conn._inmv[rpos : rpos + k]
                    pos += k
                    conn._rpos = rpos + k
                    if left > 0:
                        left -= k
                        conn._seg_left = left
                        if not left:
                            conn._state = _CHUNK_END if conn._chunked else _DONE
                    conn._consumed()
                    continue
                if conn._eof or conn._exc is not None:
                    if left < 0 and conn._exc is None and conn._lost_exc is None:
                        conn._state = _DONE  # read-to-EOF body ended
                        continue
                    if pos:
                        return pos
                    raise conn._end_error()
                k = size - pos
                if 0 <= left < k:
                    k = left
                conn._dview = view[pos : pos + k]
                conn._dpos = 0
                conn._dlen = k
                try:
                    await conn._arm()
                except BaseException:
                    conn.abort()
                    raise
                conn._dview = None
                got = conn._dpos
                pos += got
                if left > 0 and not conn._seg_left:
                    conn._state = _CHUNK_END if conn._chunked else _DONE
            elif state == _DONE:
                break
            elif state >= _CHUNK_SIZE:
                if conn._advance():
                    continue
                if conn._eof or conn._exc is not None:
                    if pos:
                        return pos
                    raise conn._end_error()
                await conn._wait()
            else:
                raise HTTPProtocolError("connection is not reading a response body")
        return pos

    async def readany(self) -> bytes:
        """The next available body bytes; b"" at the end of the body."""
        conn = self._conn
        if conn is None:
            self._gone()
            return b""
        while True:
            state = conn._state
            if state == _DATA:
                rpos = conn._rpos
                avail = conn._wpos - rpos
                left = conn._seg_left
                if avail:
                    k = avail if left < 0 or avail < left else left
                    data = bytes(conn._inmv[rpos : rpos + k])
                    conn._rpos = rpos + k
                    if left > 0:
                        conn._seg_left = left = left - k
                        if not left:
                            conn._state = _CHUNK_END if conn._chunked else _DONE
                    conn._consumed()
                    return data
                if conn._eof or conn._exc is not None:
                    if left < 0 and conn._exc is None and conn._lost_exc is None:
                        conn._state = _DONE
                        return b""
                    raise conn._end_error()
                await conn._wait()
            elif state == _DONE:
                return b""
            elif state >= _CHUNK_SIZE:
                if conn._advance():
                    continue
                if conn._eof or conn._exc is not None:
                    raise conn._end_error()
                await conn._wait()
            else:
                raise HTTPProtocolError("connection is not reading a response body")

    async def read(self) -> bytes:
        """The whole remaining body."""
        conn = self._conn
        if conn is not None and conn._state == _DATA and conn._seg_left > 0:
            left = conn._seg_left
            if conn._wpos - conn._rpos >= left:
                return await self.readany()
            buf = bytearray(left)
            view = memoryview(buf)
            pos = 0
            while pos < left:
                n = await self.readinto(view[pos:])
                if not n:
                    break
                pos += n
            tail = await self.readany()  # b"": and moves the state to its end
            return bytes(view[:pos]) + tail
        chunks: list[bytes] = []
        while True:
            chunk = await self.readany()
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def release(self) -> None:
        """Give the connection back (body fully read, keep-alive) or close it. Idempotent."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._done = conn.finish() or conn._state == _DONE

    async def __aenter__(self) -> HTTPResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        # Dropped unreleased: the connection must not stay checked out forever.
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(RuntimeError):  # loop closed
                conn._loop.call_soon_threadsafe(conn.abort)

    def __repr__(self) -> str:
        return f"<HTTPResponse {self.status} {self.reason}>"


class HTTPPool:
    """Keep-alive HTTP/1.1 connections, at most ``limit`` per (scheme, host, port).

    Args:
        limit: Max open connections per origin; requests beyond it wait.
        connect_timeout: Seconds for TCP (+TLS) connect, or None.
        read_timeout: Max seconds without receiving bytes while waiting for headers or body;
            then ``asyncio.TimeoutError`` and the connection is closed. None: no limit.
        ssl_context: For https; default ``ssl.create_default_context()``.
    """

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float | None,
        read_timeout: float | None,
        ssl_context: _ssl.SSLContext | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl = ssl_context
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._origins: dict[str, _HostPool] = {}
        self._hosts: dict[tuple[str, str, int], _HostPool] = {}
        self._conns: set[_Conn] = set()
        self._drained: Optional[asyncio.Future[None]] = None

    def _host_for(self, origin: str) -> _HostPool:
        scheme, _, authority = origin.partition("://")
        if scheme == "https":
            default_port = 443
        elif scheme == "http":
            default_port = 80
        else:
            raise ValueError(f"unsupported URL scheme: {scheme!r}")
        if "@" in authority:
            raise ValueError("user info in URLs is not supported")
        if authority.startswith("["):
            end = authority.find("]")
            if end < 0:
                raise ValueError(f"bad URL authority: {authority!r}")
            host, port_text = authority[1:end], authority[end + 1 :]
            if port_text and not port_text.startswith(":"):
                raise ValueError(f"bad URL authority: {authority!r}")
            port_text = port_text[1:]
        else:
            host, _, port_text = authority.partition(":")
        if not host:
            raise ValueError(f"URL has no host: {origin!r}")
        if port_text:
            if not (port_text.isascii() and port_text.isdigit()):
                raise ValueError(f"bad URL port: {port_text!r}")
            port = int(port_text)
        else:
            port = default_port
        key = (scheme, host.lower(), port)
        hp = self._hosts.get(key)
        if hp is None:
            ctx: Optional[_ssl.SSLContext] = None
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = _ssl.create_default_context()
                ctx = self._ssl
            hp = self._hosts[key] = _HostPool(self, host, port, ctx)
        self._origins[origin] = hp
        return hp

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body | None = None,
    ) -> HTTPResponse:
        """Send a request and return once the status line and headers are in.

        ``url`` is absolute and already percent-encoded: its path and query are sent as given.
        ``headers`` are sent as given (include ``Host``); Content-Length is added for a body
        and for PUT/POST.
        """
        if self._closed:
            raise RuntimeError("HTTPPool is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        sep = url.find("://")
        slash = url.find("/", sep + 3) if sep > 0 else -1
        query = url.find("?", sep + 3) if sep > 0 else -1
        if query >= 0 and (slash < 0 or query < slash):
            slash = query
        if slash < 0:
            origin, target = url, "/"
        else:
            origin, target = url[:slash], url[slash:]
            if target[0] == "?":
                target = "/" + target
        host = self._origins.get(origin)
        if host is None:
            host = self._host_for(origin)
        extra = ""
        count = len(headers)
        view: Optional[memoryview] = None
        if body is not None:
            view = memoryview(body)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            if "Content-Length" not in headers and "content-length" not in headers:
                extra = f"Content-Length: {view.nbytes}\r\n"
                count += 1
        elif (method == "PUT" or method == "POST") and (
            "Content-Length" not in headers and "content-length" not in headers
        ):
            extra = "Content-Length: 0\r\n"
            count += 1
        text = (
            f"{method} {target} HTTP/1.1\r\n"
            + "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
            + extra
            + "\r\n"
        )
        # Each line must end where we put CRLF: no CR/LF smuggled in through names or values.
        if text.count("\n") != count + 2 or text.count("\r") != count + 2:
            raise ValueError("CR or LF in the request line or a header")
        head = text.encode("utf-8")
        large = view is not None and view.nbytes > _SMALL_BODY
        data = head if view is None or large else head + view
        head_method = method == "HEAD"
        retried = False
        while True:
            conn = host.take() if not retried else None
            if conn is None:
                conn = await host.acquire(retried)
            try:
                conn.start(data, head_method)
                if large:
                    assert view is not None
                    await conn.send_body(view)
                while conn._state == _HEAD:
                    if conn._eof or conn._exc is not None:
                        raise conn._end_error()
                    await conn._arm()
            except HTTPConnectionError:
                stale = conn.reused and not conn._got
                conn.abort()
                if (
                    stale
                    and not retried
                    and not isinstance(conn._exc, HTTPProtocolError)
                ):
                    retried = True  # a kept-alive connection the server had closed
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            return HTTPResponse(conn)

    async def aclose(self) -> None:
        """Close every connection; later requests raise RuntimeError."""
        self._closed = True
        for host in self._hosts.values():
            while host.waiters:
                w = host.waiters.popleft()
                if not w.done():
                    w.set_result(None)
        for conn in list(self._conns):
            conn.abort()
        if self._conns:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)
