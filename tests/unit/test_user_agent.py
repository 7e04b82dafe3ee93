from __future__ import annotations

import re
import sys

import pytest

from s3torch_async import __version__
from s3torch_async._user_agent import UserAgent

PREFIX_RE = re.compile(
    r"^s3torch-async/\S+ ua/2\.1 os/[a-z]+#\S+ lang/python#\d+\.\d+\.\d+t? md/arch#\S+ "
    r"md/pytorch#\S+$"
)


def test_default_prefix_names_package_version_and_platform():
    prefix = UserAgent.get_default_prefix()
    assert PREFIX_RE.match(prefix), prefix
    assert prefix.startswith(f"s3torch-async/{__version__} ")


@pytest.mark.parametrize("comments", [None, [], [""], ["", ""]])
def test_empty_comments_give_bare_prefix(comments):
    assert UserAgent(comments).prefix == UserAgent.get_default_prefix()


def test_comments_are_joined_in_parentheses():
    ua = UserAgent(["md/dataset#map md/reader_type#sequential", "", "x"])
    assert ua.prefix == (
        UserAgent.get_default_prefix()
        + " (md/dataset#map md/reader_type#sequential; x)"
    )


@pytest.mark.parametrize("bad", [0, "string", ("a",)])
def test_comments_must_be_a_list(bad):
    with pytest.raises(ValueError, match=r"^Argument comments must be a List\[str\]$"):
        UserAgent(bad)


@pytest.mark.torch
def test_torch_version_without_torch_imported_is_the_installed_distributions(
    monkeypatch,
):
    from importlib.metadata import version

    from s3torch_async._user_agent import _torch_version

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert _torch_version.__wrapped__() == version("torch")


def test_package_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert __version__ == version("s3torch-async")
