"""Micro benchmark: a burst of new connections to an endpoint given by name (``--host localhost``).

A dataset's prefetch window opens ~100-250 connections within milliseconds. Each child process
(one per checkout and round, interleaved) listens on 127.0.0.1 with a large backlog (the kernel
completes the handshakes; nothing accepts, so the server costs nothing), opens ``--conns``
connections at once with ``HTTPPool.preconnect("http://localhost:PORT", N)``, and reports the
wall time until all are up and the process CPU it took, median over ``--repeat`` fresh pools.
``localhost`` resolves from /etc/hosts here, the cheapest possible lookup; a real S3 name costs a
DNS query per lookup unless a local cache answers.

Run: ``PYTHONPATH=$PWD python -m benchmarks.connect_burst --roots OLD,$PWD [--conns 128]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List

_CHILD = "--child"


async def _burst(host: str, port: int, conns: int) -> tuple[float, float]:
    from s3torch_async._core._http import HTTPPool

    pool = HTTPPool(limit=conns, connect_timeout=10, read_timeout=10)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        started = pool.preconnect(f"http://{host}:{port}", conns)
        assert started == conns, started
        await asyncio.gather(*pool._warming)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        opened = sum(len(h.idle) for h in pool._hosts.values())
        assert opened == conns, opened
    finally:
        await pool.aclose()
    return wall, cpu


def _child(host: str, conns: int, repeat: int) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        port = listener.getsockname()[1]
        walls, cpus = [], []
        for _ in range(repeat):
            wall, cpu = asyncio.run(_burst(host, port, conns))
            walls.append(wall)
            cpus.append(cpu)
    print(
        json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus)})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--roots", required=True, help="checkouts to compare, comma-separated"
    )
    parser.add_argument("--conns", type=int, default=128)
    parser.add_argument(
        "--host", default="localhost", help="name or address of 127.0.0.1"
    )
    parser.add_argument("--repeat", type=int, default=5, help="bursts per child")
    parser.add_argument("--rounds", type=int, default=5, help="children per checkout")
    parser.add_argument(_CHILD, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.host, args.conns, args.repeat)
        return
    roots = [os.path.abspath(r) for r in args.roots.split(",")]
    got: Dict[str, List[dict]] = {r: [] for r in roots}
    for _ in range(args.rounds):
        for root in roots:
            env = {**os.environ, "PYTHONPATH": root}
            out = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(
                        __file__
                    ),  # this file; the package from the checkout
                    "--roots",
                    root,
                    "--host",
                    args.host,
                    "--conns",
                    str(args.conns),
                    "--repeat",
                    str(args.repeat),
                    _CHILD,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            got[root].append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"{args.conns} connections to localhost at once, medians of {args.rounds} children"
    )
    print(f"{'checkout':<40} {'wall ms':>9} {'CPU ms':>9}")
    for root, runs in got.items():
        wall = statistics.median(r["wall"] for r in runs) * 1e3
        cpu = statistics.median(r["cpu"] for r in runs) * 1e3
        print(f"{root:<40} {wall:9.1f} {cpu:9.1f}")


if __name__ == "__main__":
    main()
