"""Issue 16 (readlat): the sync sequential read on loopback, new plan against the base's.

In one process against one server, 6 rounds of: the new plan, the base's plan, the new plan
with only the quarter-part probe back, and with only whole-part GETs back (toggles from
readlat-inproc-ab.py). Run from the branch's root:
``PYTHONPATH=$PWD python benchmarks/results/readlat-seq-ab.py``.
"""

import importlib, io, os, sys, time

sys.argv = [sys.argv[0], "peer", "loopback", "0", "unsized"]
import runpy

g = runpy.run_path("benchmarks/results/readlat-inproc-ab.py", run_name="x")
rm = g["rm"]
mode = g["_mode"]
R = g["R"]
import s3torch_async._core._planning as P
from benchmarks.s3server import ServerProcess

rm._env()
from s3torch_async._s3client import S3Client
from s3torch_async import S3ClientConfig
from s3torch_async.s3reader import S3ReaderConstructor

res = {}
with ServerProcess(extra_args=["--also-s3like"]) as server:
    setup = rm._boto3(server.urls[0])
    setup.create_bucket(Bucket=rm.BUCKET)
    setup.upload_fileobj(io.BytesIO(os.urandom(1 << 20) * 1024), rm.BUCKET, rm.KEY)
    variants = ["new", "base", "probe4", "whole"]
    for r in range(6):
        for v in variants if r % 2 == 0 else variants[::-1]:
            mode("new" if v != "base" else "base")
            if v == "probe4":
                R.PROBE_DIVISOR = 4
            if v == "whole":
                R.round_piece = g["_whole"]
            c = S3Client(
                rm.REGION,
                endpoint=server.urls[0],
                s3client_config=S3ClientConfig(force_path_style=True),
            )
            c.head_object(rm.BUCKET, rm.KEY)
            t0 = time.perf_counter()
            n = len(
                c.get_object(
                    rm.BUCKET,
                    rm.KEY,
                    reader_constructor=S3ReaderConstructor.sequential(),
                ).read()
            )
            rate = n / (time.perf_counter() - t0) / 1e6
            res.setdefault(v, []).append(rate)
            print(
                f"round {r} {v:7s} {rate:6.0f} MB/s load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
for v, xs in res.items():
    print(v, "median", round(sorted(xs)[len(xs) // 2]), [round(x) for x in xs])
