r"""Where a part of a 1 GiB ``S3Writer`` upload waits: client timestamps against the server's.

Starts a bench server (``--fast-etag``, loopback and S3-like ports) with its request trace on
(``S3SERVER_TRACE``), writes 1 GiB in 8 MiB ``bytes`` slices (case 3's shape) after a short
warm-up, and times each UploadPart on the client by wrapping the writer's part task and the
connection's request start (measurement only; the same monotonic clock as the server's trace).
Prints, per part, the medians and p90 of:

* a part done to the first part task started after it (the writer's turnaround);
* task start to request head written (checksum, signing, a connection);
* head written to the server's handler (the server's event loop reaching the request);
* the server's handler to its answer (latency, body, bandwidth model);
* the server's answer to the part's task done (the answer's way back).

Run from the checkout to measure::

    PYTHONPATH=$PWD python -m benchmarks.write_turnaround --profile s3like
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from typing import Any, Dict, List


def _quantiles(values: List[float]) -> str:
    values = sorted(values)
    if not values:
        return "-"
    return (
        f"median {values[len(values) // 2]:6.1f} ms  p90 "
        f"{values[int(len(values) * 0.9)]:6.1f} ms  max {values[-1]:6.1f} ms"
    )


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.write_turnaround")
    parser.add_argument("--profile", choices=("loopback", "s3like"), default="s3like")
    parser.add_argument("--gbps", type=float, default=0.0, help="throughput target")
    parser.add_argument(
        "--server-args", default="", help="extra bench server arguments"
    )
    args = parser.parse_args()

    import boto3

    import s3torch_async
    from benchmarks.s3server import ServerProcess
    from benchmarks.write_ab import payload_slices, timed_write
    from s3torch_async._core import _http
    from s3torch_async._core import writer as writer_module
    from s3torch_async._s3client import S3Client

    heads: Dict[int, float] = {}  # part number -> head written
    tasks: Dict[int, float] = {}
    done: Dict[int, float] = {}
    start = _http._Conn.start

    def timed_start(self: Any, data: bytes, head_method: bool) -> None:
        found = re.search(rb"partNumber=(\d+)", data[:200])
        if found:
            heads[int(found.group(1))] = time.monotonic()
        start(self, data, head_method)

    upload_part = writer_module.AsyncS3Writer._upload_part

    async def timed_part(self: Any, number: int, *rest: Any) -> None:
        tasks[number] = time.monotonic()
        try:
            await upload_part(self, number, *rest)
        finally:
            done[number] = time.monotonic()

    _http._Conn.start = timed_start  # type: ignore[method-assign]
    writer_module.AsyncS3Writer._upload_part = timed_part  # type: ignore[method-assign]

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    trace = os.path.join(tempfile.mkdtemp(prefix="write-turnaround-"), "trace.jsonl")
    os.environ["S3SERVER_TRACE"] = trace
    extra = ["--also-s3like", *args.server_args.split()]
    with ServerProcess(etag_mode="fast", extra_args=extra) as server:
        os.environ.pop("S3SERVER_TRACE", None)
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        url = server.urls[0 if args.profile == "loopback" else 1]
        config = s3torch_async.S3ClientConfig(
            force_path_style=True,
            **({"throughput_target_gbps": args.gbps} if args.gbps else {}),
        )
        client = S3Client("us-east-1", endpoint=url, s3client_config=config)
        pieces = payload_slices(1 << 30, 8 << 20)
        timed_write(client, pieces[:3], "warm-up")
        for table in (heads, tasks, done):
            table.clear()
        began = time.monotonic()
        elapsed, cpu = timed_write(client, pieces)
        load = os.getloadavg()[0]
        time.sleep(0.2)  # the trace's last lines
    with open(trace) as fh:
        rows = [json.loads(line) for line in fh]
    parts = sorted(
        (r for r in rows if "partNumber" in r["query"] and r["arrived"] >= began),
        key=lambda r: r["arrived"],
    )
    # The trace does not name the part: pair the server's arrivals with the client's heads
    # in time order (each head reaches the server after it was written).
    by_head = sorted(heads, key=heads.__getitem__)
    served = dict(zip(by_head, parts))
    frees = sorted(done.values())
    print(
        f"{(1 << 30) / elapsed / 1e6:.0f} MB/s, client {cpu:.2f} CPU-s, load {load:.1f}, "
        f"{len(parts)} parts"
    )
    turnaround = []
    ordered_tasks = sorted(tasks.values())
    for freed in frees:
        later = [t for t in ordered_tasks if t >= freed]
        if later:
            turnaround.append((later[0] - freed) * 1e3)
    rows_out = [
        ("part done -> next part's task", turnaround),
        (
            "task start -> head written",
            [(heads[n] - tasks[n]) * 1e3 for n in heads if n in tasks],
        ),
        (
            "head written -> server handler",
            [(r["arrived"] - heads[n]) * 1e3 for n, r in served.items()],
        ),
        (
            "server handler -> answer",
            [(r["answered"] - r["arrived"]) * 1e3 for r in served.values()],
        ),
        (
            "server answer -> part done",
            [(done[n] - r["answered"]) * 1e3 for n, r in served.items() if n in done],
        ),
    ]
    for label, values in rows_out:
        print(f"  {label:32} {_quantiles(values)}")


if __name__ == "__main__":
    main()
