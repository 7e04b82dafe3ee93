"""A small HTTP/1.1 client for the lean S3 data plane.

aiohttp's per-request machinery (request/response objects, connector, timers, StreamReader
copies) dominates event-loop CPU for small GETs. This client does only what our own signed S3
requests need: keep-alive pools (bounded in total across hosts, idle connections expired
before the server's idle limit), Content-Length / chunked / read-to-EOF framing, interim 1xx
responses skipped at any time, a read timeout (shorter for a host that has never answered,
see :class:`NoResponseError`), and bodies received straight into caller
buffers. A connection is one ``asyncio.BufferedProtocol`` around the sans-I/O parser of
``_h1`` (which parses the response in place in its receive buffer); while ``readinto`` waits,
``get_buffer`` hands the socket the caller's memory so the kernel writes the body there.

A connection goes back to the pool only when provably clean: the response read to its framed
end, nothing buffered past it, nothing more readable on the socket, no ``close`` in any
``Connection`` header, the request body sent whole.

Not supported (not needed for S3): proxies, redirects, cookies, decompression, pipelining,
sending ``Expect: 100-continue``, upgrades.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import os
import select
import ssl as _ssl
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from multidict import CIMultiDictProxy

from . import _h1
from ._checksum import crc32, crc32_to_b64
from ._dns import DNS_TTL_S, HostAddresses
from ._h1 import (
    HTTPConnectionError,
    HTTPProtocolError,
    IncompleteBodyError,
    ResponseParser,
)

__all__ = [
    "ALONGSIDE",
    "FIRST_ANSWER_BODY",
    "HTTPConnectionError",
    "HTTPPool",
    "HTTPProtocolError",
    "HTTPResponse",
    "IncompleteBodyError",
    "InvalidRequestHeaderError",
    "NoResponseError",
    "StaleConnectionError",
    "probe",
]

Body = Union[bytes, bytearray, memoryview]

logger = logging.getLogger(__name__)

#: True in a task whose requests accompany one its caller has already sent (a read's checksum
#: HEAD, sent with the read's first GET): they do not wait for the first-answer turn of a host
#: that has not answered yet (``_HostPool.take_turn``), so a client's first read costs one
#: round trip, not two. They still get the first-answer timeout: a silent host fails them as
#: fast as the request they accompany. Set it only inside such a task (its own context).
ALONGSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "s3torch_async_alongside", default=False
)


class StaleConnectionError(HTTPConnectionError):
    """A kept-alive connection was closed by the server before any response byte came.

    Raised instead of the silent retry when ``request(..., retry_stale=False)``.
    """


class NoResponseError(asyncio.TimeoutError):
    """A host that has never answered sent nothing within the first-answer timeout.

    Until a host has sent a response, a request to it waits for the response head at most
    ``HTTPPool.first_answer_timeout`` seconds (counted once the request is sent). Then a
    probe (``HEAD /`` on a new connection) asks the host for any HTTP answer, with the same
    time limit: if it answers, the host is alive and merely slow, and the request waits on
    under the read timeout; if it is silent too, the request fails with this error. A wrong
    endpoint that accepts connections but never answers thus fails in about twice the
    first-answer timeout, not after the full read timeout.
    """


async def _probe_once(
    host: str, port: int, ssl: Optional[_ssl.SSLContext], authority: str
) -> Optional[bool]:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl, server_hostname=host if ssl is not None else None
    )
    try:
        request = f"HEAD / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        line = await reader.readline()
    finally:
        writer.close()
    return True if line else None


async def probe(
    host: str,
    port: int,
    ssl: Optional[_ssl.SSLContext],
    authority: str,
    timeout: float,
) -> Optional[bool]:
    """Send ``HEAD /`` on a new connection: did the server answer within ``timeout`` s?

    Returns:
        True: some answer came. False: silence (nothing, or no connection, in time).
        None: inconclusive (refused, closed without a word, TLS failure...).
    """
    try:
        return await asyncio.wait_for(_probe_once(host, port, ssl, authority), timeout)
    except asyncio.TimeoutError:
        return False
    except Exception:
        return None


class InvalidRequestHeaderError(ValueError):
    """A request header name or value (or the request line) holds CR, LF or NUL."""


_BUF_SIZE = 64 << 10  # receive buffer per connection while nobody reads into their own
# A new connection's receive buffer: a response head and the start of a body fit; it grows
# (to _BUF_SIZE and past) only on a connection that needs it. Mapping and zeroing 64 KiB up
# front cost ~40 us per connect, and a window that widens opens hundreds.
_FIRST_BUF_SIZE = 16 << 10
_MIN_FREE = 16 << 10  # grow or compact the receive buffer below this much tail space
_HEAD_READ = 16 << 10  # socket read size while the headers are not in
_PAUSE_AT = 1 << 20  # buffered, unread body bytes that pause the socket
_RESUME_AT = 256 << 10
_SMALL_BODY = 256 << 10  # bodies up to this go out in one write with the headers
# Requests with larger bodies keep the full read timeout even to a host that never answered:
# a server may take a while to store a large upload before it answers.
FIRST_ANSWER_BODY = 1 << 20
_SLICE = 1 << 20  # larger bodies: slices of this size, with flow control
_DIRECT_MAX = 16 << 20  # most bytes one write(2) offers the socket (it takes what fits)
# A body hashed as it is sent (a trailing checksum) goes out in writes of at most this much,
# each hashed right after the kernel copied it, while it is still in the CPU's cache: hashing
# it earlier, from memory, costs ~7x the hash of cached bytes (benchmarks/results/
# writes3-issue16.md); 1 MiB slices leave the cache before they are hashed.
_HASHED_SLICE = 256 << 10
#: The trailer of an aws-chunked body of one chunk, around the 8 base64 characters of a CRC32.
_TRAILER_HEAD = b"\r\n0\r\nx-amz-checksum-crc32:"
_TRAILER_END = b"\r\n\r\n"
_TRAILER_LEN = len(_TRAILER_HEAD) + 8 + len(_TRAILER_END)
# read(): the first buffer; later ones double (to 16 MiB), bounded by what is left.
_READ_CHUNK = 64 << 10
#: Largest body ``read_body`` receives into one spare buffer of its announced size (larger:
#: as it arrives).
WHOLE_MAX = 16 << 20
_SPARE_KEEP = 8 << 20  # spare receive buffers kept per pool
_SPARE_SLACK = 64 << 10

# Parser states (see _h1), as module globals for the hot paths.
_IDLE = _h1.IDLE
_HEAD = _h1.HEAD
_DATA = _h1.DATA
_CHUNK_SIZE = _h1.CHUNK_SIZE
_CHUNK_END = _h1.CHUNK_END
_TRAILERS = _h1.TRAILERS
_DONE = _h1.DONE


class _Spares:
    """Receive buffers lent to bodies read whole (``read_body``), kept for the next ones.

    A fresh buffer of a few hundred KiB costs more than the body's copy out of it: the
    allocator maps new pages for it (and unmaps them when it is freed), and the socket's
    write into them faults every page in. A kept buffer is mapped and warm. A body borrows
    one only while its bytes arrive (from the ``get_buffer`` before a read until its last
    byte is in), so one or a few serve every GET however many wait for their answer.
    """

    def __init__(self, keep_bytes: int) -> None:
        self._free: list[bytearray] = []
        self._kept = 0
        self._keep = keep_bytes

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (at most about twice that)."""
        free = self._free
        for i in range(len(free) - 1, -1, -1):  # the most recently used first
            buf = free[i]
            if size <= len(buf) <= 2 * size + _SPARE_SLACK:
                del free[i]
                self._kept -= len(buf)
                return buf
        return bytearray(size)

    def give(self, buf: bytearray) -> None:
        """Return ``buf`` (nothing may write to it any more), kept while the budget allows."""
        if self._kept + len(buf) <= self._keep:
            self._free.append(buf)
            self._kept += len(buf)


