"""Measure one timed callable: wall time, CPU, peak RSS, server CPU and requests.

CPU covers all threads of the worker and its reaped children (DataLoader workers); requests are
counted where the client's HTTP stack allows a cheap hook.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from ._model import Outcome

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` (all its threads), from ``/proc``.

    Raises:
        OSError: The process does not exist or ``/proc`` is unavailable.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def current_rss() -> int:
    """Resident set size of this process in bytes (0 where ``/proc`` is unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return 0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``); return whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def peak_rss() -> int:
    """This process's peak RSS in bytes since start or the last :func:`reset_peak_rss`.

    Read from ``VmHWM``: ``ru_maxrss`` also remembers the RSS of the process image *before*
    ``exec`` (the forked runner's), which would hide the worker's own peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _maxrss_bytes(resource.RUSAGE_SELF)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class RequestCounter:
    """Counts HTTP requests sent through aiohttp, urllib3 (botocore's) and our own HTTP client.

    The CRT (s3torchconnector) and obstore's Rust stack cannot be hooked cheaply; their count
    stays ``None``.
    """

    def __init__(self) -> None:
        self.count = 0
        self.hooked: List[str] = []
        self._lock = threading.Lock()
        self._undo: List[Tuple[Any, str, Any]] = []

    def install(self) -> None:
        """Wrap the request methods of aiohttp and urllib3, where installed.

        Imported here, before the baseline RSS is taken, so that clients which only import
        their HTTP stack inside the timed run are counted too.
        """
        if importlib.util.find_spec("aiohttp") is not None:
            import aiohttp

            original = aiohttp.ClientSession._request

            async def counted_request(session: Any, *args: Any, **kwargs: Any) -> Any:
                self._tick()
                return await original(session, *args, **kwargs)

            self._patch(aiohttp.ClientSession, "_request", counted_request, "aiohttp")
        if importlib.util.find_spec("s3torch_async") is not None:
            from s3torch_async._core._http import HTTPPool

            original_http = HTTPPool.request

            async def counted_http(pool: Any, *args: Any, **kwargs: Any) -> Any:
                self._tick()
                return await original_http(pool, *args, **kwargs)

            self._patch(HTTPPool, "request", counted_http, "s3torch_async")
        if importlib.util.find_spec("urllib3") is not None:
            from urllib3.connectionpool import HTTPConnectionPool

            original_urlopen = HTTPConnectionPool.urlopen

            def counted_urlopen(pool: Any, *args: Any, **kwargs: Any) -> Any:
                self._tick()
                return original_urlopen(pool, *args, **kwargs)

            self._patch(HTTPConnectionPool, "urlopen", counted_urlopen, "urllib3")

    def _tick(self) -> None:
        with self._lock:  # boto3's transfer threads count concurrently
            self.count += 1

    def _patch(self, owner: Any, name: str, replacement: Any, label: str) -> None:
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)
        self.hooked.append(label)

    def uninstall(self) -> None:
        """Restore the original methods."""
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


@dataclass
class Measurement:
    """Raw figures of one timed run."""

    wall_s: float
    cpu_s: float
    cpu_self_s: float
    cpu_children_s: float
    peak_rss_bytes: int
    baseline_rss_bytes: int
    children_peak_rss_bytes: int
    peak_rss_reset: bool
    server_cpu_s: Optional[float]
    requests: Optional[int]
    outcome: Outcome


def measure(
    run: Callable[[], Outcome],
    *,
    server_pid: Optional[int] = None,
    count_requests: bool = True,
) -> Measurement:
    """Time ``run()`` and collect the resource figures around it."""
    counter = RequestCounter()
    if count_requests:
        counter.install()
    gc.collect()
    baseline = current_rss()
    was_reset = reset_peak_rss()
    server0 = _server_cpu(server_pid)
    self0, child0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        outcome = run()
        wall = time.perf_counter() - t0
    finally:
        counter.uninstall()
    self1, child1 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    server1 = _server_cpu(server_pid)
    peak = peak_rss()
    return Measurement(
        wall_s=wall,
        cpu_s=(self1 - self0) + (child1 - child0),
        cpu_self_s=self1 - self0,
        cpu_children_s=child1 - child0,
        peak_rss_bytes=peak,
        baseline_rss_bytes=baseline,
        children_peak_rss_bytes=_maxrss_bytes(resource.RUSAGE_CHILDREN),
        peak_rss_reset=was_reset,
        server_cpu_s=(
            None if server0 is None or server1 is None else server1 - server0
        ),
        requests=counter.count if counter.hooked else None,
        outcome=outcome,
    )


def _server_cpu(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return None
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return None
