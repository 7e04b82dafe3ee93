"""Where a 1 GiB read's time goes: the sync sequential reader against ``AsyncS3Client``.

Starts the local S3 server (loopback and S3-like ports on the same data), uploads one object,
then per round reads it whole with each variant, on each profile, variants interleaved (order
reversed every other round), every read in a fresh process with a fresh client, as
``benchmarks.run`` does (one HEAD to warm the connection first):

* ``sync``: ``S3Client.get_object(..., S3ReaderConstructor.sequential()).read()`` (the case 1
  primary: the read runs on the runner's loop thread, the caller's thread waits);
* ``async``: ``await AsyncS3Client.get_object(...).read()`` on a loop in the calling thread;
* ``thread``: the same on a loop in another thread while the caller waits (the sync API's
  threading without its classes).

Per read it prints MB/s and the read's timeline, from probes around ``get_range_into`` and
the transport's ``open_get`` (a benchmark probe, patched on the classes so that the sync
client's core is seen too): when the first GET went out and its head came back, when the
read reached its widest, streams in flight per tenth of the read, the tail (last GET done
to the result in the caller's hands) and the GETs' sizes.

Run: ``PYTHONPATH=$PWD python -m benchmarks.seqread_timeline [--rounds 4]
[--profiles loopback,s3like] [--variants sync,async,thread] [--trees BASE,NEW]``
(``SEQREAD_DUMP=1`` also prints every GET)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

from benchmarks.read_micro import BUCKET, KEY, REGION, _boto3, _env
from benchmarks.s3server import ServerProcess
from s3torch_async import AsyncS3Client, S3ClientConfig
from s3torch_async._core import _lean
from s3torch_async._core import client as core_client

GETS: List[List[Any]] = []  # [task id, sent, head, done, nbytes]
_HEADS: Dict[int, float] = {}


def _install_probes() -> None:
    get_range_into = core_client.AsyncS3Client.get_range_into
    open_get = _lean.LeanTransport.open_get

    async def timed_open_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        body = await open_get(self, *args, **kwargs)
        _HEADS[id(asyncio.current_task())] = time.perf_counter()
        return body

    async def timed_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        task = id(asyncio.current_task())
        sent = time.perf_counter()
        meta = await get_range_into(self, *args, **kwargs)
        GETS.append(
            [task, sent, _HEADS.pop(task, sent), time.perf_counter(), meta.nbytes]
        )
        return meta

    core_client.AsyncS3Client.get_range_into = timed_get  # type: ignore[method-assign]
    _lean.LeanTransport.open_get = timed_open_get  # type: ignore[method-assign]


CPU: List[float] = []


def _cpu(begin: bool) -> None:
    """Record this process's CPU seconds (all threads) at the timed read's start or end."""
    if begin:
        CPU.clear()
    CPU.append(time.process_time())


def _config() -> S3ClientConfig:
    return S3ClientConfig(force_path_style=True)


def _sync(url: str) -> Callable[[], Tuple[float, float, int]]:
    from s3torch_async._s3client import S3Client
    from s3torch_async.s3reader import S3ReaderConstructor

    def read() -> Tuple[float, float, int]:
        client = S3Client(REGION, endpoint=url, s3client_config=_config())
        client.head_object(BUCKET, KEY)
        constructor = S3ReaderConstructor.sequential()
        _cpu(True)
        t0 = time.perf_counter()
        data = client.get_object(BUCKET, KEY, reader_constructor=constructor).read()
        t1 = time.perf_counter()
        _cpu(False)
        n = len(data)
        del data
        return t0, t1, n

    return read


def _async(url: str) -> Callable[[], Tuple[float, float, int]]:
    def read() -> Tuple[float, float, int]:
        loop = asyncio.new_event_loop()
        client = AsyncS3Client(REGION, endpoint=url, s3client_config=_config())
        box: List[Any] = []

        async def warm() -> None:
            await client.__aenter__()
            await client.head_object(BUCKET, KEY)

        async def go() -> None:
            reader = client.get_object(BUCKET, KEY)
            box.append(await reader.read())
            await reader.aclose()

        try:
            loop.run_until_complete(warm())
            _cpu(True)
            t0 = time.perf_counter()
            loop.run_until_complete(go())
            t1 = time.perf_counter()
            _cpu(False)
            n = len(box.pop())
            loop.run_until_complete(client.aclose())
        finally:
            loop.close()
        return t0, t1, n

    return read


def _thread(url: str) -> Callable[[], Tuple[float, float, int]]:
    """``_async``'s read on a loop in another thread, the caller waiting (as the sync API)."""
    import threading

    def read() -> Tuple[float, float, int]:
        out: List[Tuple[float, float, int]] = []
        worker = threading.Thread(target=lambda: out.append(_async(url)()))
        worker.start()
        worker.join()
        return out[0]

    return read


