"""A minimal forward HTTP proxy (absolute-form requests, as HTTP_PROXY clients send), for tests.

It records each request line and relays request and response with their Content-Length
framing over one upstream connection per client connection. Plain HTTP only; no CONNECT.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional
from urllib.parse import urlsplit

__all__ = ["ForwardProxy"]


async def _read_head(reader: asyncio.StreamReader) -> Optional[bytes]:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class ForwardProxy:
    """Run on its own thread; ``url`` is what goes into ``HTTP_PROXY``; ``requests`` the log."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (method, absolute URL)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Optional[asyncio.base_events.Server] = None
        self.url = ""

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result()
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream: Optional[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None
        try:
            while (head := await _read_head(reader)) is not None:
                line, _, rest = head.partition(b"\r\n")
                method, target, version = line.decode().split(" ")
                self.requests.append((method, target))
                parts = urlsplit(target)
                if upstream is None:
                    upstream = await asyncio.open_connection(parts.hostname, parts.port)
                up_reader, up_writer = upstream
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                if b"\r\nexpect: 100-continue" in head.lower():  # botocore's PUTs
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    rest = b"\r\n".join(
                        h
                        for h in rest.split(b"\r\n")
                        if not h.lower().startswith(b"expect:")
                    )
                body = await reader.readexactly(_content_length(head))
                up_writer.write(f"{method} {path} {version}\r\n".encode() + rest + body)
                response = await _read_head(up_reader)
                if response is None:
                    break
                length = 0 if method == "HEAD" else _content_length(response)
                writer.write(response + await up_reader.readexactly(length))
                await writer.drain()
        finally:
            if upstream is not None:
                upstream[1].close()
            writer.close()
