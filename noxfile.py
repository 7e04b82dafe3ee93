"""Development sessions: ``nox`` runs lint, typecheck and tests (the CI command).

Development dependencies live in ``[dependency-groups]`` of pyproject.toml (PEP 735), so the
published metadata carries only what users install. ``nox -s demo`` runs the demo; ``nox -s
core`` runs the torch-free layers on every supported Python; neither is a default session.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

import nox

nox.needs_version = ">=2025.02.09"  # nox.project.dependency_groups
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

CONSTRAINTS = ("-c", "constraints.txt")
# nox -s core: pins that also install on Python 3.10
CORE_CONSTRAINTS = ("-c", "constraints-core.txt")
PACKAGE = "s3torch_async"
PYPROJECT = nox.project.load_toml("pyproject.toml")
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def _group(*names: str) -> tuple[str, ...]:
    return nox.project.dependency_groups(PYPROJECT, *names)


def _install_torch(session: nox.Session) -> None:
    # torch first, through the constraints file, so the resolver never picks a CUDA build.
    session.install("torch==2.13.0", *CONSTRAINTS)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff (lint + format check) and the import-layering contract."""
    session.install(*_group("lint"), *CONSTRAINTS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # import-linter reads the source without importing it, so the package (and torch, ~1 GB on
    # disk) need not be installed: the checkout on PYTHONPATH is enough.
    session.run("lint-imports", env={"PYTHONPATH": os.getcwd()})


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on the package."""
    _install_torch(session)
    session.install(
        "-e", ".[demo,fast-crc]", *_group("typecheck", "test"), *CONSTRAINTS
    )
    session.run("mypy", PACKAGE)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The full test suite against a moto server on loopback, on both transports.

    Every S3 test runs on the lean and the botocore transport (``--transport`` picks one);
    two pytest-xdist workers (one moto server each) keep the doubled suite's wall time down.
    """
    _install_torch(session)
    session.install("-e", ".[dcp,demo,fast-crc]", *_group("test"), *CONSTRAINTS)
    workers = str(min(4, max(2, os.cpu_count() or 2)))
    session.run("pytest", "-n", workers, *session.posargs)


@nox.session(python="3.11", default=False)
def soak(session: nox.Session) -> None:
    """The load test for longer (never a default session): ``nox -s soak -- 600`` (seconds)."""
    _install_torch(session)
    session.install("-e", ".", *_group("test"), *CONSTRAINTS)
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


def _runtime_deps_without_torch() -> list[str]:
    deps = PYPROJECT["project"]["dependencies"]
    return [d for d in deps if re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0] != "torch"]


@nox.session(python=[_interpreter(v) for v in SUPPORTED_PYTHONS])
def core(session: nox.Session) -> None:
    """The torch-free layers on every supported Python (also catches 3.12+ fork warnings)."""
    session.install("-e", ".", "--no-deps")
    session.install(
        *_runtime_deps_without_torch(), *_group("test-core"), *CORE_CONSTRAINTS
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


@nox.session(python="3.11", default=False)
def demo(session: nox.Session) -> None:
    """The demo on an embedded S3 server: ``nox -s demo`` (``-- --help`` for its options)."""
    _install_torch(session)
    session.install("-e", ".[demo]", *CONSTRAINTS)
    session.run("s3torch-async", "demo", *session.posargs)


@nox.session(python="3.11", default=False)
def docs(session: nox.Session) -> None:
    """The documentation site (Sphinx + MyST), warnings as errors: docs/_build/html."""
    _install_torch(session)
    session.install("-e", ".", *_group("docs"), *CONSTRAINTS)
    session.run(
        "sphinx-build",
        "-W",
        "-n",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
    )


@nox.session(python="3.11", default=False)
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks (never a default session): ``nox -s bench -- --quick``."""
    _install_torch(session)
    session.install("-e", ".[fast-crc]", *_group("bench"), *CONSTRAINTS)
    session.run("python", "-m", "benchmarks.run", *session.posargs)
