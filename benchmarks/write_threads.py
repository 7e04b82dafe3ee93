"""Which thread spends a 1 GiB ``S3Writer`` upload's client CPU, on both server profiles.

One bench server (``--fast-etag``, loopback and S3-like ports); in this process, one client per
profile writes 1 GiB in 8 MiB ``bytes`` slices (case 3's shape) ``--repeat`` times after a
warm-up, and prints per upload the rate, the process's CPU-s/GB and each thread's (from
``/proc/self/task/*/stat``, 10 ms ticks: the caller ``MainThread``, the event loop
``s3torch-async-io``, the CRC32 worker threads ``asyncio_N``) with its context switches, and
the load average. Settings come from the environment, read when the client opens (e.g.
``S3TORCH_ASYNC_CHECKSUM_TRAILER=1``; one process per setting: the sync client is shared
per configuration for the whole process). Run from the checkout to measure::

    PYTHONPATH=$PWD python -m benchmarks.write_threads --repeat 3
"""

from __future__ import annotations

import argparse
import collections
import os
import threading

from benchmarks.write_ab import payload_slices, timed_write

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, float, int]]:
    """Per live thread of this process: (name, CPU seconds, context switches)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/self/task/{tid}/status") as fh:
                status = fh.read().splitlines()
        except FileNotFoundError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        switches = sum(int(x.split()[1]) for x in status if "ctxt_switches" in x)
        out[int(tid)] = (names.get(int(tid), "?"), cpu, switches)
    return out


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.write_threads")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

    import boto3

    import s3torch_async
    from benchmarks.s3server import ServerProcess
    from s3torch_async._s3client import S3Client

    size = 1 << 30
    with ServerProcess(etag_mode="fast", extra_args=["--also-s3like"]) as server:
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="warm", Body=b"x")
        pieces = payload_slices(size, 8 << 20)
        for profile, url in zip(("loopback", "s3like"), server.urls):
            client = S3Client(
                "us-east-1",
                endpoint=url,
                s3client_config=s3torch_async.S3ClientConfig(force_path_style=True),
            )
            client.head_object("bench", "warm")
            timed_write(client, pieces[:3], "warm-up")
            for _ in range(args.repeat):
                before = thread_cpu()
                elapsed, cpu = timed_write(client, pieces)
                after = thread_cpu()
                per: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
                for tid, (name, seconds, switches) in after.items():
                    _, seconds0, switches0 = before.get(tid, (name, 0.0, 0))
                    group = "asyncio_N" if name.startswith("asyncio_") else name
                    per[group][0] += seconds - seconds0
                    per[group][1] += switches - switches0
                gb = size / 1e9
                threads = "  ".join(
                    f"{name}={v[0] / gb:.2f} ({v[1]:.0f} cs)"
                    for name, v in sorted(per.items())
                )
                print(
                    f"{profile:8} {size / elapsed / 1e6:6.0f} MB/s  {cpu / gb:.3f} "
                    f"CPU-s/GB  {threads}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
