"""Client CPU per object of case 2, loopback vs S3-like, for several checkouts side by side.

Case 2 (2,000 x 128 KiB objects from a prefix) costs the client more CPU per object on the
S3-like profile than on loopback (more GETs in flight, more connections). This starts one
bench server serving the same objects on a loopback port and an S3-like port, then runs the
case in a fresh process per (round, profile, client, checkout), interleaved, and prints for
each run: objects/s, the process's CPU (user+sys) per object over the run (client start
included, as the harness counts it), the garbage collector's time, and counts per GET from
the transport: connections opened, socket reads into a body or the receive buffer
(``buffer_updated``), the loop's timer handles scheduled.

Clients: ``async`` (``AsyncS3Dataset``, no sync bridge) and ``iter`` (``S3IterableDataset``,
``num_workers=0``). ``--profile-out DIR`` also writes a cProfile of each run (first round) as
a text top-N (``<client>-<profile>-<n>.txt``), ``--pstats`` keeps the raw stats too.

Run::

    PYTHONPATH=$PWD python -m benchmarks.get_cpu --roots /tmp/base,$PWD --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

_CHILD = "--child"


def _usage() -> Tuple[float, float, int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt, r.ru_nvcsw


class _Counts:
    """Counts calls of a few transport methods (wrapped on the class, in this child only)."""

    def __init__(self) -> None:
        self.n: Dict[str, int] = {}

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        counts = self.n
        counts[label] = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[label] += 1
            return original(*args, **kwargs)

        setattr(owner, name, counted)


def _instrument() -> _Counts:
    counts = _Counts()
    from s3torch_async._core import _http

    conn = _http._Conn
    counts.wrap(conn, "connection_made", "connects")
    counts.wrap(conn, "buffer_updated", "reads")
    base = asyncio.base_events.BaseEventLoop
    counts.wrap(base, "call_at", "timers")
    counts.wrap(base, "create_task", "tasks")
    counts.wrap(base, "_run_once", "loops")
    return counts


def _child(url: str, client: str, prof: str, count_calls: bool) -> None:
    started = time.monotonic()
    from s3torch_async import S3ClientConfig

    if client == "iter":
        from s3torch_async.s3iterable_dataset import S3IterableDataset
    else:
        from s3torch_async.async_dataset import AsyncS3Dataset
    counts = _instrument() if count_calls else None
    gc_time = [0.0, 0]
    gc_start = [0.0]

    def on_gc(phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_start[0]
            gc_time[1] += 1

    config = S3ClientConfig(force_path_style=True)
    gc.collect()
    gc.callbacks.append(on_gc)
    run: Callable[[], int]
    if client == "iter":

        def run() -> int:
            dataset = S3IterableDataset.from_prefix(
                "s3://bench/small/",
                region="us-east-1",
                endpoint=url,
                transform=lambda r: len(r.read()),
                s3client_config=config,
            )
            return sum(1 for _ in dataset)

    else:

        async def go() -> int:
            n = 0
            async with AsyncS3Dataset.from_prefix(
                "s3://bench/small/",
                region="us-east-1",
                endpoint=url,
                s3client_config=config,
            ) as ds:
                async for obj in ds:
                    n += len(obj.data) > 0
            return n

        def run() -> int:
            return asyncio.run(go())

    profiler = None
    if prof:
        import cProfile

        profiler = cProfile.Profile()
    u0, t0 = _usage(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    n = run()
    if profiler is not None:
        profiler.disable()
    u1, t1 = _usage(), time.monotonic()
    gc.callbacks.remove(on_gc)
    if profiler is not None:
        import pstats

        if prof.endswith(".pstats"):
            profiler.dump_stats(prof)
        with open(prof.removesuffix(".pstats") + ".txt", "w") as f:
            stats = pstats.Stats(profiler, stream=f)
            stats.sort_stats("tottime").print_stats(45)
            stats.sort_stats("cumulative").print_stats(45)
    out: Dict[str, Any] = {
        "n": n,
        "wall": t1 - t0,
        "cpu": u1[0] - u0[0] + u1[1] - u0[1],
        "sys": u1[1] - u0[1],
        "faults": u1[2] - u0[2],
        "vcsw": u1[3] - u0[3],
        "gc_ms": gc_time[0] * 1e3,
        "gcs": gc_time[1],
        "import": t0 - started,
    }
    if counts is not None:
        out.update(counts.n)
    print(json.dumps(out))


def main() -> None:
    """CLI entry point."""
    if len(sys.argv) == 6 and sys.argv[1] == _CHILD:
        _child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1")
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.get_cpu")
    parser.add_argument("--roots", required=True, help="comma-separated checkouts")
    parser.add_argument("--clients", default="async,iter")
    parser.add_argument("--profiles", default="loopback,s3like")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128 * 1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--calls",
        action="store_true",
        help="count connects, socket reads, timers, tasks (costs a little CPU itself)",
    )
    parser.add_argument("--profile-out", default="", help="cProfile text per run here")
    parser.add_argument("--pstats", action="store_true")
    args = parser.parse_args()
    roots = [r for r in args.roots.split(",") if r]
    clients = args.clients.split(",")
    profiles = args.profiles.split(",")

    from benchmarks._servers import small_objects_server

    results: Dict[Tuple[str, str, int], List[Dict[str, float]]] = {}
    with small_objects_server(args.count, args.size) as urls:
        for rep in range(args.repeat):
            for profile in profiles:
                for client in clients:
                    for r, root in enumerate(roots):
                        prof = ""
                        if args.profile_out and rep == 0:
                            os.makedirs(args.profile_out, exist_ok=True)
                            prof = os.path.join(
                                args.profile_out, f"{client}-{profile}-{r}"
                            )
                            if args.pstats:
                                prof += ".pstats"
                        out = subprocess.run(
                            [
                                sys.executable,
                                os.path.abspath(__file__),
                                _CHILD,
                                urls[profile],
                                client,
                                prof,
                                "1" if args.calls else "0",
                            ],
                            env={**os.environ, "PYTHONPATH": root},
                            capture_output=True,
                            text=True,
                            check=False,
                        )
                        if out.returncode:
                            print(out.stderr, file=sys.stderr)
                            raise SystemExit(out.returncode)
                        run = json.loads(out.stdout.splitlines()[-1])
                        n = run["n"]
                        ms = {
                            "obj_s": n / run["wall"],
                            "cpu_ms_obj": run["cpu"] * 1e3 / n,
                            "sys_ms_obj": run["sys"] * 1e3 / n,
                            "faults_obj": run["faults"] / n,
                            "vcsw": run["vcsw"],
                            "gc_ms": run["gc_ms"],
                            "gcs": run["gcs"],
                        }
                        for k in ("connects", "reads", "timers", "tasks", "loops"):
                            if k in run:
                                ms[k + "_per_obj"] = run[k] / n
                        ms["load"] = os.getloadavg()[0]
                        results.setdefault((profile, client, r), []).append(ms)
                        print(
                            f"{rep} {profile:8} {client:5} {root}: "
                            + " ".join(f"{k}={v:.3f}" for k, v in ms.items()),
                            flush=True,
                        )
    print("\nmedians:")
    for (profile, client, r), runs in results.items():
        med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        print(
            f"{profile:8} {client:5} {roots[r]}: "
            + " ".join(f"{k}={v:.3f}" for k, v in med.items())
        )


if __name__ == "__main__":
    main()