class _Conn(asyncio.BufferedProtocol, ResponseParser):
    """One connection: socket I/O around the sans-I/O parse state of its current response."""

    def __init__(self, host: _HostPool) -> None:
        ResponseParser.__init__(self, _FIRST_BUF_SIZE)
        self._host = host
        self._loop = host.loop
        self._timeout = host.pool.read_timeout
        self._transport: Any = None  # a selector or SSL transport
        # Polls the socket for bytes (or EOF) waiting unread, before reuse.
        self._poller: Optional[select.poll] = None
        self._reusable = True  # false once the request body was cut short
        self._got = False  # any response byte received for the current request
        self._eof = False
        self._lost = False
        self._exc: Optional[BaseException] = None
        self._lost_exc: Optional[BaseException] = None
        self._waiter: Optional[asyncio.Future[None]] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._first_timer: Optional[asyncio.TimerHandle] = None
        self._first_due = False  # the first-answer timeout passed: probe the host
        self._rx_time = 0.0
        self._paused = False
        self._write_paused = False
        self._dview: Optional[memoryview] = None  # caller's memory the socket fills
        self._given: Optional[memoryview] = (
            None  # the last slice of it handed to the socket
        )
        self._dpos = 0
        self._dlen = 0
        # read_body: the body goes into a spare buffer (borrowed at its first read), then
        # out as one bytes object (_wbody) as soon as its last byte is in.
        self._whole = False
        self._wbuf: Optional[bytearray] = None
        self._wmv: Optional[memoryview] = None
        self._wgot = 0
        self._wsize = 0
        self._wbody: Optional[bytes] = None
        self._sent_crc = 0  # CRC32 of the body bytes sent so far (when hashed as sent)
        self._slot = False  # holds one of the pool's connection slots
        self._idle = False
        self._idle_since = 0.0
        self.reused = False

    # -- protocol callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)
        self._host.pool._conns.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._whole:
            wmv = self._wmv
            if wmv is None:
                wmv = self._lend()
            self._release_given()
            given = self._given = wmv[self._wgot : self._wsize]
            return given
        dview = self._dview
        if dview is not None:
            self._release_given()
            given = self._given = dview[self._dpos :]
            return given
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
        if self._whole:
            self._wgot += nbytes
            self._seg_left -= nbytes
            if self._wgot >= self._wsize:
                self._whole = False  # later reads (SSL reads ahead) go to the buffer
                self._state = _DONE
                self._wbody = self._give_back()
                self._wake()
            return
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
            try:
                self._parse_head()
            except HTTPConnectionError as exc:
                self._fail(exc)
                return
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
        self._whole = False  # the reader takes the bytes received so far
        self._release_given()
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

    def _lend(self) -> memoryview:
        """Borrow the spare buffer for the body's bytes, about to arrive (``read_body``).

        Body bytes already in the receive buffer (read with the head) go first.
        """
        buf = self._wbuf = self._host.pool._spares.take(self._wsize)
        wmv = self._wmv = memoryview(buf)
        rpos = self._rpos
        got = self._wpos - rpos
        if got:
            wmv[:got] = self._inmv[rpos : self._wpos]
            self._wgot = got
            self._seg_left -= got
            self._rpos = self._wpos = self._scan = 0
        return wmv

    def _give_back(self) -> bytes:
        """The body bytes in the spare buffer (copied out), which goes back to the pool."""
        wmv = self._wmv
        buf = self._wbuf
        if wmv is None or buf is None:
            return b""
        self._wmv = self._wbuf = None
        self._release_given()
        with wmv[: self._wgot] as body:
            data = body.tobytes()
        wmv.release()
        self._host.pool._spares.give(buf)
        return data

    def _release_given(self) -> None:
        # The transport is done with it (one get_buffer per read); released here so that a
        # traceback holding the transport's frame (a socket error) does not pin the
        # caller's buffer.
        given = self._given
        if given is not None:
            self._given = None
            with contextlib.suppress(BufferError):
                given.release()

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

    def expect_first_answer(self, seconds: float) -> None:
        """Wake the waiting request after ``seconds`` unless the host answered by then."""
        self._first_due = False
        self._first_timer = self._loop.call_later(seconds, self._on_first_timer)

    def _on_first_timer(self) -> None:
        self._first_timer = None
        # Another connection's answer proves the host (a busy server answering slowly):
        # then only the read timeout applies to this one.
        if self._got or self._state != _HEAD or self._host.answered:
            return
        self._first_due = True
        self._wake()

    def _stop_first_timer(self) -> None:
        if self._first_timer is not None:
            self._first_timer.cancel()
            self._first_timer = None

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        self.abort()
        self._wake()

    def abort(self) -> None:
        """Close now, discarding buffered output; frees the pool slot."""
        self._dview = None
        self._whole = False  # the reader takes the bytes received so far
        self._release_given()
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
        self._begin(head_method)
        self._got = False
        self._reusable = True
        self._exc = None
        self._transport.write(data)

    async def send_body(self, body: memoryview, hashed: bool = False) -> bool:
        """Write a large body; stop (and never reuse) once a final response is in.

        Interim responses (``100 Continue`` and other 1xx) are parsed and skipped as they come
        (RFC 9110 15.2), so they do not stop the body. ``hashed``: take the CRC32 of the
        bytes as they are sent (``_sent_crc``). Returns whether all of ``body`` was sent.
        """
        self._sent_crc = 0
        fd = self._plain_fd()
        if fd is not None and not self._transport.get_write_buffer_size():
            sent = await self._send_direct(fd, body, hashed)
        else:
            sent = await self._send_buffered(body, hashed)
        if sent < body.nbytes:
            self._reusable = False
            return False
        return True

    def _plain_fd(self) -> Optional[int]:
        """The socket's descriptor if the body may bypass the transport (plain TCP)."""
        t = self._transport
        if not isinstance(self._loop, asyncio.SelectorEventLoop) or t.get_extra_info(
            "ssl_object"
        ):
            return None
        sock = t.get_extra_info("socket")
        return None if sock is None else int(sock.fileno())

    async def _send_direct(self, fd: int, body: memoryview, hashed: bool) -> int:
        """Send ``body`` with ``write(2)`` straight from its memory; return the bytes sent.

        The transport would copy every byte the socket does not take at once into its own
        buffer (about all of a large body): a copy of the body and the page faults of that
        buffer, per upload. The transport's buffer is empty (nothing to overtake), and a
        duplicate descriptor, ours for the duration, is what the loop watches for room.
        """
        size = body.nbytes
        pos = 0
        step = _HASHED_SLICE if hashed else _DIRECT_MAX
        out = os.dup(fd)
        watched = False
        try:
            while pos < size:
                if self._state != _HEAD or self._eof:
                    break
                try:
                    sent = os.write(out, body[pos : pos + step])
                    if hashed:
                        self._sent_crc = crc32(body[pos : pos + sent], self._sent_crc)
                    pos += sent
                    continue
                except (BlockingIOError, InterruptedError):
                    pass
                except (
                    OSError
                ) as exc:  # reset, broken pipe: as the transport reports it
                    err = HTTPConnectionError(
                        f"connection lost while sending the request body: {exc}"
                    )
                    err.__cause__ = exc
                    self._fail(err)
                    break
                if not watched:
                    self._loop.add_writer(out, self._wake)
                    watched = True
                await self._wait()
                if self._exc is not None:
                    raise self._exc
        finally:
            if watched:
                self._loop.remove_writer(out)
            os.close(out)
        return pos

    async def _send_buffered(self, body: memoryview, hashed: bool) -> int:
        """Send ``body`` through the transport in slices, with its flow control."""
        t = self._transport
        size = body.nbytes
        pos = 0
        step = _HASHED_SLICE if hashed else _SLICE
        while pos < size:
            if self._state != _HEAD or self._eof:
                break
            piece = body[pos : pos + step]
            t.write(piece)  # TLS encrypts it here: hashed next, from the cache
            if hashed:
                self._sent_crc = crc32(piece, self._sent_crc)
            pos = min(size, pos + step)
            while self._write_paused and self._state == _HEAD and not self._eof:
                await self._wait()
                if self._exc is not None:
                    raise self._exc
        return pos

    def _step(self) -> bool:
        """Consume chunk framing (see ``_advance``); a framing error fails the connection."""
        try:
            return self._advance()
        except HTTPConnectionError as exc:
            self._fail(exc)
            return False

    def _consumed(self) -> None:
        if self._rpos == self._wpos:
            self._rpos = self._wpos = self._scan = 0
        if self._paused and self._wpos - self._rpos < _RESUME_AT:
            self._paused = False
            self._transport.resume_reading()

    def finish(self) -> bool:
        """End of a response: back to the pool if it was read fully, else close. Reused?"""
        while self._state in (_CHUNK_SIZE, _CHUNK_END, _TRAILERS) and self._step():
            pass
        # Reuse only a provably clean connection: framed end reached, nothing buffered past
        # it, nothing more on the socket (readinto asks it for exactly the body bytes, so
        # extra bytes can still wait there), and the server did not ask to close.
        if (
            self._state == _DONE
            and self._keep_alive
            and self._reusable
            and self._rpos == self._wpos
            and self._exc is None
            and self.usable()
            and self._poller is not None
            and not self._poller.poll(0)
        ):
            self._state = _IDLE
            self._rpos = self._wpos = self._scan = 0
            if self._paused:
                self._paused = False
                self._transport.resume_reading()
            if len(self._in) > _BUF_SIZE:
                self._in = bytearray(_BUF_SIZE)
                self._inmv = memoryview(self._in)
            self._host.pool._put_idle(self)
            return True
        if self._state == _DONE and self._exc is None:
            self._close()
        else:
            self.abort()
        return False


