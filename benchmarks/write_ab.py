r"""Case 3 (one large object written) for several writers side by side, interleaved.

A change to the write path is judged on a shared, loaded machine by running the old and the
new code (and the reference connector) alternately against one server, each run in a fresh
process, so load drifts hit all alike. One bench server (``--fast-etag``, as the harness
uses) serves the same bucket on a loopback port and an S3-like port. Run::

    PYTHONPATH=$PWD:/tmp/h7peers python -m benchmarks.write_ab \
        --roots /tmp/old,$PWD --reference --repeat 3

Each writer is ``S3Client.put_object`` fed 8 MiB slices of a 1 GiB payload (case 3's
shape), on both profiles unless ``--profile`` picks one. The payload is one ``bytes`` (whole
parts of it are sent uncopied) unless ``--input bytearray`` makes it mutable (every byte is
copied into part buffers, as for ``torch.save``'s writes); ``--chunk-kib`` sets smaller slices. Every run prints MB/s, the client's
CPU-s/GB, the server's CPU-s and the load average; medians per profile and writer follow.
``--trace DIR`` makes the server log every request (``S3SERVER_TRACE``) to
``DIR/requests.jsonl`` and lists each run's monotonic start and end in ``DIR/runs.txt``, for
counting connections and parts in flight. ``--server-args`` reshapes the S3-like port (e.g. a
slower link per connection: ``--server-args=--bandwidth-mbps=30``). ``--ceiling 16,32`` adds
``benchmarks.write_ceiling`` with that many connections: a writer that costs next to nothing,
whose rate is the most this server lets any writer reach on this machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

from benchmarks._measure import process_cpu_seconds

_CHILD = "--child"
_REFERENCE = "s3torchconnector"
#: ``ceiling:<connections>``: benchmarks.write_ceiling, the server's own limit.
_CEILING = "ceiling:"


def _child(
    package: str, url: str, size: int, chunk: int, gbps: float, kind: str = "bytes"
) -> None:
    # Runs with PYTHONPATH set to one checkout: only that checkout's package is imported.
    import importlib

    if package.startswith(_CEILING):
        from benchmarks.write_ceiling import timed_upload

        connections = int(package[len(_CEILING) :])
        elapsed, cpu = timed_upload(url, size, chunk, connections)
        print(f"{size / elapsed / 1e6:.1f} {cpu / (size / 1e9):.3f}")
        return

    pkg = importlib.import_module(package)
    client = importlib.import_module(f"{package}._s3client").S3Client(
        "us-east-1",
        endpoint=url,
        s3client_config=pkg.S3ClientConfig(
            force_path_style=True, **({"throughput_target_gbps": gbps} if gbps else {})
        ),
    )
    pieces = payload_slices(size, chunk, kind)
    client.head_object("bench", "warm")  # client start-up is not what we measure
    elapsed, cpu = timed_write(client, pieces)
    print(f"{size / elapsed / 1e6:.1f} {cpu / (size / 1e9):.3f}")


def payload_slices(size: int, chunk: int, kind: str = "bytes") -> list[memoryview]:
    """``size`` random bytes as ``chunk``-byte slices of one ``bytes`` (case 3's input).

    ``kind="bytearray"``: slices of one ``bytearray`` instead (mutable: writers copy them).
    """
    data = os.urandom(size)
    view = memoryview(bytearray(data) if kind == "bytearray" else data)
    return [view[i : i + chunk] for i in range(0, size, chunk)]


def timed_write(
    client: Any, pieces: List[memoryview], key: str = "written"
) -> Tuple[float, float]:
    """Write ``pieces`` to ``bench/<key>`` with ``put_object``: (seconds, CPU-s used)."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    writer = client.put_object("bench", key)
    for piece in pieces:
        writer.write(piece)
    writer.close()
    elapsed = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return elapsed, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def _print_traces(directory: str) -> None:
    """Per run, from the server's trace: connections, parts in flight, part times."""
    import json

    with open(os.path.join(directory, "requests.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    with open(os.path.join(directory, "runs.txt")) as fh:
        runs = [line.split() for line in fh]
    print("server trace (UploadPart requests: arrival of the head to the answer):")
    for began, ended, profile, label in runs:
        parts = [
            r
            for r in rows
            if float(began) <= r["arrived"] <= float(ended)
            and "partNumber" in r["query"]
        ]
        if not parts:
            continue
        events = sorted(
            [(r["arrived"], 1) for r in parts] + [(r["answered"], -1) for r in parts]
        )
        busy = most = area = 0.0
        last = events[0][0]
        for at, step in events:
            area += busy * (at - last)
            last, busy = at, busy + step
            most = max(most, busy)
        span = events[-1][0] - events[0][0]
        times = sorted(r["answered"] - r["arrived"] for r in parts)
        print(
            f"  {profile:8} {label}  connections {len({r['port'] for r in parts})}  "
            f"in flight: most {most:.0f}, mean {area / span:.1f}  part ms: median "
            f"{times[len(times) // 2] * 1e3:.0f}, p90 {times[int(len(times) * 0.9)] * 1e3:.0f}"
        )


def main() -> None:
    """CLI entry point."""
    if len(sys.argv) == 8 and sys.argv[1] == _CHILD:
        _child(
            *sys.argv[2:4],
            int(sys.argv[4]),
            int(sys.argv[5]),
            float(sys.argv[6]),
            sys.argv[7],
        )
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.write_ab")
    parser.add_argument("--roots", default="", help="comma-separated checkouts")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also run s3torchconnector (must be importable from PYTHONPATH)",
    )
    parser.add_argument(
        "--profile", choices=("loopback", "s3like", "both"), default="both"
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument(
        "--chunk-kib", type=int, default=0, help="slice size in KiB (overrides MiB)"
    )
    parser.add_argument(
        "--input",
        choices=("bytes", "bytearray"),
        default="bytes",
        help="what the payload's slices view: one bytes (default) or one bytearray",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gbps",
        default="",
        help="comma-separated throughput_target_gbps values to run each root with "
        "(default: the configuration's default)",
    )
    parser.add_argument(
        "--ceiling",
        default="",
        help="comma-separated connection counts: also run benchmarks.write_ceiling, a "
        "client that costs next to nothing, to show the server's own limit",
    )
    parser.add_argument("--trace", help="directory for per-run server request traces")
    parser.add_argument(
        "--server-args",
        default="",
        help="extra bench server arguments, e.g. '--bandwidth-mbps=30 --latency-ms=50' "
        "(they shape the S3-like port)",
    )
    args = parser.parse_args()
    targets = [float(g) for g in args.gbps.split(",") if g] or [0.0]
    writers: List[Tuple[str, str, float]] = [
        ("s3torch_async", os.path.abspath(r), g)
        for r in args.roots.split(",")
        if r
        for g in targets
    ]
    if args.reference:
        writers.append((_REFERENCE, os.environ.get("PYTHONPATH", ""), 0.0))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    writers += [(f"{_CEILING}{n}", here, 0.0) for n in args.ceiling.split(",") if n]
    if not writers:
        parser.error("give --roots, --reference and/or --ceiling")

    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    trace = os.path.join(args.trace, "requests.jsonl") if args.trace else None
    if args.trace:
        os.makedirs(args.trace, exist_ok=True)
        os.environ["S3SERVER_TRACE"] = trace  # type: ignore[assignment]
    extra = ["--also-s3like", *args.server_args.split()]
    with ServerProcess(etag_mode="fast", extra_args=extra) as server:
        os.environ.pop("S3SERVER_TRACE", None)
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="warm", Body=b"x")
        profiles = list(zip(("loopback", "s3like"), server.urls))
        if args.profile != "both":
            profiles = [p for p in profiles if p[0] == args.profile]
        results: Dict[Tuple[str, str], List[Tuple[float, float, float]]] = {}
        for rep in range(args.repeat):
            for profile, url in profiles:
                for package, root, gbps in writers:
                    label = root if package == "s3torch_async" else package
                    if gbps:
                        label += f"@{gbps:g}Gbps"
                    server_cpu = process_cpu_seconds(server.pid)
                    began = time.monotonic()
                    out = subprocess.run(
                        [
                            sys.executable,
                            os.path.abspath(__file__),
                            _CHILD,
                            package,
                            url,
                            str(args.size_mib << 20),
                            str((args.chunk_kib << 10) or (args.chunk_mib << 20)),
                            str(gbps),
                            args.input,
                        ],
                        env={**os.environ, "PYTHONPATH": root},
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if out.returncode:
                        print(out.stderr, file=sys.stderr)
                        raise SystemExit(f"{label} failed on {profile}")
                    server_cpu = process_cpu_seconds(server.pid) - server_cpu
                    rate, cpu = (float(x) for x in out.stdout.split()[-2:])
                    results.setdefault((profile, label), []).append(
                        (rate, cpu, server_cpu)
                    )
                    load = os.getloadavg()[0]
                    print(
                        f"{rep} {profile:8} {label}  {rate:7.1f} MB/s  "
                        f"{cpu:.2f} CPU-s/GB  server {server_cpu:.2f} CPU-s  "
                        f"load {load:.1f}",
                        flush=True,
                    )
                    if args.trace:
                        with open(os.path.join(args.trace, "runs.txt"), "a") as fh:
                            fh.write(f"{began} {time.monotonic()} {profile} {label}\n")
    if args.trace:
        _print_traces(args.trace)
    print("medians (MB/s, client CPU-s/GB, server CPU-s):")
    for (profile, label), values in results.items():
        rates = [v[0] for v in values]
        print(
            f"  {profile:8} {label}  {statistics.median(rates):7.1f}  "
            f"{statistics.median(v[1] for v in values):.2f}  "
            f"{statistics.median(v[2] for v in values):.2f}  "
            f"[{', '.join(f'{r:.0f}' for r in rates)}]"
        )


if __name__ == "__main__":
    main()
