"""Where a 1 GiB ``S3Writer`` upload spends the client's CPU: ``perf record`` around one write.

Starts a bench server (``--fast-etag``, loopback and S3-like ports); the client writes 1 GiB in
8 MiB ``bytes`` slices (case 3's shape) after a short warm-up write, with ``perf record -g``
attached for that timed write only, and prints the rate and the client's CPU seconds. Run
from the checkout to measure (``perf`` must be installed)::

    PYTHONPATH=$PWD python -m benchmarks.write_perf --out /tmp/after.data
    perf report -i /tmp/after.data --no-children --sort pid,dso,sym --stdio -g none

Results of this session: ``benchmarks/results/writegap-perf-client-{before,after}.txt``.

``--tool strace`` counts the client's system calls instead (``strace -c -f``, a text file) and
``--tool py-spy`` samples its Python stacks (py-spy's raw format), for the same write.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_CHILD = r"""
import sys
import s3torch_async
from s3torch_async._s3client import S3Client
from benchmarks.write_ab import payload_slices, timed_write

client = S3Client(
    "us-east-1",
    endpoint=sys.argv[1],
    s3client_config=s3torch_async.S3ClientConfig(force_path_style=True),
)
pieces = payload_slices(1 << 30, 8 << 20)
client.head_object("bench", "warm")
timed_write(client, pieces[:3], "warm-up")
print("go", flush=True)
sys.stdin.readline()
elapsed, cpu = timed_write(client, pieces)
print(f"{(1 << 30) / elapsed / 1e6:.0f} MB/s, client {cpu:.2f} CPU-s", flush=True)
sys.stdin.readline()
"""


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.write_perf")
    parser.add_argument("--out", required=True, help="perf.data file to write")
    parser.add_argument("--profile", choices=("loopback", "s3like"), default="loopback")
    parser.add_argument("--tool", choices=("perf", "strace", "py-spy"), default="perf")
    args = parser.parse_args()

    import boto3

    from benchmarks.s3server import ServerProcess

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with ServerProcess(etag_mode="fast", extra_args=["--also-s3like"]) as server:
        s3 = boto3.client("s3", endpoint_url=server.urls[0], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="warm", Body=b"x")
        url = server.urls[0 if args.profile == "loopback" else 1]
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        if child.stdout.readline().strip() != "go":
            raise SystemExit("the writer did not start")
        pid = str(child.pid)
        command = {
            "perf": ["perf", "record", "-g", "-F", "999", "-p", pid, "-o", args.out],
            "strace": ["strace", "-c", "-f", "-p", pid, "-o", args.out],
            "py-spy": [
                *("py-spy", "record", "--rate", "1000", "--format", "raw"),
                *("--threads", "--nonblocking", "-p", pid, "-o", args.out),
            ],
        }[args.tool]
        perf = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # perf attaches
        child.stdin.write("\n")
        child.stdin.flush()
        print(child.stdout.readline().strip())
        perf.send_signal(2)
        perf.wait()
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait()


if __name__ == "__main__":
    main()