class _HostPool:
    """Connections to one (scheme, host, port); slots are counted here and by the pool."""

    def __init__(
        self, pool: HTTPPool, host: str, port: int, ssl: Optional[_ssl.SSLContext]
    ) -> None:
        assert pool._loop is not None
        self.pool = pool
        self.loop = pool._loop
        self.host = host
        self.port = port
        self.ssl = ssl
        self.addresses = HostAddresses(self.loop, host, port, pool.dns_ttl)
        self.open = 0
        self.idle: list[_Conn] = []  # oldest first
        # Any response received from this host (see NoResponseError). Until then one request
        # at a time goes out (its turn, see take_turn) and the others wait for its outcome, so
        # a burst of first requests to a slow but working server does not time out at once.
        self.answered = False
        self._turn: Optional[asyncio.Future[Optional[BaseException]]] = None
        self._probe: Optional[asyncio.Future[Optional[bool]]] = None  # one at a time

    async def take_turn(self) -> bool:
        """Wait until this host answered (``False``) or it is our turn to try it (``True``).

        Raises:
            NoResponseError: The request whose turn it was got no answer (nor did a probe).
        """
        while not self.answered:
            if self._turn is None:
                self._turn = self.loop.create_future()
                return True
            outcome = await asyncio.shield(self._turn)
            if isinstance(outcome, NoResponseError):
                raise NoResponseError(str(outcome))
            # Any other failure (refused, reset, cancelled): the next waiter tries.
        return False

    def end_turn(self, outcome: Optional[BaseException]) -> None:
        """Wake the requests waiting for this host's first answer."""
        turn, self._turn = self._turn, None
        if turn is not None and not turn.done():
            turn.set_result(outcome)

    async def probe(self, authority: str, timeout: float) -> Optional[bool]:
        """:func:`probe` this host; concurrent callers share one probe."""
        task = self._probe
        if task is None:
            task = asyncio.ensure_future(
                probe(self.host, self.port, self.ssl, authority, timeout)
            )
            self._probe = task
            task.add_done_callback(self._forget_probe)
        result = await asyncio.shield(task)
        if result:
            self.answered = True
        return result

    def _forget_probe(self, task: asyncio.Future[Optional[bool]]) -> None:
        if self._probe is task:
            self._probe = None

    def take(self) -> Optional[_Conn]:
        """The newest idle connection that is still open and not idle too long, or None."""
        idle = self.idle
        if not idle:
            return None
        max_idle = self.pool.idle_timeout
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            conn._idle = False
            if max_idle is not None and now - conn._idle_since >= max_idle:
                # Expired before the server's idle limit could close it under a request;
                # every older one has expired too.
                conn._close()
                while idle:
                    old = idle.pop()
                    old._idle = False
                    old._close()
                return None
            if conn.usable():
                conn.reused = True
                return conn
            conn.abort()
        return None

    def release_slot(self) -> None:
        pool = self.pool
        self.open -= 1
        pool._open -= 1
        pool._grant()

    async def _connect(self) -> _Conn:
        """Open a connection with a slot already reserved; the slot is freed on failure."""
        pool = self.pool
        conn = _Conn(self)
        silent_tls = False
        try:
            coro = self._open(conn)
            limit = pool.connect_timeout
            first = pool.first_answer_timeout
            # A TLS handshake with a host that never answered: a server that accepts and
            # stays silent (a wrong port) fails as fast as a silent HTTP server does.
            silent_tls = (
                self.ssl is not None
                and not self.answered
                and first is not None
                and (limit is None or first < limit)
            )
            if silent_tls:
                limit = first
            if limit is not None:
                await asyncio.wait_for(coro, limit)
            else:
                await coro
        except asyncio.TimeoutError:
            self.release_slot()
            if silent_tls:
                raise NoResponseError(
                    f"no TLS answer from {self.host}:{self.port} within {limit:g} s: "
                    "is this an https S3 endpoint?"
                ) from None
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

    async def _open(self, conn: _Conn) -> None:
        """Connect ``conn`` to the first of the host's addresses that accepts."""
        error: Optional[OSError] = None
        for family, address in await self.addresses.candidates():
            error = await self._open_to(conn, family, address)
            if error is None:
                return
            self.addresses.failed(address)
        assert error is not None  # candidates() returns at least one address
        raise error

    async def _open_to(
        self, conn: _Conn, family: int, address: str
    ) -> Optional[OSError]:
        try:
            await self.loop.create_connection(
                lambda: conn,
                address,
                self.port,
                family=family,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None,
            )
        except _ssl.SSLError:
            raise  # the host's certificate or TLS, not this address
        except OSError as exc:
            return exc
        return None


