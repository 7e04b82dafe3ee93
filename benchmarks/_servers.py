"""The store a run measures against: the local in-memory server, moto, or a given endpoint.

Local servers run in their own process, so their CPU time is theirs alone and is recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from types import TracebackType
from typing import Iterator, Optional, Sequence, Type

from ._measure import process_cpu_seconds


class Store:
    """A running store: ``url`` (``None`` means AWS's default endpoint), ``pid`` if local."""

    kind = "endpoint"

    def __init__(self, url: Optional[str]) -> None:
        self._url = url

    @property
    def url(self) -> Optional[str]:
        """The endpoint URL."""
        return self._url

    @property
    def pid(self) -> Optional[int]:
        """PID of the server process, when it is ours."""
        return None

    def url_for(self, profile: str) -> Optional[str]:
        """The endpoint URL serving ``profile`` (only ``loopback``: served as it is)."""
        if profile != "loopback":
            raise ValueError(f"the {profile} profile needs the local server")
        return self.url

    @property
    def local(self) -> bool:
        """The harness started it (and may create buckets in it)."""
        return self.pid is not None

    def cpu_seconds(self) -> Optional[float]:
        """The server's CPU seconds so far (``None`` when unknown)."""
        pid = self.pid
        if pid is None:
            return None
        try:
            return process_cpu_seconds(pid)
        except OSError:
            return None

    def start(self) -> Store:
        """Start the server (nothing to do for an endpoint)."""
        return self

    def stop(self) -> Optional[float]:
        """Stop the server; return its lifetime CPU seconds when known."""
        return None

    def __enter__(self) -> Store:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


class LocalStore(Store):
    """``benchmarks.s3server`` in a child process, with counter ETags.

    md5 ETags would cost the server ~2 CPU-s per GiB written, and no client measured here
    checks an ETag against the md5 of the body.
    """

    kind = "local"

    def __init__(
        self, etag_mode: str = "fast", profiles: Sequence[str] = ("loopback",)
    ) -> None:
        super().__init__(None)
        from .s3server import ServerProcess

        if not profiles or len(set(profiles)) != len(profiles):
            raise ValueError(f"profiles must be distinct and not empty: {profiles!r}")
        unknown = set(profiles) - {"loopback", "s3like"}
        if unknown:
            raise ValueError(f"unknown profile(s) {sorted(unknown)}")
        self.etag_mode = etag_mode
        # Loopback is always served (first): the data is laid out through it, fast.
        self.profiles = (
            ("loopback", "s3like") if "s3like" in profiles else ("loopback",)
        )
        args = ["--also-s3like"] if "s3like" in profiles else []
        self._server = ServerProcess(etag_mode=etag_mode, extra_args=args)

    @property
    def url(self) -> Optional[str]:
        """The endpoint URL (the loopback profile's)."""
        return self._server.url

    def url_for(self, profile: str) -> Optional[str]:
        """The endpoint URL serving ``profile`` (the same buckets on every profile)."""
        return self._server.urls[self.profiles.index(profile)]

    @property
    def pid(self) -> Optional[int]:
        """PID of the server process."""
        try:
            return self._server.pid
        except RuntimeError:
            return None

    def start(self) -> LocalStore:
        """Start the server process and wait until it listens."""
        self._server.start()
        return self

    def stop(self) -> Optional[float]:
        """Stop it; return its lifetime CPU seconds."""
        return self._server.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoStore(Store):
    """moto's server in a child process (a correctness fixture: slow, but an independent peer)."""

    kind = "moto"

    def __init__(self, startup_timeout: float = 60.0) -> None:
        super().__init__(None)
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._final: Optional[float] = None
        self.startup_timeout = startup_timeout

    @property
    def pid(self) -> Optional[int]:
        """PID of the moto process."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> MotoStore:
        """Start ``moto.server`` on a free loopback port and wait until it answers."""
        port = _free_port()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto exited with code {self._proc.returncode}")
            try:
                with urllib.request.urlopen(self._url + "/moto-api/", timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError("moto did not answer in time") from None
                time.sleep(0.1)

    def stop(self) -> Optional[float]:
        """Stop moto; return its lifetime CPU seconds."""
        proc = self._proc
        if proc is None:
            return self._final
        with contextlib.suppress(OSError):
            self._final = process_cpu_seconds(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        return self._final


def open_store(
    kind: str, endpoint: Optional[str], profiles: Sequence[str] = ("loopback",)
) -> Store:
    """The store for ``--server`` / ``--endpoint`` (an endpoint wins).

    Raises:
        ValueError: A profile other than ``loopback`` on a store that is not the local server.
    """
    if (endpoint is not None or kind == "moto") and tuple(profiles) != ("loopback",):
        raise ValueError(
            "--profile s3like/both needs the local server (no --endpoint, --server local)"
        )
    if endpoint is not None:
        return Store(endpoint)
    if kind == "moto":
        return MotoStore()
    if kind == "local":
        return LocalStore(profiles=profiles)
    raise ValueError(f"unknown server kind {kind!r} (local or moto)")


def hermetic_env(for_local_store: bool) -> dict[str, str]:
    """Environment for workers: dummy credentials when the store is ours, else the caller's."""
    env = dict(os.environ)
    if for_local_store:
        for name in [n for n in env if n.startswith("AWS_")]:
            del env[name]
        env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
    return env


@contextlib.contextmanager
def small_objects_server(count: int, size: int) -> Iterator[dict[str, str]]:
    """Case 2's data on a local server: ``count`` objects of ``size`` bytes under ``small/``.

    Bucket ``bench``, served on a loopback port and an S3-like one; yields the URL of each
    profile (``{"loopback": ..., "s3like": ...}``). Sets dummy credentials if none are set.
    """
    import boto3

    from .s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with ServerProcess(extra_args=["--also-s3like"]) as server:
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        body = os.urandom(size)
        for i in range(count):
            s3.put_object(Bucket="bench", Key=f"small/{i:06d}", Body=body)
        yield dict(zip(("loopback", "s3like"), server.urls))
