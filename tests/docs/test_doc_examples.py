"""Every ``python`` example in README.md and docs/ runs, as its own script, against moto.

Each block is written to ``example.py`` and run in a fresh interpreter as ``__main__``, the
way a reader pastes it into a file: with ``AWS_ENDPOINT_URL`` pointing at the moto server, the
bucket ``my-bucket`` created and the quickstart's sample data under ``s3://my-bucket/train/``.
The multiprocessing start method is ``spawn`` (the default on macOS and, from Python 3.14, on
Linux), so a DataLoader transform that cannot be pickled, or a worker-starting script without
a ``__main__`` guard, fails here. The rules are in docs/contributing-docs.md.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.docs._examples import (
    ROOT,
    Example,
    ExampleSyntaxError,
    all_examples,
    extract,
    report,
    run_script,
)

_EXAMPLES = all_examples()


def _run_code(code: str, tmp_path: Path, endpoint: str):  # type: ignore[no-untyped-def]
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    return run_script(script, endpoint, cwd=tmp_path)


@pytest.mark.torch
@pytest.mark.process
@pytest.mark.timeout(150)
@pytest.mark.parametrize("example", _EXAMPLES, ids=[e.id for e in _EXAMPLES])
def test_example_runs(
    example: Example, docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    if example.skip_reason is not None:
        pytest.skip(f"marked no-test: {example.skip_reason}")
    result = _run_code(example.code, tmp_path, moto_endpoint)
    assert result.returncode == 0, (
        f"{example.id} failed\n--- code ---\n{example.code}{report(result)}"
    )


def test_examples_are_found() -> None:
    files = {e.id.rsplit(":", 1)[0] for e in _EXAMPLES}
    assert {"README.md", "docs/quickstart.md", "docs/async.md"} <= files
    skipped = [e.id for e in _EXAMPLES if e.skip_reason is not None]
    assert len(skipped) <= len(_EXAMPLES) // 5, f"too many no-test examples: {skipped}"


# -- the runner itself: an example that is wrong must fail -----------------------------------


@pytest.mark.torch
@pytest.mark.process
def test_runner_fails_an_example_with_an_undefined_name(
    docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    code = "import torch\nfrom s3torch_async import S3Checkpoint\ntorch.save(model.state_dict(), 'x')\n"
    result = _run_code(code, tmp_path, moto_endpoint)
    assert result.returncode != 0
    assert "NameError: name 'model' is not defined" in result.stderr


@pytest.mark.process
def test_runner_fails_top_level_async_with(
    docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    code = (
        "from s3torch_async import AsyncS3Client\n"
        'async with AsyncS3Client("us-east-1") as client:\n'
        "    pass\n"
    )
    result = _run_code(code, tmp_path, moto_endpoint)
    assert result.returncode != 0
    assert "SyntaxError" in result.stderr


@pytest.mark.torch
@pytest.mark.process
@pytest.mark.timeout(150)
def test_runner_fails_a_lambda_transform_as_spawn_does(
    docs_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        from torch.utils.data import DataLoader
        from s3torch_async import S3IterableDataset

        if __name__ == "__main__":
            dataset = S3IterableDataset.from_prefix(
                "s3://my-bucket/train/", region="us-east-1", transform=lambda r: r.read()
            )
            for _ in DataLoader(dataset, num_workers=1):
                pass
        """
    )
    result = _run_code(code, tmp_path, moto_endpoint)
    assert result.returncode != 0
    assert "pickle" in result.stderr.lower()


# -- extraction rules --------------------------------------------------------------------------


def test_extract_finds_blocks_and_markers() -> None:
    text = textwrap.dedent(
        """\
        # Page

        ```python
        print(1)
        ```

        <!-- no-test: needs real S3 -->

        ```python
        print(2)
        ```

        ```bash
        echo python
        ```

        ````python
        print("```")
        ````
        """
    )
    examples = extract(ROOT / "docs" / "page.md", text)
    assert [(e.line, e.code, e.skip_reason) for e in examples] == [
        (3, "print(1)\n", None),
        (9, "print(2)\n", "needs real S3"),
        (17, 'print("```")\n', None),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "```py\nprint(1)\n```\n",
        "```{code-block} python\nprint(1)\n```\n",
        "```pycon\n>>> 1\n```\n",
        "```python\nprint(1)\n",
        "<!-- no-test: -->\n```python\nprint(1)\n```\n",
        "<!-- no-test reason -->\n```python\nprint(1)\n```\n",
    ],
    ids=["py", "code-block", "pycon", "unclosed", "empty-reason", "malformed-marker"],
)
def test_extract_refuses_examples_that_would_escape(text: str) -> None:
    with pytest.raises(ExampleSyntaxError):
        extract(ROOT / "docs" / "page.md", text)
