"""Cold start in a fresh interpreter: no aiobotocore/aiohttp unless something needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.process

HEAVY = (
    "aiobotocore",
    "aiohttp",
    "botocore.client",
    "botocore.exceptions",
    "botocore.session",
    "urllib3",
)


def _run(code: str, **env: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _loaded(names: tuple[str, ...] = HEAVY) -> str:
    return (
        f"sorted(m for m in sys.modules if m in {names!r} or m.startswith('aiohttp.'))"
    )


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(
            "s3torch_async, s3torch_async._s3client, s3torch_async.s3reader, "
            "s3torch_async.s3writer, s3torch_async.async_dataset",
            id="core",
        ),
        pytest.param(
            "s3torch_async.s3iterable_dataset, s3torch_async.s3map_dataset, "
            "s3torch_async.s3checkpoint",
            id="torch",
            marks=pytest.mark.torch,
        ),
    ],
)
def test_importing_the_public_modules_loads_no_botocore_client_machinery(modules):
    result = _run(
        f"""
        import json, sys
        import {modules}
        print(json.dumps({{"loaded": {_loaded()}}}))
        """
    )
    assert result["loaded"] == []


def _first_get(endpoint: str, bucket: str, **env: str) -> dict[str, object]:
    """A fresh process's first GET, then a delete (a call the lean transport leaves to
    botocore), with the heavy modules loaded after each."""
    return _run(
        f"""
        import json, os, sys
        from s3torch_async._s3client import S3Client
        client = S3Client("us-east-1", endpoint=os.environ["TEST_ENDPOINT"])
        data = client.get_object(os.environ["TEST_BUCKET"], "obj").read()
        after_get = {_loaded()}
        client.delete_object(os.environ["TEST_BUCKET"], "obj")
        after_delete = {_loaded()}
        print(json.dumps({{"data": data.decode(), "after_get": after_get,
                          "after_delete": after_delete}}))
        """,
        TEST_ENDPOINT=endpoint,
        TEST_BUCKET=bucket,
        **env,
    )


def test_a_first_get_needs_no_botocore_and_the_rest_opens_it_on_demand(
    s3_transport, moto_endpoint, bucket, put
):
    if s3_transport == "botocore":
        pytest.skip("the direct start is the lean transport's")
    put("obj", b"cold start")
    result = _first_get(moto_endpoint, bucket)
    assert result["data"] == "cold start"
    assert result["after_get"] == []
    assert "aiobotocore" in result["after_delete"]  # type: ignore[operator]


def test_a_configuration_left_to_botocore_starts_through_it(
    s3_transport, moto_endpoint, bucket, put
):
    if s3_transport == "botocore":
        pytest.skip("the direct start is the lean transport's")
    put("obj", b"via botocore")
    # A botocore setting (one that changes nothing here): botocore decides.
    result = _first_get(moto_endpoint, bucket, AWS_DEFAULTS_MODE="legacy")
    assert result["data"] == "via botocore"
    assert "aiobotocore" in result["after_get"]  # type: ignore[operator]


@pytest.mark.torch
@pytest.mark.parametrize(
    ("env", "warmed"), [({}, False), ({"AWS_DEFAULTS_MODE": "legacy"}, True)]
)
def test_a_dataset_parses_botocores_models_only_for_clients_that_need_them(env, warmed):
    result = _run(
        """
        import json, sys
        from s3torch_async import S3IterableDataset
        S3IterableDataset.from_objects(
            ["s3://bucket/key"], region="us-east-1", endpoint="http://127.0.0.1:9"
        )
        start = sys.modules.get("s3torch_async._core._botostart")
        print(json.dumps({"warmed": bool(start and start._loaders)}))
        """,
        S3TORCH_ASYNC_FAST_PATH="1",
        **env,
    )
    assert result["warmed"] is warmed


def test_the_listing_patterns_compile_on_the_first_page_not_at_import():
    result = _run(
        """
        import json, re
        import s3torch_async
        from s3torch_async._core import _listxml
        patterns = ("_PROLOG", "_CONTENTS", "_TOP", "_LEAF", "_REF", "_OTHER_AMP")
        before = [isinstance(getattr(_listxml, p), re.Pattern) for p in patterns]
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\\n<ListBucketResult>'
            b"<KeyCount>1</KeyCount><IsTruncated>false</IsTruncated>"
            b"<Contents><Key>k</Key><LastModified>2026-12-07T00:00:00.000Z</LastModified>"
            b"<ETag>&quot;e&quot;</ETag><Size>3</Size></Contents></ListBucketResult>"
        )
        page = _listxml.scan(body)
        after = [isinstance(getattr(_listxml, p), re.Pattern) for p in patterns]
        print(json.dumps({"before": before, "after": after, "columns": page[1]}))
        """
    )
    assert result["before"] == [False] * 6
    assert result["columns"] == [
        ["k"],
        ['"e"'],
        ["3"],
        ["2026-12-07T00:00:00.000Z"],
        [None],
    ]
    # Every pattern the page needed is compiled now and used directly from then on.
    assert result["after"][:2] == [True, True]


def test_prepare_compiles_every_listing_pattern_before_any_page():
    # A listing calls prepare() while its first request is in flight (_lean.list_page).
    result = _run(
        """
        import json, re
        from s3torch_async._core import _listxml
        names = list(_listxml._LAZY_NAMES)
        before = [_listxml.prepared(), [isinstance(getattr(_listxml, n), re.Pattern) for n in names]]
        _listxml.prepare()
        after = [_listxml.prepared(), [isinstance(getattr(_listxml, n), re.Pattern) for n in names]]
        print(json.dumps({"names": names, "before": before, "after": after}))
        """
    )
    assert {"_CONTENTS", "_PROLOG", "_TAG"} <= set(result["names"])
    count = len(result["names"])
    assert result["before"] == [False, [False] * count]
    assert result["after"] == [True, [True] * count]


def test_importing_the_package_leaves_the_async_dataset_until_it_is_used():
    result = _run(
        """
        import json, sys
        import s3torch_async
        before = "s3torch_async.async_dataset" in sys.modules
        dataset = s3torch_async.AsyncS3Dataset
        print(json.dumps({"before": before, "after": "s3torch_async.async_dataset" in sys.modules,
                          "module": dataset.__module__}))
        """
    )
    assert result == {"before": False, "after": True, "module": "s3torch_async"}