def _report(name: str, t0: float, t1: float, nbytes: int) -> float:
    gets = [g for g in GETS if g[1] >= t0 - 1e-3 and g[3] <= t1 + 1e-3]
    GETS.clear()
    total = t1 - t0
    rate = nbytes / total / 1e6
    if not gets:
        print(f"{name:16s} {rate:7.0f} MB/s (no GETs seen)", flush=True)
        return rate
    first = min(gets, key=lambda g: g[1])
    last_done = max(g[3] for g in gets)
    # The moment the most GETs were in flight, and how many.
    events = sorted([(g[1], 1) for g in gets] + [(g[3], -1) for g in gets])
    busy = widest = 0
    widest_at = t0
    for at, step in events:
        busy += step
        if busy > widest:
            widest, widest_at = busy, at
    # The tail: from the last moment the read had its widest count in flight to the end.
    busy = 0
    full_until = t0
    for at, step in events:
        busy += step
        if busy >= widest - 1:
            full_until = at
    tail_bytes = sum(
        g[4] * max(0.0, min(1.0, (g[3] - full_until) / max(g[3] - g[2], 1e-9)))
        for g in gets
        if g[3] > full_until
    )
    tenths = []
    for i in range(10):
        at = t0 + total * (i + 0.5) / 10
        tenths.append(sum(1 for g in gets if g[1] <= at < g[3]))
    by_sent = sorted(gets, key=lambda g: g[1])
    wave = by_sent[1 : min(len(by_sent), widest)]  # the GETs that widened the read
    wave_heads = sorted(g[2] for g in wave)
    mib = sorted({round(g[4] / 2**20, 2) for g in gets})
    waits = sorted(g[2] - g[1] for g in gets)
    bodies = sorted(g[4] / max(g[3] - g[2], 1e-9) / 1e6 for g in gets)
    stream_s = sum(g[3] - g[1] for g in gets)
    print(
        f"{name:16s} {rate:7.0f} MB/s  {total * 1e3:6.1f} ms  client"
        f" {(CPU[-1] - CPU[0]) / (nbytes / 1e9) if len(CPU) == 2 else 0:.2f} CPU-s/GB"
        f"  load {os.getloadavg()[0]:.2f}\n"
        f"   first GET sent {1e3 * (first[1] - t0):5.1f} ms, head {1e3 * (first[2] - t0):5.1f},"
        f" done {1e3 * (first[3] - t0):5.1f}; widest {widest} at"
        f" {1e3 * (widest_at - t0):5.1f} ms; last GET done {1e3 * (last_done - t0):6.1f} ms,"
        f" tail to the caller {1e3 * (t1 - last_done):5.1f} ms\n"
        + (
            f"   widening wave of {len(wave)}: sent {1e3 * (wave[0][1] - t0):5.1f}"
            f"-{1e3 * (wave[-1][1] - t0):5.1f} ms, heads {1e3 * (wave_heads[0] - t0):5.1f}"
            f"-{1e3 * (wave_heads[-1] - t0):5.1f} ms (median"
            f" {1e3 * (statistics.median(wave_heads) - t0):5.1f})\n"
            if wave
            else ""
        )
        + f"   tail: fewer than {widest - 1} in flight for the last"
        f" {1e3 * (t1 - full_until):5.1f} ms, which moved {tail_bytes / 2**20:5.1f} MiB"
        f" ({tail_bytes / max(t1 - full_until, 1e-9) / 1e6:5.0f} MB/s)\n"
        + f"   per GET: first byte ms p50 {1e3 * statistics.median(waits):.1f}"
        f" p90 {1e3 * waits[int(0.9 * len(waits))]:.1f}; body MB/s p10"
        f" {bodies[int(0.1 * len(bodies))]:.0f} p50 {statistics.median(bodies):.0f}\n"
        + f"   {len(gets)} GETs (MiB {mib[:6]}{'...' if len(mib) > 6 else ''}); mean streams"
        f" {stream_s / total:.1f}; per tenth {tenths}",
        flush=True,
    )
    if os.environ.get("SEQREAD_DUMP"):  # every GET: stream, MiB, sent, head, done (ms)
        streams: Dict[int, int] = {}
        for g in by_sent:
            print(
                f"   GET s{streams.setdefault(g[0], len(streams)):02d}"
                f" {g[4] / 2**20:5.2f} MiB sent {1e3 * (g[1] - t0):6.1f}"
                f" head {1e3 * (g[2] - t0):6.1f} done {1e3 * (g[3] - t0):6.1f}"
            )
    return rate


