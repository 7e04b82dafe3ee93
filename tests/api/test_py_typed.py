"""Users' type checkers see our annotations (py.typed), as the reference's consumer test checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import s3torch_async

mypy_api = pytest.importorskip("mypy.api")


def test_py_typed_marker_ships():
    assert (Path(s3torch_async.__file__).parent / "py.typed").is_file()


def test_consumer_code_is_type_checked(tmp_path):
    snippet = tmp_path / "consumer.py"
    snippet.write_text(
        "from s3torch_async import S3MapDataset, S3ClientConfig\n"
        "S3MapDataset.from_prefix(1, region='us-east-1')\n"
        "cfg: S3ClientConfig = S3ClientConfig(part_size=16 * 1024 * 1024)\n"
    )
    config = tmp_path / "mypy.ini"
    # Type-checking torch and aiohttp themselves takes a minute and is not what this is about.
    config.write_text(
        "[mypy]\nfollow_imports = silent\n[mypy-torch.*,aiohttp.*,yarl.*,multidict.*,anyio.*,numpy.*]\n"
        "follow_imports = skip\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--config-file",
            str(config),
            str(snippet),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        # An editable install is an import hook mypy cannot follow: point it at the source.
        env={**os.environ, "MYPYPATH": str(Path(s3torch_async.__file__).parents[1])},
    )
    assert (
        'Argument 1 to "from_prefix" of "S3MapDataset" has incompatible type "int"; expected "str"'
        in out.stdout
    ), out.stdout + out.stderr
    assert "Found 1 error" in out.stdout, out.stdout