def _trailer(crc: int) -> bytes:
    """The end of a one-chunk aws-chunked body whose bytes have the CRC32 ``crc``."""
    return _TRAILER_HEAD + crc32_to_b64(crc).encode("ascii") + _TRAILER_END


class HTTPResponse:
    """Status, headers and body of one response; release it (or use ``async with``)."""

    __slots__ = (
        "_conn",
        "_done",
        "content_length",
        "headers",
        "reason",
        "sent_crc32",
        "status",
    )

    def __init__(self, conn: _Conn) -> None:
        self._conn: Optional[_Conn] = conn
        self._done = False
        #: The CRC32 sent in the body's trailer (``request(trailer_crc32=True)``), else None.
        self.sent_crc32: Optional[int] = None
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
                dview = conn._dview = view[pos : pos + k]
                conn._dpos = 0
                conn._dlen = k
                try:
                    await conn._arm()
                except BaseException:
                    conn.abort()
                    raise
                finally:
                    conn._release_given()
                    dview.release()
                conn._dview = None
                got = conn._dpos
                pos += got
                if left > 0 and not conn._seg_left:
                    conn._state = _CHUNK_END if conn._chunked else _DONE
            elif state == _DONE:
                break
            elif state >= _CHUNK_SIZE:
                if conn._step():
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
                if conn._step():
                    continue
                if conn._eof or conn._exc is not None:
                    raise conn._end_error()
                await conn._wait()
            else:
                raise HTTPProtocolError("connection is not reading a response body")

    async def read_body(self, chunks: list[bytes]) -> Optional[int]:
        """Append the rest of the body to ``chunks`` as one bytes object; return its size.

        For a Content-Length body of at most ``WHOLE_MAX`` bytes: its bytes are received
        into a spare buffer of the pool, borrowed only while they arrive (from the socket
        read that brings the first of them until the last is in), and copied out once; so a
        few warm buffers serve any number of GETs waiting for their answers. Any other body
        is left unread and ``None`` returned: read it as it arrives (``readany``).

        If the body breaks off, the bytes received are appended before the error is raised
        (a resumed GET starts after them).
        """
        conn = self._conn
        if conn is None:
            self._gone()
            return 0
        left = conn._seg_left
        if conn._state != _DATA or conn._chunked or left < 0 or left > WHOLE_MAX:
            return None
        rpos = conn._rpos
        if conn._wpos - rpos >= left:  # all of it came with the head
            chunks.append(conn._inmv[rpos : rpos + left].tobytes())
            conn._rpos = rpos + left
            conn._seg_left = 0
            conn._state = _DONE
            conn._consumed()
            return left
        conn._wsize = left  # the bytes already buffered are part of it
        conn._wgot = 0
        conn._wbody = None
        conn._whole = True
        try:
            while conn._wbody is None:
                if conn._eof or conn._exc is not None:
                    if conn._wmv is None:
                        conn._lend()  # count the bytes that came with the head
                    raise conn._end_error()
                await conn._arm()
        except BaseException:
            conn._whole = False
            conn.abort()
            # What arrived counts (a resume starts after it): in the spare buffer, or
            # still in the receive buffer if no read came since the head.
            if conn._wmv is not None:
                data = conn._give_back()
            else:
                data = conn._inmv[conn._rpos : conn._wpos].tobytes()
            if data:
                chunks.append(data)
            raise
        data = conn._wbody
        conn._wbody = None
        chunks.append(data)
        return len(data)

    async def read(self, limit: Optional[int] = None) -> bytes:
        """The whole remaining body, in memory that grows with the bytes received.

        A server's Content-Length is only a claim: nothing is allocated for bytes that did
        not arrive.

        Args:
            limit: Max body bytes accepted (for bodies that get parsed: listings, errors);
                None: no limit.

        Raises:
            HTTPProtocolError: The body is (or announces itself) over ``limit``; the
                connection is then closed.
        """
        conn = self._conn
        if conn is None:
            self._gone()
            return b""
        if limit is not None and conn._state == _DATA and conn._seg_left > limit:
            conn.abort()
            raise HTTPProtocolError(
                f"response body of {conn._seg_left} bytes is over the {limit}-byte limit"
            )
        chunks: list[Union[bytes, bytearray]] = []
        total = 0
        size = _READ_CHUNK
        while conn._state != _DONE:
            data: Union[bytes, bytearray]
            if conn._state == _DATA and conn._wpos > conn._rpos:
                data = await self.readany()  # already buffered: taken as it is
            else:
                left = conn._seg_left if conn._state == _DATA else -1
                data = bytearray(size if left < 0 or left > size else left)
                n = await self.readinto(memoryview(data))
                if n < len(data):
                    data = data[:n]  # the socket may still hold a view of the buffer
                size = min(size * 2, 16 << 20)
            if not data:
                break
            total += len(data)
            if limit is not None and total > limit:
                conn.abort()
                raise HTTPProtocolError(f"response body is over the {limit}-byte limit")
            chunks.append(data)
        if len(chunks) == 1 and isinstance(chunks[0], bytes):
            return chunks[0]
        return b"".join(chunks)

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


