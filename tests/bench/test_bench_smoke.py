"""Smoke test of the benchmark harness on tiny sizes against an in-process bench server.

The harness runs for real: data layout, one worker process per measurement, medians, ratios,
JSON, markdown and chart. Peers that are not installed are left out.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import _cases, _report, run
from benchmarks._cases import Bench, Variant
from benchmarks.s3server import S3Server

boto3 = pytest.importorskip("boto3")

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.process,
    # benchmarks/s3server.py keys aiohttp request storage by str (NotAppKeyWarning).
    pytest.mark.filterwarnings(
        "ignore:It is recommended to use web.RequestKey:UserWarning"
    ),
]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with S3Server(etag_mode="fast") as srv:
        yield srv.url


@pytest.fixture
def bench_bucket(server_url: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server_url, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    return name


def _with_unavailable_peer(original=_cases.catalogue):
    """The real catalogue plus a variant whose package is not installed."""
    benches = original()
    first = benches[0]
    ghost = Variant(
        "ghost-client",
        "read",
        "benchmarks.clients.ghost:read",
        requires=("no_such_pkg_x",),
    )
    return [
        Bench(**{**first.__dict__, "variants": (*first.variants, ghost)}),
        *benches[1:],
    ]


def test_harness_measures_each_client_in_its_own_process_and_writes_results(
    server_url, bench_bucket, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(run, "catalogue", _with_unavailable_peer)
    clients = [
        "s3torch-async/sequential",
        "boto3/get_object",
        "boto3/upload_fileobj",
        "ghost-client",
    ]
    code = run.main(
        [
            "--endpoint", server_url,
            "--bucket", bench_bucket,
            "--cases", "1,3",
            "--clients", ",".join(clients),
            "--size", "read_size=1MiB",
            "--size", "write_size=6MiB",
            "--repeat", "1",
            "--no-torch-baseline",
            "--out", str(tmp_path),
            "--name", "smoke",
            "--timeout", "60",
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "smoke.json").read_text())

    rows = {row["family"] + "/" + row["variant"]: row for row in result["summary"]}
    assert set(rows) == {c if "/" in c else c + "/read" for c in clients}
    assert rows["ghost-client/read"]["status"] == "skipped"
    assert rows["ghost-client/read"]["note"] == "no_such_pkg_x is not installed"
    measured = [c for c in clients if "/" in c]
    for name in measured:
        row = rows[name]
        assert row["status"] == "ok", row["note"]
        assert row["nbytes"] == (6 << 20 if row["bench"] == "3" else 1 << 20)
        assert row["throughput"] > 0
        assert row["cpu_per_unit"] > 0
        assert row["peak_rss_mib"] > 0
        assert row["ratio"] is None  # no s3torchconnector in this run

    runs = [r for r in result["runs"] if r["status"] == "ok"]
    assert len({r["pid"] for r in runs}) == len(measured)  # one process per measurement
    assert all(r["pid"] != os.getpid() for r in runs)
    boto_run = next(r for r in runs if r["variant"] == "boto3/get_object")
    assert boto_run["requests"] == 1  # the warm-up HEAD is not counted
    assert boto_run["server_cpu_s"] is None  # an --endpoint is not our process
    # the written object was checked (a wrong one turns the run into an error), then deleted
    # so that the server does not keep every written object
    s3 = boto3.client("s3", endpoint_url=server_url, region_name="us-east-1")
    written = s3.list_objects_v2(
        Bucket=bench_bucket, Prefix="s3torch-async-bench/write/"
    )
    assert written["KeyCount"] == 0

    env = result["environment"]
    assert env["cpu_count"] == os.cpu_count()
    assert env["versions"]["boto3"] == boto3.__version__
    assert env["server"]["kind"] == "endpoint"
    assert result["repeat"] == 1
    assert "--cases 1,3" in result["command"]

    table = (tmp_path / "smoke.md").read_text()
    assert "| 1 | s3torch-async | sequential |" in table
    assert not (
        tmp_path / "smoke.png"
    ).exists()  # nothing to chart without the reference
    assert "s3torch-async" in capsys.readouterr().out


def _record(variant: str, wall_s: float, cpu_s: float, **extra):
    return {
        "bench": "1",
        "variant": variant,
        "status": "ok",
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "nbytes": 10**9,
        "nobjects": 1,
        "peak_rss_bytes": 2 << 30,
        "baseline_rss_bytes": 1 << 30,
        "peak_rss_reset": True,
        "children_peak_rss_bytes": 0,
        **extra,
    }


def test_summary_takes_medians_and_divides_by_the_reference(tmp_path):
    benches = _cases.select(
        _cases.catalogue(),
        [1],
        ["s3torch-async/sequential", "s3torchconnector/sequential"],
    )
    records = [
        _record("s3torch-async/sequential", wall, cpu, peak_rss_bytes=3 << 30)
        for wall, cpu in ((1.0, 2.0), (2.0, 9.0), (4.0, 3.0))
    ] + [_record("s3torchconnector/sequential", 4.0, 6.0)]
    ours, ref = _report.summarise(benches, records)
    assert ours.throughput == pytest.approx(500.0)  # median of 1000, 500, 250 MB/s
    assert ours.cpu_per_unit == pytest.approx(3.0)  # median CPU-s per GB
    assert ours.delta_rss_mib == pytest.approx(2048.0)
    assert ref.reference
    assert ours.ratio == pytest.approx(2.0)  # 500 / 250 MB/s
    assert ours.cpu_ratio == pytest.approx(0.5)

    checks = {c.target: c for c in _report.evaluate_targets(benches, [ours, ref])}
    assert checks[
        "case 1 read, default reader: throughput >= 1.5x s3torchconnector"
    ].met
    assert checks[
        "case 1 read, default reader: CPU per GB <= 0.65x s3torchconnector"
    ].met
    assert not checks[
        "case 1 read: peak RSS growth <= 1.15x object size"
    ].met  # 2 GiB for 1 GB
    assert (
        checks[
            "case 1 read, default reader: throughput >= 1.0x boto3 download_fileobj"
        ].met
        is None
    )

    if importlib.util.find_spec("matplotlib") is not None:
        assert _report.write_chart(str(tmp_path / "c.png"), [ours, ref], "t") is None
        assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_runs_are_reported_not_averaged():
    benches = _cases.select(_cases.catalogue(), [1], ["boto3/get_object"])
    records = [
        _record("boto3/get_object", 2.0, 1.0),
        {
            "bench": "1",
            "variant": "boto3/get_object",
            "status": "error",
            "error": "boom",
        },
    ]
    (row,) = _report.summarise(benches, records)
    assert (row.status, row.reps) == ("ok", 1)
    assert row.note == "1 of 2 runs failed: boom"
    (failed,) = _report.summarise(benches, records[1:])
    assert (failed.status, failed.note, failed.throughput) == ("error", "boom", None)


def test_missing_requirement_says_installed_or_not_landed():
    assert _cases.missing(("json",)) is None
    assert _cases.missing(("no_such_pkg_x",)) == "no_such_pkg_x is not installed"
    assert (
        _cases.missing(("s3torch_async.no_such_module",))
        == "s3torch_async.no_such_module has not landed yet"
    )


# -- case 7, cold start ------------------------------------------------------------------------


def test_case_7_times_a_fresh_process_first_call_and_reports_its_import(
    server_url, bench_bucket, tmp_path
):
    bucket = bench_bucket
    clients = ["s3torch-async/S3Client.get_object", "boto3/get_object"]
    code = run.main(
        [
            "--endpoint", server_url,
            "--bucket", bucket,
            "--cases", "7",
            "--clients", ",".join(clients),
            "--size", "small_size=64KiB",
            "--repeat", "1",
            "--no-torch-baseline",
            "--out", str(tmp_path),
            "--name", "cold",
            "--timeout", "120",
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "cold.json").read_text())
    rows = {row["family"] + "/" + row["variant"]: row for row in result["summary"]}
    assert set(rows) == set(clients)
    for row in rows.values():
        assert row["status"] == "ok", row["note"]
        assert row["unit"] == "ms"
        assert (
            row["nbytes"] == 64 << 10
        )  # the child's bytes, checked against the object
        assert 0 < row["throughput"] < 60_000  # the first call, in ms
        assert row["note"].startswith("import ")
        assert row["cpu_per_unit"] > 0
    (run_ours,) = [
        r for r in result["runs"] if r["variant"] == "s3torch-async/S3Client.get_object"
    ]
    # the child measured import and first call apart; the worker's wall time holds both
    assert run_ours["extra"]["first_ms"] < run_ours["wall_s"] * 1e3


def _cold_record(variant: str, first_ms: float, import_ms: float) -> dict:
    return {
        "bench": "7",
        "variant": variant,
        "status": "ok",
        "wall_s": 1.0,
        "cpu_s": 1.0,
        "nbytes": 1000,
        "nobjects": 1,
        "peak_rss_bytes": 1 << 20,
        "baseline_rss_bytes": 1 << 20,
        "peak_rss_reset": True,
        "children_peak_rss_bytes": 0,
        "extra": {"first_ms": first_ms, "import_ms": import_ms, "cpu_ms": first_ms},
    }


def test_case_7_is_lower_is_better_against_obstore():
    benches = _cases.select(
        _cases.catalogue(), [7], ["s3torch-async/S3Client.get_object", "obstore/get"]
    )
    records = [
        _cold_record("s3torch-async/S3Client.get_object", ms, 40.0)
        for ms in (6.0, 9.0, 7.0)
    ] + [_cold_record("obstore/get", 8.0, 5.0)]
    ours, obstore = _report.summarise(benches, records)
    assert ours.throughput == pytest.approx(7.0)  # median first-call ms
    assert ours.note == "import 40 ms"
    (check,) = [
        c
        for c in _report.evaluate_targets(benches, [ours, obstore])
        if "cold" in c.target
    ]
    assert check.value == pytest.approx(7.0 / 8.0)
    assert check.met  # lower is better: 0.875 <= 1.0
    slower = _report.summarise(
        benches,
        [_cold_record("s3torch-async/S3Client.get_object", 12.0, 40.0), records[-1]],
    )
    (missed,) = [
        c for c in _report.evaluate_targets(benches, slower) if "cold" in c.target
    ]
    assert missed.met is False
