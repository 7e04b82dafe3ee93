"""``python -m s3torch_async``: the ``s3torch-async`` command (see :mod:`s3torch_async._cli`)."""

from __future__ import annotations

import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
