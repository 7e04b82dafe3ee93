"""Cheap checks of the docs' structure that run in every test session (no Sphinx needed).

``nox -s docs`` is the full check (warnings are errors); these catch the common breakages
earlier: a page missing from the table of contents, a toctree entry or a relative link that
points nowhere, an included example file that moved.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs._examples import ROOT, doc_files

DOCS = ROOT / "docs"
_TOCTREE = re.compile(r"```\{toctree\}\n(?P<body>.*?)```", re.DOTALL)
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_INCLUDE = re.compile(r"```\{literalinclude\}\s+(?P<target>\S+)")


def _toctree_entries() -> list[str]:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    entries = []
    for match in _TOCTREE.finditer(index):
        for line in match["body"].splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                entries.append(line)
    return entries


def test_every_page_is_in_the_toctree_and_every_entry_exists() -> None:
    entries = _toctree_entries()
    pages = {
        p.relative_to(DOCS).with_suffix("").as_posix()
        for p in DOCS.rglob("*.md")
        if "_build" not in p.parts
    }
    assert sorted(pages - {"index"} - set(entries)) == []
    assert sorted(set(entries) - pages) == []


@pytest.mark.parametrize(
    "page", doc_files(), ids=[p.relative_to(ROOT).as_posix() for p in doc_files()]
)
def test_relative_links_and_includes_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    targets = [m["target"] for m in _LINK.finditer(text)]
    targets += [m["target"] for m in _INCLUDE.finditer(text)]
    missing = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert missing == []
