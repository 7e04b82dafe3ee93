"""A fast in-memory S3 subset server: a benchmark fixture, not an S3 emulator.

Clients are measured side by side against one local server, so the server
must never be the bottleneck.  moto spends milliseconds of CPU per request and
copies whole objects for ranged reads.  This server keeps each object as the
immutable buffers it arrived in and sends GET bodies straight from them with
``sendmsg`` (no user-space copy), so a 1 GiB GET costs ~0.2-0.3 CPU-s.

Deliberately absent: authentication (any ``Authorization`` / SigV4 header is
accepted), checksum verification (``x-amz-checksum-*`` headers and aws-chunked
trailers are accepted and ignored), versioning, ACLs, storage classes other
than ``STANDARD``.

Supported: path-style addressing (``/bucket/key``; ``<bucket>.localhost``
virtual-host style too); Create/Head/Delete bucket, ListBuckets,
GetBucketLocation; Put/Get/Head/Delete/Copy object, ranged GETs, conditional
GETs (If-Match, If-None-Match, If-(Un)Modified-Since) and PUTs (If-None-Match
``*``, If-Match); DeleteObjects; multipart uploads (incl. UploadPartCopy,
ListParts, ListMultipartUploads); ListObjectsV2 and ListObjects (v1);
S3-style XML errors.  aws-chunked request bodies (``Content-Encoding:
aws-chunked`` or ``x-amz-content-sha256: STREAMING-...``, as sent by boto3 >=
1.36 over HTTPS, s3fs and the CRT) are decoded.

ETags are the quoted md5 hex digest of the body (S3's ``"md5ofmd5s-N"`` form
for multipart uploads); large bodies are hashed on a worker thread (hashlib
releases the GIL).  md5 runs at ~0.5 GB/s and is then the largest server cost
of an upload, so ``etag_mode="fast"`` (CLI ``--fast-etag``) swaps it for a
unique counter-based ETag in write-throughput benchmarks.

Profiles (``--profile``): ``loopback`` answers as fast as it can; ``s3like`` (see
:class:`Profile` and :data:`S3LIKE`) models S3 seen from one client machine: a first-byte
latency per request with jitter, slower listing pages, a per-connection bandwidth cap and,
optionally, 503 SlowDown answers at a set rate.  ``--also-s3like`` serves one backend on two
ports, plain and S3-like, so a benchmark can compare both on the same data.

Usage::

    python -m benchmarks.s3server --port 0 --ready-file /tmp/url
    python -m benchmarks.s3server --profile s3like --latency-ms 30 --bandwidth-mbps 90

    with ServerProcess() as srv:       # separate process: clean client CPU
        ...                             # point clients at srv.url
        srv.cpu_seconds()               # server user+sys CPU so far
    srv.final_cpu_seconds               # ... over its whole life

    with S3Server() as srv:            # same process, own thread and loop
        ...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)
from urllib.parse import quote, unquote
from xml.etree import ElementTree as ET

from aiohttp import web

__all__ = [
    "LOOPBACK",
    "S3LIKE",
    "Profile",
    "S3Backend",
    "S3Server",
    "ServerProcess",
    "main",
    "serve",
]

#: GET bodies at least this large skip aiohttp's header+body join (``_send_body``).
_STREAM_MIN = 64 << 10
#: GET bodies at least this large are sent with ``sendmsg`` on the raw socket.
_SENDMSG_MIN = 1 << 20
#: Slice size when a body goes through the aiohttp transport.
_SEND_SLICE = 1 << 20
#: Buffers per ``sendmsg`` call (IOV_MAX is 1024 on Linux).
_IOV_BATCH = 512
#: Request bodies smaller than this are joined into one ``bytes``; larger ones
#: are kept as received (a list of buffers) and hashed on a worker thread.
_JOIN_MAX = 1 << 20
#: ... unless they arrived in pieces smaller than this on average.
_MIN_AVG_SEGMENT = 32 << 10
#: Bytes per recv on a connection that uploads bodies of at least this size.
_BIG_RECV = 1 << 20
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_DEFAULT_MIN_PART_SIZE = 5 << 20
_STORED_HEADERS = frozenset(
    ("cache-control", "content-disposition", "content-encoding", "content-language")
)
#: Subresources answered with 501 rather than misread as a plain GET/PUT.
_UNSUPPORTED = frozenset(
    (
        "acl",
        "attributes",
        "cors",
        "encryption",
        "legal-hold",
        "lifecycle",
        "object-lock",
        "policy",
        "replication",
        "restore",
        "retention",
        "select",
        "tagging",
        "torrent",
        "versioning",
        "versions",
        "website",
    )
)


def _request_key(name: str, kind: type) -> Any:
    """A typed request-storage key where aiohttp has them (>= 3.13), else the name."""
    maker = getattr(web, "RequestKey", None)
    return name if maker is None else maker(name, kind)


#: Request key: "100 Continue" was sent.
_CONTINUED = _request_key("s3server.continued", bool)
#: Request key: bytes/s cap of this connection (absent or 0: none).
_BANDWIDTH = _request_key("s3server.bandwidth", float)
#: Bytes sent per step when a GET body is paced to a bandwidth cap (~3 ms at 90 MB/s).
_PACE_SLICE = 256 << 10

_Buf = Union[bytes, memoryview]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


class S3Error(Exception):
    """An S3 error response (XML body unless the request is HEAD)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Optional[Dict[str, str]] = None,
        extra: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def _precondition_failed() -> S3Error:
    return S3Error(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
    )


def _no_such_key(key: str) -> S3Error:
    return S3Error(
        404, "NoSuchKey", "The specified key does not exist.", extra={"Key": key}
    )


def _malformed_xml() -> S3Error:
    return S3Error(400, "MalformedXML", "The XML you provided was not well-formed")


def _incomplete_body(why: str) -> S3Error:
    return S3Error(400, "IncompleteBody", f"Malformed aws-chunked body: {why}")


def _xml_escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


#: Keys that ``quote(key, safe="/")`` returns unchanged (its always-safe ASCII and "/").
_URL_UNCHANGED = re.compile(r"[A-Za-z0-9_.~/-]*")


def _url_encode(text: str) -> str:
    # Listing answers with EncodingType=url encode every key: quote() costs ~0.9 us a call,
    # 0.9 ms of this server's CPU per 1,000-key page (for an S3 server, nothing a client
    # waits on), so a key it would leave as it is skips it.
    if _URL_UNCHANGED.fullmatch(text):
        return text
    return quote(text, safe="/")


