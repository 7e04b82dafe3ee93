"""A real, scriptable, fault-injecting HTTP reverse proxy for S3 fault tests.

Project rule: fault tests talk to a real faulty peer, never to patched methods.
:class:`FaultProxy` sits between the client under test and a real S3 server
(moto's ``ThreadedMotoServer`` in the test suite) and, per scripted
:class:`FaultRule`, answers with an S3 error, resets or truncates the response
mid-body, or delays the request.

The proxy runs an ``aiohttp.web`` server on its *own* thread with its *own*
event loop, so it can be driven from synchronous tests and from tests that run
their own asyncio loop alike::

    with FaultProxy(moto_url) as proxy:
        proxy.add_fault(FaultRule(Fault.status(503), method="GET"))
        client = boto3.client("s3", endpoint_url=proxy.url, ...)

Host header and SigV4: the client signs the ``Host`` it connected to (the
proxy's ``127.0.0.1:<port>``). The proxy forwards the client's ``Host`` header
verbatim instead of rewriting it to the upstream's, and forwards path and
query as the exact raw bytes of the request line, so every signed component
(method, raw path, raw query, signed headers, body) reaches upstream
unchanged and a signature-verifying upstream would accept it too. moto does
not verify signatures by default and serves path-style requests regardless of
``Host``, so this is transparent there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import io
import re
import socket
import ssl
import struct
import threading
import uuid
import zlib
from typing import Any, Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

__all__ = ["Fault", "FaultProxy", "FaultRule", "RequestRecord"]

# RFC 7230 section 6.1 hop-by-hop headers, plus ``Expect`` (the proxy answers
# ``100-continue`` itself and forwards an already buffered body) and
# ``Content-Length`` (recomputed for the forwarded body; see ``_forward``).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Headers aiohttp's client would add on its own; suppressed so upstream sees
# exactly what the client sent.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_CHUNK = 64 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

RequestRecord = Tuple[str, str, Dict[str, str]]
"""``(method, raw path-and-query, headers)`` of one request the proxy saw."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault kind; build with the factories (``Fault.status``, ``Fault.reset_after``...)."""

    kind: str
    code: int = 503
    s3_code: str = "SlowDown"
    message: Optional[str] = None
    retry_after: Optional[int] = None
    nbytes: int = 0
    seconds: float = 0.0

    @classmethod
    def status(
        cls,
        code: int = 503,
        s3_code: str = "SlowDown",
        retry_after: Optional[int] = None,
        message: Optional[str] = None,
    ) -> Fault:
        """Answer ``code`` with an S3 XML ``<Error>`` body; upstream is not contacted."""
        return cls(
            "status",
            code=code,
            s3_code=s3_code,
            retry_after=retry_after,
            message=message,
        )

    @classmethod
    def reset_after(cls, nbytes: int) -> Fault:
        """Forward, send headers and ``nbytes`` of body, then reset the TCP connection (RST)."""
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        return cls("reset", nbytes=nbytes)

    @classmethod
    def truncate(cls, nbytes: int) -> Fault:
        """Forward, keep upstream's Content-Length, send ``nbytes`` of body, then close (FIN)."""
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        return cls("truncate", nbytes=nbytes)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep ``seconds`` before forwarding the request upstream (a slow first byte)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls("delay", seconds=seconds)

    @classmethod
    def meet(cls, count: int, seconds: float) -> Fault:
        """Hold the request until ``count`` requests held by this fault wait together (then
        forward them all), or at most ``seconds``. ``FaultProxy.most_held`` tells how many
        were ever held at once: a test of concurrency by events, not by timing.
        """
        if count < 1 or seconds < 0:
            raise ValueError("count must be >= 1 and seconds >= 0")
        return cls("meet", nbytes=count, seconds=seconds)

    @classmethod
    def stall(cls, nbytes: int, seconds: float) -> Fault:
        """Forward, send headers and ``nbytes`` of body, go silent ``seconds``, then close."""
        if nbytes < 0 or seconds < 0:
            raise ValueError("nbytes and seconds must be >= 0")
        return cls("stall", nbytes=nbytes, seconds=seconds)

    @classmethod
    def flip_response_bit(cls, offset: int = 0) -> Fault:
        """Forward, but flip the lowest bit of response body byte ``offset``; headers kept."""
        if offset < 0:
            raise ValueError("offset must be >= 0")
        return cls("flip_response", nbytes=offset)

    @classmethod
    def flip_request_bit(cls, offset: int = 0) -> Fault:
        """Flip the lowest bit of request body byte ``offset`` before forwarding; headers kept."""
        if offset < 0:
            raise ValueError("offset must be >= 0")
        return cls("flip_request", nbytes=offset)


