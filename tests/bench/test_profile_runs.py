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