def _iso8601(ts: float) -> str:
    millis = int(ts * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{millis:03d}Z"


def _local(tag: str) -> str:
    """Strip an ElementTree ``{namespace}`` prefix."""
    return tag.rsplit("}", 1)[-1]


def _bump(prefix: str) -> str:
    """Smallest string greater than every string that starts with *prefix*."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _encode_token(start_at: str) -> str:
    raw = start_at.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        return raw.decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError) as exc:
        raise S3Error(
            400, "InvalidArgument", "The continuation token provided is incorrect"
        ) from exc


def _strip_etag(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 list match of an ``If-Match`` / ``If-None-Match`` header."""
    return any(
        item.strip() == "*" or _strip_etag(item) == etag for item in header.split(",")
    )


def _parse_range(header: str, size: int) -> Optional[Tuple[int, int]]:
    """Return the half-open ``(start, end)`` byte range, or None to serve all.

    Raises InvalidRange (416) when the range is well-formed but unsatisfiable;
    malformed and multi-range headers are ignored, as S3 does.
    """
    header = header.strip()
    if not header.startswith("bytes=") or "," in header:
        return None
    first_s, sep, last_s = header[6:].partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not sep:
        return None
    try:
        if not first_s:  # suffix range: the last N bytes
            suffix = int(last_s)
            if suffix <= 0 or size == 0:
                raise _invalid_range(size)
            return max(0, size - suffix), size
        first = int(first_s)
        last = int(last_s) if last_s else None
    except ValueError:
        return None
    if first < 0 or (last is not None and last < first):
        return None
    if first >= size:
        raise _invalid_range(size)
    return first, size if last is None else min(last + 1, size)


def _invalid_range(size: int) -> S3Error:
    return S3Error(
        416,
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
        extra={"ActualObjectSize": str(size)},
    )


def _parse_http_date(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- #
# bodies
# --------------------------------------------------------------------------- #


class _Body:
    """Immutable object content kept as the buffers it arrived in.

    Joining a received body costs a full copy (~1 s per GiB on a machine with
    ~1 GB/s memcpy), and so would joining multipart parts; instead an object
    is a list of segments with their start offsets, and reads hand out
    memoryview slices of them.
    """

    __slots__ = ("offsets", "segments", "size")

    def __init__(self, segments: Sequence[_Buf]) -> None:
        self.segments: List[_Buf] = [s for s in segments if len(s)]
        self.offsets: List[int] = []
        pos = 0
        for seg in self.segments:
            self.offsets.append(pos)
            pos += len(seg)
        self.size = pos

    def views(self, start: int, end: int) -> List[memoryview]:
        """Memoryviews covering bytes ``[start, end)``."""
        segments, offsets = self.segments, self.offsets
        out: List[memoryview] = []
        if start >= end:
            return out
        i = bisect.bisect_right(offsets, start) - 1
        while i < len(segments) and offsets[i] < end:
            seg, seg_start = segments[i], offsets[i]
            lo, hi = max(start - seg_start, 0), min(end - seg_start, len(seg))
            view = seg if isinstance(seg, memoryview) else memoryview(seg)
            out.append(view if lo == 0 and hi == len(seg) else view[lo:hi])
            i += 1
        return out

    def tobytes(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (no copy for a whole single-``bytes`` body)."""
        if len(self.segments) == 1:
            seg = self.segments[0]
            if isinstance(seg, bytes) and start == 0 and end == len(seg):
                return seg
        return b"".join(self.views(start, end))

    def md5(self) -> str:
        digest = hashlib.md5()
        for seg in self.segments:
            digest.update(seg)
        return digest.hexdigest()


class _ChunkCursor:
    """Read position in a list of received ``bytes`` chunks."""

    __slots__ = ("chunks", "i", "pos")

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = chunks
        self.i = 0
        self.pos = 0

    def _skip_exhausted(self) -> bool:
        chunks = self.chunks
        while self.i < len(chunks) and self.pos >= len(chunks[self.i]):
            self.i += 1
            self.pos = 0
        return self.i < len(chunks)

    def line(self) -> bytes:
        """The next line without its CRLF."""
        parts: List[bytes] = []
        length = 0
        while self._skip_exhausted():
            chunk = self.chunks[self.i]
            nl = chunk.find(b"\n", self.pos)
            if nl >= 0:
                parts.append(chunk[self.pos : nl])
                self.pos = nl + 1
                line = parts[0] if len(parts) == 1 else b"".join(parts)
                return line[:-1] if line.endswith(b"\r") else line
            parts.append(chunk[self.pos :])
            length += len(chunk) - self.pos
            self.i, self.pos = self.i + 1, 0
            if length > 8192:
                raise _incomplete_body("line too long")
        raise _incomplete_body("truncated")

    def take(self, size: int, out: List[_Buf]) -> None:
        """Append memoryviews of the next *size* bytes to *out*."""
        while size:
            if not self._skip_exhausted():
                raise _incomplete_body("truncated chunk")
            chunk = self.chunks[self.i]
            n = min(len(chunk) - self.pos, size)
            out.append(memoryview(chunk)[self.pos : self.pos + n])
            self.pos += n
            size -= n


def _decode_aws_chunked(chunks: Sequence[bytes]) -> List[_Buf]:
    r"""Decode an ``aws-chunked`` body into memoryviews of the received chunks.

    Layout: ``<hex-size>[;chunk-signature=<sig>]\r\n<data>\r\n`` repeated, a
    zero-size chunk, optional trailer lines (``x-amz-checksum-crc32:<b64>``,
    ``x-amz-trailer-signature:...``) and a blank line.  Signatures and trailers
    are ignored.
    """
    cursor = _ChunkCursor(chunks)
    out: List[_Buf] = []
    while True:
        header = cursor.line()
        try:
            size = int(header.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _incomplete_body(f"bad chunk header {header[:40]!r}") from exc
        if size == 0:
            return out
        cursor.take(size, out)
        if cursor.line():
            raise _incomplete_body("chunk data not followed by CRLF")


def _ingest(
    chunks: List[bytes], total: int, aws_chunked: bool, want_md5: bool
) -> Tuple[_Body, Optional[str]]:
    """Turn received chunks into a body and its md5 (thread-safe, GIL-light)."""
    if total < _JOIN_MAX and len(chunks) > 1:
        chunks = [b"".join(chunks)]
    segments: List[_Buf] = list(chunks)
    if aws_chunked:
        segments = _decode_aws_chunked(chunks)
    if len(segments) > 1 and (
        total < _JOIN_MAX or total < len(segments) * _MIN_AVG_SEGMENT
    ):
        segments = [b"".join(segments)]
    elif len(segments) == 1 and isinstance(segments[0], memoryview):
        segments = [segments[0].tobytes()] if total < _JOIN_MAX else segments
    body = _Body(segments)
    return body, (body.md5() if want_md5 else None)


async def _sendmsg_all(sock: socket.socket, views: List[memoryview]) -> None:
    """``loop.sock_sendall`` for a list of buffers (scatter-gather, no copies)."""
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    i, n = 0, len(views)
    while i < n:
        batch = views[i : i + _IOV_BATCH]
        try:
            sent = sock.sendmsg(batch)
        except (BlockingIOError, InterruptedError):
            sent = 0
        full = sent == sum(len(v) for v in batch)
        while sent:
            head = views[i]
            if sent >= len(head):
                sent -= len(head)
                i += 1
            else:
                views[i] = head[sent:]
                sent = 0
        if i < n and not full:  # socket buffer full: wait until writable
            waiter: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _wake, waiter)
            try:
                await waiter
            finally:
                loop.remove_writer(fd)


class _Pacer:
    """Releases bytes no faster than ``rate`` bytes per second (0: at once)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._released = 0

    async def wait_for(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more may go out (when their last byte would have arrived)."""
        if not self.rate:
            return
        self._released += nbytes
        wait = self._start + self._released / self.rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


def _batches(
    views: List[memoryview], size: int
) -> Iterator[Tuple[List[memoryview], int]]:
    """Consecutive groups of ``views`` cut into pieces of at most ``size`` bytes."""
    batch: List[memoryview] = []
    nbytes = 0
    for view in views:
        pos = 0
        while pos < len(view):
            piece = view[pos : pos + size - nbytes]
            batch.append(piece)
            nbytes += len(piece)
            pos += len(piece)
            if nbytes == size:
                yield batch, nbytes
                batch, nbytes = [], 0
    if batch:
        yield batch, nbytes


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# --------------------------------------------------------------------------- #
# profiles: how S3-like the answers are
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Profile:
    """How the server delays and throttles its answers (all zero: as fast as it can).

    Attributes:
        name: Label shown in benchmark reports.
        latency: Seconds before the first byte of every answer except listings.
        jitter: Each delay is drawn uniformly from ``delay * (1 +/- jitter)``.
        list_latency: Seconds before the first byte of a listing page.
        bandwidth: Bytes per second one connection carries, each way (0: no cap).  A GET body
            is paced while it is sent; a request body is read at full speed and its answer
            held back until the cap would have let it through.
        slowdown_rate: Fraction of requests answered ``503 SlowDown`` (after the latency).
        seed: Seed of the jitter and SlowDown draws (runs are reproducible).
    """

    name: str = "loopback"
    latency: float = 0.0
    jitter: float = 0.0
    list_latency: float = 0.0
    bandwidth: float = 0.0
    slowdown_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for field_name in ("latency", "list_latency", "bandwidth"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"{field_name} must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if not 0 <= self.slowdown_rate <= 1:
            raise ValueError(
                f"slowdown_rate must be in [0, 1], got {self.slowdown_rate}"
            )

    @property
    def active(self) -> bool:
        """Whether the profile changes anything."""
        return bool(
            self.latency or self.list_latency or self.bandwidth or self.slowdown_rate
        )


#: No delays, no cap: what the CPU per request costs.
LOOPBACK = Profile()

#: S3 as seen from one client machine in the same region.  Sources: AWS whitepaper "Best
#: Practices Design Patterns: Optimizing Amazon S3 Performance" (also in the S3 User Guide's
#: "Performance design patterns for Amazon S3"): section "Horizontal Scaling and Request
#: Parallelization for High Throughput" advises "one concurrent request for each 85-90 MB/s
#: of desired network throughput", hence 90 MB/s per connection; section "Timeouts and
#: Retries for Latency-Sensitive Applications" says that for requests under 512 KB "median
#: latencies are often in the tens of milliseconds range", hence 20 ms to the first byte, and
#: that S3 answers 503 SlowDown while it scales to a new request rate (off by default).  The
#: +/-20 % jitter and the 40 ms listing page (a 1,000-key page is more work than a GET) are
#: our assumptions, not AWS figures; all of them are command-line options.
S3LIKE = Profile(
    name="s3like", latency=0.020, jitter=0.2, list_latency=0.040, bandwidth=90e6
)

PROFILES = {"loopback": LOOPBACK, "s3like": S3LIKE}


class _Shaper:
    """Applies a :class:`Profile` around the backend's handler (one per listening port)."""

    def __init__(self, backend: S3Backend, profile: Profile) -> None:
        self.backend = backend
        self.profile = profile
        self._rng = random.Random(profile.seed)
        #: ``S3SERVER_TRACE=<file>``: one JSON line per request (peer port, times on the
        #: monotonic clock), to count connections and requests in flight black-box.
        path = os.environ.get("S3SERVER_TRACE")
        self._trace = None if not path else open(path, "a", buffering=1)  # noqa: SIM115

    def _delay(self, base: float) -> float:
        jitter = self.profile.jitter
        if not base or not jitter:
            return base
        return base * self._rng.uniform(1 - jitter, 1 + jitter)

    @staticmethod
    def _is_listing(request: web.BaseRequest) -> bool:
        if request.method != "GET":
            return False
        bucket, key = S3Backend._split(request)
        query = request.query
        return (
            bool(bucket)
            and not key
            and "uploads" not in query
            and "location" not in query
        )

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Delay, maybe throttle, then let the backend answer at the capped bandwidth."""
        if self._trace is None:
            return await self._shaped(request)
        arrived = time.monotonic()
        peer = (
            request.transport.get_extra_info("peername") if request.transport else None
        )
        resp = await self._shaped(request)
        self._trace.write(
            json.dumps(
                {
                    "port": peer[1] if peer else None,
                    "method": request.method,
                    "path": request.raw_path.split("?", 1)[0],
                    "query": sorted(request.query),
                    "received": request.content.total_bytes,
                    "arrived": arrived,
                    "answered": time.monotonic(),
                    "status": resp.status,
                }
            )
            + "\n"
        )
        return resp

    async def _shaped(self, request: web.BaseRequest) -> web.StreamResponse:
        profile = self.profile
        if not profile.active:
            return await self.backend.handle(request)
        listing = self._is_listing(request)
        delay = self._delay(profile.list_latency if listing else profile.latency)
        if delay:
            await asyncio.sleep(delay)
        if profile.slowdown_rate and self._rng.random() < profile.slowdown_rate:
            bucket, key = S3Backend._split(request)
            err = S3Error(503, "SlowDown", "Please reduce your request rate.")
            resp = self.backend._error_response(request, err, bucket, key)
            if not request.content.is_eof():
                resp.force_close()  # the body was not read: the connection cannot be reused
            return resp
        request[_BANDWIDTH] = profile.bandwidth
        started = time.monotonic()
        resp = await self.backend.handle(request)
        received = request.content.total_bytes
        if profile.bandwidth and received:
            due = started + received / profile.bandwidth
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return resp


# --------------------------------------------------------------------------- #
# model
# --------------------------------------------------------------------------- #


class _Object:
    __slots__ = (
        "body",
        "content_type",
        "etag",
        "http_date",
        "iso_date",
        "meta",
        "mtime",
    )

    def __init__(
        self, body: _Body, etag: str, content_type: str, meta: Dict[str, str]
    ) -> None:
        self.body = body
        self.etag = etag  # unquoted
        self.mtime = time.time()
        self.http_date = formatdate(self.mtime, usegmt=True)
        self.iso_date = _iso8601(self.mtime)
        self.content_type = content_type
        self.meta = meta  # headers echoed on GET/HEAD (x-amz-meta-*, ...)


class _Upload:
    __slots__ = ("content_type", "initiated", "key", "meta", "parts", "upload_id")

    def __init__(self, key: str, content_type: str, meta: Dict[str, str]) -> None:
        self.upload_id = uuid.uuid4().hex
        self.key = key
        self.content_type = content_type
        self.meta = meta
        self.initiated = _iso8601(time.time())
        self.parts: Dict[int, Tuple[_Body, str, str]] = {}  # n -> (body, etag, date)


class _Bucket:
    __slots__ = ("created", "keys", "name", "objects", "uploads")

    def __init__(self, name: str) -> None:
        self.name = name
        self.created = _iso8601(time.time())
        self.objects: Dict[str, _Object] = {}
        self.keys: List[str] = []  # sorted; code-point order == UTF-8 byte order
        self.uploads: Dict[str, _Upload] = {}

    def put(self, key: str, obj: _Object) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj

    def delete(self, key: str) -> None:
        if self.objects.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]

    def list(
        self, prefix: str, delimiter: str, start_at: str, max_keys: int
    ) -> Tuple[List[Tuple[str, Optional[_Object]]], Optional[str]]:
        """Return ``(entries, resume_at)``; a common prefix has object None.

        Keys ``>= start_at`` are listed.  ``resume_at`` is None unless the page
        is truncated; listing with ``start_at=resume_at`` continues after it.
        """
        keys, objects = self.keys, self.objects
        n = len(keys)
        i = bisect.bisect_left(keys, max(prefix, start_at))
        out: List[Tuple[str, Optional[_Object]]] = []
        plen = len(prefix)
        while i < n:
            key = keys[i]
            if not key.startswith(prefix):
                break
            if len(out) >= max_keys:
                if not out:
                    return out, None  # max-keys=0
                last, obj = out[-1]
                return out, (last + "\x00" if obj is not None else _bump(last))
            if delimiter:
                j = key.find(delimiter, plen)
                if j >= 0:
                    common = key[: j + len(delimiter)]
                    out.append((common, None))
                    i = bisect.bisect_left(keys, _bump(common), i)
                    continue
            out.append((key, objects[key]))
            i += 1
        return out, None


# --------------------------------------------------------------------------- #
# the HTTP side
# --------------------------------------------------------------------------- #


class S3Backend:
    """In-memory state plus the aiohttp request handler (one event loop only)."""

    def __init__(
        self, *, etag_mode: str = "md5", min_part_size: int = _DEFAULT_MIN_PART_SIZE
    ) -> None:
        if etag_mode not in ("md5", "fast"):
            raise ValueError(f"etag_mode must be 'md5' or 'fast', not {etag_mode!r}")
        self.etag_mode = etag_mode
        self.min_part_size = min_part_size
        self.buckets: Dict[str, _Bucket] = {}
        self._counter = itertools.count(1)
        self._nonce = os.urandom(8).hex()

    # ---------------------------------------------------------------- utils

    def _fast_etag(self) -> str:
        return hashlib.md5(f"{self._nonce}:{next(self._counter)}".encode()).hexdigest()

    async def _run_heavy(
        self, size: int, fn: Callable[..., Tuple[_Body, Optional[str]]], *args: object
    ) -> Tuple[_Body, str]:
        """Run *fn* on a worker thread if *size* is large; fill in a fast ETag."""
        if size >= _JOIN_MAX:
            body, etag = await asyncio.get_running_loop().run_in_executor(
                None, fn, *args
            )
        else:
            body, etag = fn(*args)
        return body, etag or self._fast_etag()

    async def _read_payload(self, request: web.BaseRequest) -> Tuple[_Body, str]:
        """Read an object body; return it with its ETag (unquoted)."""
        chunks, total, aws_chunked = await self._read_chunks(request)
        return await self._run_heavy(
            total, _ingest, chunks, total, aws_chunked, self.etag_mode == "md5"
        )

    @staticmethod
    async def _read_chunks(
        request: web.BaseRequest,
    ) -> Tuple[List[bytes], int, bool]:
        """Read the raw body: ``(chunks, total size, is aws-chunked)``.

        Answers ``Expect: 100-continue`` first: the low-level aiohttp server
        does not, and botocore sends it with every PUT (it would wait 1 s).
        """
        headers = request.headers
        if (
            headers.get("Expect", "").lower() == "100-continue"
            and request.version >= (1, 1)
            and not request.content.is_eof()
        ):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            request[_CONTINUED] = True
        chunks: List[bytes] = []
        total = 0
        content = request.content
        if (request.content_length or 0) >= _BIG_RECV and request.transport is not None:
            # A connection carrying large bodies reads 1 MiB per recv, not asyncio's 256 KiB:
            # 4x fewer trips through the loop and the HTTP parser per byte received.
            request.transport.max_size = _BIG_RECV  # type: ignore[attr-defined]
        while True:
            # Chunk by chunk as received: ``iter_any`` would join what is buffered (a copy).
            chunk, chunk_end = await content.readchunk()
            if not chunk:
                if chunk_end and not content.is_eof():
                    continue  # the end of one HTTP chunk of a chunked body
                break
            chunks.append(chunk)
            total += len(chunk)
        aws_chunked = "aws-chunked" in headers.get("Content-Encoding", "") or (
            headers.get("x-amz-content-sha256", "").startswith("STREAMING-")
        )
        return chunks, total, aws_chunked

    async def _read_xml(self, request: web.BaseRequest) -> Optional[ET.Element]:
        chunks, total, aws_chunked = await self._read_chunks(request)
        body = _ingest(chunks, total, aws_chunked, want_md5=False)[0]
        if not body.size:
            return None
        try:
            return ET.fromstring(body.tobytes(0, body.size))
        except ET.ParseError as exc:
            raise _malformed_xml() from exc

    def _bucket(self, name: str) -> _Bucket:
        bucket = self.buckets.get(name)
        if bucket is None:
            raise S3Error(
                404,
                "NoSuchBucket",
                "The specified bucket does not exist",
                extra={"BucketName": name},
            )
        return bucket

    @staticmethod
    def _object(bucket: _Bucket, key: str) -> _Object:
        obj = bucket.objects.get(key)
        if obj is None:
            raise _no_such_key(key)
        return obj

    @staticmethod
    def _upload(bucket: _Bucket, upload_id: str) -> _Upload:
        upload = bucket.uploads.get(upload_id)
        if upload is None:
            raise S3Error(
                404,
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, "
                "or the upload may have been aborted or completed.",
                extra={"UploadId": upload_id},
            )
        return upload

    @staticmethod
    def _meta(request: web.BaseRequest) -> Tuple[str, Dict[str, str]]:
        """Content-Type plus the headers to echo back on GET/HEAD."""
        meta: Dict[str, str] = {}
        for name, value in request.headers.items():
            lname = name.lower()
            if lname.startswith("x-amz-meta-") or lname in _STORED_HEADERS:
                meta[lname] = value
        codings = meta.pop("content-encoding", "").split(",")
        encoding = ",".join(
            c.strip() for c in codings if c.strip() and c.strip() != "aws-chunked"
        )
        if encoding:
            meta["content-encoding"] = encoding
        return request.headers.get("Content-Type", "binary/octet-stream"), meta

    @staticmethod
    def _xml(body: str, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=(_XML_DECL + body).encode("utf-8"),
            headers={"Content-Type": "application/xml"},
        )

    @staticmethod
    def _copy_source(request: web.BaseRequest) -> Tuple[str, str]:
        # a literal "?" starts "?versionId="; one inside the key arrives as %3F
        raw = request.headers["x-amz-copy-source"].split("?", 1)[0]
        bucket, sep, key = unquote(raw).lstrip("/").partition("/")
        if not sep or not key:
            raise S3Error(
                400,
                "InvalidArgument",
                "Copy Source must mention the source bucket and key",
            )
        return bucket, key

    @staticmethod
    def _check_copy_source(request: web.BaseRequest, src: _Object) -> None:
        headers = request.headers
        if_match = headers.get("x-amz-copy-source-if-match")
        if if_match is not None and not _etag_matches(if_match, src.etag):
            raise _precondition_failed()
        if_none = headers.get("x-amz-copy-source-if-none-match")
        if if_none is not None and _etag_matches(if_none, src.etag):
            raise _precondition_failed()

    @staticmethod
    def _check_write(request: web.BaseRequest, bucket: _Bucket, key: str) -> None:
        """Conditional writes: ``If-None-Match: *`` and ``If-Match``."""
        headers = request.headers
        if_none = headers.get("If-None-Match")
        if if_none is not None and if_none.strip() == "*" and key in bucket.objects:
            raise _precondition_failed()
        if_match = headers.get("If-Match")
        if if_match is not None:
            existing = bucket.objects.get(key)
            if existing is None:
                raise _no_such_key(key)
            if not _etag_matches(if_match, existing.etag):
                raise _precondition_failed()

    # ------------------------------------------------------------- dispatch

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one S3 request (the aiohttp low-level handler)."""
        bucket_name, key = self._split(request)
        resp: web.StreamResponse
        try:
            resp = await self._dispatch(request, bucket_name, key)
        except S3Error as err:
            resp = self._error_response(request, err, bucket_name, key)
        except Exception as exc:
            traceback.print_exc()
            internal = S3Error(500, "InternalError", f"{type(exc).__name__}: {exc}")
            resp = self._error_response(request, internal, bucket_name, key)
        if (
            not resp.prepared
            and "Expect" in request.headers
            and not request.get(_CONTINUED, False)
            and not request.content.is_eof()
        ):
            # Answered before "100 Continue": the client will not send the body,
            # so the connection cannot be reused (aiohttp would read the next
            # request as this one's body).
            resp.force_close()
        return resp

    @staticmethod
    def _split(request: web.BaseRequest) -> Tuple[str, str]:
        raw = request.raw_path.split("?", 1)[0]
        if raw.startswith(("http://", "https://")):  # absolute-form target
            parts = raw.split("/", 3)
            raw = "/" + (parts[3] if len(parts) > 3 else "")
        path = unquote(raw)
        host = request.headers.get("Host", "").rsplit(":", 1)[0]
        if host.endswith(".localhost") and host.count(".") == 1:  # virtual host
            return host[: -len(".localhost")], path[1:]
        bucket, _, key = path[1:].partition("/")
        return bucket, key

    def _error_response(
        self, request: web.BaseRequest, err: S3Error, bucket: str, key: str
    ) -> web.Response:
        headers = {"x-amz-request-id": "0", **err.headers}
        if request.method == "HEAD":
            return web.Response(status=err.status, headers=headers)
        extra = "".join(f"<{k}>{_xml_escape(v)}</{k}>" for k, v in err.extra.items())
        resource = _xml_escape("/" + bucket + ("/" + key if key else ""))
        resp = self._xml(
            f"<Error><Code>{err.code}</Code>"
            f"<Message>{_xml_escape(err.message)}</Message>{extra}"
            f"<Resource>{resource}</Resource><RequestId>0</RequestId></Error>",
            err.status,
        )
        resp.headers.update(headers)
        return resp

    async def _dispatch(
        self, request: web.BaseRequest, bucket_name: str, key: str
    ) -> web.StreamResponse:
        method = request.method
        query = request.query
        unsupported = _UNSUPPORTED.intersection(query.keys())
        if unsupported:
            raise S3Error(
                501, "NotImplemented", f"?{min(unsupported)} is not implemented"
            )
        if not bucket_name:
            if method == "GET":
                return self._list_buckets()
        elif not key:
            if method == "GET":
                bucket = self._bucket(bucket_name)
                if "uploads" in query:
                    return self._list_uploads(request, bucket)
                if "location" in query:
                    return self._xml(f'<LocationConstraint xmlns="{_XMLNS}"/>')
                if query.get("list-type") == "2":
                    return self._list_v2(request, bucket)
                return self._list_v1(request, bucket)
            if method == "HEAD":
                self._bucket(bucket_name)
                return web.Response(headers={"x-amz-bucket-region": "us-east-1"})
            if method == "PUT":
                await self._read_xml(request)  # CreateBucketConfiguration: ignored
                if bucket_name not in self.buckets:
                    self.buckets[bucket_name] = _Bucket(bucket_name)
                return web.Response(headers={"Location": "/" + bucket_name})
            if method == "DELETE":
                bucket = self._bucket(bucket_name)
                if bucket.objects or bucket.uploads:
                    raise S3Error(
                        409,
                        "BucketNotEmpty",
                        "The bucket you tried to delete is not empty",
                    )
                del self.buckets[bucket_name]
                return web.Response(status=204)
            if method == "POST" and "delete" in query:
                return await self._delete_objects(request, self._bucket(bucket_name))
        else:
            bucket = self._bucket(bucket_name)
            if method in ("GET", "HEAD"):
                if "partNumber" in query:
                    raise S3Error(
                        501,
                        "NotImplemented",
                        "GetObject by partNumber is not implemented",
                    )
                if "uploadId" in query and method == "GET":
                    return self._list_parts(request, bucket, key)
                return await self._get_object(request, bucket, key)
            if method == "PUT":
                if "uploadId" in query:
                    return await self._upload_part(request, bucket, key)
                if "x-amz-copy-source" in request.headers:
                    return self._copy_object(request, bucket, key)
                return await self._put_object(request, bucket, key)
            if method == "DELETE":
                if "uploadId" in query:
                    self._upload(bucket, query["uploadId"])
                    del bucket.uploads[query["uploadId"]]
                else:
                    bucket.delete(key)
                return web.Response(status=204)
            if method == "POST":
                if "uploads" in query:
                    return self._create_upload(request, bucket, key)
                if "uploadId" in query:
                    return await self._complete_upload(request, bucket, key)
        raise S3Error(
            501, "NotImplemented", f"{method} {request.path_qs} is not implemented"
        )

    # ------------------------------------------------------------- buckets

    def _list_buckets(self) -> web.Response:
        items = "".join(
            f"<Bucket><Name>{_xml_escape(b.name)}</Name>"
            f"<CreationDate>{b.created}</CreationDate></Bucket>"
            for b in sorted(self.buckets.values(), key=lambda b: b.name)
        )
        return self._xml(
            f'<ListAllMyBucketsResult xmlns="{_XMLNS}"><Owner><ID>bench</ID>'
            f"<DisplayName>bench</DisplayName></Owner><Buckets>{items}</Buckets>"
            "</ListAllMyBucketsResult>"
        )

    @staticmethod
    def _max_keys(value: Optional[str]) -> int:
        if value is None:
            return 1000
        try:
            return max(0, min(int(value), 1000))
        except ValueError as exc:
            raise S3Error(
                400, "InvalidArgument", "Provided max-keys not an integer"
            ) from exc

    def _list_v2(self, request: web.BaseRequest, bucket: _Bucket) -> web.Response:
        query = request.query
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = self._max_keys(query.get("max-keys"))
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        start_at = start_after + "\x00" if start_after else ""
        if token is not None:
            start_at = max(start_at, _decode_token(token))
        url = query.get("encoding-type") == "url"
        enc = _url_encode if url else _xml_escape
        entries, resume = bucket.list(prefix, delimiter, start_at, max_keys)
        parts = [
            f'<ListBucketResult xmlns="{_XMLNS}">'
            f"<Name>{_xml_escape(bucket.name)}</Name><Prefix>{enc(prefix)}</Prefix>"
            f"<KeyCount>{len(entries)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
        ]
        if delimiter:
            parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        truncated = "true" if resume is not None else "false"
        parts.append(f"<IsTruncated>{truncated}</IsTruncated>")
        if token is not None:
            parts.append(f"<ContinuationToken>{_xml_escape(token)}</ContinuationToken>")
        if resume is not None:
            parts.append(
                f"<NextContinuationToken>{_encode_token(resume)}</NextContinuationToken>"
            )
        if start_after:
            parts.append(f"<StartAfter>{enc(start_after)}</StartAfter>")
        owner = query.get("fetch-owner") == "true"
        self._entries_xml(parts, entries, enc, owner=owner)
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        parts.append("</ListBucketResult>")
        return self._xml("".join(parts))

    def _list_v1(self, request: web.BaseRequest, bucket: _Bucket) -> web.Response:
        query = request.query
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = self._max_keys(query.get("max-keys"))
        marker = query.get("marker", "")
        url = query.get("encoding-type") == "url"
        enc = _url_encode if url else _xml_escape
        start_at = marker + "\x00" if marker else ""
        entries, resume = bucket.list(prefix, delimiter, start_at, max_keys)
        parts = [
            f'<ListBucketResult xmlns="{_XMLNS}">'
            f"<Name>{_xml_escape(bucket.name)}</Name><Prefix>{enc(prefix)}</Prefix>"
            f"<Marker>{enc(marker)}</Marker><MaxKeys>{max_keys}</MaxKeys>"
        ]
        if delimiter:
            parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        truncated = "true" if resume is not None else "false"
        parts.append(f"<IsTruncated>{truncated}</IsTruncated>")
        if resume is not None and delimiter:
            parts.append(f"<NextMarker>{enc(entries[-1][0])}</NextMarker>")
        self._entries_xml(parts, entries, enc, owner=True)
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        parts.append("</ListBucketResult>")
        return self._xml("".join(parts))

    @staticmethod
    def _entries_xml(
        parts: List[str],
        entries: List[Tuple[str, Optional[_Object]]],
        enc: Callable[[str], str],
        *,
        owner: bool,
    ) -> None:
        owner_xml = (
            "<Owner><ID>bench</ID><DisplayName>bench</DisplayName></Owner>"
            if owner
            else ""
        )
        prefixes: List[str] = []
        for name, obj in entries:
            if obj is None:
                prefixes.append(
                    f"<CommonPrefixes><Prefix>{enc(name)}</Prefix></CommonPrefixes>"
                )
            else:
                parts.append(
                    f"<Contents><Key>{enc(name)}</Key>"
                    f"<LastModified>{obj.iso_date}</LastModified>"
                    f"<ETag>&quot;{obj.etag}&quot;</ETag><Size>{obj.body.size}</Size>"
                    f"{owner_xml}<StorageClass>STANDARD</StorageClass></Contents>"
                )
        parts.extend(prefixes)

    async def _delete_objects(
        self, request: web.BaseRequest, bucket: _Bucket
    ) -> web.Response:
        root = await self._read_xml(request)
        if root is None:
            raise _malformed_xml()
        quiet = False
        deleted: List[str] = []
        for child in root:
            tag = _local(child.tag)
            if tag == "Quiet":
                quiet = (child.text or "").strip().lower() == "true"
            elif tag == "Object":
                key = next((c.text or "" for c in child if _local(c.tag) == "Key"), "")
                bucket.delete(key)
                deleted.append(f"<Deleted><Key>{_xml_escape(key)}</Key></Deleted>")
        items = "" if quiet else "".join(deleted)
        return self._xml(f'<DeleteResult xmlns="{_XMLNS}">{items}</DeleteResult>')

    # ------------------------------------------------------------- objects

    async def _put_object(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.Response:
        self._check_write(request, bucket, key)
        body, etag = await self._read_payload(request)
        self._check_write(request, bucket, key)  # another PUT may have landed
        content_type, meta = self._meta(request)
        bucket.put(key, _Object(body, etag, content_type, meta))
        return web.Response(headers={"ETag": f'"{etag}"'})

    def _copy_object(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.Response:
        src_bucket, src_key = self._copy_source(request)
        src = self._object(self._bucket(src_bucket), src_key)
        self._check_copy_source(request, src)
        self._check_write(request, bucket, key)
        directive = request.headers.get("x-amz-metadata-directive", "COPY")
        if directive.upper() == "REPLACE":
            content_type, meta = self._meta(request)
        else:
            content_type, meta = src.content_type, dict(src.meta)
        obj = _Object(src.body, src.etag, content_type, meta)  # content is shared
        bucket.put(key, obj)
        return self._xml(
            f'<CopyObjectResult xmlns="{_XMLNS}">'
            f"<LastModified>{obj.iso_date}</LastModified>"
            f"<ETag>&quot;{obj.etag}&quot;</ETag></CopyObjectResult>"
        )

    async def _get_object(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.StreamResponse:
        obj = self._object(bucket, key)
        headers = request.headers
        etag = obj.etag
        if_match = headers.get("If-Match")
        if if_match is not None:
            if not _etag_matches(if_match, etag):
                raise _precondition_failed()
        else:
            when = _parse_http_date(headers.get("If-Unmodified-Since"))
            if when is not None and int(obj.mtime) > when:
                raise _precondition_failed()
        resp_headers = {
            "ETag": f'"{etag}"',
            "Last-Modified": obj.http_date,
            "Accept-Ranges": "bytes",
        }
        if_none = headers.get("If-None-Match")
        if if_none is not None:
            not_modified = _etag_matches(if_none, etag)
        else:
            when = _parse_http_date(headers.get("If-Modified-Since"))
            not_modified = when is not None and int(obj.mtime) <= when
        if not_modified:
            return web.Response(status=304, headers=resp_headers)
        resp_headers["Content-Type"] = obj.content_type
        if obj.meta:
            resp_headers.update(obj.meta)

        body = obj.body
        size = body.size
        status, start, end = 200, 0, size
        range_header = headers.get("Range")
        if range_header:
            rng = _parse_range(range_header, size)
            if rng is not None:
                status, (start, end) = 206, rng
                resp_headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        length = end - start
        resp_headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return web.Response(status=status, headers=resp_headers)
        if length < _STREAM_MIN:
            await _Pacer(request.get(_BANDWIDTH, 0.0)).wait_for(length)
            return web.Response(
                status=status, body=body.tobytes(start, end), headers=resp_headers
            )
        return await self._send_body(
            request, status, resp_headers, body.views(start, end), length
        )

    @staticmethod
    async def _send_body(
        request: web.BaseRequest,
        status: int,
        headers: Dict[str, str],
        views: List[memoryview],
        length: int,
    ) -> web.StreamResponse:
        """Send a body of at least ``_STREAM_MIN`` bytes without user-space copies.

        ``web.Response(body=...)`` joins headers and body into a new buffer,
        and on Python < 3.12 asyncio's transport copies whatever ``send()``
        does not take at once into a bytearray.  So the headers go out alone,
        a medium body is handed to the transport piecewise (normally sent
        straight from the memoryviews), and from ``_SENDMSG_MIN`` on the body
        is sent with ``sendmsg`` on a dup of the connection's socket, which
        never copies.  Measured for a 1 GiB GET on Python 3.11: ~7 CPU-s via
        ``web.Response(body=memoryview)``, ~0.3 s in 1 MiB slices through the
        transport, ~0.2-0.3 s this way.
        """
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = length
        await resp.prepare(request)
        writer = request.writer
        transport = request.transport
        pacer = _Pacer(request.get(_BANDWIDTH, 0.0))
        slice_size = _PACE_SLICE if pacer.rate else _SEND_SLICE
        try:
            await resp.write(b"")  # flush the headers on their own
            if length >= _SENDMSG_MIN and transport is not None:
                if transport.get_write_buffer_size():
                    transport.set_write_buffer_limits(high=0)  # drain until empty
                    try:
                        await writer.drain()
                    finally:
                        transport.set_write_buffer_limits()
                tsock = transport.get_extra_info("socket")
                if (
                    tsock is not None
                    and not transport.is_closing()
                    and not transport.get_write_buffer_size()
                ):
                    sock = socket.socket(fileno=os.dup(tsock.fileno()))
                    try:
                        sock.setblocking(False)
                        if pacer.rate:
                            for batch, nbytes in _batches(views, slice_size):
                                await pacer.wait_for(nbytes)
                                await _sendmsg_all(sock, batch)
                        else:
                            await _sendmsg_all(sock, views)
                    finally:
                        sock.close()  # closes the dup only
                    writer.output_size += length
                    writer.length = 0
                    views = []
            for view in views:  # medium bodies, or the fallback
                for pos in range(0, len(view), slice_size):
                    piece = view[pos : pos + slice_size]
                    await pacer.wait_for(len(piece))
                    await resp.write(piece)
            await resp.write_eof()
        except OSError:  # client went away mid-body: the response cannot finish
            if transport is not None:
                transport.abort()
        return resp

    # ----------------------------------------------------------- multipart

    def _create_upload(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.Response:
        content_type, meta = self._meta(request)
        upload = _Upload(key, content_type, meta)
        bucket.uploads[upload.upload_id] = upload
        return self._xml(
            f'<InitiateMultipartUploadResult xmlns="{_XMLNS}">'
            f"<Bucket>{_xml_escape(bucket.name)}</Bucket>"
            f"<Key>{_xml_escape(key)}</Key><UploadId>{upload.upload_id}</UploadId>"
            "</InitiateMultipartUploadResult>"
        )

    async def _upload_part(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.Response:
        query = request.query
        upload = self._upload(bucket, query["uploadId"])
        try:
            number = int(query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= 10000:
            raise S3Error(
                400,
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        if "x-amz-copy-source" in request.headers:  # UploadPartCopy
            src_bucket, src_key = self._copy_source(request)
            src = self._object(self._bucket(src_bucket), src_key)
            self._check_copy_source(request, src)
            start, end = 0, src.body.size
            rng = request.headers.get("x-amz-copy-source-range")
            if rng:
                start, end = _parse_range(rng, src.body.size) or (start, end)
            body, etag = await self._run_heavy(
                end - start, _slice_body, src.body, start, end, self.etag_mode == "md5"
            )
            self._upload(bucket, upload.upload_id)  # aborted or completed meanwhile?
            date = _iso8601(time.time())
            upload.parts[number] = (body, etag, date)
            return self._xml(
                f'<CopyPartResult xmlns="{_XMLNS}"><LastModified>{date}</LastModified>'
                f"<ETag>&quot;{etag}&quot;</ETag></CopyPartResult>"
            )
        body, etag = await self._read_payload(request)
        self._upload(bucket, upload.upload_id)  # aborted or completed meanwhile?
        upload.parts[number] = (body, etag, _iso8601(time.time()))
        return web.Response(headers={"ETag": f'"{etag}"'})

    async def _complete_upload(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.Response:
        self._upload(bucket, request.query["uploadId"])
        root = await self._read_xml(request)
        upload = self._upload(bucket, request.query["uploadId"])  # still there?
        if root is None:
            raise _malformed_xml()
        wanted: List[Tuple[int, str]] = []
        for part in root:
            if _local(part.tag) == "Part":
                fields = {_local(c.tag): (c.text or "") for c in part}
                try:
                    number = int(fields.get("PartNumber", ""))
                except ValueError as exc:
                    raise _malformed_xml() from exc
                wanted.append((number, _strip_etag(fields.get("ETag", ""))))
        if not wanted:
            raise _malformed_xml()
        numbers = [n for n, _ in wanted]
        if numbers != sorted(set(numbers)):
            raise S3Error(
                400, "InvalidPartOrder", "The list of parts was not in ascending order."
            )
        segments: List[_Buf] = []
        digests: List[bytes] = []
        for index, (number, etag) in enumerate(wanted):
            stored = upload.parts.get(number)
            if stored is None or (etag and etag != stored[1]):
                raise S3Error(
                    400,
                    "InvalidPart",
                    "One or more of the specified parts could not be found.",
                    extra={"PartNumber": str(number)},
                )
            if index < len(wanted) - 1 and stored[0].size < self.min_part_size:
                raise S3Error(
                    400,
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size",
                    extra={"PartNumber": str(number)},
                )
            segments.extend(stored[0].segments)
            digests.append(bytes.fromhex(stored[1]))
        self._check_write(request, bucket, key)
        etag = f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(wanted)}"
        del bucket.uploads[upload.upload_id]
        obj = _Object(_Body(segments), etag, upload.content_type, upload.meta)
        bucket.put(key, obj)  # parts are not joined: the object shares their buffers
        location = _xml_escape(
            f"http://{request.headers.get('Host', 'localhost')}/{bucket.name}/{key}"
        )
        return self._xml(
            f'<CompleteMultipartUploadResult xmlns="{_XMLNS}">'
            f"<Location>{location}</Location>"
            f"<Bucket>{_xml_escape(bucket.name)}</Bucket><Key>{_xml_escape(key)}</Key>"
            f"<ETag>&quot;{etag}&quot;</ETag></CompleteMultipartUploadResult>"
        )

    def _list_uploads(self, request: web.BaseRequest, bucket: _Bucket) -> web.Response:
        prefix = request.query.get("prefix", "")
        uploads = sorted(bucket.uploads.values(), key=lambda u: (u.key, u.initiated))
        items = "".join(
            f"<Upload><Key>{_xml_escape(u.key)}</Key><UploadId>{u.upload_id}</UploadId>"
            f"<Initiated>{u.initiated}</Initiated>"
            "<StorageClass>STANDARD</StorageClass></Upload>"
            for u in uploads
            if u.key.startswith(prefix)
        )
        return self._xml(
            f'<ListMultipartUploadsResult xmlns="{_XMLNS}">'
            f"<Bucket>{_xml_escape(bucket.name)}</Bucket>"
            f"<Prefix>{_xml_escape(prefix)}</Prefix><MaxUploads>1000</MaxUploads>"
            f"<IsTruncated>false</IsTruncated>{items}</ListMultipartUploadsResult>"
        )

    def _list_parts(
        self, request: web.BaseRequest, bucket: _Bucket, key: str
    ) -> web.Response:
        upload = self._upload(bucket, request.query["uploadId"])
        items = "".join(
            f"<Part><PartNumber>{n}</PartNumber><LastModified>{date}</LastModified>"
            f"<ETag>&quot;{etag}&quot;</ETag><Size>{body.size}</Size></Part>"
            for n, (body, etag, date) in sorted(upload.parts.items())
        )
        return self._xml(
            f'<ListPartsResult xmlns="{_XMLNS}">'
            f"<Bucket>{_xml_escape(bucket.name)}</Bucket><Key>{_xml_escape(key)}</Key>"
            f"<UploadId>{upload.upload_id}</UploadId><MaxParts>10000</MaxParts>"
            f"<IsTruncated>false</IsTruncated>{items}</ListPartsResult>"
        )


def _slice_body(
    body: _Body, start: int, end: int, want_md5: bool
) -> Tuple[_Body, Optional[str]]:
    part = _Body(body.views(start, end))
    return part, (part.md5() if want_md5 else None)


# --------------------------------------------------------------------------- #
# running it
# --------------------------------------------------------------------------- #


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _start_runner(
    backend: S3Backend, sock: socket.socket, profile: Profile = LOOPBACK
) -> web.BaseRunner:
    traced = profile.active or bool(os.environ.get("S3SERVER_TRACE"))
    server = web.Server(
        _Shaper(backend, profile).handle if traced else backend.handle,
        access_log=None,
        auto_decompress=False,  # S3 stores Content-Encoding: gzip bodies as sent
        read_bufsize=1 << 20,
        max_field_size=16384,
    )
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    return runner


class S3Server:
    """Run the server on a daemon thread with its own event loop (same process).

    Handy for tests; benchmarks should use :class:`ServerProcess`, which keeps
    the server's CPU time (and GIL) out of the measured process.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        etag_mode: str = "md5",
        min_part_size: int = _DEFAULT_MIN_PART_SIZE,
        profile: Profile = LOOPBACK,
    ) -> None:
        self.host = host
        self.port = port
        self.profile = profile
        self.backend = S3Backend(etag_mode=etag_mode, min_part_size=min_part_size)
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop_event: Optional[asyncio.Event] = None
        self._url: Optional[str] = None

    @property
    def url(self) -> str:
        """``http://host:port`` once started."""
        if self._url is None:
            raise RuntimeError("server not started")
        return self._url

    def start(self) -> S3Server:
        """Bind, serve on a background thread, and return self once listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = _bind(self.host, self.port)
        self._url = _url(sock)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: List[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(sock, ready))
                loop.run_until_complete(loop.shutdown_default_executor())
            except BaseException as exc:  # surfaced by start()
                failure.append(exc)
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(
            target=run, name=f"s3server:{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError("S3Server failed to start") from failure[0]
        return self

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stop_event = asyncio.Event()
        runner = await _start_runner(self.backend, sock, self.profile)
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
        thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of process *pid*, all threads, from ``/proc``."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    # the command name (field 2) may contain spaces: split after its ")"
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """Run ``python -m benchmarks.s3server`` as a child process.

    ``url`` and ``pid`` are available after :meth:`start`; :meth:`cpu_seconds`
    reads the server's user+sys CPU time at any moment (take deltas around a
    benchmark phase); :meth:`stop` records the lifetime total, read from
    ``/proc`` just before terminating the server, in ``final_cpu_seconds``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        etag_mode: str = "md5",
        min_part_size: int = _DEFAULT_MIN_PART_SIZE,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        if etag_mode not in ("md5", "fast"):
            raise ValueError(f"etag_mode must be 'md5' or 'fast', not {etag_mode!r}")
        self.host = host
        self.port = port
        self.etag_mode = etag_mode
        self.min_part_size = min_part_size
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.final_cpu_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._url: Optional[str] = None
        #: Every URL served, in the order of the profiles (``--also-s3like`` adds one).
        self.urls: List[str] = []

    @property
    def url(self) -> str:
        """``http://host:port`` once started."""
        if self._url is None:
            raise RuntimeError("server not started")
        return self._url

    @property
    def pid(self) -> int:
        """Process id of the server."""
        if self._proc is None:
            raise RuntimeError("server not running")
        return self._proc.pid

    def start(self) -> ServerProcess:
        """Spawn the server, wait until it listens, and return self."""
        if self._proc is not None:
            raise RuntimeError("already started")
        repo_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (repo_root, env.get("PYTHONPATH")) if p
        )
        with tempfile.TemporaryDirectory(prefix="s3server-") as tmp:
            ready = os.path.join(tmp, "url")
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.s3server",
                f"--host={self.host}",
                f"--port={self.port}",
                f"--ready-file={ready}",
                f"--min-part-size={self.min_part_size}",
                "--exit-with-parent",
                *(["--fast-etag"] if self.etag_mode == "fast" else []),
                *self.extra_args,
            ]
            proc = subprocess.Popen(
                cmd, cwd=repo_root, env=env, stdout=subprocess.DEVNULL
            )
            self._proc = proc
            deadline = time.monotonic() + self.startup_timeout
            while not os.path.exists(ready):
                if proc.poll() is not None:
                    self._proc = None
                    raise RuntimeError(
                        f"s3server exited with code {proc.returncode} before listening"
                    )
                if time.monotonic() > deadline:
                    self._kill()
                    raise TimeoutError(
                        f"s3server did not listen within {self.startup_timeout} s"
                    )
                time.sleep(0.01)
            with open(ready, encoding="ascii") as fh:
                self.urls = fh.read().split()
            self._url = self.urls[0]
        self.port = int(self._url.rsplit(":", 1)[1])
        return self

    def cpu_seconds(self) -> float:
        """The server's user+sys CPU seconds so far."""
        if self._proc is None:
            if self.final_cpu_seconds is None:
                raise RuntimeError("server not started")
            return self.final_cpu_seconds
        return process_cpu_seconds(self._proc.pid)

    def stop(self) -> Optional[float]:
        """Terminate the server; return its lifetime CPU seconds (idempotent)."""
        proc = self._proc
        if proc is None:
            return self.final_cpu_seconds
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                self.final_cpu_seconds = process_cpu_seconds(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None
        return self.final_cpu_seconds

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def _write_ready_file(path: str, urls: Sequence[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write("".join(url + "\n" for url in urls))
    os.replace(tmp, path)  # atomic: a reader never sees a partial URL


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready_file: Optional[str] = None,
    etag_mode: str = "md5",
    min_part_size: int = _DEFAULT_MIN_PART_SIZE,
    exit_with_parent: bool = False,
    profiles: Sequence[Profile] = (LOOPBACK,),
) -> None:
    """Serve until SIGINT/SIGTERM; print the URLs first and write *ready_file*.

    One backend (one set of buckets) is served on one port per profile: the first on
    ``port``, the others on free ports.
    """
    backend = S3Backend(etag_mode=etag_mode, min_part_size=min_part_size)
    runners = []
    urls = []
    for i, profile in enumerate(profiles):
        sock = _bind(host, port if i == 0 else 0)
        urls.append(_url(sock))
        runners.append(await _start_runner(backend, sock, profile))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if exit_with_parent:
        _watch_parent(loop, os.getppid(), stop)
    sys.stdout.write("".join(url + "\n" for url in urls))
    sys.stdout.flush()
    if ready_file:
        _write_ready_file(ready_file, urls)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def _watch_parent(
    loop: asyncio.AbstractEventLoop, ppid: int, stop: asyncio.Event
) -> None:
    """Stop once the parent has gone (we were re-parented): no orphans."""
    if os.getppid() != ppid:
        stop.set()
    else:
        loop.call_later(1.0, _watch_parent, loop, ppid, stop)


def main(argv: Optional[List[str]] = None) -> None:
    """CLI: ``python -m benchmarks.s3server [--host H] [--port P] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.s3server",
        description="In-memory S3 subset server for benchmarks (no auth).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--ready-file", help="write the URL here once listening (it is also printed)"
    )
    parser.add_argument(
        "--fast-etag", action="store_true", help="counter-based ETags instead of md5"
    )
    parser.add_argument(
        "--min-part-size",
        type=int,
        default=_DEFAULT_MIN_PART_SIZE,
        help="minimum size of all but the last multipart part (S3: 5 MiB)",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the parent process exits (ServerProcess sets this)",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="loopback",
        help="loopback: as fast as possible; s3like: S3's latency and per-connection "
        "bandwidth (defaults and their sources: benchmarks/s3server.py, S3LIKE)",
    )
    parser.add_argument(
        "--also-s3like",
        action="store_true",
        help="also serve the same buckets with the s3like profile on a second free port "
        "(its URL is the second line printed and written)",
    )
    shaping = parser.add_argument_group(
        "s3like profile",
        "override the S3-like defaults (they apply to the s3like port)",
    )
    shaping.add_argument(
        "--latency-ms",
        type=float,
        default=S3LIKE.latency * 1e3,
        help="first-byte latency per request (default %(default)s)",
    )
    shaping.add_argument(
        "--jitter",
        type=float,
        default=S3LIKE.jitter,
        help="relative jitter of every delay, uniform (default %(default)s = +/-20%%)",
    )
    shaping.add_argument(
        "--list-latency-ms",
        type=float,
        default=S3LIKE.list_latency * 1e3,
        help="first-byte latency of a listing page (default %(default)s)",
    )
    shaping.add_argument(
        "--bandwidth-mbps",
        type=float,
        default=S3LIKE.bandwidth / 1e6,
        help="MB/s (10^6 bytes) per connection, each way; 0: no cap (default %(default)s)",
    )
    shaping.add_argument(
        "--slowdown-rate",
        type=float,
        default=S3LIKE.slowdown_rate,
        help="fraction of requests answered 503 SlowDown (default %(default)s)",
    )
    shaping.add_argument(
        "--seed", type=int, default=0, help="seed of the jitter and SlowDown draws"
    )
    args = parser.parse_args(argv)
    try:
        s3like = replace(
            S3LIKE,
            latency=args.latency_ms / 1e3,
            jitter=args.jitter,
            list_latency=args.list_latency_ms / 1e3,
            bandwidth=args.bandwidth_mbps * 1e6,
            slowdown_rate=args.slowdown_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    profiles = [s3like if args.profile == "s3like" else LOOPBACK]
    if args.also_s3like:
        profiles.append(s3like)
    asyncio.run(
        serve(
            args.host,
            args.port,
            ready_file=args.ready_file,
            etag_mode="fast" if args.fast_etag else "md5",
            min_part_size=args.min_part_size,
            exit_with_parent=args.exit_with_parent,
            profiles=profiles,
        )
    )


if __name__ == "__main__":
    main()
