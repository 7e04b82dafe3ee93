"""Finding the Python examples in README.md and docs/ (used by test_doc_examples.py).

Rules, also stated in docs/contributing-docs.md:

* every fenced block whose info string is ``python`` is an example and runs as its own script;
* a block opts out only with ``<!-- no-test: reason -->`` on the line right before its fence
  (blank lines between are allowed; the reason must not be empty);
* Python written under another info string (``py``, ``python3``, ``pycon``, a MyST
  ``{code-block} python``...) is refused, so no example escapes the runner by its spelling.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_NO_TEST = re.compile(r"^\s*<!--\s*no-test:(?P<reason>.*?)-->\s*$")
_PYTHONISH = re.compile(
    r"^(\{[\w-]+\}\s*)?(py|python\d*|pycon|ipython\d*)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Example:
    """One fenced ``python`` block."""

    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


class ExampleSyntaxError(ValueError):
    """A Markdown file breaks the example rules (unclosed fence, bad marker, hidden Python)."""


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/ (the build output excluded)."""
    pages = sorted(
        p
        for p in (root / "docs").rglob("*.md")
        if "_build" not in p.relative_to(root).parts
    )
    return [root / "README.md", *pages]


def extract(path: Path, text: str | None = None) -> list[Example]:
    """The ``python`` blocks of one Markdown file, in order."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence))
            and set(lines[i].strip()) == {fence[0]}
        ):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ExampleSyntaxError(f"{path}:{start + 1}: unclosed code fence")
        i += 1
        language = info.split()[0] if info else ""
        if language != "python":
            if _PYTHONISH.match(info):
                raise ExampleSyntaxError(
                    f"{path}:{start + 1}: Python example fenced as {info!r}; use ```python "
                    "so that it runs in the tests (or mark it no-test)"
                )
            continue
        examples.append(
            Example(
                path,
                start + 1,
                "\n".join(body) + "\n",
                _skip_reason(path, lines, start),
            )
        )
    return examples


def _skip_reason(path: Path, lines: list[str], fence_index: int) -> str | None:
    j = fence_index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0:
        return None
    marker = _NO_TEST.match(lines[j])
    if marker is None:
        if "no-test" in lines[j]:
            raise ExampleSyntaxError(
                f"{path}:{j + 1}: malformed marker; write <!-- no-test: reason -->"
            )
        return None
    reason = marker["reason"].strip()
    if not reason:
        raise ExampleSyntaxError(f"{path}:{j + 1}: a no-test marker needs a reason")
    return reason


# Runs a script as __main__ from its file (so spawned workers can re-import it) under the
# ``spawn`` start method: python -c LAUNCHER script.py [args...]
LAUNCHER = """
import multiprocessing, runpy, sys
multiprocessing.set_start_method("spawn", force=True)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def all_examples(root: Path = ROOT) -> list[Example]:
    """Every example of README.md and docs/, in file order."""
    return [example for path in doc_files(root) for example in extract(path)]


def run_script(
    script: Path,
    endpoint: str,
    args: Sequence[str] = (),
    *,
    cwd: Path,
    launcher: Sequence[str] = ("-c", LAUNCHER),
    timeout: float = 110,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter against ``endpoint`` (as ``AWS_ENDPOINT_URL``)."""
    env = dict(os.environ)
    env["AWS_ENDPOINT_URL"] = endpoint
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONWARNINGS"] = "error::RuntimeWarning"  # e.g. a coroutine never awaited
    return subprocess.run(
        [sys.executable, *launcher, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code and output of a failed run, for the assertion message."""
    return (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout}"
        f"--- stderr ---\n{result.stderr}"
    )
