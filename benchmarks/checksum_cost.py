"""Client CPU of checking whole reads against the full-object CRC32, on and off, side by side.

The benchmark server (``benchmarks.s3server``) neither stores nor returns checksums, so this
uses moto, in its own process (its CPU is not counted), which stores the CRC32 boto3 uploads
and reports it. Each repetition reads the same object once with
``AWS_RESPONSE_CHECKSUM_VALIDATION=when_supported`` (checked) and once with ``when_required``
(not checked), alternating, through ``S3Client.get_object(...).read()`` (the sequential reader:
parallel ranged GETs, the HEAD for the checksum, per-range CRC32s combined).

Usage::

    PYTHONPATH=. python -m benchmarks.checksum_cost --size-mib 512 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    code = (
        "import sys, time\n"
        "from moto.server import ThreadedMotoServer\n"
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
        "s.start()\n"
        "print('http://%s:%d' % s.get_host_and_port(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    return proc, url


def _read_once(
    url: str, bucket: str, key: str, validation: str
) -> tuple[float, float, int]:
    import asyncio

    from s3torch_async import AsyncS3Client

    os.environ["AWS_RESPONSE_CHECKSUM_VALIDATION"] = validation

    async def main() -> int:
        async with AsyncS3Client("us-east-1", endpoint=url) as client:
            data = await client.get_object(bucket, key).read()
            return len(data)

    cpu, wall = _cpu(), time.perf_counter()
    nbytes = asyncio.run(main())
    return _cpu() - cpu, time.perf_counter() - wall, nbytes


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    proc, url = _start_moto()
    try:
        import boto3

        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        bucket, key = f"bench-{uuid.uuid4().hex[:8]}", "object"
        s3.create_bucket(Bucket=bucket)
        body = os.urandom(args.size_mib << 20)
        s3.put_object(Bucket=bucket, Key=key, Body=body)  # stores a full-object CRC32
        del body
        print(f"load average before: {os.getloadavg()}")
        rows: dict[str, list[tuple[float, float]]] = {"checked": [], "unchecked": []}
        for _ in range(args.repeat):
            for label, setting in (
                ("checked", "when_supported"),
                ("unchecked", "when_required"),
            ):
                cpu, wall, nbytes = _read_once(url, bucket, key, setting)
                assert nbytes == args.size_mib << 20
                rows[label].append((cpu, wall))
                gb = nbytes / 1e9
                print(
                    f"{label:9s} cpu {cpu / gb:.3f} CPU-s/GB  wall {gb / wall:.2f} GB/s  "
                    f"load {os.getloadavg()[0]:.1f}"
                )
        gb = (args.size_mib << 20) / 1e9
        for label, values in rows.items():
            cpus = sorted(c for c, _ in values)
            print(f"median {label}: {cpus[len(cpus) // 2] / gb:.3f} CPU-s/GB")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
