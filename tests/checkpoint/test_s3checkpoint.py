"""S3Checkpoint: torch.save / torch.load round trips through a real moto server."""

from __future__ import annotations

import io
import logging
import os
from typing import IO, Any, Callable, cast

import pytest
import torch

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async._core._planning import MiB
from s3torch_async._s3client import S3Client
from s3torch_async._user_agent import UserAgent
from s3torch_async.s3checkpoint import S3Checkpoint
from s3torch_async.s3writer import S3Writer

pytestmark = [
    pytest.mark.torch,
    # torch.load returns the saved UntypedStorage as a (deprecated) TypedStorage.
    pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning"),
]

REGION = "us-east-1"
CONFIG = S3ClientConfig(part_size=5 * MiB, max_attempts=1)


@pytest.fixture
def checkpoint(endpoint: str) -> S3Checkpoint:
    return S3Checkpoint(REGION, endpoint=endpoint, s3client_config=CONFIG)


def cast_io(stream: Any) -> IO[bytes]:
    # S3Writer/S3Reader are io.BufferedIOBase, which typeshed does not relate to IO[bytes].
    return cast("IO[bytes]", stream)


def _storage() -> torch.UntypedStorage:
    return torch.UntypedStorage.from_buffer(bytes(range(64)), dtype=torch.uint8)


def _state_dict() -> dict[str, Any]:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)
    ).state_dict()


OBJECTS: dict[str, Callable[[], Any]] = {
    "primitives": lambda: {"int": 1, "float": 2.5, "str": "x", "list": [1, None, True]},
    "tensor": lambda: torch.arange(100, dtype=torch.float64).reshape(10, 10),
    "state_dict": _state_dict,
    "untyped_storage": _storage,
}


def assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, torch.UntypedStorage):
        if isinstance(actual, torch.TypedStorage):
            actual = actual.untyped()
        assert actual.tolist() == expected.tolist()
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for name in expected:
            assert_same(actual[name], expected[name])
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected)
    else:
        assert actual == expected


def cases() -> list[Any]:
    out = []
    for name in OBJECTS:
        for legacy in (False, True):
            marks = []
            if legacy and name == "untyped_storage":
                marks.append(
                    pytest.mark.xfail(
                        raises=AttributeError,
                        strict=True,
                        reason="torch cannot load an UntypedStorage saved in the legacy "
                        "format even from io.BytesIO (the reference xfails it too)",
                    )
                )
            fmt = "legacy" if legacy else "zip"
            out.append(pytest.param(name, legacy, marks=marks, id=f"{name}-{fmt}"))
    return out


def test_attributes_and_eager_client_without_io():
    cp = S3Checkpoint("eu-west-1", endpoint="http://127.0.0.1:9")  # nothing listens
    assert cp.region == "eu-west-1"
    assert cp.endpoint == "http://127.0.0.1:9"
    assert isinstance(cp._client, S3Client)
    assert cp._client.user_agent_prefix == UserAgent().prefix  # no comments
    assert S3Checkpoint(REGION).endpoint is None


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "Only s3:// URIs are supported"),
        ("s3a://bucket/key", "Only s3:// URIs are supported"),
        ("s3://", "Bucket name must be non-empty"),
        ("s3:///key", "Bucket name must be non-empty"),
    ],
)
def test_bad_uri_raises_value_error(checkpoint, uri, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        checkpoint.writer(uri)
    with pytest.raises(ValueError, match=f"^{message}$"):
        checkpoint.reader(uri)


@pytest.mark.parametrize(("name", "legacy"), cases())
def test_torch_save_writes_loadable_object(checkpoint, bucket, boto_s3, name, legacy):
    obj = OBJECTS[name]()
    with checkpoint.writer(f"s3://{bucket}/ckpt.pt") as writer:
        assert isinstance(writer, S3Writer)
        torch.save(obj, cast_io(writer), _use_new_zipfile_serialization=not legacy)
    body = boto_s3.get_object(Bucket=bucket, Key="ckpt.pt")["Body"].read()
    assert_same(torch.load(io.BytesIO(body), weights_only=True), obj)


@pytest.mark.parametrize(("name", "legacy"), cases())
def test_save_then_load_round_trip(checkpoint, bucket, name, legacy):
    obj = OBJECTS[name]()
    uri = f"s3://{bucket}/dir/ckpt.pt"
    with checkpoint.writer(uri) as writer:
        torch.save(obj, writer, _use_new_zipfile_serialization=not legacy)
    loaded = torch.load(checkpoint.reader(uri), weights_only=True)
    assert_same(loaded, obj)


def test_multipart_checkpoint_round_trip(checkpoint, bucket, boto_s3):
    tensor = torch.arange(3 * MiB, dtype=torch.float32)  # 12 MiB: three parts
    uri = f"s3://{bucket}/big.pt"
    with checkpoint.writer(uri) as writer:
        torch.save({"weights": tensor}, writer)
    etag = boto_s3.head_object(Bucket=bucket, Key="big.pt")["ETag"]
    assert etag.endswith('-3"')
    loaded = torch.load(checkpoint.reader(uri), weights_only=True)
    assert torch.equal(loaded["weights"], tensor)


def test_failed_save_keeps_previous_checkpoint(checkpoint, bucket, boto_s3, put):
    put("ckpt.pt", b"previous")

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise RuntimeError("cannot pickle")

    def save() -> None:
        with checkpoint.writer(f"s3://{bucket}/ckpt.pt") as writer:
            torch.save({"a": torch.ones(3 * MiB), "b": Unpicklable()}, cast_io(writer))

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save()
    body = boto_s3.get_object(Bucket=bucket, Key="ckpt.pt")["Body"].read()
    assert body == b"previous"
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_reader_on_missing_key_fails_on_first_read(checkpoint, bucket):
    reader = checkpoint.reader(f"s3://{bucket}/missing.pt")  # no request yet
    with pytest.raises(
        S3Exception, match=r"^Service error: The key does not exist(\n|$)"
    ):
        reader.read()


def test_seek_to_end_sends_head(checkpoint, bucket, put, caplog):
    put("ckpt.pt", os.urandom(100))
    reader = checkpoint.reader(f"s3://{bucket}/ckpt.pt")
    with caplog.at_level(logging.DEBUG, logger="s3torch_async"):
        assert reader.seek(0, io.SEEK_END) == 100
    assert f"HeadObject s3://{bucket}/ckpt.pt" in caplog.text
