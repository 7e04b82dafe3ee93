"""Sans-I/O HTTP/1.1 response parsing: bytes in, parse state and events out.

``ResponseParser`` holds a receive buffer (``_in``, read from ``_rpos`` up to ``_wpos``) and
the framing state of one response at a time: status line and headers, interim 1xx responses,
Content-Length / chunked / read-until-close bodies. It never touches a socket: ``_http._Conn``
adds the I/O on top of it (and lets the kernel write body bytes straight into caller buffers,
reporting them through the body state), and ``ResponseReader`` drives it from plain
``receive_data`` calls, which is how it is tested against h11.

What it accepts and rejects (RFC 9112 / 9110, as a client must):

* Line ends: CRLF or bare LF (as aiohttp and h11 do); a CR anywhere else is an error.
* Interim responses (100-199) are parsed and skipped at any time; a status below 100 is an error.
* obs-fold (a header line starting with SP/HT) continues the previous value, joined by one space.
* Header names must be tokens; NUL, VT and FF anywhere in the head are errors.
* Every ``Connection`` header counts: a ``close`` token in any of them ends keep-alive.
* Chunk framing takes CRLF only (as h11 and llhttp do; trailers are lines like headers).
* Chunk sizes: any number of hex digits while the value fits 63 bits; extensions ignored.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "HTTPConnectionError",
    "HTTPProtocolError",
    "IncompleteBodyError",
    "Informational",
    "Response",
    "ResponseParser",
    "ResponseReader",
]


class HTTPConnectionError(ConnectionError):
    """Connect failure, reset, or EOF in the middle of a response."""


class IncompleteBodyError(HTTPConnectionError):
    """The body ended before its Content-Length, or its chunked framing is broken."""


class HTTPProtocolError(HTTPConnectionError):
    """Unparsable status line or headers, or a body over the caller's limit."""


MAX_HEAD = 64 << 10  # status line + headers (also the trailer block)
MAX_CHUNK_LINE = 4 << 10
_MAX_CHUNK = (1 << 63) - 1

# Parser states.
IDLE = 0  # no request in flight
HEAD = 1  # waiting for the status line and headers
DATA = 2  # in body data: _seg_left bytes left (-1: until EOF)
CHUNK_SIZE = 3
CHUNK_END = 4  # line end after chunk data
TRAILERS = 5
DONE = 6

_NO_BODY_STATUS = frozenset((204, 304))
_HEX = b"0123456789abcdefABCDEF"
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TOKENS = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z:]+")  # non-empty names joined by ":"
_DIGITS = "0123456789"


def _find_blank_line(buf: bytearray, start: int, end: int) -> tuple[int, int]:
    """(end of the last header line incl. its LF, start of what follows) or (-1, -1)."""
    crlf = buf.find(b"\n\r\n", start, end)
    lf = buf.find(b"\n\n", start, end if crlf < 0 else crlf + 1)
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return -1, -1


def parse_head(
    text: str, crlf_lines: Optional[list[str]] = None
) -> tuple[str, int, str, list[tuple[str, str]]]:
    """(version, status, reason, header pairs) of one head block ending in its last LF.

    ``crlf_lines``: the text split at CRLF, if the caller checked that the line ends are all
    CRLF (no bare CR or LF).

    Raises:
        HTTPProtocolError: Malformed status line or header line.
    """
    lines = crlf_lines
    if lines is None:
        if text.count("\r\n") != text.count("\r"):
            raise HTTPProtocolError("bare CR in the response head")
        lines = text.replace("\r\n", "\n").split("\n")
    if "\x00" in text or "\x0b" in text or "\x0c" in text:
        raise HTTPProtocolError("NUL, VT or FF in the response head")
    status_line = lines[0]
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if (
        len(version) != 8
        or not version.startswith("HTTP/1.")
        or version[7] not in _DIGITS
        or len(code) != 3
        or not (code.isascii() and code.isdigit())
        or (len(rest) > 3 and rest[3] != " ")
    ):
        raise HTTPProtocolError(f"bad status line: {status_line[:100]!r}")
    status = int(code)
    if status < 100:
        raise HTTPProtocolError(f"bad status code: {status_line[:100]!r}")
    pairs: list[tuple[str, str]] = []
    del lines[0]
    lines.pop()  # the empty string after the last line end
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name[0] in " \t":
            if (
                line[0] in " \t" and pairs
            ):  # obs-fold: RFC 9112 5.2, replace with a space
                name, value = pairs[-1]
                pairs[-1] = (name, (value + " " + line.strip(" \t")).strip(" \t"))
                continue
            raise HTTPProtocolError(f"bad header line: {line[:100]!r}")
        pairs.append((name, value.strip(" \t")))
    # Every name a token: one regex over all of them (names are non-empty and hold no ":").
    if pairs and _TOKENS.fullmatch(":".join([n for n, _ in pairs])) is None:
        bad = next(n for n, _ in pairs if _TOKEN.fullmatch(n) is None)
        raise HTTPProtocolError(f"bad header name: {bad[:100]!r}")
    return version, status, rest[4:], pairs


