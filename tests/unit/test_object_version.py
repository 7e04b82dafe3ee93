from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torch_async import HeadObjectResult, ObjectInfo, S3Exception
from s3torch_async._core._object import ObjectVersion


def test_first_etag_pins_and_a_different_one_is_a_412_naming_the_object():
    version = ObjectVersion()
    version.observe("", -1, bucket="b", key="k")  # a response without metadata
    assert version == ObjectVersion()
    version.observe('"a"', 10, bucket="b", key="k")
    version.observe('"a"', 10, bucket="b", key="k")
    assert (version.etag, version.size) == ('"a"', 10)
    with pytest.raises(
        S3Exception, match=r"s3://b/k .*ETag \"z\", expected \"a\""
    ) as info:
        version.observe('"z"', 10, bucket="b", key="k")
    assert (info.value.status, info.value.bucket, info.value.key) == (412, "b", "k")
    assert version.etag == '"a"'


@given(st.integers(0, 2**40), st.integers(0, 2**31))
def test_listing_info_gives_size_and_time_but_does_not_pin(size, mtime):
    version = ObjectVersion.from_info(ObjectInfo("k", '"e"', size, mtime))
    assert (version.size, version.etag, version.last_modified) == (size, None, mtime)


def test_learn_size_keeps_a_size_already_known():
    version = ObjectVersion(size=5)
    assert version.learn_size(HeadObjectResult('"e"', 7, 1)) == 5
    empty = ObjectVersion()
    assert empty.learn_size(HeadObjectResult('"e"', 7, 1)) == 7
    assert empty.last_modified == 1
