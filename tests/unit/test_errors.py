from __future__ import annotations

import pickle
import sys
import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torch_async import S3Exception
from s3torch_async._errors import BUCKET_NOT_FOUND

_opt_text = st.none() | st.text(max_size=20)


@given(
    message=st.text(max_size=50),
    bucket=_opt_text,
    key=_opt_text,
    operation=_opt_text,
    code=_opt_text,
    status=st.none() | st.integers(100, 599),
    request_id=_opt_text,
)
def test_s3exception_pickles_with_attributes(
    message, bucket, key, operation, code, status, request_id
):
    exc = S3Exception(
        message,
        bucket=bucket,
        key=key,
        operation=operation,
        code=code,
        status=status,
        request_id=request_id,
    )
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is S3Exception
    assert str(clone) == str(exc) == message
    assert clone.args == (message,)
    assert (
        clone.bucket,
        clone.key,
        clone.operation,
        clone.code,
        clone.status,
        clone.request_id,
    ) == (
        bucket,
        key,
        operation,
        code,
        status,
        request_id,
    )
    assert getattr(clone, "__notes__", None) == getattr(exc, "__notes__", None)
    assert repr(clone) == repr(exc)


def test_repr_names_bucket_key_and_operation_but_str_keeps_the_reference_text():
    exc = S3Exception(
        "Service error: The key does not exist",
        bucket="my-bucket",
        key="data/0001.bin",
        operation="GetObject",
        code="NoSuchKey",
        status=404,
    )
    assert str(exc) == "Service error: The key does not exist"
    assert repr(exc) == (
        "S3Exception('Service error: The key does not exist', bucket='my-bucket', "
        "key='data/0001.bin', operation='GetObject', code='NoSuchKey', status=404)"
    )


def test_repr_without_attributes_is_the_plain_exception_repr():
    assert repr(S3Exception("boom")) == "S3Exception('boom')"
    assert repr(S3Exception("a", "b")) == "S3Exception('a', 'b')"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="add_note is 3.11+")
def test_traceback_shows_the_object_and_operation_as_a_note():
    with pytest.raises(S3Exception) as info:
        raise S3Exception(
            "Service error: The key does not exist",
            bucket="b",
            key="k/1",
            operation="GetObject",
        )
    assert info.value.__notes__ == ["s3://b/k/1 (GetObject)"]
    text = "".join(traceback.format_exception(info.value))
    assert text.rstrip().endswith(
        "S3Exception: Service error: The key does not exist\ns3://b/k/1 (GetObject)"
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="add_note is 3.11+")
def test_note_is_left_out_when_the_message_already_names_the_object():
    exc = S3Exception("Upload to s3://b/k failed: boom", bucket="b", key="k")
    assert not hasattr(exc, "__notes__")
    bucket_only = S3Exception(BUCKET_NOT_FOUND, bucket="b", operation="ListObjectsV2")
    assert bucket_only.__notes__ == ["s3://b (ListObjectsV2)"]
    assert not hasattr(S3Exception("no location"), "__notes__")


def test_s3exception_keeps_several_args():
    exc = S3Exception("a", "b")
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.args == ("a", "b")
    assert clone.bucket is None


def test_s3exception_rebuilds_from_one_string():
    # DataLoader workers re-raise exceptions as type(exc)(message).
    exc = S3Exception("Service error: The key does not exist")
    assert isinstance(type(exc)(str(exc)), S3Exception)
