from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from s3torch_async import S3Exception

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


def test_s3exception_keeps_several_args():
    exc = S3Exception("a", "b")
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.args == ("a", "b")
    assert clone.bucket is None


def test_s3exception_rebuilds_from_one_string():
    # DataLoader workers re-raise exceptions as type(exc)(message).
    exc = S3Exception("Service error: The key does not exist")
    assert isinstance(type(exc)(str(exc)), S3Exception)
