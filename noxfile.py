"""Development sessions: ``nox`` runs lint, typecheck and tests (the CI command)."""

from __future__ import annotations

import glob
import os
import subprocess

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

CONSTRAINTS = ("-c", "constraints.txt")
PACKAGE = "s3torch_async"


def _install_torch(session: nox.Session) -> None:
    # torch first, through the constraints file, so the resolver never picks a CUDA build.
    session.install("torch==2.13.0", *CONSTRAINTS)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff (lint + format check) and the import-layering contract."""
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    _install_torch(session)
    session.install("-e", ".", *CONSTRAINTS)
    session.run("lint-imports")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on the package."""
    _install_torch(session)
    session.install("-e", ".[typecheck,test]", *CONSTRAINTS)
    session.run("mypy", PACKAGE)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The full test suite against a moto server on loopback."""
    _install_torch(session)
    session.install("-e", ".[test,dcp]", *CONSTRAINTS)
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def soak(session: nox.Session) -> None:
    """The load test for longer (never a default session): ``nox -s soak -- 600`` (seconds)."""
    _install_torch(session)
    session.install("-e", ".[test]", *CONSTRAINTS)
    seconds = session.posargs[0] if session.posargs else "300"
    session.run(
        "pytest",
        "tests/load",
        "-s",
        "--timeout=0",
        env={"S3TORCH_ASYNC_LOAD_SECONDS": seconds},
    )


def _interpreter(version: str) -> str:
    """``pythonX.Y`` if it runs, else a pyenv install of it (pyenv shims refuse inactive ones)."""
    name = f"python{version}"
    try:
        subprocess.run([name, "-c", "pass"], check=True, capture_output=True)
        return name
    except (OSError, subprocess.CalledProcessError):
        pattern = os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/{name}")
        found = sorted(glob.glob(pattern))
        return found[-1] if found else name


@nox.session(python=[_interpreter(v) for v in ("3.11", "3.12", "3.13")])
def core(session: nox.Session) -> None:
    """The torch-free layers on several Pythons (catches the 3.12+ fork warnings)."""
    session.install("-e", ".[test]", "--no-deps")
    session.install(
        "aiobotocore",
        "aiohttp",
        "anyio",
        "pytest",
        "pytest-asyncio",
        "pytest-timeout",
        "hypothesis",
        "moto[server]",
        "boto3",
    )
    session.run(
        "pytest",
        "tests/unit",
        "tests/core",
        "tests/sync",
        "tests/processes",
        "-m",
        "not torch",
        *session.posargs,
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks (never a default session): ``nox -s bench -- --quick``."""
    _install_torch(session)
    session.install("-e", ".[bench]", *CONSTRAINTS)
    session.run("python", "-m", "benchmarks.run", *session.posargs)
