"""Where case 2's time goes: a timeline per run from the server's request trace.

Case 2 (``S3IterableDataset.from_prefix`` over 2,000 x 128 KiB objects through a ``DataLoader``)
lasts well under a second, so its fixed costs (client start, worker start, the listing pages, the
prefetch window's ramp, the tail) weigh a lot. This starts one bench server serving the same
objects on a loopback port and an S3-like port, with ``S3SERVER_TRACE`` on, and runs the case in a
fresh process per (profile, num_workers, checkout), as the harness does. For each run it prints,
on one monotonic clock (server and client run on the same machine):

* the phases: process start -> dataset built -> first LIST sent/answered -> first GET sent ->
  first item in the training loop -> last GET answered -> last item -> loop done; and the first
  GET sent and the first item counted from the first page's answer (``*_after_page1``), which
  the S3-like page latency's jitter does not move;
* GETs in flight at 10, 20, 40, 80 ms after the first GET, and the most at once;
* per DataLoader worker (by the item's worker pid): first and last item handed out;
* at the end, per checkout and ``num_workers``: the S3-like rate over the loopback rate, and
  the bound that the S3-like first item's extra wait (listing page and first byte) alone puts
  on that ratio; the difference is what the prefetch window's ramp and steady state lose.

Run (``--roots`` takes several checkouts to compare, e.g. an old tree from ``git archive``)::

    PYTHONPATH=$PWD python -m benchmarks.dataset_timeline --roots $PWD --workers 0,2 --repeat 3
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

_CHILD = "--child"
#: Directory the child writes its per-process client records to (``--stalls``).
_CLIENT_TRACE = "DATASET_TIMELINE_CLIENT_TRACE"
#: Set (``--log``): the child prints the prefetch window's decisions (DEBUG log) to stderr.
_CLIENT_LOG = "DATASET_TIMELINE_CLIENT_LOG"


def _stamp(reader: Any) -> Tuple[int, int, float]:
    # The benchmark's transform (read the whole object) plus who handed it out, and when.
    return len(reader.read()), os.getpid(), time.monotonic()


def _instrument(out_dir: str) -> None:
    """Record, per process, each prefetch GET's start and end and each batch handed out.

    For ``--stalls``: the records go to ``out_dir/<pid>.json`` when the pipeline closes (a
    DataLoader worker leaves with ``os._exit``, so an exit hook would not run).
    """
    from s3torch_async._core import _http, prefetch

    fetches: List[Tuple[str, float, float]] = []
    sends: List[Tuple[str, float]] = []
    start = _http._Conn.start

    def timed_start(self: Any, data: bytes, head_method: bool) -> None:
        start(self, data, head_method)
        sends.append(
            (data[: data.find(b" HTTP/")].decode().split(" ")[-1], time.monotonic())
        )

    batches: List[Tuple[float, int, int]] = []
    fetch = prefetch.ObjectFetcher.fetch
    next_batch = prefetch.Prefetcher.next_batch
    aclose = prefetch.Prefetcher.aclose

    async def timed_fetch(self: Any, item: Any) -> Any:
        began = time.monotonic()
        try:
            return await fetch(self, item)
        finally:
            fetches.append((item.key, began, time.monotonic()))

    async def timed_batch(self: Any, max_items: int) -> Any:
        batch = await next_batch(self, max_items)
        batches.append(
            (time.monotonic(), len(batch), self.max_items, getattr(self, "hedges", 0))
        )
        return batch

    def dump() -> None:
        path = os.path.join(out_dir, f"{os.getpid()}.json")
        with open(path, "w") as f:
            json.dump({"fetches": fetches, "batches": batches, "sends": sends}, f)

    async def close_and_dump(self: Any) -> None:
        await aclose(self)
        dump()

    prefetch.ObjectFetcher.fetch = timed_fetch  # type: ignore[method-assign]
    _http._Conn.start = timed_start  # type: ignore[method-assign]
    prefetch.Prefetcher.next_batch = timed_batch  # type: ignore[method-assign]
    prefetch.Prefetcher.aclose = close_and_dump  # type: ignore[method-assign]


def _child(url: str, workers: int) -> None:
    started = time.monotonic()
    from torch.utils.data import DataLoader

    samples: List[Tuple[float, float]] = []
    if os.environ.get(_CLIENT_TRACE):
        _instrument(os.environ[_CLIENT_TRACE])

        def sample() -> None:
            # this process's CPU every 2 ms: busy (CPU-bound) or idle (waiting) at a stall
            while True:
                samples.append((time.monotonic(), time.process_time()))
                time.sleep(0.002)

        threading.Thread(target=sample, daemon=True).start()

    from s3torch_async import S3ClientConfig
    from s3torch_async.s3iterable_dataset import S3IterableDataset

    if os.environ.get(_CLIENT_LOG):
        import logging

        class _Since(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                at = (time.monotonic() - built) * 1e3 if built else 0.0
                return f"  [{os.getpid()} {at:7.1f} ms] {record.getMessage()}"

        built = 0.0
        handler = logging.StreamHandler()
        handler.setFormatter(_Since())
        window_log = logging.getLogger("s3torch_async._core.prefetch")
        window_log.addHandler(handler)
        window_log.setLevel(logging.DEBUG)

    gc.collect()  # as the harness does before each timed run
    imported = time.monotonic()
    dataset = S3IterableDataset.from_prefix(
        "s3://bench/small/",
        region="us-east-1",
        endpoint=url,
        transform=_stamp,
        s3client_config=S3ClientConfig(force_path_style=True),
        enable_sharding=workers > 0,
    )
    built = time.monotonic()
    cpu_built = time.process_time()
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    items: List[Tuple[float, int, float]] = []
    for _size, pid, handed in loader:
        items.append((time.monotonic(), pid, handed))
    del loader
    done = time.monotonic()
    cpu_done = time.process_time()
    print(
        json.dumps(
            {
                "started": started,
                "imported": imported,
                "built": built,
                "done": done,
                "items": items,
                "cpu": cpu_done - cpu_built,
                "samples": samples[:],
            }
        )
    )


def _in_flight(gets: List[Dict[str, Any]], at: float) -> int:
    return sum(1 for g in gets if g["arrived"] <= at < g["answered"])


def _report(run: Dict[str, Any], trace: List[Dict[str, Any]]) -> Dict[str, float]:
    t0 = run["built"]
    reqs = [r for r in trace if run["started"] <= r["arrived"] <= run["done"]]
    lists = sorted(
        (r for r in reqs if "list-type" in r["query"]), key=lambda r: r["arrived"]
    )
    gets = sorted(
        (r for r in reqs if r["method"] == "GET" and "list-type" not in r["query"]),
        key=lambda r: r["arrived"],
    )
    items = run["items"]
    ms: Dict[str, float] = {
        "import": (run["imported"] - run["started"]) * 1e3,  # and gc.collect()
        "build": (run["built"] - run["imported"]) * 1e3,
    }
    if lists:
        ms["list1_sent"] = (lists[0]["arrived"] - t0) * 1e3
        ms["list1_answered"] = (lists[0]["answered"] - t0) * 1e3
        ms["lists"] = len(lists)
    if gets:
        first = gets[0]["arrived"]
        ms["get1_sent"] = (first - t0) * 1e3
        if lists:
            # From the first page's answer on: free of the page latency's jitter (S3-like).
            ms["get1_after_page1"] = (first - lists[0]["answered"]) * 1e3
            ms["item1_after_page1"] = (items[0][0] - lists[0]["answered"]) * 1e3
        ms["gets"] = len(gets)
        ms["last_get_answered"] = (max(g["answered"] for g in gets) - t0) * 1e3
        for after in (0.01, 0.02, 0.04, 0.08):
            ms[f"inflight@{int(after * 1e3)}ms"] = _in_flight(gets, first + after)
        ms["inflight_max"] = max(_in_flight(gets, g["arrived"]) for g in gets)
        ms["connections"] = len({g["port"] for g in reqs})
    ms["item1"] = (items[0][0] - t0) * 1e3
    ms["last_item"] = (items[-1][0] - t0) * 1e3
    ms["done"] = (run["done"] - t0) * 1e3
    ms["rate_obj_s"] = len(items) / (run["done"] - run["imported"])
    # CPU of this process (the consumer and, with num_workers 0, the client) from built to done
    ms["cpu_ms"] = run.get("cpu", 0.0) * 1e3
    pids = sorted({pid for _, pid, _ in items})
    if len(pids) > 1:
        for n, pid in enumerate(pids):
            mine = [handed for _, p, handed in items if p == pid]
            ms[f"w{n}_first"] = (mine[0] - t0) * 1e3
            ms[f"w{n}_last"] = (mine[-1] - t0) * 1e3
    return ms


def _series(run: Dict[str, Any], trace: List[Dict[str, Any]]) -> None:
    t0 = run["built"]
    gets = [
        r
        for r in trace
        if run["started"] <= r["arrived"] <= run["done"]
        and r["method"] == "GET"
        and "list-type" not in r["query"]
    ]
    done = [i[0] for i in run["items"]]
    steps = []
    for n in range(int((run["done"] - t0) / 0.02) + 1):
        at = t0 + 0.02 * n
        delivered = sum(1 for d in done if d <= at)
        step = f"{n * 20}:{_in_flight(gets, at)}/{delivered}"
        cpu = _cpu_share(run.get("samples", []), at - 0.02, at)
        steps.append(step if cpu is None else f"{step}/{cpu:.0%}")
    print(
        "   in flight/delivered[/client CPU share of the 20 ms before] every 20 ms: "
        + " ".join(steps)
    )


def _client_series(
    run: Dict[str, Any], clients: Dict[int, Dict[str, Any]], step: float = 0.01
) -> None:
    """Per consumer process: window, GETs in flight, fetched not handed, handed, CPU share."""
    t0 = run["built"]
    handed: Dict[int, List[float]] = {}
    for _, pid, at in run["items"]:
        handed.setdefault(pid, []).append(at)
    for pid, times in handed.items():
        record = clients.get(pid)
        if record is None:
            continue
        fetches = record["fetches"]
        batches = record["batches"]
        samples = run.get("samples", []) if len(handed) == 1 else []
        out = []
        for n in range(int((run["done"] - t0) / step) + 1):
            at = t0 + step * n
            flying = sum(1 for f in fetches if f[1] <= at < f[2])
            fetched = sum(1 for f in fetches if f[2] <= at)
            gone = bisect.bisect_right(times, at)
            window = next((b[2] for b in reversed(batches) if b[0] <= at), 0)
            cpu = _cpu_share(samples, at - step, at)
            out.append(
                f"{round(n * step * 1e3)}:{window}/{flying}/{fetched - gone}/{gone}"
                + ("" if cpu is None else f"/{cpu:.0%}")
            )
        print(
            f"   pid {pid} window/GETs in flight/fetched not handed/handed[/CPU]: "
            + " ".join(out)
        )


def _cpu_share(
    samples: List[Tuple[float, float]], start: float, end: float
) -> Optional[float]:
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    return (inside[-1][1] - inside[0][1]) / max(inside[-1][0] - inside[0][0], 1e-9)


def _stalls(
    run: Dict[str, Any],
    trace: List[Dict[str, Any]],
    clients: Dict[int, Dict[str, Any]],
    stall_ms: float,
    show: bool,
) -> Dict[str, float]:
    """Each gap of more than ``stall_ms`` between two items one consumer handed out.

    For the item that ended the gap (the head of the line), its GET's spans: client fetch
    start -> request written ("write": pool, connect, the client's loop) -> server arrival
    ("send": the server's accept and parse queue),
    arrival -> answer ("server": the profile's latency, 16-24 ms on S3-like, plus the server's
    own queue), answer -> client fetch end ("recv"), fetch end -> handed out ("hand": the
    pipeline, the runner, the consumer). ``behind`` counts later items of that consumer whose
    GET had finished when the gap began (held back by the head), ``window`` the window size at
    the batch before.
    """
    t0 = run["built"]
    served = {
        r["path"]: r
        for r in trace
        if run["started"] <= r["arrived"] <= run["done"] and "path" in r
    }
    handed: Dict[int, List[float]] = {}
    for _, pid, at in run["items"]:
        handed.setdefault(pid, []).append(at)
    out = {"stalls": 0.0, "stall_ms": 0.0, "hedges": 0.0}
    causes = ("write", "send", "server", "recv", "hand")
    for cause in causes:
        out[f"stall_{cause}_ms"] = 0.0
    for pid, times in handed.items():
        record = clients.get(pid)
        if record is None:
            continue
        fetches = sorted(record["fetches"])  # listing order = this consumer's order
        batches = record["batches"]
        written = dict(reversed(record.get("sends", [])))
        if batches and len(batches[-1]) > 3:
            out["hedges"] += batches[-1][3]
        # every GET: fetch start -> request written (pool, connect, a burst on the loop)
        waits = sorted(
            written[f"/bench/{k}"] - b
            for k, b, _ in fetches
            if f"/bench/{k}" in written
        )
        if waits:
            out["write_p90_ms"] = waits[int(0.9 * (len(waits) - 1))] * 1e3
            out["write_max_ms"] = waits[-1] * 1e3
            out["writes_over_5ms"] = float(sum(1 for w in waits if w > 0.005))
        for n in range(1, min(len(times), len(fetches))):
            gap = times[n] - times[n - 1]
            if gap * 1e3 <= stall_ms:
                continue
            key, began, ended = fetches[n]
            req = served.get(f"/bench/{key}")
            if req is None:
                continue
            wrote = written.get(f"/bench/{key}", began)
            spans = {
                "write": wrote - began,
                "send": req["arrived"] - wrote,
                "server": req["answered"] - req["arrived"],
                "recv": ended - req["answered"],
                "hand": times[n] - ended,
            }
            behind = sum(1 for f in fetches[n + 1 :] if f[2] <= times[n - 1])
            window = next((b[2] for b in reversed(batches) if b[0] <= times[n - 1]), 0)
            out["stalls"] += 1
            out["stall_ms"] += gap * 1e3
            cpu = _cpu_share(run.get("samples", []), times[n - 1], times[n])
            if cpu is not None:
                out["stall_idle_ms"] = out.get("stall_idle_ms", 0.0) + gap * 1e3 * max(
                    0.0, 1 - cpu
                )
            # the span that exceeds its quiet value most takes the blame for the gap
            excess = {
                "write": spans["write"] - 0.001,
                "send": spans["send"] - 0.001,
                "server": spans["server"] - 0.026,
                "recv": spans["recv"] - 0.001,
                "hand": spans["hand"] - 0.002,
            }
            cause = max(excess, key=lambda c: excess[c])
            out[f"stall_{cause}_ms"] += gap * 1e3
            if show:
                print(
                    f"   stall pid {pid} item {n} ({key}) at"
                    f" {(times[n - 1] - t0) * 1e3:6.1f} ms for {gap * 1e3:5.1f} ms:"
                    f" fetch began {(began - t0) * 1e3:6.1f} "
                    + " ".join(f"{c}={spans[c] * 1e3:.1f}" for c in causes)
                    + f" behind={behind} window={window}"
                    + ("" if cpu is None else f" cpu={cpu:.0%}")
                    + f" -> {cause}"
                )
    return out


def _idle(
    run: Dict[str, Any],
    trace: List[Dict[str, Any]],
    clients: Dict[int, Dict[str, Any]],
) -> Dict[str, float]:
    """Where the client process was idle (num_workers 0), by what the next item waited on.

    Between two CPU samples (2 ms apart) the process was idle for ``dt x (1 - CPU share)``;
    that idle time goes to the stage the next item to hand out was in at the midpoint:
    ``unstarted`` (its GET not begun: window full or source not there), ``write`` (begun, its
    request not yet written: connection, the client's loop), ``send`` (written, not yet at the
    server's handler: the server's accept and parse queue), ``server`` (in the handler: latency and server queue),
    ``recv`` (answered, the client's fetch not finished), ``hand`` (fetched, not handed out).
    ``server`` splits by whether at least 16 items behind the next one had finished
    (``server_hol``: head-of-line blocking) or not (``server_win``: too few in flight).
    Counted from the first page's answer, so the listing's latency is not in it.
    """
    out: Dict[str, float] = {}
    samples = run.get("samples") or []
    pids = {pid for _, pid, _ in run["items"]}
    if len(pids) != 1 or len(samples) < 2:
        return out
    record = clients.get(pids.pop())
    if record is None:
        return out
    served = {r["path"]: r for r in trace if "path" in r}
    fetches = sorted(record["fetches"])
    times = [handed for _, _, handed in run["items"]]
    lists = sorted(
        (
            r
            for r in trace
            if "list-type" in r["query"] and r["arrived"] >= run["built"]
        ),
        key=lambda r: r["arrived"],
    )
    begin = lists[0]["answered"] if lists else run["built"]
    ends = sorted(f[2] for f in fetches)
    written = dict(reversed(record.get("sends", [])))
    stages = ("unstarted", "write", "send", "server_hol", "server_win", "recv", "hand")
    for stage in stages:
        out[f"idle_{stage}_ms"] = 0.0
    n = 0
    for (t1, c1), (t2, c2) in zip(samples, samples[1:]):
        if t1 < begin or t2 > run["done"] or t2 <= t1:
            continue
        idle = max(0.0, (t2 - t1) - (c2 - c1))
        mid = (t1 + t2) / 2
        while n < len(times) and times[n] <= mid:
            n += 1
        if n >= len(fetches):
            continue
        key, began, ended = fetches[n]
        req = served.get(f"/bench/{key}")
        if began > mid:
            stage = "unstarted"
        elif written.get(f"/bench/{key}", mid) > mid:
            stage = "write"
        elif req is None or req["arrived"] > mid:
            stage = "send"
        elif req["answered"] > mid:
            done_behind = bisect.bisect_right(ends, mid) - n
            stage = "server_hol" if done_behind >= 16 else "server_win"
        elif ended > mid:
            stage = "recv"
        else:
            stage = "hand"
        out[f"idle_{stage}_ms"] += idle * 1e3
    out["idle_ms"] = sum(out[f"idle_{stage}_ms"] for stage in stages)
    return out


def _dump(run: Dict[str, Any], trace: List[Dict[str, Any]], count: int) -> None:
    t0 = run["built"]
    reqs = sorted(
        (r for r in trace if run["started"] <= r["arrived"] <= run["done"]),
        key=lambda r: r["arrived"],
    )
    for r in reqs[:count]:
        kind = "LIST" if "list-type" in r["query"] else r["method"]
        print(
            f"   {kind:4} port {r['port']}: sent {(r['arrived'] - t0) * 1e3:7.1f} ms,"
            f" answered {(r['answered'] - t0) * 1e3:7.1f} ms"
        )


def main() -> None:
    """CLI entry point."""
    if len(sys.argv) == 4 and sys.argv[1] == _CHILD:
        _child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataset_timeline")
    parser.add_argument("--roots", required=True, help="comma-separated checkouts")
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--profiles", default="loopback,s3like")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128 * 1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--series", action="store_true", help="print GETs in flight every 20 ms"
    )
    parser.add_argument(
        "--log",
        action="store_true",
        help="print the prefetch window's decisions (ms after the dataset is built)",
    )
    parser.add_argument(
        "--dump", type=int, default=0, help="print each run's first N requests"
    )
    parser.add_argument(
        "--stalls",
        type=float,
        default=0.0,
        metavar="MS",
        help="record the client's GETs and report every gap of more than MS ms between"
        " two items (and which span of the head item's GET made it)",
    )
    parser.add_argument(
        "--quiet-stalls",
        action="store_true",
        help="with --stalls: only the per-run totals, not one line per stall",
    )
    args = parser.parse_args()
    roots = [r for r in args.roots.split(",") if r]
    workers = [int(w) for w in args.workers.split(",")]
    profiles = args.profiles.split(",")

    from benchmarks._servers import small_objects_server

    handle, trace_path = tempfile.mkstemp(suffix=".jsonl")
    os.close(handle)
    os.environ["S3SERVER_TRACE"] = trace_path
    results: Dict[Tuple[str, int, str], List[Dict[str, float]]] = {}
    with small_objects_server(args.count, args.size) as urls:
        for rep in range(args.repeat):
            for profile in profiles:
                for w in workers:
                    for root in roots:
                        env = {**os.environ, "PYTHONPATH": root}
                        client_dir = ""
                        if args.stalls:
                            client_dir = tempfile.mkdtemp(prefix="timeline-")
                            env[_CLIENT_TRACE] = client_dir
                        if args.log:
                            env[_CLIENT_LOG] = "1"
                        out = subprocess.run(
                            [
                                sys.executable,
                                os.path.abspath(__file__),
                                _CHILD,
                                urls[profile],
                                str(w),
                            ],
                            env=env,
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        if args.log:
                            print(out.stderr.rstrip(), flush=True)
                        time.sleep(0.2)  # let the trace lines land
                        run = json.loads(out.stdout.splitlines()[-1])
                        with open(trace_path) as f:
                            trace = [json.loads(line) for line in f]
                        ms = _report(run, trace)
                        if client_dir:
                            clients = {}
                            for name in os.listdir(client_dir):
                                with open(os.path.join(client_dir, name)) as f:
                                    clients[int(name.split(".")[0])] = json.load(f)
                            shutil.rmtree(client_dir)
                            ms.update(
                                _stalls(
                                    run,
                                    trace,
                                    clients,
                                    args.stalls,
                                    not args.quiet_stalls,
                                )
                            )
                            ms.update(_idle(run, trace, clients))
                            if args.series:
                                _client_series(run, clients)
                        if args.series:
                            _series(run, trace)
                        if args.dump:
                            _dump(run, trace, args.dump)
                        ms["load"] = os.getloadavg()[0]
                        results.setdefault((profile, w, root), []).append(ms)
                        print(
                            f"{rep} {profile:8} w{w} {root}: "
                            + " ".join(f"{k}={v:.1f}" for k, v in ms.items()),
                            flush=True,
                        )
    os.unlink(trace_path)
    print("\nmedians (ms after the dataset is built; counts; obj/s):")
    for (profile, w, root), runs in results.items():
        keys = [k for k in runs[0] if all(k in r for r in runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        print(
            f"{profile:8} w{w} {root}:\n  "
            + " ".join(f"{k}={v:.1f}" for k, v in med.items())
        )
    _print_bounds(results)


def _print_bounds(results: Dict[Tuple[str, int, str], List[Dict[str, float]]]) -> None:
    """S3-like over loopback rate, next to the best the first item's extra wait allows.

    The S3-like profile's first listing page and first GET cost a fixed wait the loopback run
    does not pay (``item1`` later by ``delta``). A run that paid only that and then kept
    loopback's pace would finish at ``loopback done + delta``: that ratio is the bound; the
    gap between it and the measured ratio is the window's ramp and the steady state.
    """
    meds: Dict[Tuple[str, int, str], Dict[str, float]] = {}
    for key, runs in results.items():
        meds[key] = {
            k: statistics.median(r[k] for r in runs)
            for k in ("done", "item1", "rate_obj_s")
            if all(k in r for r in runs)
        }
    lines = []
    for (profile, w, root), s3 in meds.items():
        loop = meds.get(("loopback", w, root))
        if profile != "s3like" or not loop or len(s3) < 3 or len(loop) < 3:
            continue
        delta = s3["item1"] - loop["item1"]
        bound = loop["done"] / max(loop["done"] + delta, 1e-9)
        ratio = s3["rate_obj_s"] / max(loop["rate_obj_s"], 1e-9)
        lines.append(
            f"  w{w} {root}: ratio {ratio:.2f}; first item later by {delta:.1f} ms,"
            f" bound {bound:.2f} (ramp and steady state: {bound - ratio:+.2f})"
        )
    if lines:
        print(
            "\nS3-like / loopback rate, and the bound of the first item's extra wait:"
        )
        print("\n".join(lines))


if __name__ == "__main__":
    main()