def parse_chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (without its line end); extensions are ignored.

    Raises:
        IncompleteBodyError: Not a hex size, or too large.
    """
    size = line.split(b";", 1)[0].rstrip(b" \t")  # BWS may end it, not start it
    if not size or size.lstrip(_HEX):
        raise IncompleteBodyError(f"bad chunk size line: {line[:40]!r}")
    n = int(size, 16)
    if n > _MAX_CHUNK:
        raise IncompleteBodyError(f"chunk size too large: {line[:40]!r}")
    return n


class ResponseParser:
    """Framing state of the current response over the receive buffer ``_in``.

    The driver appends received bytes at ``_wpos``; ``_parse_head`` and ``_advance`` consume
    from ``_rpos``. Body bytes (state DATA, ``_seg_left`` left, -1 = until EOF) are taken by
    the driver itself, which then calls ``_took`` (or updates the same fields inline).
    """

    def __init__(self, size: int) -> None:
        buf = bytearray(size)
        self._in = buf
        self._inmv = memoryview(buf)
        self._rpos = 0
        self._wpos = 0
        self._scan = 0  # where the search for the end of the header block resumes
        self._state = IDLE
        self._head_method = False  # current request is HEAD
        self._seg_left = 0
        self._chunked = False
        self._keep_alive = False
        self.status = 0
        self.reason = ""
        self.version = ""
        self.headers: Optional[CIMultiDictProxy[str]] = None
        self.content_length: Optional[int] = None

    def _begin(self, head_method: bool) -> None:
        """A request went out: expect its response."""
        self._state = HEAD
        self._head_method = head_method
        self.headers = None

    def _interim(self, status: int, pairs: list[tuple[str, str]]) -> None:
        """Hook: an interim (1xx) response was parsed and skipped."""

    def _parse_head(self) -> None:
        """Consume complete head blocks; stops after the final one (state leaves HEAD).

        Raises:
            HTTPProtocolError: Malformed or oversized head.
        """
        buf = self._in
        while self._state == HEAD:
            rpos = self._rpos
            wpos = self._wpos
            # The blank line: CRLF after a line end (usual), or a bare LF one.
            i = buf.find(b"\n\r\n", max(self._scan, rpos), wpos)
            if i >= 0:
                end, after = i + 1, i + 3
            else:
                end = buf.find(b"\n\n", max(self._scan, rpos), wpos)
                if end < 0:
                    if wpos - rpos > MAX_HEAD:
                        raise HTTPProtocolError("response header block over 64 KiB")
                    self._scan = max(rpos, wpos - 2)
                    return
                end, after = end + 1, end + 2
            # Usual case: CRLF line ends only, checked by counting (no bare CR or LF).
            lines: Optional[list[str]] = None
            lf = buf.count(b"\n", rpos, end)
            if buf.count(b"\r", rpos, end) == lf:
                text = str(self._inmv[rpos:end], "utf-8", "surrogateescape")
                lines = text.split("\r\n")
                if len(lines) - 1 != lf:
                    lines = None  # a bare CR and a bare LF
            if lines is None:
                # A bare LF: the blank line may be an earlier, bare-LF one.
                blank = buf.find(b"\n\n", rpos, end)
                if blank >= 0:
                    end, after = blank + 1, blank + 2
                text = str(self._inmv[rpos:end], "utf-8", "surrogateescape")
            if end - rpos > MAX_HEAD:
                raise HTTPProtocolError("response header block over 64 KiB")
            self._rpos = self._scan = after
            self._apply_head(text, lines)

    def _apply_head(self, text: str, crlf_lines: Optional[list[str]] = None) -> None:
        version, status, reason, pairs = parse_head(text, crlf_lines)
        if status < 200:
            self._interim(status, pairs)
            return
        headers = CIMultiDictProxy(CIMultiDict(pairs))
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        keep_alive = version == "HTTP/1.1"
        if keep_alive and "Connection" in headers:
            for value in headers.getall("Connection"):
                if "close" in [t.strip(" \t") for t in value.lower().split(",")]:
                    keep_alive = False
        self._chunked = False
        chunked = False
        length: Optional[int] = None
        if "Transfer-Encoding" in headers:
            te = headers.getall("Transfer-Encoding")[-1].rsplit(",", 1)[-1]
            chunked = te.strip(" \t").lower() == "chunked"
            if "Content-Length" in headers:
                keep_alive = False  # RFC 9112 6.3: a smuggling signal, do not reuse
        elif "Content-Length" in headers:
            values = headers.getall("Content-Length")
            value = values[0]
            if len(values) > 1 or "," in value:
                # Repeats (also as a list) of one value are accepted (RFC 9110 8.6).
                lengths = {v.strip(" \t") for x in values for v in x.split(",")}
                value = lengths.pop()
                if lengths:
                    raise HTTPProtocolError(f"bad Content-Length: {values!r}")
            if not (value.isascii() and value.isdigit()) or len(value) > 20:
                raise HTTPProtocolError(f"bad Content-Length: {values!r}")
            length = int(value)
        if self._head_method or status in _NO_BODY_STATUS:
            # No body whatever the headers say; content_length still reports the header.
            self.content_length = 0 if length is None and not chunked else length
            self._state = DONE
        elif chunked:
            self.content_length = None
            self._chunked = True
            self._state = CHUNK_SIZE
        elif length is not None:
            self.content_length = length
            self._seg_left = length
            self._state = DATA if length else DONE
        else:  # read until the server closes
            self.content_length = None
            self._seg_left = -1
            self._state = DATA
            keep_alive = False
        self._keep_alive = keep_alive

    def _advance(self) -> bool:
        """Consume chunk framing at the read position; False when more bytes are needed.

        Raises:
            IncompleteBodyError: Broken chunk framing.
            HTTPProtocolError: Oversized chunk-size line or trailers, or malformed trailers.
        """
        state = self._state
        buf = self._in
        rpos = self._rpos
        wpos = self._wpos
        if state == CHUNK_SIZE:
            eol = buf.find(b"\n", rpos, wpos)
            if eol < 0:
                if wpos - rpos > MAX_CHUNK_LINE:
                    raise HTTPProtocolError("chunk size line too long")
                return False
            # Chunk framing takes CRLF only (as h11 and llhttp do); bare LF is for heads.
            if eol == rpos or buf[eol - 1] != 13:
                raise IncompleteBodyError("chunk size line without CRLF")
            n = parse_chunk_size(bytes(buf[rpos : eol - 1]))
            self._rpos = eol + 1
            if n:
                self._seg_left = n
                self._state = DATA
            else:
                self._state = TRAILERS
            return True
        if state == CHUNK_END:
            if wpos - rpos < 2:
                if wpos > rpos and buf[rpos] != 13:
                    raise IncompleteBodyError("missing CRLF after chunk data")
                return False
            if not buf.startswith(b"\r\n", rpos, wpos):
                raise IncompleteBodyError("missing CRLF after chunk data")
            self._rpos = rpos + 2
            self._state = CHUNK_SIZE
            return True
        if state != TRAILERS:
            return False
        # Trailer lines up to a blank line; they are checked like headers and dropped.
        if buf.startswith(b"\n", rpos, wpos):
            self._rpos = rpos + 1
        elif buf.startswith(b"\r\n", rpos, wpos):
            self._rpos = rpos + 2
        else:
            end, after = _find_blank_line(buf, rpos, wpos)
            if end < 0:
                if wpos - rpos > MAX_HEAD:
                    raise HTTPProtocolError("trailer block over 64 KiB")
                return False
            parse_head(
                "HTTP/1.1 200 \n" + str(buf[rpos:end], "utf-8", "surrogateescape")
            )
            self._rpos = after
        self._state = DONE
        return True

    def _took(self, k: int) -> None:
        """``k`` body bytes of the current segment were consumed."""
        left = self._seg_left
        if left > 0:
            left -= k
            self._seg_left = left
            if not left:
                self._state = CHUNK_END if self._chunked else DONE


# -- an event-style driver (tests, and anyone who wants h11-like events) -----------------------


class Informational:
    """An interim (1xx) response."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.headers = headers


