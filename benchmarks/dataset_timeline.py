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
* per DataLoader worker (by the item's worker pid): first and last item handed out.

Run (``--roots`` takes several checkouts to compare, e.g. an old tree from ``git archive``)::

    PYTHONPATH=$PWD python -m benchmarks.dataset_timeline --roots $PWD --workers 0,2 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

_CHILD = "--child"


def _stamp(reader: Any) -> Tuple[int, int, float]:
    # The benchmark's transform (read the whole object) plus who handed it out, and when.
    return len(reader.read()), os.getpid(), time.monotonic()


def _child(url: str, workers: int) -> None:
    started = time.monotonic()
    from torch.utils.data import DataLoader

    from s3torch_async import S3ClientConfig
    from s3torch_async.s3iterable_dataset import S3IterableDataset

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
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    items: List[Tuple[float, int, float]] = []
    for _size, pid, handed in loader:
        items.append((time.monotonic(), pid, handed))
    del loader
    done = time.monotonic()
    print(
        json.dumps(
            {
                "started": started,
                "imported": imported,
                "built": built,
                "done": done,
                "items": items,
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
        steps.append(f"{n * 20}:{_in_flight(gets, at)}/{delivered}")
    print("   in flight/delivered every 20 ms: " + " ".join(steps))


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
        "--dump", type=int, default=0, help="print each run's first N requests"
    )
    args = parser.parse_args()
    roots = [r for r in args.roots.split(",") if r]
    workers = [int(w) for w in args.workers.split(",")]
    profiles = args.profiles.split(",")

    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    handle, trace_path = tempfile.mkstemp(suffix=".jsonl")
    os.close(handle)
    os.environ["S3SERVER_TRACE"] = trace_path
    results: Dict[Tuple[str, int, str], List[Dict[str, float]]] = {}
    with ServerProcess(extra_args=["--also-s3like"]) as server:
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        body = os.urandom(args.size)
        for i in range(args.count):
            s3.put_object(Bucket="bench", Key=f"small/{i:06d}", Body=body)
        urls = dict(zip(("loopback", "s3like"), server.urls))
        for rep in range(args.repeat):
            for profile in profiles:
                for w in workers:
                    for root in roots:
                        out = subprocess.run(
                            [
                                sys.executable,
                                os.path.abspath(__file__),
                                _CHILD,
                                urls[profile],
                                str(w),
                            ],
                            env={**os.environ, "PYTHONPATH": root},
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        time.sleep(0.2)  # let the trace lines land
                        run = json.loads(out.stdout.splitlines()[-1])
                        with open(trace_path) as f:
                            trace = [json.loads(line) for line in f]
                        ms = _report(run, trace)
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


if __name__ == "__main__":
    main()