def _child(variant: str, profile: str, url: str, tree: str = "") -> float:
    """One read in a fresh process (the package from ``tree``, if given); print its report."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if tree:  # that tree's package, this tree's tool
        env["PYTHONPATH"] = os.pathsep.join([tree, here])
        env["SEQREAD_TOOL"] = here
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "--child", variant, url],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tree or None,  # ``-c`` puts the working directory first on sys.path
    ).stdout
    rate = 0.0
    for line in out.splitlines():
        if line.startswith("RATE "):
            rate = float(line.split()[1])
        else:
            label = f"{variant}@{profile}" + (
                f"[{os.path.basename(tree)}]" if tree else ""
            )
            print(line.replace(variant, label, 1), flush=True)
    return rate


# Runs this file's main() as the child, whatever tree the package is imported from.
_CHILD = (
    "import os, runpy, sys\n"
    "tool = os.environ.get('SEQREAD_TOOL', os.getcwd())\n"
    "sys.argv = ['seqread_timeline'] + sys.argv[1:]\n"
    "runpy.run_path(os.path.join(tool, 'benchmarks', 'seqread_timeline.py'),"
    " run_name='__main__')\n"
)


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seqread_timeline")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profiles", default="loopback,s3like")
    parser.add_argument("--variants", default="sync,async")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument(
        "--trees",
        default="",
        help="comma-separated source trees (e.g. git archive of a base commit): each"
        " variant runs once per tree, interleaved, the package imported from that tree",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _env()
    if args.child:
        _install_probes()
        variant, url = args.child
        t0, t1, n = {"sync": _sync, "async": _async, "thread": _thread}[variant](url)()
        print("RATE", _report(variant, t0, t1, n), flush=True)
        return
    with ServerProcess(extra_args=["--also-s3like"]) as server:
        urls = {"loopback": server.urls[0], "s3like": server.urls[1]}
        setup = _boto3(server.urls[0])
        setup.create_bucket(Bucket=BUCKET)
        payload = os.urandom(1 << 20) * args.size_mib
        setup.upload_fileobj(io.BytesIO(payload), BUCKET, KEY)
        del payload
        trees = args.trees.split(",") if args.trees else [""]
        plan = [
            (variant, profile, tree)
            for profile in args.profiles.split(",")
            for variant in args.variants.split(",")
            for tree in trees
        ]
        rates: Dict[Tuple[str, str, str], List[float]] = {}
        for r in range(args.rounds):
            for variant, profile, tree in plan if r % 2 == 0 else plan[::-1]:
                rates.setdefault((variant, profile, tree), []).append(
                    _child(variant, profile, urls[profile], tree)
                )
        print("medians:")
        for (variant, profile, tree), xs in rates.items():
            print(
                f"  {variant}@{profile} {tree}: {statistics.median(xs):.0f} MB/s"
                f" ({', '.join(f'{x:.0f}' for x in xs)})"
            )
        if len(trees) == 2:  # the same rounds, seconds apart: paired ratios
            for (variant, profile, tree), xs in rates.items():
                if tree != trees[1]:
                    continue
                base = rates[(variant, profile, trees[0])]
                pairs = [b / a for a, b in zip(base, xs)]
                print(
                    f"  {variant}@{profile} {os.path.basename(trees[1])} /"
                    f" {os.path.basename(trees[0])}: median {statistics.median(pairs):.3f}"
                    f" (per round {', '.join(f'{x:.2f}' for x in pairs)})"
                )
        for variant in args.variants.split(","):
            for tree in trees:
                lo = rates.get((variant, "loopback", tree))
                s3 = rates.get((variant, "s3like", tree))
                if lo and s3:
                    ratios = [b / a for a, b in zip(lo, s3)]
                    print(
                        f"  {variant} {tree}: S3-like / loopback"
                        f" {statistics.median(s3) / statistics.median(lo):.2f}"
                        f" (per round {', '.join(f'{x:.2f}' for x in ratios)})"
                    )


if __name__ == "__main__":
    main()
