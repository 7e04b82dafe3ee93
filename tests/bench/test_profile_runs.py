"""``benchmarks.run --profile``: every selected case on the loopback and the S3-like server."""

from __future__ import annotations

import json

import pytest

from benchmarks import _cases, _report, run

pytest.importorskip("boto3")

pytestmark = [
    pytest.mark.process,
    pytest.mark.filterwarnings(
        "ignore:It is recommended to use web.RequestKey:UserWarning"
    ),
]


def test_both_profiles_run_side_by_side_and_report_the_share_kept(tmp_path, capsys):
    code = run.main(
        [
            "--profile", "both",
            "--cases", "4",
            "--clients", "s3torch-async/list_objects,boto3/paginator",
            "--size", "list_count=2500",
            "--repeat", "1",
            "--no-torch-baseline",
            "--out", str(tmp_path),
            "--name", "prof",
            "--timeout", "120",
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "prof.json").read_text())
    rows = {
        (r["bench"], r["family"] + "/" + r["variant"]): r for r in result["summary"]
    }
    assert set(rows) == {
        (bench, client)
        for bench in ("4", "4@s3like")
        for client in ("s3torch-async/list_objects", "boto3/paginator")
    }
    assert all(r["status"] == "ok" for r in rows.values())
    profiles = result["environment"]["profiles"]
    assert profiles["s3like"]["list_latency"] == pytest.approx(0.04)
    assert profiles["loopback"]["list_latency"] == 0
    # 2,500 keys are 3 pages of 1,000: at 40 ms (+/- 20 %) each the S3-like listing lasts
    # at least 3 x 32 ms, whatever the client
    for client in ("s3torch-async/list_objects", "boto3/paginator"):
        assert rows[("4@s3like", client)]["wall_s"] >= 3 * 0.032
    out = capsys.readouterr().out
    assert "S3-like throughput as a share of the same client's loopback" in out
    assert "4@s3like s3torch-async/list_objects: " in out
    assert "(loopback + s3like profile)" in result["header"]


def test_profile_ratio_divides_each_client_by_its_own_loopback_row():
    rows = [
        _report.Row("1", 1, "t", "MB/s", "boto3", "get_object", "ok", throughput=200.0),
        _report.Row(
            "1@s3like", 1, "t", "MB/s", "boto3", "get_object", "ok", throughput=50.0
        ),
        _report.Row("1@s3like", 1, "t", "MB/s", "obstore", "get", "ok", throughput=9.0),
    ]
    assert _report.profile_ratios(rows) == [("1@s3like", "boto3/get_object", 0.25)]


def test_with_profiles_keeps_loopback_ids_and_tags_the_s3like_copies():
    benches = _cases.with_profiles(
        _cases.select(_cases.catalogue(), [4]), ("loopback", "s3like")
    )
    assert [(b.id, b.profile) for b in benches] == [
        ("4", "loopback"),
        ("4@s3like", "s3like"),
    ]


def test_s3like_needs_the_local_server():
    with pytest.raises(SystemExit, match="needs the local server"):
        run.main(
            ["--profile", "s3like", "--endpoint", "http://127.0.0.1:9", "--bucket", "b"]
        )
    with pytest.raises(SystemExit, match="needs the local server"):
        run.main(["--profile", "both", "--server", "moto"])


def test_case_2_measures_both_map_datasets_and_judges_ours_on_the_s3like_targets():
    benches = _cases.with_profiles(
        _cases.select(_cases.catalogue(), [2]), ("loopback", "s3like")
    )
    ids = {b.id: {v.id for v in b.variants} for b in benches}
    for bench, suffix in (("2-w0", ""), ("2-w2", "-w2")):
        assert {
            f"s3torch-async/S3MapDataset{suffix}",
            f"s3torch-async/S3MapDataset-shuffle{suffix}",
            f"s3torchconnector/S3MapDataset{suffix}",
        } <= ids[bench]

    def row(bench, family, variant, rate):
        return _report.Row(
            bench, 2, "t", "obj/s", family, variant, "ok", throughput=rate
        )

    rows = [
        row("2-w0", "s3torch-async", "S3MapDataset", 1000.0),
        row("2-w0@s3like", "s3torch-async", "S3MapDataset", 900.0),
        row("2-w2", "s3torch-async", "S3MapDataset-w2", 1000.0),
        row("2-w2@s3like", "s3torch-async", "S3MapDataset-w2", 500.0),
        row("2-w0@s3like", "obstore", "loop16", 400.0),
    ]
    checks = {c.target: c for c in _report.evaluate_targets(benches, rows)}
    own = "S3-like: S3MapDataset, num_workers={} >= 0.8x its own loopback rate"
    peer = "S3-like: S3MapDataset, num_workers={} >= 2x obstore with 16 in flight"
    assert checks[own.format(0)].value == pytest.approx(0.9)
    assert checks[own.format(0)].met
    assert checks[own.format(2)].value == pytest.approx(0.5)
    assert not checks[own.format(2)].met
    assert checks[peer.format(0)].met  # 900 / 400
    assert not checks[peer.format(2)].met  # 500 / 400
