"""The ``s3torch-async`` command, run as a subprocess against the moto server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from s3torch_async import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.process


def run_cli(
    *args: str,
    cwd: Optional[Path] = None,
    env: Optional[dict[str, str]] = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3torch_async", *args],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def package_only_env(tmp_path: Path) -> dict[str, str]:
    """An environment where ``s3torch_async`` (this tree's) imports but ``benchmarks`` does not.

    A fresh directory holding only a link to the package goes on ``PYTHONPATH``: this is what
    an installed wheel looks like to ``import``.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "s3torch_async").symlink_to(REPO_ROOT / "s3torch_async")
    return {**os.environ, "PYTHONPATH": str(site)}


def test_help_lists_the_commands_and_exits_0():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: s3torch-async ")
    for command in ("demo", "ls", "bench"):
        assert f"    {command} " in proc.stdout


@pytest.mark.parametrize("command", ["demo", "ls"])
def test_each_command_has_help(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: s3torch-async {command} ")
    assert "--endpoint URL" in proc.stdout


def test_version_prints_the_distribution_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"s3torch-async {__version__}\n"


def test_no_command_is_a_usage_error():
    proc = run_cli()
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: s3torch-async ")
    assert "a command is required" in proc.stderr


def test_unknown_option_is_a_usage_error():
    proc = run_cli("ls", "s3://b/", "--no-such-option")
    assert proc.returncode == 2
    assert "unrecognized arguments: --no-such-option" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ls_lists_prefixes_and_objects_with_sizes(endpoint, bucket, put):
    put("a/1.bin", b"x" * 10)
    put("a/2.bin", b"y" * 200)
    put("b.txt", b"hello")

    proc = run_cli("ls", f"s3://{bucket}/", "--endpoint", endpoint)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{'PRE':>12}  a/", f"{5:>12}  b.txt"]

    proc = run_cli("ls", "--recursive", f"s3://{bucket}/a/", "--endpoint", endpoint)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{10:>12}  a/1.bin", f"{200:>12}  a/2.bin"]


def test_ls_takes_the_endpoint_from_the_aws_environment(endpoint, bucket, put):
    put("k", b"abc")
    proc = run_cli(
        "ls", f"s3://{bucket}", env={**os.environ, "AWS_ENDPOINT_URL": endpoint}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{3:>12}  k\n"


def test_ls_of_a_missing_bucket_exits_1_naming_the_bucket(endpoint):
    proc = run_cli(
        "ls", "s3://no-such-bucket-s3torch-async-cli/p", "--endpoint", endpoint
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    first, *rest = proc.stderr.splitlines()
    assert first == "s3torch-async ls: Service error: The bucket does not exist"
    assert "s3://no-such-bucket-s3torch-async-cli" in "\n".join(rest)
    assert "Traceback" not in proc.stderr


def test_ls_of_a_non_s3_uri_is_a_usage_error():
    proc = run_cli("ls", "bucket/key")
    assert proc.returncode == 2
    assert "Only s3:// URIs are supported: 'bucket/key'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("cases", ["x", "1,nine", "9", ","])
def test_bench_with_invalid_cases_is_a_usage_error(cases):
    proc = run_cli("bench", "--list", "--cases", cases)
    assert proc.returncode == 2
    assert "argument --cases:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_bench_runs_the_harness_in_a_source_checkout():
    proc = run_cli("bench", "--list", "--cases", "4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("4 ")
    assert "s3torch-async/list_objects" in proc.stdout


def test_bench_without_the_benchmarks_says_where_they_are(tmp_path):
    proc = run_cli("bench", "--quick", cwd=tmp_path, env=package_only_env(tmp_path))
    assert proc.returncode == 2
    assert "not importable here" in proc.stderr
    assert "python -m benchmarks.run --quick" in proc.stderr
    assert proc.stdout == ""


def test_help_and_version_work_without_the_benchmarks(tmp_path):
    env = package_only_env(tmp_path)
    assert run_cli("--help", cwd=tmp_path, env=env).returncode == 0
    assert run_cli("--version", cwd=tmp_path, env=env).returncode == 0


def test_demo_with_an_endpoint_but_no_bucket_is_a_usage_error(endpoint):
    proc = run_cli("demo", "--endpoint", endpoint)
    assert proc.returncode == 2
    assert "needs --bucket NAME" in proc.stderr


def _assert_demo_summary(stdout: str, samples: int) -> None:
    assert "step " in stdout
    for row in (
        "upload (AsyncS3Client)",
        "epoch (DataLoader, 2 workers)",
        "S3Checkpoint save",
        "S3Checkpoint load",
        "DCP save",
        "DCP load",
    ):
        assert f"\n{row} " in stdout
    assert (
        f"checks: every image seen once yes ({samples}/{samples}); "
        "S3Checkpoint reload equal yes; DCP reload equal yes" in stdout
    )


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_on_the_embedded_server_with_spawned_workers():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    samples = 96
    proc = run_cli(
        "demo",
        "--samples",
        str(samples),
        "--batch-size",
        "16",
        "--start-method",
        "spawn",
        "--no-progress",
        env=env,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded S3 (moto) at http://127.0.0.1:" in proc.stdout
    _assert_demo_summary(proc.stdout, samples)
    requests = next(
        line for line in proc.stdout.splitlines() if line.startswith("requests: ")
    )
    gets = int(requests.split("GET ")[1].split(",")[0].rstrip(")"))
    assert gets >= samples
    assert "retries: 0 " in proc.stdout


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_against_an_endpoint_cleans_up_what_it_wrote(endpoint, bucket, boto_s3):
    samples = 64
    proc = run_cli(
        "demo",
        "--endpoint",
        endpoint,
        "--bucket",
        bucket,
        "--samples",
        str(samples),
        "--batch-size",
        "16",
        "--no-progress",
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"s3torch-async demo: {endpoint} (region " in proc.stdout
    _assert_demo_summary(proc.stdout, samples)
    assert "requests, retries: counted by the embedded server only" in proc.stdout
    assert f"objects under s3://{bucket}/s3torch-async-demo/" in proc.stdout
    listing: Any = boto_s3.list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount") == 0


@pytest.mark.torch
def test_demo_data_needs_no_numpy():
    # torch does not depend on numpy, so a fresh `pip install "s3torch-async[demo]"` lacks it.
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from s3torch_async._demo import _job\n"
        "body = _job.encode_sample(13)\n"
        "class Reader:\n"
        "    bucket, key = 'b', 'k'\n"
        "    def read(self): return body\n"
        "image, label = _job.decode_sample(Reader())\n"
        "assert (tuple(image.shape), label, len(body)) == ((3, 32, 32), 3, 3073)\n"
        "assert bytes(image.flatten().tolist()) == body[1:]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
