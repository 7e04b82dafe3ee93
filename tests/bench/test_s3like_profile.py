"""The bench server's S3-like profile really delays, throttles and slows down its answers.

Measured from a plain HTTP client against the server itself (no claim about our library):
lower bounds are what the profile guarantees; upper bounds are generous and only there to
tell "applied per connection" from "applied to the whole server".
"""

from __future__ import annotations

import contextlib
import http.client
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import List, Tuple
from urllib.parse import urlsplit

import pytest

from benchmarks.s3server import LOOPBACK, S3LIKE, Profile, S3Server, ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings(
    "ignore:It is recommended to use web.RequestKey:UserWarning"
)

MB = 1_000_000


def _request(
    url: str, method: str, path: str, body: bytes = b""
) -> Tuple[int, bytes, float, float]:
    """``(status, body, seconds to the status line, seconds to the last byte)``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request(method, path, body=body or None)
        resp = conn.getresponse()
        first = time.perf_counter() - t0
        data = resp.read()
        return resp.status, data, first, time.perf_counter() - t0
    finally:
        conn.close()


_SEED: List[S3Server] = []


@pytest.fixture(scope="module", autouse=True)
def _seed_data() -> Iterator[None]:
    """Bucket ``b`` with a small and an 8 MB object, shared by every shaped server."""
    with S3Server(etag_mode="fast") as seed:
        assert _request(seed.url, "PUT", "/b")[0] == 200
        assert _request(seed.url, "PUT", "/b/small", b"s" * 1000)[0] == 200
        assert _request(seed.url, "PUT", "/b/big", b"B" * (8 * MB))[0] == 200
        _SEED.append(seed)
        yield
        _SEED.clear()


@contextlib.contextmanager
def _serve(profile: Profile) -> Iterator[S3Server]:
    """A server with ``profile`` whose bucket ``b`` holds the seed's objects."""
    with S3Server(etag_mode="fast", profile=profile) as srv:
        srv.backend.buckets["b"] = _SEED[0].backend.buckets["b"]
        yield srv


def test_loopback_profile_answers_small_gets_without_delay() -> None:
    with _serve(LOOPBACK) as srv:
        times = [_request(srv.url, "GET", "/b/small")[2] for _ in range(5)]
    assert statistics.median(times) < 0.015


def test_first_byte_latency_is_applied_to_every_request_with_jitter() -> None:
    profile = Profile(name="t", latency=0.05, jitter=0.2, seed=1)
    with _serve(profile) as srv:
        times = [_request(srv.url, "GET", "/b/small")[2] for _ in range(12)]
        head = _request(srv.url, "HEAD", "/b/small")[2]
    assert min(times) >= 0.05 * 0.8 - 0.002
    assert head >= 0.04 - 0.002
    # uniform jitter of +/-20 %: twelve draws are not all the same delay
    assert max(times) - min(times) > 0.003


def test_listing_pages_get_their_own_latency() -> None:
    profile = Profile(name="t", latency=0.0, list_latency=0.08)
    with _serve(profile) as srv:
        status, body, listed, _ = _request(srv.url, "GET", "/b?list-type=2")
        got = _request(srv.url, "GET", "/b/small")[2]
    assert status == 200
    assert b"<Key>big</Key>" in body
    assert listed >= 0.08 - 0.002
    assert got < 0.08 - 0.002


def test_get_bodies_are_paced_to_the_bandwidth_cap() -> None:
    profile = Profile(name="t", bandwidth=40 * MB)
    with _serve(profile) as srv:
        status, body, first, total = _request(srv.url, "GET", "/b/big")
    assert status == 200
    assert len(body) == 8 * MB
    assert first < 0.1  # the headers are not held back, the body is paced
    assert total >= 8 / 40 * 0.95


def test_request_bodies_are_held_to_the_bandwidth_cap() -> None:
    profile = Profile(name="t", bandwidth=40 * MB)
    with _serve(profile) as srv:
        status, _, _, total = _request(srv.url, "PUT", "/b/up", b"u" * (4 * MB))
        assert srv.backend.buckets["b"].objects["up"].body.size == 4 * MB
    assert status == 200
    assert total >= 4 / 40 * 0.95


def test_the_cap_is_per_connection() -> None:
    profile = Profile(name="t", bandwidth=40 * MB)
    results: List[float] = []
    with _serve(profile) as srv:

        def fetch() -> None:
            status, body, _, total = _request(srv.url, "GET", "/b/big")
            assert status == 200
            assert len(body) == 8 * MB
            results.append(total)

        threads = [threading.Thread(target=fetch) for _ in range(3)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    one = 8 / 40
    assert len(results) == 3
    assert min(results) >= one * 0.95
    # one shared cap would need 3 x 0.2 s; separate caps finish together in ~0.2 s
    assert wall < 3 * one * 0.8


def test_slowdown_answers_503_at_the_set_rate() -> None:
    with _serve(Profile(name="t", slowdown_rate=1.0)) as srv:
        status, body, _, _ = _request(srv.url, "GET", "/b/small")
        put_status = _request(srv.url, "PUT", "/b/other", b"x" * 1000)[0]
        assert "other" not in srv.backend.buckets["b"].objects
    assert status == 503
    assert b"<Code>SlowDown</Code>" in body
    assert put_status == 503
    with _serve(Profile(name="t", slowdown_rate=0.3, seed=7)) as srv:
        statuses = [_request(srv.url, "GET", "/b/small")[0] for _ in range(60)]
    assert set(statuses) == {200, 503}
    assert 5 <= statuses.count(503) <= 35


def test_default_s3like_figures() -> None:
    assert (S3LIKE.latency, S3LIKE.jitter, S3LIKE.list_latency) == (0.02, 0.2, 0.04)
    assert S3LIKE.bandwidth == 90 * MB
    assert S3LIKE.slowdown_rate == 0
    with pytest.raises(ValueError, match="jitter"):
        Profile(jitter=1.5)


@pytest.mark.process
def test_server_process_serves_one_backend_on_a_plain_and_an_s3like_port() -> None:
    with ServerProcess(
        etag_mode="fast", extra_args=["--also-s3like", "--latency-ms", "60"]
    ) as srv:
        plain, s3like = srv.urls
        assert srv.url == plain
        assert _request(plain, "PUT", "/b")[0] == 200
        assert _request(plain, "PUT", "/b/k", b"v" * 10)[0] == 200
        status, body, first, _ = _request(s3like, "GET", "/b/k")
        assert (status, body) == (200, b"v" * 10)
        assert first >= 0.06 * 0.8 - 0.002
        assert _request(plain, "GET", "/b/k")[2] < 0.06 * 0.8


def test_cli_rejects_a_bad_profile_parameter() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.s3server", "--jitter", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "jitter must be in [0, 1)" in proc.stderr
