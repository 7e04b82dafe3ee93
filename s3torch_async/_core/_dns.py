"""Where a host's new connections go: its addresses, resolved once per TTL and taken in turn.

``loop.create_connection(host, ...)`` resolves the name on the loop's default executor for every
connection. A dataset's window opens a hundred connections or more within milliseconds, so those
resolutions queue behind a handful of executor threads, each a thread hop and often a DNS query.
:class:`HostAddresses` resolves once per TTL for all of them (concurrent callers share one
resolution) and hands the addresses out in turn, so connections spread over every address the
name has (S3 answers with several) instead of all going to the first. An address that failed to
connect is tried last until the next resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import List, Optional, Set, Tuple

__all__ = ["DNS_TTL_S", "Address", "HostAddresses"]

#: Seconds a resolution is reused (aiohttp's default too): long enough to cover a burst of
#: connects, short enough to follow S3's DNS changes.
DNS_TTL_S = 10.0

Address = Tuple[int, str]
"""``(family, numeric address)``."""


def _literal(host: str) -> Optional[Address]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)


class HostAddresses:
    """The addresses of one ``host:port``, resolved at most once per ``ttl`` seconds.

    A numeric host is its own single address and never resolved. Use it on ``loop``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        ttl: float = DNS_TTL_S,
    ) -> None:
        self.host = host
        self.port = port
        self.ttl = ttl
        self._loop = loop
        literal = _literal(host)
        self._addresses: List[Address] = [literal] if literal else []
        self._until = float("inf") if literal else float("-inf")
        self._failed: Set[str] = set()
        self._turn = 0
        self._resolving: Optional[asyncio.Future[List[Address]]] = None

    async def candidates(self) -> List[Address]:
        """Every address, to try in this order for one new connection.

        The next address in turn comes first; addresses that failed since the last
        resolution come after the others.

        Raises:
            OSError: The name does not resolve (``socket.gaierror``) or has no address.
        """
        if self._loop.time() >= self._until:
            task = self._resolving
            if task is None:
                task = self._resolving = asyncio.ensure_future(self._resolve())
                # Retrieved even when every caller was cancelled before it ended.
                task.add_done_callback(_retrieve)
            await asyncio.shield(task)
        addresses = self._addresses
        start = self._turn % len(addresses)
        self._turn += 1
        ordered = addresses[start:] + addresses[:start]
        if self._failed:
            ordered.sort(key=lambda a: a[1] in self._failed)  # stable: turn order kept
        return ordered

    def failed(self, address: str) -> None:
        """``address`` refused or could not be reached: try it last until re-resolved."""
        if len(self._addresses) > 1:
            self._failed.add(address)

    async def _resolve(self) -> List[Address]:
        try:
            infos = await self._loop.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM
            )
            seen: List[Address] = []
            for family, _type, _proto, _name, sockaddr in infos:
                address = (int(family), str(sockaddr[0]))
                if address not in seen:
                    seen.append(address)
            if not seen:
                raise OSError(f"{self.host} resolved to no address")
            self._addresses, self._failed = seen, set()
            self._until = self._loop.time() + self.ttl
            return seen
        finally:
            self._resolving = None


def _retrieve(task: asyncio.Future[List[Address]]) -> None:
    if not task.cancelled():
        task.exception()