class Response:
    """The final response head."""

    __slots__ = (
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
        "version",
    )

    def __init__(self, parser: ResponseParser) -> None:
        assert parser.headers is not None
        self.status = parser.status
        self.reason = parser.reason
        self.version = parser.version
        self.headers = list(parser.headers.items())
        self.content_length = parser.content_length
        self.keep_alive = parser._keep_alive  # noqa: SLF001 - same module


class Data:
    """Body bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfMessage:
    """The body reached its framed end (or the server closed a read-until-close body)."""

    __slots__ = ()


NEED_DATA = "NEED_DATA"
Event = Union[Informational, Response, Data, EndOfMessage, str]


class ResponseReader(ResponseParser):
    """Feed bytes with ``receive_data`` (b"" = the peer closed), take ``next_event()``s."""

    def __init__(self, head_method: bool = False) -> None:
        super().__init__(0)
        self._eof = False
        self._error: Optional[HTTPConnectionError] = None
        self._events: list[Event] = []
        self._begin(head_method)

    def _interim(self, status: int, pairs: list[tuple[str, str]]) -> None:
        self._events.append(Informational(status, pairs))

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        rpos = self._rpos
        self._in = self._in[rpos : self._wpos] + data
        self._inmv = memoryview(self._in)
        self._scan = max(0, self._scan - rpos)
        self._rpos = 0
        self._wpos = len(self._in)

    def next_event(self) -> Event:
        """The next event, or NEED_DATA.

        Raises:
            HTTPConnectionError: The stream is malformed (HTTPProtocolError,
                IncompleteBodyError), or it ended early.
        """
        while True:
            if self._events:
                return self._events.pop(0)
            if self._error is not None:
                raise self._error
            state = self._state
            if state == HEAD:
                before = self._rpos
                try:
                    self._parse_head()
                except HTTPConnectionError as exc:
                    self._error = exc  # after the interim responses parsed before it
                    continue
                if self._state != HEAD:
                    self._events.append(Response(self))
                elif self._rpos == before and not self._events:
                    if self._eof:
                        raise HTTPConnectionError("closed before the response head")
                    return NEED_DATA
            elif state == DATA:
                avail = self._wpos - self._rpos
                left = self._seg_left
                if avail:
                    k = avail if left < 0 or avail < left else left
                    data = bytes(self._inmv[self._rpos : self._rpos + k])
                    self._rpos += k
                    self._took(k)
                    return Data(data)
                if self._eof:
                    if left < 0:
                        self._state = DONE
                        continue
                    raise IncompleteBodyError("response body ended early")
                return NEED_DATA
            elif state in (CHUNK_SIZE, CHUNK_END, TRAILERS):
                if not self._advance():
                    if self._eof:
                        raise IncompleteBodyError("chunked response body ended early")
                    return NEED_DATA
            elif state == DONE:
                self._state = IDLE
                return EndOfMessage()
            else:
                return NEED_DATA
