"""A tiny scripted HTTP/1.1 server on loopback for tests of behaviour moto cannot show.

Each request is parsed (request line, headers, Content-Length body) and answered with the
bytes ``handler(request)`` returns, written as given, so a test can send any status, headers
or body (redirects, other XML namespaces, malformed listings). ``HANG`` holds the connection
open without answering; ``None`` closes it. ``accepted`` counts the connections accepted.
Runs on its own threads; port 0; optional TLS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import threading
from typing import Callable, Dict, List, Optional, Union

__all__ = ["HANG", "Request", "ScriptedServer", "response"]

HANG = object()
Answer = Union[bytes, None, object]


@dataclasses.dataclass
class Request:
    method: str
    target: str
    headers: Dict[str, str]
    body: bytes
    connection: int = 0  # which accepted connection it came on (1: the first)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


def response(
    status: int,
    body: bytes = b"",
    headers: Optional[Dict[str, str]] = None,
    reason: str = "X",
) -> bytes:
    """A complete HTTP/1.1 response with ``Content-Length``."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    all_headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ScriptedServer:
    """Answers every request with ``handler(request)``; records the requests."""

    def __init__(
        self,
        handler: Callable[[Request], Answer],
        *,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._handler = handler
        self._tls = tls
        self.requests: List[Request] = []
        self.accepted = 0  # connections accepted so far
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._conns: List[socket.socket] = []
        self._threads: List[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            t = threading.Thread(
                target=self._serve, args=(conn, self.accepted), daemon=True
            )
            t.start()
            self._threads.append(t)

    def _serve(self, raw: socket.socket, number: int) -> None:
        conn: socket.socket = raw
        try:
            if self._tls is not None:
                raw.settimeout(5)
                conn = self._tls.wrap_socket(raw, server_side=True)
            self._conns.append(conn)
            conn.settimeout(0.2)
            buf = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = self._recv(conn)
                    if chunk is None:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    chunk = self._recv(conn)
                    if chunk is None:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                request = Request(method, target, headers, body, number)
                self.requests.append(request)
                answer = self._handler(request)
                if answer is HANG:
                    self._stop.wait()
                    return
                if not isinstance(answer, bytes):
                    return
                conn.sendall(answer)
        except (OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _recv(self, conn: socket.socket) -> Optional[bytes]:
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            return chunk or None
        return None
