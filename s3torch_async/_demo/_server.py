"""An embedded S3 server for the demo: moto's server on a free loopback port, counting requests.

The counts come from the server side, so they include the requests of every DataLoader
worker process; a response the client retries (5xx, 429) is counted as a retry.
"""

from __future__ import annotations

import collections
import logging
import threading
import urllib.request
from collections.abc import Iterable
from typing import Any, Callable, Dict, Optional

__all__ = ["EmbeddedS3", "RequestCounts"]

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class RequestCounts:
    """Thread-safe tally of requests by S3 operation family and of retried answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_kind: Dict[str, int] = collections.Counter()
        self.retried = 0

    def record(self, kind: str, status: int) -> None:
        """Count one answered request."""
        with self._lock:
            self.by_kind[kind] += 1
            if status in _RETRIED_STATUSES:
                self.retried += 1

    @property
    def total(self) -> int:
        """Every request answered so far."""
        with self._lock:
            return sum(self.by_kind.values())

    def snapshot(self) -> Dict[str, int]:
        """A copy of the per-kind counts."""
        with self._lock:
            return dict(self.by_kind)


def request_kind(method: str, query: str) -> str:
    """The operation family of a request: ``GET``, ``LIST``, ``PUT``, ``PART``, ``HEAD``..."""
    params = {p.split("=", 1)[0] for p in query.split("&") if p}
    if method == "GET" and "list-type" in params:
        return "LIST"
    if method == "PUT" and "partNumber" in params:
        return "PART"
    return method


class _Counting:
    """WSGI middleware around moto's application."""

    def __init__(self, app: Callable[..., Iterable[bytes]], counts: RequestCounts):
        self._app = app
        self._counts = counts

    def __call__(
        self, environ: Dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        kind = request_kind(environ["REQUEST_METHOD"], environ.get("QUERY_STRING", ""))

        def counted(status: str, headers: Any, exc_info: Any = None) -> Any:
            self._counts.record(kind, int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        return self._app(environ, counted)


class EmbeddedS3:
    """moto's S3 in server mode on ``127.0.0.1`` and a free port, in a daemon thread.

    Raises:
        ImportError: moto's server is not installed (``pip install "s3torch-async[demo]"``).
    """

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        # werkzeug logs every request at INFO on its own stderr handler otherwise.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.counts = RequestCounts()
        app = _Counting(DomainDispatcherApplication(create_backend_app), self.counts)
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> EmbeddedS3:
        """Serve in a daemon thread; return ``self``."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="s3torch-async-demo-s3", daemon=True
        )
        self._thread.start()
        return self

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (moto accepts unsigned requests)."""
        request = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
