"""The package's version: the one place it is written (pyproject.toml reads it from here).

A literal, not a metadata lookup: ``importlib.metadata`` costs ~15 ms to import, paid by every
fresh process (each spawned DataLoader worker) before its first request.
"""

from __future__ import annotations

__version__: str = "0.1.0"

__all__ = ["__version__"]
