r"""The bench server's ceiling for case 3: a multipart write by a client that costs next to nothing.

Every writer in case 3 shares the machine's two cores with the bench server, which takes each
byte of an upload on one event loop. To know whether a writer is held back by itself or by the
server, this client uploads the same 1 GiB in 8 MiB parts with as little client work as
possible: plain sockets, no signing, no checksums, every part sent straight from one buffer
(``sock_sendall`` of a memoryview, no copy in the client), ``connections`` parts in flight.
Its rate is the most any writer can get from this server on this machine; a target above it
cannot be shown here. Run it beside the real writers (same server, interleaved)::

    PYTHONPATH=$PWD:/tmp/h7peers python -m benchmarks.write_ab \
        --roots $PWD --reference --ceiling 16,32 --repeat 3

or alone against a running server: ``python -m benchmarks.write_ceiling URL [connections]``.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from typing import Dict, Iterator, List, Tuple
from urllib.parse import urlsplit

__all__ = ["upload"]

_HEAD_END = b"\r\n\r\n"


class _Conn:
    """One keep-alive HTTP/1.1 connection on a non-blocking socket."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.buf = b""

    @classmethod
    async def open(cls, host: str, port: int) -> _Conn:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        return cls(sock, f"{host}:{port}")

    async def request(
        self, method: str, target: str, body: memoryview
    ) -> Tuple[int, Dict[str, str], bytes]:
        """Send one request, return ``(status, lower-cased headers, body)``."""
        loop = asyncio.get_running_loop()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        await loop.sock_sendall(self.sock, head)
        if len(body):
            await loop.sock_sendall(self.sock, body)
        while _HEAD_END not in self.buf:
            await self._fill()
        raw, self.buf = self.buf.split(_HEAD_END, 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            await self._fill()
        data, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, data

    async def _fill(self) -> None:
        chunk = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def _check(status: int, body: bytes, what: str) -> None:
    if status != 200:
        raise RuntimeError(f"{what}: HTTP {status} {body[:200]!r}")


async def upload(
    url: str, bucket: str, key: str, data: memoryview, part: int, connections: int
) -> None:
    """Write ``data`` to ``bucket/key`` as a multipart upload of ``part``-byte parts."""
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    path = f"/{bucket}/{key}"
    conns = [await _Conn.open(host, port)]
    try:
        await _upload(conns, host, port, path, data, part, connections)
    finally:
        for conn in conns:
            conn.close()


async def _upload(
    conns: List[_Conn],
    host: str,
    port: int,
    path: str,
    data: memoryview,
    part: int,
    connections: int,
) -> None:
    first = conns[0]
    status, _, body = await first.request("POST", f"{path}?uploads", memoryview(b""))
    _check(status, body, "CreateMultipartUpload")
    match = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
    if match is None:
        raise RuntimeError(f"no UploadId in {body[:200]!r}")
    upload_id = match.group(1).decode()
    pieces: Iterator[Tuple[int, memoryview]] = (
        (n + 1, data[offset : offset + part])
        for n, offset in enumerate(range(0, len(data), part))
    )
    etags: Dict[int, str] = {}

    async def send_parts(conn: _Conn) -> None:
        for number, piece in pieces:  # one shared iterator: each part goes once
            target = f"{path}?partNumber={number}&uploadId={upload_id}"
            status, headers, body = await conn.request("PUT", target, piece)
            _check(status, body, f"UploadPart {number}")
            etags[number] = headers["etag"]

    conns.extend([await _Conn.open(host, port) for _ in range(connections - 1)])
    await asyncio.gather(*(send_parts(c) for c in conns))
    listed = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>"
        for n in sorted(etags)
    )
    xml = f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode()
    status, _, body = await first.request(
        "POST", f"{path}?uploadId={upload_id}", memoryview(xml)
    )
    _check(status, body, "CompleteMultipartUpload")
    if b"<Error>" in body:
        raise RuntimeError(f"CompleteMultipartUpload: {body[:200]!r}")


def timed_upload(
    url: str, size: int, part: int, connections: int
) -> Tuple[float, float]:
    """Upload ``size`` random bytes to ``bench/ceiling``: ``(seconds, client CPU-s)``."""
    data = memoryview(os.urandom(size))
    cpu0, started = time.process_time(), time.perf_counter()
    asyncio.run(upload(url, "bench", "ceiling", data, part, connections))
    return time.perf_counter() - started, time.process_time() - cpu0


def main() -> None:
    """``python -m benchmarks.write_ceiling URL [connections]``: one 1 GiB upload."""
    url = sys.argv[1]
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    size = 1 << 30
    elapsed, cpu = timed_upload(url, size, 8 << 20, connections)
    print(f"{size / elapsed / 1e6:.1f} MB/s  client {cpu / (size / 1e9):.3f} CPU-s/GB")


if __name__ == "__main__":
    main()
