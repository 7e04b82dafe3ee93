"""Stateful hypothesis tests: each reader against an ``io.BytesIO`` oracle on the moto server.

The oracle models the reference's one difference from ``BytesIO``: seeks past the end are
clamped to the size.
"""

from __future__ import annotations

import io
import random
import uuid

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from s3torch_async import ObjectInfo, S3ClientConfig
from s3torch_async._s3client import S3Client
from s3torch_async._s3client._s3client import _Constant, _GetStream, _HeadObject
from s3torch_async.s3reader import S3ReaderConstructor

REGION = "us-east-1"
PART = 4 * 1024  # small parts: objects of a few parts stay small for moto
MAX_SIZE = 5 * PART + 100

CASES = {
    "sequential-head": (S3ReaderConstructor.sequential(), False),
    "sequential-listing": (S3ReaderConstructor.sequential(), True),
    "range_based-head": (S3ReaderConstructor.range_based(buffer_size=1000), False),
    "range_based_unbuffered-listing": (S3ReaderConstructor.range_based(0), True),
}

sizes = st.one_of(st.integers(0, 64), st.integers(0, MAX_SIZE))
read_sizes = st.one_of(st.none(), st.integers(-2, MAX_SIZE + 20))


def make_machine(client, bucket, boto_s3, constructor, with_info):
    class ReaderMachine(RuleBasedStateMachine):
        @initialize(size=sizes, seed=st.integers(0, 2**32 - 1))
        def upload(self, size, seed):
            data = random.Random(seed).randbytes(size)
            key = f"obj-{uuid.uuid4().hex}"
            boto_s3.put_object(Bucket=bucket, Key=key, Body=data)
            if with_info:
                info = _Constant(ObjectInfo(key, "", size, 0))
            else:
                info = _HeadObject(client, bucket, key)
            stream = _GetStream(client, bucket, key, part_size=PART)
            self.reader = constructor(bucket, key, info, stream)
            self.oracle = io.BytesIO(data)
            self.size = size

        @rule(n=read_sizes)
        def read(self, n):
            assert self.reader.read(n) == self.oracle.read(n)

        @rule(n=st.integers(0, MAX_SIZE + 20), view=st.booleans())
        def readinto(self, n, view):
            got, want = bytearray(n), bytearray(n)
            buf = memoryview(got) if view else got
            assert self.reader.readinto(buf) == self.oracle.readinto(want)
            assert got == want

        @rule(
            offset=st.integers(-MAX_SIZE - 30, MAX_SIZE + 30),
            whence=st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END]),
        )
        def seek(self, offset, whence):
            pos = self.oracle.tell()
            if whence == io.SEEK_SET:
                target = offset
            elif whence == io.SEEK_CUR:
                target = pos if pos == self.size and offset >= 0 else pos + offset
            else:
                target = self.size if offset >= 0 else self.size + offset
            if target < 0:
                with pytest.raises(ValueError, match=f"^negative seek value {target}$"):
                    self.reader.seek(offset, whence)
                return
            expected = min(target, self.size)  # clamped, unlike BytesIO
            assert self.reader.seek(offset, whence) == expected
            self.oracle.seek(expected)

        @rule()
        def tell(self):
            assert self.reader.tell() == self.oracle.tell()

        @invariant()
        def positions_match(self):
            if hasattr(self, "reader"):
                assert self.reader.tell() == self.oracle.tell()

        def teardown(self):
            if hasattr(self, "reader"):
                self.reader.close()

    return ReaderMachine


@pytest.fixture
def client(endpoint):
    return S3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(max_attempts=1)
    )


@pytest.mark.parametrize("case", list(CASES))
def test_reader_matches_bytesio(client, bucket, boto_s3, case):
    constructor, with_info = CASES[case]
    machine = make_machine(client, bucket, boto_s3, constructor, with_info)
    run_state_machine_as_test(
        machine,
        settings=settings(
            settings.default, max_examples=15, stateful_step_count=25, deadline=None
        ),
    )
