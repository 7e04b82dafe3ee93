from __future__ import annotations

import pytest

from s3torch_async._s3dataset_common import parse_s3_uri


@pytest.mark.parametrize(
    "uri", [None, "", "s3a://bucket/key", "http://bucket/key", "bucket/key", 3]
)
def test_non_s3_uris_are_rejected(uri):
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
        parse_s3_uri(uri)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key"])
def test_empty_bucket_is_rejected(uri):
    with pytest.raises(ValueError, match=r"^Bucket name must be non-empty$"):
        parse_s3_uri(uri)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/key/inner", ("bucket", "key/inner")),
        ("s3://bucket//double//slash", ("bucket", "/double//slash")),
        ("s3://bucket/a%20b", ("bucket", "a%20b")),
    ],
)
def test_uri_split_once_without_normalisation(uri, expected):
    assert parse_s3_uri(uri) == expected
