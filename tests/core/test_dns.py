"""New connections share one resolution of their host name and spread over its addresses.

Real sockets on loopback. The machine's DNS resolver is off loopback and tests must not query
it, so names are answered by a test resolver installed as the loop's ``getaddrinfo`` (which is
what asyncio and the lean transport resolve through), as in ``tests/faults/test_fail_fast.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest

from s3torch_async._core._dns import HostAddresses
from s3torch_async._core._http import HTTPConnectionError, HTTPPool
from tests.core._rawserver import reply

NAME = "s3.bucket.test"


class _Resolver:
    """Answers ``NAME`` with ``addresses``; counts the lookups."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lookups = 0

    async def __call__(self, host: str, port: Any, **_: Any) -> list[Any]:
        self.lookups += 1
        await asyncio.sleep(0.005)  # an answer that takes a while, so callers overlap
        if host != NAME:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port)))
            for a in self.addresses
        ]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], _Resolver]:
    def install(addresses: list[str]) -> _Resolver:
        r = _Resolver(addresses)
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", r)
        return r

    return install


class _Servers:
    """One slow HTTP server per loopback address, all on the same port; counts connections."""

    def __init__(self) -> None:
        self.port = 0
        self.connections: dict[str, int] = {}
        self.servers: list[asyncio.Server] = []

    async def start(self, addresses: list[str], close_after: bool = False) -> None:
        for address in addresses:
            self.connections[address] = 0
            server = await asyncio.start_server(
                lambda r, w, a=address: self._serve(a, r, w, close_after),
                address,
                self.port,
            )
            self.port = server.sockets[0].getsockname()[1]
            self.servers.append(server)

    async def _serve(
        self,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        close_after: bool,
    ) -> None:
        self.connections[address] += 1
        try:
            while (head := await _read_head(reader)) is not None:
                # Busy for a while: concurrent requests need more connections.
                await asyncio.sleep(0.02)
                extra = "Connection: close\r\n" if close_after else ""
                writer.write(reply(head.split(b" ")[1], extra=extra))
                await writer.drain()
                if close_after:
                    break
        finally:
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


@pytest.fixture
async def servers() -> AsyncIterator[_Servers]:
    s = _Servers()
    yield s
    for server in s.servers:
        server.close()
        await server.wait_closed()


def _second_loopback_address() -> Iterator[None]:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("this machine has no 127.0.0.2 (needed for a second address)")
    yield


second_address = pytest.fixture(_second_loopback_address)


async def _get_all(pool: HTTPPool, port: int, count: int) -> list[bytes]:
    async def one(i: int) -> bytes:
        url = f"http://{NAME}:{port}/{i}"
        async with await pool.request("GET", url, {"Host": f"{NAME}:{port}"}) as r:
            return await r.read()

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _burst(port: int, count: int, **pool_args: Any) -> None:
    """``count`` GETs at once on a new pool; each answer is its own path."""
    pool = HTTPPool(connect_timeout=5, read_timeout=10, **pool_args)
    try:
        got = await _get_all(pool, port, count)
    finally:
        await pool.aclose()
    assert got == [f"/{i}".encode() for i in range(count)]


async def test_a_burst_of_new_connections_resolves_the_name_once(
    resolver: Callable[[list[str]], _Resolver], servers: _Servers
) -> None:
    dns = resolver(["127.0.0.1"])
    await servers.start(["127.0.0.1"])
    await _burst(servers.port, 16, limit=16)
    assert servers.connections["127.0.0.1"] == 16
    assert dns.lookups == 1


@pytest.mark.parametrize(("ttl", "lookups"), [(60.0, 1), (0.0, 3)])
async def test_a_resolution_serves_new_connections_for_its_ttl(
    resolver: Callable[[list[str]], _Resolver],
    servers: _Servers,
    ttl: float,
    lookups: int,
) -> None:
    dns = resolver(["127.0.0.1"])
    await servers.start(["127.0.0.1"], close_after=True)
    pool = HTTPPool(limit=4, connect_timeout=5, read_timeout=10, dns_ttl=ttl)
    try:
        for _ in range(3):  # each answer closes its connection: three connects
            assert await _get_all(pool, servers.port, 1) == [b"/0"]
    finally:
        await pool.aclose()
    assert servers.connections["127.0.0.1"] == 3
    assert dns.lookups == lookups


@pytest.mark.usefixtures("second_address")
async def test_new_connections_take_the_names_addresses_in_turn(
    resolver: Callable[[list[str]], _Resolver], servers: _Servers
) -> None:
    resolver(["127.0.0.1", "127.0.0.2"])
    await servers.start(["127.0.0.1", "127.0.0.2"])
    await _burst(servers.port, 8, limit=8)
    assert servers.connections == {"127.0.0.1": 4, "127.0.0.2": 4}


@pytest.mark.usefixtures("second_address")
async def test_an_address_that_refuses_is_passed_over(
    resolver: Callable[[list[str]], _Resolver], servers: _Servers
) -> None:
    resolver(["127.0.0.2", "127.0.0.1"])  # nothing listens on 127.0.0.2
    await servers.start(["127.0.0.1"])
    pool = HTTPPool(limit=8, connect_timeout=5, read_timeout=10)
    try:
        got = await _get_all(pool, servers.port, 8)
        host = pool._hosts[("http", NAME, servers.port)].addresses
        order = [address for _, address in await host.candidates()]
    finally:
        await pool.aclose()
    assert got == [f"/{i}".encode() for i in range(8)]
    assert servers.connections["127.0.0.1"] == 8
    # The refusing address comes last until the name is resolved again.
    assert order == ["127.0.0.1", "127.0.0.2"]


async def test_a_name_that_does_not_resolve_is_a_connection_error_naming_the_host(
    resolver: Callable[[list[str]], _Resolver],
) -> None:
    resolver(["127.0.0.1"])
    pool = HTTPPool(limit=2, connect_timeout=5, read_timeout=10)
    try:
        with pytest.raises(HTTPConnectionError, match=r"no-such-host\.test:9000"):
            await pool.request("GET", "http://no-such-host.test:9000/", {})
    finally:
        await pool.aclose()


async def test_a_numeric_host_is_never_resolved(
    resolver: Callable[[list[str]], _Resolver],
) -> None:
    dns = resolver([])
    loop = asyncio.get_running_loop()
    v4 = HostAddresses(loop, "127.0.0.1", 80)
    v6 = HostAddresses(loop, "::1", 80)
    assert await v4.candidates() == [(socket.AF_INET, "127.0.0.1")]
    assert await v6.candidates() == [(socket.AF_INET6, "::1")]
    assert dns.lookups == 0