@dataclasses.dataclass
class FaultRule:
    """Apply ``fault`` to the next ``times`` requests matching every given criterion.

    Criteria left as ``None`` match anything. ``query_contains`` and
    ``path_contains`` are plain substring tests on the *raw* (still
    percent-encoded) query string and path, e.g. ``"partNumber="``,
    ``"uploads"``, ``"list-type=2"``; ``header_present`` is a case-insensitive
    header name such as ``"Range"``; ``method`` is compared case-insensitively.
    ``times=None`` never expires. Rules are tried in the order they were added;
    the first live match wins.
    """

    fault: Fault
    method: Optional[str] = None
    path_contains: Optional[str] = None
    query_contains: Optional[str] = None
    header_present: Optional[str] = None
    #: ``(name, substring)``: the header is present and its value contains the substring,
    #: e.g. ``("Range", "bytes=0-")`` for the GET of an object's first range.
    header_contains: Optional[Tuple[str, str]] = None
    times: Optional[int] = 1
    hits: int = 0

    def matches(
        self, method: str, path: str, query: str, headers: Dict[str, str]
    ) -> bool:
        """Whether a request with these raw components matches the criteria."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        if self.query_contains is not None and self.query_contains not in query:
            return False
        if self.header_present is not None:
            wanted = self.header_present.lower()
            if not any(name.lower() == wanted for name in headers):
                return False
        if self.header_contains is not None:
            wanted, part = self.header_contains[0].lower(), self.header_contains[1]
            if not any(
                name.lower() == wanted and part in value
                for name, value in headers.items()
            ):
                return False
        return True

    @property
    def expired(self) -> bool:
        """True once the rule has been applied ``times`` times."""
        return self.times is not None and self.hits >= self.times


class FaultProxy:
    """Reverse proxy in front of ``upstream_url`` that injects scripted faults.

    ``start()`` binds 127.0.0.1 on an ephemeral port and publishes ``url``;
    ``stop()`` (idempotent) shuts the server down and joins its thread. Also a
    context manager. ``add_fault``/``clear`` and the counters are safe to use
    from any thread while the proxy runs.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        verify_checksums: bool = False,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        # Serve HTTPS with this server context (the upstream stays plain HTTP).
        self._ssl_context = ssl_context
        # moto (5.2) stores x-amz-checksum-* values but never checks them against the body;
        # with this set the proxy checks a request's x-amz-checksum-crc32 as S3 does and
        # answers 400 BadDigest on a mismatch, without forwarding.
        self.verify_checksums = verify_checksums
        self.rejected_checksums = 0
        # Accepted UploadPart bodies by (upload id, part number): a CompleteMultipartUpload
        # carrying a FULL_OBJECT CRC32 is checked against the CRC32 of the listed parts' bytes,
        # concatenated (computed here with zlib alone, not with the code under test).
        self._part_bodies: Dict[Tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._rules: List[FaultRule] = []
        self._requests: List[RequestRecord] = []
        self._faults_injected = 0
        self._held = 0  # requests held by Fault.meet now, and at most
        self._most_held = 0
        self._meeting: Optional[asyncio.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._stop_event: Optional[asyncio.Event] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._url: Optional[str] = None

    # ----------------------------------------------------------------- control
    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>`` once started."""
        if self._url is None:
            raise RuntimeError("FaultProxy is not started")
        return self._url

    def start(self) -> FaultProxy:
        """Start the proxy thread and block until it listens; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._thread_main, name="FaultProxy", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("FaultProxy did not start within 30s")
        if self._startup_error is not None:
            self._thread.join(timeout=10)
            self._thread = None
            raise RuntimeError("FaultProxy failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving, close the upstream session and join the thread. Idempotent."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("FaultProxy thread did not stop within 30s")
        self._thread = None
        self._loop = None
        self._stop_event = None
        self._url = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ script
    def add_fault(self, rule: FaultRule) -> FaultRule:
        """Append a fresh copy of ``rule`` (returned); it applies to the next ``rule.times``
        matching requests. Copying lets one rule object serve several (parametrised) tests.
        """
        if rule.times is not None and rule.times < 1:
            raise ValueError("times must be >= 1 or None")
        live = copy.copy(rule)  # keeps per-object overrides (e.g. a custom ``matches``)
        live.hits = 0
        with self._lock:
            self._rules.append(live)
        return live

    def clear(self) -> None:
        """Drop all pending rules and reset ``requests`` and ``faults_injected``."""
        with self._lock:
            self._rules.clear()
            self._requests.clear()
            self._faults_injected = 0
            self._most_held = 0

    @property
    def requests(self) -> List[RequestRecord]:
        """Snapshot of every request seen so far (faulted or not), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def faults_injected(self) -> int:
        """How many requests a fault has been applied to."""
        with self._lock:
            return self._faults_injected

    @property
    def most_held(self) -> int:
        """The most requests :meth:`Fault.meet` ever held at once (since ``clear``)."""
        with self._lock:
            return self._most_held

    async def _meet(self, fault: Fault) -> None:
        # Runs on the proxy's own loop (one thread): no lock needed for the meeting itself.
        if self._meeting is None:
            self._meeting = asyncio.Event()
        meeting = self._meeting
        self._held += 1
        with self._lock:
            self._most_held = max(self._most_held, self._held)
        if self._held >= fault.nbytes:
            meeting.set()
            self._meeting = None
        try:
            await asyncio.wait_for(meeting.wait(), fault.seconds)
        except asyncio.TimeoutError:
            if self._meeting is meeting:
                self._meeting = None
        finally:
            self._held -= 1

    @property
    def pending_rules(self) -> List[FaultRule]:
        """Rules that have not expired yet."""
        with self._lock:
            return [r for r in self._rules if not r.expired]

    # -------------------------------------------------------------- proxy loop
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start() if we never got ready
            if not self._ready.is_set():
                self._startup_error = exc
        finally:
            self._ready.set()
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True)
                    )
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
                connector=aiohttp.TCPConnector(limit=0),
            )
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=self._ssl_context).start()
            port = sock.getsockname()[1]
            scheme = "https" if self._ssl_context is not None else "http"
            self._url = f"{scheme}://127.0.0.1:{port}"
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await runner.cleanup()
            if self._session is not None:
                await self._session.close()
                self._session = None
            sock.close()

    def _take_fault(self, request: web.BaseRequest) -> Optional[Fault]:
        headers = dict(request.headers.items())
        path = request.raw_path.split("?", 1)[0]
        query = request.raw_path.split("?", 1)[1] if "?" in request.raw_path else ""
        with self._lock:
            self._requests.append((request.method, request.raw_path, headers))
            for rule in self._rules:
                if rule.expired or not rule.matches(
                    request.method, path, query, headers
                ):
                    continue
                rule.hits += 1
                self._faults_injected += 1
                fault: Optional[Fault] = rule.fault
                break
            else:
                fault = None
            self._rules = [r for r in self._rules if not r.expired]
        return fault

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault(request)
        # Always consume the request body first so the client has finished
        # sending before it sees any (faulty) answer.
        body = await request.read()
        if fault is not None and fault.kind == "status":
            return _s3_error_response(fault, request)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "meet":
            await self._meet(fault)
            fault = None
        if fault is not None and fault.kind == "flip_request":
            body = _flip(body, fault.nbytes)
            fault = None
        if self.verify_checksums:
            rejection = self._check_crc32(request, body)
            if rejection is not None:
                return _s3_error_response(rejection, request)
        return await self._forward(request, body, fault)

    def _check_crc32(self, request: web.Request, body: bytes) -> Optional[Fault]:
        claimed = request.headers.get("x-amz-checksum-crc32")
        upload_id = request.query.get("uploadId")
        trailer = request.headers.get("x-amz-trailer", "").lower()
        if claimed is None and trailer == "x-amz-checksum-crc32":
            # A trailing checksum (aws-chunked body): checked against the decoded bytes.
            decoded = _decode_aws_chunked(body)
            if decoded is None:
                return Fault.status(
                    400, "IncompleteBody", message="Malformed aws-chunked body."
                )
            body, trailers = decoded
            claimed = trailers.get("x-amz-checksum-crc32")
        if claimed is None:
            return None
        if request.method == "POST" and upload_id is not None:
            # CompleteMultipartUpload: the header is the whole object's CRC32.
            numbers = re.findall(rb"<PartNumber>\s*(\d+)\s*</PartNumber>", body)
            with self._lock:
                whole = b"".join(
                    self._part_bodies.get((upload_id, n.decode()), b"") for n in numbers
                )
            checked = whole
        else:
            checked = body
        actual = base64.b64encode(zlib.crc32(checked).to_bytes(4, "big")).decode()
        if actual == claimed:
            part_number = request.query.get("partNumber")
            if request.method == "PUT" and upload_id and part_number:
                with self._lock:
                    self._part_bodies[(upload_id, part_number)] = body
            return None
        with self._lock:
            self.rejected_checksums += 1
        return Fault.status(
            400,
            "BadDigest",
            message="The CRC32 you specified did not match the calculated checksum.",
        )

    async def _forward(
        self, request: web.Request, body: bytes, fault: Optional[Fault]
    ) -> web.StreamResponse:
        assert self._session is not None
        out_headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                continue
            out_headers.add(name, value)
        # The Host header is kept as the client sent it (see module docstring).
        # Content-Length: aiohttp recomputes it from the bytes body; an empty
        # body on a method that carries one (PUT/POST) still gets "0".
        # (BytesIO rather than bytes: aiohttp warns about large raw bytes bodies.)
        data: Optional[io.BytesIO] = io.BytesIO(body) if body else None
        if not body and "content-length" in request.headers:
            out_headers["Content-Length"] = "0"
        target = URL(self.upstream_url + request.raw_path, encoded=True)
        # Shielded: the handler is cancelled when the client hangs up (handler_cancellation),
        # and an upstream request cancelled mid-connect can leave its socket unclosed (seen as
        # a stray "unclosed transport" warning in a later test). Let it finish, then close it.
        pending = asyncio.ensure_future(
            self._session.request(
                request.method,
                target,
                headers=out_headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            )
        )
        try:
            upstream = await asyncio.shield(pending)
        except asyncio.CancelledError:
            pending.add_done_callback(_close_abandoned)
            raise
        except aiohttp.ClientError as exc:
            bad_gateway = Fault.status(502, "BadGateway", message=f"upstream: {exc!r}")
            return _s3_error_response(bad_gateway, request)
        complete = False
        try:
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason
            )
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            limit = fault.nbytes if fault is not None else None
            flip = None
            if fault is not None and fault.kind == "flip_response":
                limit, flip, fault = None, fault.nbytes, None
            try:
                await response.prepare(request)
                complete = await _pump(upstream, response, limit, flip)
                if fault is not None and fault.kind == "stall":
                    await asyncio.sleep(fault.seconds)
            except aiohttp.ClientError:
                # Upstream broke mid-body: pass the breakage on to the client.
                await _cut_connection(request, reset=True)
                return response
            except ConnectionError:  # the client went away
                return response
        finally:
            if complete:
                upstream.release()
            else:  # unread upstream body: drop that connection
                upstream.close()
        if fault is not None:
            await _cut_connection(request, reset=fault.kind == "reset")
        # Otherwise aiohttp finishes the response (write_eof) after we return,
        # and quietly ignores a client that has gone away meanwhile.
        return response


def _close_abandoned(done: asyncio.Future[aiohttp.ClientResponse]) -> None:
    """Close the upstream response of a request whose handler was cancelled."""
    if not done.cancelled() and done.exception() is None:
        done.result().close()


def _decode_aws_chunked(raw: bytes) -> Optional[Tuple[bytes, Dict[str, str]]]:
    """The data and trailers of an ``aws-chunked`` body; ``None`` if it is malformed."""
    out = io.BytesIO()
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return None
        size_text = raw[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        pos = end + 2
        if size == 0:
            break
        if raw[pos + size : pos + size + 2] != b"\r\n":
            return None
        out.write(raw[pos : pos + size])
        pos += size + 2
    trailers: Dict[str, str] = {}
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return None
        line = raw[pos:end].decode("latin-1")
        pos = end + 2
        if not line:
            break
        name, colon, value = line.partition(":")
        if not colon:
            return None
        trailers[name.strip().lower()] = value.strip()
    if pos != len(raw):
        return None
    return out.getvalue(), trailers


def _flip(data: bytes, offset: int) -> bytes:
    if offset >= len(data):
        raise ValueError(f"cannot flip byte {offset} of a {len(data)}-byte body")
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


async def _pump(
    upstream: aiohttp.ClientResponse,
    response: web.StreamResponse,
    limit: Optional[int],
    flip: Optional[int] = None,
) -> bool:
    """Copy upstream's body to ``response``, at most ``limit`` bytes.

    ``flip``: flip the lowest bit of that byte of the body on the way.
    Returns whether upstream's body was read to the end.
    """
    sent = 0
    async for chunk in upstream.content.iter_chunked(_CHUNK):
        if flip is not None and sent <= flip < sent + len(chunk):
            chunk = _flip(chunk, flip - sent)
        if limit is not None and sent + len(chunk) >= limit:
            if limit > sent:
                await response.write(chunk[: limit - sent])
            return upstream.content.at_eof()
        await response.write(chunk)
        sent += len(chunk)
    return True


async def _cut_connection(request: web.BaseRequest, *, reset: bool) -> None:
    """End the connection mid-body: ``reset`` sends RST, otherwise a clean FIN."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    # Let what was written so far leave the process before cutting.
    for _ in range(200):
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    if reset:
        # Give the kernel a moment to hand the bytes to the peer: an RST
        # discards anything still queued in our socket's send buffer.
        await asyncio.sleep(0.05)
        sock: Any = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into an RST.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        transport.abort()
    else:
        transport.close()  # flushes the buffer, then FIN, body still short


def _s3_error_response(fault: Fault, request: web.BaseRequest) -> web.Response:
    request_id = uuid.uuid4().hex[:16].upper()
    message = fault.message or f"Injected fault: {fault.s3_code}"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(fault.s3_code)}</Code>"
        f"<Message>{escape(message)}</Message>"
        f"<Resource>{escape(request.path)}</Resource>"
        f"<RequestId>{request_id}</RequestId>"
        f"<HostId>{request_id}</HostId></Error>"
    )
    headers = {
        "x-amz-request-id": request_id,
        "x-amz-id-2": request_id,
        "Content-Type": "application/xml",
    }
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    return web.Response(
        status=fault.code,
        reason=_REASONS.get(fault.code, "Error"),
        body=xml.encode(),
        headers=headers,
    )