def _bad_header(
    method: str, target: str, headers: Mapping[str, str]
) -> InvalidRequestHeaderError:
    """The error for a request line or header holding CR, LF or NUL (values not shown)."""
    for name, value in headers.items():
        if any(c in str(name) + str(value) for c in "\r\n\0"):
            return InvalidRequestHeaderError(
                f"CR or LF (or NUL) in request header {name!r}"
            )
    return InvalidRequestHeaderError(
        f"CR or LF (or NUL) in the request line of {method} {target[:200]!r}"
    )


class HTTPPool:
    """Keep-alive HTTP/1.1 connections: at most ``limit`` open in total, across all hosts.

    Args:
        limit: Max open connections in total (virtual-hosted buckets are separate hosts, so
            a per-host bound alone would multiply them); requests beyond it wait, or close
            the longest-idle connection of another host.
        connect_timeout: Seconds for TCP (+TLS) connect, or None.
        read_timeout: Max seconds without receiving bytes while waiting for headers or body;
            then ``asyncio.TimeoutError`` and the connection is closed. None: no limit.
        first_answer_timeout: Max seconds to wait for the response head from a host that
            has not answered this pool yet (counted from the end of the request body; not
            applied to bodies over 1 MiB); then :class:`NoResponseError`. None: no limit.
        ssl_context: For https; default ``ssl.create_default_context()``.
        limit_per_host: Max open connections per (scheme, host, port); default ``limit``.
        idle_timeout: Seconds a connection may sit idle before it is closed instead of
            reused: below the server's own idle limit (S3 closes after about 20 s), so a
            request never goes out on a connection the server is closing. None: no limit.
        dns_ttl: Seconds a host name's resolution serves new connections (see ``_dns``).
    """

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float | None,
        read_timeout: float | None,
        ssl_context: _ssl.SSLContext | None = None,
        limit_per_host: int | None = None,
        idle_timeout: float | None = 15.0,
        first_answer_timeout: float | None = None,
        dns_ttl: float = DNS_TTL_S,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if limit_per_host is not None and limit_per_host < 1:
            raise ValueError("limit_per_host must be at least 1")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive or None")
        self.limit = limit
        self.limit_per_host = limit if limit_per_host is None else limit_per_host
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.first_answer_timeout = first_answer_timeout
        self.dns_ttl = dns_ttl
        self._ssl = ssl_context
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._origins: dict[str, _HostPool] = {}
        self._hosts: dict[tuple[str, str, int], _HostPool] = {}
        self._conns: set[_Conn] = set()
        self._open = 0  # slots held, all hosts
        # A waiter gets a connection of its host handed over, or None: a slot reserved for it.
        self._waiters: collections.deque[
            tuple[_HostPool, asyncio.Future[Optional[_Conn]]]
        ] = collections.deque()
        self._drained: Optional[asyncio.Future[None]] = None
        self._warming: set[asyncio.Task[None]] = set()  # connections opened ahead
        self._spares = _Spares(_SPARE_KEEP)  # for bodies read whole (read_body)

    # -- slots --------------------------------------------------------------------------------

    def _evict_for(self, host: _HostPool) -> bool:
        """Close the longest-idle connection to free a slot ``host`` may use; False if none."""
        if host.open >= self.limit_per_host:
            victim = host.idle[0] if host.idle else None
        else:
            victim = None
            for h in self._hosts.values():
                if h.idle and (
                    victim is None or h.idle[0]._idle_since < victim._idle_since
                ):
                    victim = h.idle[0]
        if victim is None:
            return False
        # Take its slot over directly: closing normally would hand it to a waiter.
        owner = victim._host
        owner.idle.remove(victim)
        victim._idle = False
        victim._slot = False
        owner.open -= 1
        host.open += 1
        victim._close()
        return True

    def _take_free_slot(self, host: _HostPool) -> bool:
        """Count a connection to ``host`` as open if both limits leave room (no eviction)."""
        if host.open < self.limit_per_host and self._open < self.limit:
            host.open += 1
            self._open += 1
            return True
        return False

    def _reserve(self, host: _HostPool, fresh: bool) -> bool:
        """Reserve a slot to open a connection to ``host`` now, if the limits allow."""
        if self._take_free_slot(host):
            return True
        if host.open >= self.limit_per_host and not fresh:
            return False  # take() found no idle connection of this host
        return self._evict_for(host)

    def _grant(self) -> None:
        """A slot was freed: give it to the first waiter whose host may use it."""
        waiters = self._waiters
        if not waiters or self._open >= self.limit:
            return
        for item in list(waiters):
            host, fut = item
            if fut.done():
                waiters.remove(item)
            elif self._take_free_slot(host):
                waiters.remove(item)
                fut.set_result(None)
                return

    def _put_idle(self, conn: _Conn) -> None:
        """A clean connection is free: to a waiter for its host, else to the idle list."""
        host = conn._host
        waiters = self._waiters
        if waiters:
            other = None
            for item in list(waiters):
                h, fut = item
                if fut.done():
                    waiters.remove(item)
                elif h is host:
                    waiters.remove(item)
                    fut.set_result(conn)
                    return
                elif other is None and h.open < self.limit_per_host:
                    other = item
            if other is not None:
                # Only another host waits, at the total limit: this slot serves it better.
                waiters.remove(other)
                h, fut = other
                conn._slot = False
                host.open -= 1
                h.open += 1
                conn._close()
                fut.set_result(None)
                return
        conn._idle = True
        conn._idle_since = self._loop.time() if self._loop is not None else 0.0
        host.idle.append(conn)

    def _pass_on(self, host: _HostPool, got: Optional[_Conn]) -> None:
        if got is None:
            host.release_slot()
        else:
            self._put_idle(got)

    async def _acquire(self, host: _HostPool, fresh: bool = False) -> _Conn:
        """A connection to ``host``; ``fresh``: a new one (an idle one may be closed for it)."""
        while True:
            conn = None if fresh else host.take()
            if conn is not None:
                return conn
            if self._closed:
                raise RuntimeError("HTTPPool is closed")
            if self._reserve(host, fresh):
                return await host._connect()
            assert self._loop is not None
            fut: asyncio.Future[Optional[_Conn]] = self._loop.create_future()
            item = (host, fut)
            self._waiters.append(item)
            try:
                got = await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._pass_on(host, fut.result())
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(item)
                raise
            if self._closed:
                if got is not None:
                    got.abort()
                raise RuntimeError("HTTPPool is closed")
            if got is None:
                return await host._connect()
            if got.usable():
                got.reused = True
                return got
            got.abort()

    def _host_for(self, origin: str) -> _HostPool:
        scheme, _, authority = origin.partition("://")
        scheme = scheme.lower()
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

    def preconnect(self, origin: str, count: int) -> int:
        """Open connections to ``origin`` in the background until ``count`` are open there.

        For requests the caller is about to send at once (a burst of GETs once a listing
        page is in): their connections are set up while the caller waits anyway. Each one
        joins the idle connections when it is up. Only free slots are used: nothing is
        closed or waited for, and no more open while requests wait for a slot. A connection
        that cannot be opened is left to the request that needs it to report.

        Args:
            origin: ``scheme://host[:port]``.
            count: Connections to have open to ``origin``, busy, idle or opening.

        Returns:
            How many connections it started to open.
        """
        if self._closed or count <= 0:
            return 0
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        host = self._origins.get(origin)
        if host is None:
            host = self._host_for(origin)
        started = 0
        while host.open < count and not self._waiters and self._take_free_slot(host):
            task = self._loop.create_task(self._open_idle(host))
            self._warming.add(task)
            task.add_done_callback(functools.partial(self._opened_idle, host))
            started += 1
        return started

    async def _open_idle(self, host: _HostPool) -> None:
        """Open one connection with a slot already reserved and make it idle."""
        try:
            conn = await host._connect()
        except asyncio.CancelledError:
            # The pool closes; _connect freed the slot. Ends normally, so that "cancelled"
            # means only cancelled before it started (see _opened_idle).
            return
        except Exception as exc:  # the request that needs a connection will say it
            logger.debug(
                "opening a connection ahead to %s:%s failed: %r",
                host.host,
                host.port,
                exc,
            )
            return
        self._put_idle(conn)

    def _opened_idle(self, host: _HostPool, task: asyncio.Task[None]) -> None:
        self._warming.discard(task)
        if task.cancelled():  # before its first step: the slot is still reserved
            host.release_slot()

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body | None = None,
        *,
        retry_stale: bool = True,
        after_send: Optional[Callable[[], None]] = None,
        trailer_crc32: bool = False,
    ) -> HTTPResponse:
        """Send a request and return once the status line and headers are in.

        ``url`` is absolute and already percent-encoded: its path and query are sent as given.
        ``headers`` are sent as given (include ``Host``); Content-Length is added for a body
        and for PUT/POST. Interim (1xx) responses are skipped.

        A reused keep-alive connection that fails before any response byte (the server
        closed it while idle) is retried once on a new connection; with ``retry_stale=False``
        it raises ``StaleConnectionError`` instead, for callers that count every attempt.

        ``after_send`` is called once, as soon as the request is written (before its answer
        is awaited): work that can use the time the server takes to answer.

        ``trailer_crc32``: the body goes out as one ``aws-chunked`` chunk followed by an
        ``x-amz-checksum-crc32`` trailer, the CRC32 taken while the body is sent (the caller
        sends the aws-chunked headers; Content-Length is the framed length); the response's
        ``sent_crc32`` is that CRC32.

        Raises:
            InvalidRequestHeaderError: CR, LF or NUL in the request line or a header.
            HTTPConnectionError: Connect failure, reset, malformed response
                (``HTTPProtocolError``), stale connection (``StaleConnectionError``).
            asyncio.TimeoutError: Connect or read timeout.
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
        chunk_head = b""
        if body is not None:
            view = memoryview(body)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            length = view.nbytes
            if trailer_crc32:
                chunk_head = b"%x\r\n" % view.nbytes
                length += len(chunk_head) + _TRAILER_LEN
            if "Content-Length" not in headers and "content-length" not in headers:
                extra = f"Content-Length: {length}\r\n"
                count += 1
        elif trailer_crc32:
            raise ValueError("a CRC32 trailer needs a body")
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
        if (
            text.count("\n") != count + 2
            or text.count("\r") != count + 2
            or "\0" in text
        ):
            raise _bad_header(method, target, headers)
        head = text.encode("utf-8") + chunk_head
        large = view is not None and view.nbytes > _SMALL_BODY
        small_crc: Optional[int] = None
        if view is None or large:
            data = head
        elif trailer_crc32:
            small_crc = crc32(view)
            data = head + view + _trailer(small_crc)
        else:
            data = head + view
        head_method = method == "HEAD"
        first = self.first_answer_timeout
        if view is not None and view.nbytes > FIRST_ANSWER_BODY:
            first = None
        alongside = first is not None and ALONGSIDE.get()
        my_turn = first is not None and not alongside and await host.take_turn()
        try:
            resp = await self._send(
                host,
                origin,
                data,
                view if large else None,
                head_method,
                first if my_turn or alongside else None,
                retry_stale,
                after_send,
                trailer_crc32,
            )
            if small_crc is not None:
                resp.sent_crc32 = small_crc
            return resp
        except BaseException as exc:
            if my_turn:
                host.end_turn(exc)
            raise
        finally:
            if my_turn:
                host.end_turn(None)

    async def _send(
        self,
        host: _HostPool,
        origin: str,
        data: bytes,
        large: memoryview | None,
        head_method: bool,
        first: float | None,
        retry_stale: bool,
        after_send: Optional[Callable[[], None]],
        trailer: bool = False,
    ) -> HTTPResponse:
        retried = False
        while True:
            sent_crc: Optional[int] = None  # of this attempt's body
            conn = host.take() if not retried else None
            if conn is None:
                conn = await self._acquire(host, retried)
            try:
                conn.start(data, head_method)
                if large is not None:
                    whole = await conn.send_body(large, trailer)
                    if trailer and whole:
                        sent_crc = conn._sent_crc
                        conn._transport.write(_trailer(sent_crc))
                if after_send is not None:
                    sent = after_send
                    after_send = None  # once, not again for a retry
                    sent()
                if first is not None and not host.answered:
                    conn.expect_first_answer(first)
                while conn._state == _HEAD:
                    if conn._eof or conn._exc is not None:
                        raise conn._end_error()
                    if conn._first_due:
                        conn._first_due = False
                        assert first is not None
                        authority = origin.split("://", 1)[1]
                        silent = await host.probe(authority, first) is False
                        if silent and conn._state == _HEAD and not conn._got:
                            raise NoResponseError(
                                f"no HTTP response from {origin} within {first:g} s, "
                                "to the request or to a probe: is this an S3 endpoint?"
                            )
                        continue
                    await conn._arm()
                conn._stop_first_timer()
                host.answered = True
            except HTTPConnectionError as exc:
                conn._stop_first_timer()
                if conn._got:
                    host.answered = True
                stale = conn.reused and not conn._got
                conn.abort()
                if (
                    stale
                    and not retried
                    and not isinstance(conn._exc, HTTPProtocolError)
                ):
                    # A kept-alive connection the server had closed.
                    if not retry_stale:
                        raise StaleConnectionError(
                            f"reused connection to {host.host}:{host.port} was closed "
                            f"before the response started: {exc}"
                        ) from exc
                    retried = True
                    continue
                raise
            except BaseException:
                conn._stop_first_timer()
                conn.abort()
                raise
            resp = HTTPResponse(conn)
            resp.sent_crc32 = sent_crc
            return resp

    async def aclose(self) -> None:
        """Close every connection; later requests raise RuntimeError."""
        self._closed = True
        for host in self._hosts.values():
            if host._probe is not None:
                host._probe.cancel()
        warming = list(self._warming)
        for task in warming:
            task.cancel()
        if warming:
            await asyncio.gather(*warming, return_exceptions=True)
        while self._waiters:
            _, w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
        for conn in list(self._conns):
            conn.abort()
        if self._conns:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)
