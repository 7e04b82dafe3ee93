"""Users' type checkers see our annotations (py.typed), as the reference's consumer test checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")


def test_py_typed_marker_ships():
    import s3torch_async

    assert (Path(s3torch_async.__file__).parent / "py.typed").is_file()


def test_consumer_code_is_type_checked(tmp_path):
    snippet = tmp_path / "consumer.py"
    snippet.write_text(
        "from s3torch_async import S3MapDataset, S3ClientConfig\n"
        "S3MapDataset.from_prefix(1, region='us-east-1')\n"
        "cfg: S3ClientConfig = S3ClientConfig(part_size=16 * 1024 * 1024)\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--follow-imports=silent",
            str(snippet),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        'Argument 1 to "from_prefix" of "S3MapDataset" has incompatible type "int"; expected "str"'
        in out.stdout
    ), out.stdout + out.stderr
    assert "Found 1 error" in out.stdout, out.stdout
