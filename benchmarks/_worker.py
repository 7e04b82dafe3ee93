"""One measurement in its own process: ``python -m benchmarks._worker --job JSON``.

Prints one line ``BENCH-RESULT {json}`` on stdout: ``status`` is ``ok`` (with the figures),
``error`` (the exception, e.g. a failed verification) or ``skipped``.

Every worker imports torch first (unless the job says otherwise), as a training process would,
so that the peak RSS of all clients starts from the same baseline.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from dataclasses import asdict
from typing import Any, Dict, List, Optional

from ._model import Job, Outcome, Prepare

MARKER = "BENCH-RESULT "


def resolve(function: str) -> Prepare:
    """Import ``module:function``."""
    module, _, name = function.partition(":")
    prepare: Prepare = getattr(importlib.import_module(module), name)
    return prepare


def execute(job: Job) -> Dict[str, Any]:
    """Prepare, time, verify and clean up one job; return the result record."""
    from ._measure import measure

    if job.import_torch:
        importlib.import_module("torch")  # the same RSS baseline for every client

    run = resolve(job.function)(job, **job.options)
    m = measure(run, server_pid=job.server_pid, count_requests=job.count_requests)
    outcome: Outcome = m.outcome
    if outcome.check is not None:
        outcome.check()
    if outcome.cleanup is not None:
        outcome.cleanup()
    record = asdict(m)
    del record["outcome"]
    record.update(
        status="ok",
        nbytes=outcome.nbytes,
        nobjects=outcome.nobjects,
        extra=outcome.extra,
        pid=os.getpid(),
    )
    return record


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._worker")
    parser.add_argument("--job", required=True, help="the Job as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    job = Job.from_json(args.job)
    try:
        record = execute(job)
        code = 0
    except Exception as exc:
        record = {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
        code = 1
    sys.stdout.write(MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    # os._exit: skip interpreter teardown, which is not part of the measurement and can hang
    # on a client's background threads; the result line has been flushed.
    sys.stderr.flush()
    os._exit(main())
