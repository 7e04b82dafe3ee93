"""User-agent strings, in the reference's format."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import sys
from typing import List, Optional

from ._version import __version__

__all__ = ["UserAgent"]


@functools.cache
def _torch_version() -> str:
    # Never import torch from the core; an imported torch knows its version for free. Else
    # torch/version.py says it (a file read), before a metadata lookup, whose import alone
    # costs ~15 ms in a fresh process.
    torch = sys.modules.get("torch")
    loaded = getattr(torch, "__version__", None)
    if isinstance(loaded, str):
        return loaded
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "none"
    if spec.origin:
        try:
            with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
                m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
        except OSError:
            m = None
        if m:
            return m.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


class UserAgent:
    """The user-agent prefix sent with every request.

    Args:
        comments: Extra comments appended in parentheses, joined with ``"; "``; empty strings are
            dropped.

    Raises:
        ValueError: ``comments`` is neither ``None`` nor a list.
    """

    def __init__(self, comments: Optional[List[str]] = None) -> None:
        if comments is not None and not isinstance(comments, list):
            raise ValueError("Argument comments must be a List[str]")
        self._comments = list(comments or [])

    @property
    def prefix(self) -> str:
        """The default prefix followed by the non-empty comments."""
        comments = [c for c in self._comments if c]
        suffix = f" ({'; '.join(comments)})" if comments else ""
        return self.get_default_prefix() + suffix

    @staticmethod
    def get_default_prefix() -> str:
        """``s3torch-async/<version>`` followed by the platform, Python and torch versions."""
        system = platform.system().lower()
        if system == "darwin":
            system = "macos"
        return (
            f"s3torch-async/{__version__} ua/2.1 os/{system}#{platform.release()} "
            f"lang/python#{platform.python_version()} md/arch#{platform.machine().lower()} "
            f"md/pytorch#{_torch_version()}"
        )
