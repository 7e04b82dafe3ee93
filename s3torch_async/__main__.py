"""Command line: ``s3torch-async bench ...`` runs the benchmarks (same as ``python -m benchmarks.run``).

The benchmarks live in the source repository, not in the installed package, so the command
works from a checkout (run it from the repository root).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import List, Optional

_USAGE = (
    "usage: s3torch-async bench [options]\n"
    "  Runs the side-by-side benchmarks (see 's3torch-async bench --help').\n"
)
_NOT_FOUND = (
    "s3torch-async bench: the 'benchmarks' package was not found.\n"
    "The benchmarks are part of the source repository, not of the installed package.\n"
    "From a checkout of the repository root, run:\n"
    "    python -m benchmarks.run --quick\n"
    "or: nox -s bench -- --quick\n"
)


def _load_bench_main() -> Optional[object]:
    """Return ``benchmarks.run.main``, or ``None`` if the benchmarks are not available.

    The current directory is searched too: console scripts do not put it on ``sys.path``.
    """
    cwd = os.getcwd()
    if (
        os.path.isfile(os.path.join(cwd, "benchmarks", "run.py"))
        and cwd not in sys.path
    ):
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module("benchmarks.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", "benchmarks.run"):
            raise
        return None
    return getattr(module, "main", None)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``s3torch-async`` command.

    Args:
        argv: Arguments after the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit code: the benchmark run's, or 2 for a usage error or missing benchmarks.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] != "bench":
        sys.stderr.write(_USAGE)
        return 2
    bench_main = _load_bench_main()
    if not callable(bench_main):
        sys.stderr.write(_NOT_FOUND)
        return 2
    code = bench_main(args[1:])
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
