"""S3FileSystem against a real moto server (and the fault proxy where S3 must misbehave)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import pytest
import torch

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async._s3client import S3Client
from s3torch_async._user_agent import UserAgent
from s3torch_async.dcp import S3FileSystem
from s3torch_async.dcp import s3_file_system as s3fs_module
from s3torch_async.s3reader import (
    DCPOptimizedConstructor,
    RangedS3Reader,
    S3ReaderConstructor,
    SequentialS3Reader,
)
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests.dcp._helpers import NO_RETRY, REGION

pytestmark = pytest.mark.torch

DATA = b"test data\n" * 10


@pytest.fixture
def fs(endpoint: str) -> S3FileSystem:
    return S3FileSystem(REGION, s3client_config=NO_RETRY, endpoint=endpoint)


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def keys(boto_s3: Any, bucket: str) -> list[str]:
    listing = boto_s3.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def body(boto_s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = boto_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


# -- create_stream -------------------------------------------------------------------------


def test_create_stream_writes_then_reads_back(
    fs: S3FileSystem, bucket: str, boto_s3: Any
) -> None:
    path = uri(bucket, "dir/obj.bin")
    with fs.create_stream(path, "wb") as writer:
        writer.write(DATA)
    assert body(boto_s3, bucket, "dir/obj.bin") == DATA
    assert fs.exists(path) is True
    with fs.create_stream(path, "rb") as reader:
        assert reader.read() == DATA
    assert reader.closed


def test_create_stream_commits_only_when_the_block_exits(
    fs: S3FileSystem, bucket: str, boto_s3: Any
) -> None:
    with fs.create_stream(uri(bucket, "k"), "wb") as writer:
        writer.write(DATA)
        assert keys(boto_s3, bucket) == []
    assert keys(boto_s3, bucket) == ["k"]


def test_create_stream_write_aborted_by_exception_leaves_no_object(
    fs: S3FileSystem, bucket: str, boto_s3: Any
) -> None:
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="boom"),
        fs.create_stream(uri(bucket, "k"), "wb") as writer,
    ):
        writer.write(DATA)
        raise RuntimeError("boom")
    assert keys(boto_s3, bucket) == []
    assert boto_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_create_stream_rejects_unknown_mode_on_enter(fs: S3FileSystem) -> None:
    stream = fs.create_stream("s3://bucket/key", "foobar")
    with pytest.raises(ValueError) as info, stream:
        pass
    assert str(info.value) == (
        "Invalid mode='foobar' mode argument: create_stream only supports rb (read mode) "
        "& wb (write mode)"
    )


@pytest.mark.parametrize("mode", ["rb", "wb"])
def test_create_stream_rejects_non_s3_path(fs: S3FileSystem, mode: str) -> None:
    with (
        pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"),
        fs.create_stream("/local/file", mode),
    ):
        pass


@pytest.mark.parametrize(
    ("constructor", "reader_type"),
    [
        (None, SequentialS3Reader),
        (S3ReaderConstructor.sequential(), SequentialS3Reader),
        (S3ReaderConstructor.range_based(), RangedS3Reader),
        (S3ReaderConstructor.range_based(buffer_size=0), RangedS3Reader),
    ],
    ids=["default", "sequential", "range_based", "range_based_unbuffered"],
)
def test_create_stream_reads_with_the_configured_reader(
    endpoint: str, bucket: str, put: Any, constructor: Any, reader_type: type
) -> None:
    put("obj", DATA)
    fs = S3FileSystem(
        REGION,
        s3client_config=NO_RETRY,
        reader_constructor=constructor,
        endpoint=endpoint,
    )
    with fs.create_stream(uri(bucket, "obj"), "rb") as reader:
        assert isinstance(reader, reader_type)
        assert reader.read(5) == DATA[:5]
        reader.seek(0)
        assert reader.read() == DATA


def test_create_stream_read_of_missing_key_raises(
    fs: S3FileSystem, bucket: str
) -> None:
    with (
        pytest.raises(S3Exception),
        fs.create_stream(uri(bucket, "missing"), "rb") as reader,
    ):
        reader.read()


# -- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "suffix", "expected"),
    [
        ("str_path", "suffix", "str_path/suffix"),
        (Path("path_path"), "suffix", "path_path/suffix"),
        ("s3://bucket/ckpt", ".metadata", "s3://bucket/ckpt/.metadata"),
        ("s3://bucket/ckpt/", "__0_0.distcp", "s3://bucket/ckpt/__0_0.distcp"),
        ("s3://bucket", "shard1/__0_0.distcp", "s3://bucket/shard1/__0_0.distcp"),
    ],
)
def test_concat_path_joins_into_a_str(
    fs: S3FileSystem, path: Any, suffix: str, expected: str
) -> None:
    result = fs.concat_path(path, suffix)
    assert isinstance(result, str)
    assert result == expected


def test_concat_path_uses_slashes_for_s3_even_where_os_path_would_not(
    fs: S3FileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ntpath
    import os
    from types import SimpleNamespace

    # Windows' os.path, for this module only.
    windows_os = SimpleNamespace(fspath=os.fspath, path=ntpath)
    monkeypatch.setattr(s3fs_module, "os", windows_os)
    assert fs.concat_path("dir", "x.distcp") == "dir\\x.distcp"
    assert fs.concat_path("s3://bucket/ckpt", "x.distcp") == "s3://bucket/ckpt/x.distcp"


@pytest.mark.parametrize("path", ["s3://bucket/ckpt", Path("path_path")])
def test_init_path_returns_the_path_unchanged(fs: S3FileSystem, path: Any) -> None:
    assert fs.init_path(path) is path


def test_mkdir_creates_nothing(fs: S3FileSystem, bucket: str, boto_s3: Any) -> None:
    fs.mkdir(uri(bucket, "dir"))
    assert keys(boto_s3, bucket) == []


@pytest.mark.parametrize(
    ("checkpoint_id", "valid"),
    [
        ("s3://bucket/ckpt", True),
        ("s3://bucket", True),
        (Path("anything"), True),
        ("foobar", False),
        ("s3:///", False),
        ("s3a://bucket/ckpt", False),
        ("", False),
    ],
)
def test_validate_checkpoint_id(checkpoint_id: Any, valid: bool) -> None:
    assert S3FileSystem.validate_checkpoint_id(checkpoint_id) is valid


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("simple/path", "simple/path"),
        ("", ""),
        (None, None),
        ("path with spaces/file.txt", "path%20with%20spaces/file.txt"),
        ("special&?=chars", "special%26%3F%3Dchars"),
        ("a b/c?", "a%20b/c%3F"),
        ("path/測試/файл", "path/%E6%B8%AC%E8%A9%A6/%D1%84%D0%B0%D0%B9%D0%BB"),
        ("path+plus/hash#tag", "path%2Bplus/hash%23tag"),
        ("path@email/dollar$", "path%40email/dollar%24"),
        ("path//double/slash", "path//double/slash"),
    ],
)
def test_escape_path_encodes_each_segment(
    raw: Optional[str], escaped: Optional[str]
) -> None:
    assert S3FileSystem._escape_path(raw) == escaped


# -- rename --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src_key",
    [
        "src_key.txt",
        "dir/test_[+re.name]!@£$%^&*_(src)",
        "with space/and%20percent?=&.bin",
        "ünïcödé/測試",
    ],
)
def test_rename_moves_object_within_bucket(
    fs: S3FileSystem, bucket: str, put: Any, boto_s3: Any, src_key: str
) -> None:
    put(src_key, DATA)
    dst_key = "dst/" + src_key.replace("src", "dst")
    fs.rename(uri(bucket, src_key), uri(bucket, dst_key))
    assert keys(boto_s3, bucket) == [dst_key]
    assert body(boto_s3, bucket, dst_key) == DATA
    assert fs.exists(uri(bucket, src_key)) is False
    assert fs.exists(uri(bucket, dst_key)) is True


def test_rename_replaces_an_existing_destination(
    fs: S3FileSystem, bucket: str, put: Any, boto_s3: Any
) -> None:
    put(".metadata.tmp", b"new")
    put(".metadata", b"old")
    fs.rename(uri(bucket, ".metadata.tmp"), uri(bucket, ".metadata"))
    assert keys(boto_s3, bucket) == [".metadata"]
    assert body(boto_s3, bucket, ".metadata") == b"new"


def test_rename_across_buckets_is_refused_before_any_request(
    fs: S3FileSystem, make_bucket: Any, put: Any, boto_s3: Any, bucket: str
) -> None:
    put("src", DATA)
    other = make_bucket()
    with pytest.raises(ValueError) as info:
        fs.rename(uri(bucket, "src"), uri(other, "dst"))
    assert str(info.value) == (
        "Source and destination buckets cannot be different (rename does not support "
        "cross-buckets operations)"
    )
    assert keys(boto_s3, bucket) == ["src"]
    assert keys(boto_s3, other) == []


def test_rename_of_missing_source_raises_object_not_found(
    fs: S3FileSystem, bucket: str
) -> None:
    with pytest.raises(S3Exception) as info:
        fs.rename(uri(bucket, "missing"), uri(bucket, "dst"))
    assert str(info.value) == "Service error: The object was not found"


def _proxied_fs(proxy: FaultProxy) -> S3FileSystem:
    return S3FileSystem(REGION, s3client_config=NO_RETRY, endpoint=proxy.url)


def _deletes(proxy: FaultProxy) -> int:
    return sum(1 for method, _, _ in proxy.requests if method == "DELETE")


def test_rename_retries_a_failing_delete_with_bounded_waits(
    proxy: FaultProxy,
    bucket: str,
    put: Any,
    boto_s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(s3fs_module, "_sleep", waits.append)
    put("src", DATA)
    fs = _proxied_fs(proxy)
    proxy.add_fault(FaultRule(Fault.status(503), method="DELETE", times=2))

    fs.rename(uri(bucket, "src"), uri(bucket, "dst"))

    assert _deletes(proxy) == 3
    assert keys(boto_s3, bucket) == ["dst"]
    assert len(waits) == 2
    assert 0 <= waits[0] <= 1.0
    assert 0 <= waits[1] <= 2.0


def test_rename_reraises_after_three_failed_deletes(
    proxy: FaultProxy,
    bucket: str,
    put: Any,
    boto_s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(s3fs_module, "_sleep", waits.append)
    put("src", DATA)
    fs = _proxied_fs(proxy)
    proxy.add_fault(FaultRule(Fault.status(503), method="DELETE", times=None))

    with pytest.raises(S3Exception) as info:
        fs.rename(uri(bucket, "src"), uri(bucket, "dst"))

    assert info.value.status == 503
    assert _deletes(proxy) == 3
    assert len(waits) == 2
    assert "this was the 3rd time calling it" in caplog.text
    # Copy happened, delete did not: both keys exist (rename is not atomic).
    assert keys(boto_s3, bucket) == ["dst", "src"]


def test_rename_does_not_retry_a_failing_copy(
    proxy: FaultProxy, bucket: str, put: Any, boto_s3: Any
) -> None:
    put("src", DATA)
    fs = _proxied_fs(proxy)
    proxy.add_fault(FaultRule(Fault.status(503), method="PUT", times=None))
    with pytest.raises(S3Exception):
        fs.rename(uri(bucket, "src"), uri(bucket, "dst"))
    assert _deletes(proxy) == 0
    assert keys(boto_s3, bucket) == ["src"]


# -- exists / rm_file ----------------------------------------------------------------------


def test_exists_is_true_for_an_object_and_false_for_a_missing_key(
    fs: S3FileSystem, bucket: str, put: Any
) -> None:
    put("present", DATA)
    assert fs.exists(uri(bucket, "present")) is True
    assert fs.exists(uri(bucket, "absent")) is False


def test_exists_reraises_errors_other_than_not_found(
    proxy: FaultProxy, bucket: str, put: Any
) -> None:
    put("present", DATA)
    fs = _proxied_fs(proxy)
    proxy.add_fault(FaultRule(Fault.status(403), method="HEAD"))
    with pytest.raises(S3Exception) as info:
        fs.exists(uri(bucket, "present"))
    assert str(info.value) != "Service error: The object was not found"
    assert info.value.status == 403


def test_rm_file_deletes_the_object(
    fs: S3FileSystem, bucket: str, put: Any, boto_s3: Any
) -> None:
    put("k", DATA)
    fs.rm_file(uri(bucket, "k"))
    assert keys(boto_s3, bucket) == []


def test_rm_file_of_missing_key_is_not_an_error(fs: S3FileSystem, bucket: str) -> None:
    fs.rm_file(uri(bucket, "absent"))
    assert fs.exists(uri(bucket, "absent")) is False


def test_rm_file_logs_and_swallows_s3_errors(
    fs: S3FileSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=s3fs_module.__name__):
        fs.rm_file("s3://no-such-bucket-s3torch-async-dcp/k")
    assert "Failed to remove object from S3" in caplog.text
    record = next(r for r in caplog.records if r.name == s3fs_module.__name__)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], S3Exception)


# -- client construction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constructor", "reader_type"),
    [
        (None, "sequential"),
        (S3ReaderConstructor.sequential(), "sequential"),
        (S3ReaderConstructor.range_based(), "range_based"),
        (S3ReaderConstructor.dcp_optimized(), "dcp_optimized"),
    ],
)
def test_user_agent_names_dcp_torch_and_reader_type(
    constructor: Any, reader_type: str
) -> None:
    fs = S3FileSystem(REGION, reader_constructor=constructor)
    expected = UserAgent(["dcp", torch.__version__, f"md/reader_type#{reader_type}"])
    assert fs._client.user_agent_prefix == expected.prefix
    assert fs._client.user_agent_prefix.endswith(
        f" (dcp; {torch.__version__}; md/reader_type#{reader_type})"
    )


def test_default_reader_constructor_is_sequential() -> None:
    fs = S3FileSystem(REGION)
    assert S3ReaderConstructor.get_reader_type_string(fs._reader_constructor) == (
        "sequential"
    )


def test_config_is_passed_to_the_client_unvalidated() -> None:
    config = S3ClientConfig(throughput_target_gbps=7, part_size=8000, max_attempts=10)
    fs = S3FileSystem(REGION, s3client_config=config)
    assert fs._client._s3client_config is config
    assert fs._client.region == REGION


def test_supplied_client_is_used_as_is(endpoint: str) -> None:
    client = S3Client(REGION, endpoint=endpoint)
    constructor = S3ReaderConstructor.dcp_optimized()
    fs = S3FileSystem(REGION, client, reader_constructor=constructor)
    assert fs._client is client
    assert isinstance(fs._reader_constructor, DCPOptimizedConstructor)


def test_endpoint_with_supplied_client_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint cannot be combined with s3_client"):
        S3FileSystem(REGION, S3Client(REGION), endpoint=endpoint)


def test_endpoint_argument_reaches_the_server(
    proxy: FaultProxy, bucket: str, put: Any
) -> None:
    put("k", DATA)
    assert _proxied_fs(proxy).exists(uri(bucket, "k")) is True
    assert any(method == "HEAD" for method, _, _ in proxy.requests)


def test_endpoint_from_environment_is_honoured(
    proxy: FaultProxy, bucket: str, put: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    put("k", DATA)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    # A configuration no other test uses, so the runner builds a fresh client that reads
    # the environment now.
    config = S3ClientConfig(max_attempts=1, throughput_target_gbps=1.2345)
    assert S3FileSystem(REGION, s3client_config=config).exists(uri(bucket, "k"))
    assert any(method == "HEAD" for method, _, _ in proxy.requests)
