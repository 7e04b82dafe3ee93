"""Case 7, cold start: a fresh process's first call, until the first object's bytes are in hand.

What every spawn/forkserver DataLoader worker (and every short-lived job) pays before its
first object. Each measurement is a fresh ``python -c`` process with the worker's environment
(hermetic credentials, no config files): torch is imported first (untimed, as in a DataLoader
worker, unless the run says ``--no-torch-baseline``), then the client library is imported
(``import_ms``), then the first call runs until the object's bytes are in hand (``first_ms``,
the figure the case reports); ``cpu_ms`` is the child's CPU over both (all its threads). Bytecode is written and one untimed start warms it and the page
cache first, as for an installed package.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from typing import Callable, Dict, Tuple

from .._data import payload
from .._model import Job, Outcome

#: The object every variant reads (laid out by ``_layout``); seed 7.
SEED = 7

# (import, first call) per client: the call must leave the object's bytes in ``data``.
_SCRIPTS: Dict[str, Tuple[str, str]] = {
    "s3torch_async.S3Client": (
        "from s3torch_async._s3client import S3Client\n"
        "from s3torch_async import S3ClientConfig",
        "client = S3Client(REGION, endpoint=ENDPOINT, "
        "s3client_config=S3ClientConfig(force_path_style=True))\n"
        "data = client.get_object(BUCKET, KEY).read()",
    ),
    "s3torch_async.S3MapDataset": (
        "from s3torch_async import S3MapDataset, S3ClientConfig",
        "ds = S3MapDataset.from_objects([f's3://{BUCKET}/{KEY}'], region=REGION, "
        "endpoint=ENDPOINT, s3client_config=S3ClientConfig(force_path_style=True))\n"
        "data = ds[0].read()",
    ),
    "s3torchconnector.S3Client": (
        "from s3torchconnector._s3client import S3Client\n"
        "from s3torchconnector import S3ClientConfig",
        "client = S3Client(REGION, endpoint=ENDPOINT, "
        "s3client_config=S3ClientConfig(force_path_style=True))\n"
        "data = client.get_object(BUCKET, KEY).read()",
    ),
    "boto3": (
        "import boto3",
        "s3 = boto3.client('s3', region_name=REGION, endpoint_url=ENDPOINT)\n"
        "data = s3.get_object(Bucket=BUCKET, Key=KEY)['Body'].read()",
    ),
    "obstore": (
        "import obstore\nfrom obstore.store import S3Store",
        "kw = {} if ENDPOINT is None else dict(endpoint=ENDPOINT, "
        "allow_http=ENDPOINT.startswith('http://'), virtual_hosted_style_request=False)\n"
        "store = S3Store(BUCKET, region=REGION, **kw)\n"
        "data = bytes(obstore.get(store, KEY).bytes())",
    ),
}


def script(client: str, job: Job) -> str:
    """The child program for ``client``: prints one JSON line with its figures."""
    imports, call = _SCRIPTS[client]
    torch = "import torch\n" if job.import_torch else ""
    return (
        f"import hashlib, json, time\n{torch}"
        f"REGION, ENDPOINT = {job.target.region!r}, {job.target.endpoint!r}\n"
        f"BUCKET, KEY = {job.target.bucket!r}, {job.keys.cold_object!r}\n"
        "t0, c0 = time.perf_counter(), time.process_time()\n"
        f"{imports}\n"
        "t1 = time.perf_counter()\n"
        f"{call}\n"
        "t2, c2 = time.perf_counter(), time.process_time()\n"
        "print(json.dumps({'import_ms': (t1 - t0) * 1e3, 'first_ms': (t2 - t1) * 1e3,"
        " 'cpu_ms': (c2 - c0) * 1e3, 'nbytes': len(data),"
        " 'sha256': hashlib.sha256(data).hexdigest()}))\n"
    )


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode
    return env


def _start(code: str) -> Dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"cold-start child failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    result: Dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def first_byte(job: Job, client: str) -> Callable[[], Outcome]:
    """Case 7: one fresh process, import then first call to the first object's bytes."""
    code = textwrap.dedent(script(client, job))
    _start(code)  # untimed: writes bytecode, warms the page cache

    def run() -> Outcome:
        figures = _start(code)
        size = job.sizes.small_size

        def check() -> None:
            expected = hashlib.sha256(payload(size, SEED)).hexdigest()
            if (figures["nbytes"], figures["sha256"]) != (size, expected):
                raise AssertionError(
                    f"the child read {figures['nbytes']} bytes that differ from the object"
                )

        return Outcome(
            nbytes=int(figures["nbytes"]),
            nobjects=1,
            check=check,
            extra={
                "import_ms": figures["import_ms"],
                "first_ms": figures["first_ms"],
                "cpu_ms": figures["cpu_ms"],
            },
        )

    return run
