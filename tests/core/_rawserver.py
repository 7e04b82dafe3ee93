"""Scripted raw HTTP servers on loopback for the HTTP client tests (real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Callable, Optional

Handler = Callable[
    ["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]


class RawServer:
    """asyncio.start_server on loopback running ``handler`` per connection, with counters."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()
        self.requested = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def host(self) -> dict[str, str]:
        return {"Host": f"127.0.0.1:{self.port}"}

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def read_request(self, reader: asyncio.StreamReader) -> Optional[bytes]:
        """One request's head (also recorded with its body); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        self.heads.append(head)
        self.requested.set()
        self.bodies.append(await reader.readexactly(length))
        return head

    async def close(self) -> None:
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()


def reply(body: bytes = b"", status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


async def keep_alive_server(
    srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer every request with its path as the body, keeping the connection open."""
    while (head := await srv.read_request(reader)) is not None:
        writer.write(reply(head.split(b" ")[1]))
        await writer.drain()


async def start_servers() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    """Body of the ``serve`` fixture: start RawServers on demand, close them all after."""
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        srv = await RawServer(handler).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        await srv.close()
