"""Peak memory of a DCP load of one large tensor, s3torch-async beside s3torchconnector.

Case 6 saves many 16 MiB tensors, so a load's memory there is bounded by the fetch window
whatever the reader does with an item. Here the checkpoint is one tensor of ``--size``: a
reader that holds an item's bytes (or builds a second tensor with ``torch.load``) grows by
a multiple of it; one that streams into the destination grows by its fetch window only.

The local fast S3 server runs in its own process; each load runs in a fresh process, which
first allocates and touches the destination, then reports its peak RSS growth over that, the
load time, and whether every value arrived.

Run: ``python -m benchmarks.dcp_load_rss [--size 512MiB] [--clients s3torch-async,s3torchconnector]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from ._model import parse_size
from ._servers import hermetic_env
from .s3server import ServerProcess

_PACKAGES = {"s3torch-async": "s3torch_async", "s3torchconnector": "s3torchconnector"}
_BUCKET = "dcp-load-rss"


def _storage(package: str, url: str, reader: bool) -> tuple[object, object]:
    dcp = importlib.import_module(f"{package}.dcp")
    config = importlib.import_module(package).S3ClientConfig(force_path_style=True)
    client_cls = importlib.import_module(f"{package}._s3client").S3Client
    constructor = importlib.import_module(
        f"{package}.s3reader"
    ).S3ReaderConstructor.dcp_optimized()
    uri = f"s3://{_BUCKET}/{package}"
    kwargs: dict[str, object] = {
        "s3_client": client_cls("us-east-1", endpoint=url, s3client_config=config)
    }
    if reader:
        storage = dcp.S3StorageReader(
            "us-east-1", uri, s3client_config=config, reader_constructor=constructor
        )
        kwargs["reader_constructor"] = constructor
    else:
        storage = dcp.S3StorageWriter("us-east-1", uri, s3client_config=config)
    storage.fs = dcp.S3FileSystem("us-east-1", **kwargs)  # the endpoint under test
    return storage, uri


def _child(package: str, url: str, size: int, mode: str) -> None:
    import torch
    from torch.distributed.checkpoint.state_dict_loader import load
    from torch.distributed.checkpoint.state_dict_saver import save

    count = size // 4
    if mode == "save":
        writer, _ = _storage(package, url, reader=False)
        save({"w": torch.arange(count, dtype=torch.float32)}, storage_writer=writer)
        return
    dest = {"w": torch.ones(count)}  # resident before the load starts
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader, _ = _storage(package, url, reader=True)
    started = time.perf_counter()
    load(dest, storage_reader=reader)
    seconds = time.perf_counter() - started
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    ok = torch.equal(dest["w"], torch.arange(count, dtype=torch.float32))
    print(json.dumps({"seconds": seconds, "growth_mib": growth / 1024, "ok": ok}))


def main() -> None:
    """Parse the arguments and run the loads (or, with ``--child``, one save or load)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512MiB", help="tensor size (default 512MiB)")
    parser.add_argument("--clients", default="s3torch-async,s3torchconnector")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("PACKAGE", "URL", "MODE"))
    args = parser.parse_args()
    size = parse_size(args.size)
    if args.child:
        _child(args.child[0], args.child[1], size, args.child[2])
        return
    clients = [c for c in args.clients.split(",") if c]
    env = hermetic_env(True)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)

    def run(package: str, url: str, mode: str) -> str:
        cmd = [sys.executable, "-m", "benchmarks.dcp_load_rss", "--size", args.size]
        cmd += ["--child", package, url, mode]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    with ServerProcess(etag_mode="fast") as server:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=_BUCKET)
        for client in clients:
            run(_PACKAGES[client], server.url, "save")
        print(f"load of one {args.size} tensor; load average {os.getloadavg()[0]:.1f}")
        for round_ in range(args.repeat):
            for client in clients:
                result = json.loads(run(_PACKAGES[client], server.url, "load"))
                print(
                    f"[{round_ + 1}] {client:18s} {result['seconds']:6.2f} s  "
                    f"peak RSS growth {result['growth_mib']:7.0f} MiB  "
                    f"values {'ok' if result['ok'] else 'WRONG'}"
                )


if __name__ == "__main__":
    main()
