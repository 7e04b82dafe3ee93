"""The public surface: reference names at reference paths, complete and sorted ``__all__``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import s3torch_async

REFERENCE_TOP_LEVEL = [
    "S3IterableDataset",
    "S3MapDataset",
    "S3Checkpoint",
    "S3Reader",
    "S3ReaderConstructor",
    "S3Writer",
    "S3Exception",
    "S3ClientConfig",
    "__version__",
]

PUBLIC_MODULES = [
    "s3torch_async",
    "s3torch_async.s3reader",
    "s3torch_async.s3writer",
    "s3torch_async.s3iterable_dataset",
    "s3torch_async.s3map_dataset",
    "s3torch_async.s3checkpoint",
    "s3torch_async.dcp",
    "s3torch_async._s3client",
    "s3torch_async._s3dataset_common",
    "s3torch_async.async_dataset",
]

# Semi-private names that users' code and the reference's own docs import.
REFERENCE_PATHS = [
    ("s3torch_async._s3client", "S3Client"),
    ("s3torch_async._s3client", "S3ClientConfig"),
    ("s3torch_async._user_agent", "UserAgent"),
    ("s3torch_async._s3dataset_common", "parse_s3_uri"),
    ("s3torch_async._s3dataset_common", "get_objects_from_prefix"),
    ("s3torch_async._s3dataset_common", "get_objects_from_uris"),
    ("s3torch_async._s3dataset_common", "identity"),
    ("s3torch_async._s3bucket_key_data", "S3BucketKeyData"),
    ("s3torch_async.s3reader", "SequentialS3Reader"),
    ("s3torch_async.s3reader", "RangedS3Reader"),
    ("s3torch_async.s3reader", "DCPOptimizedS3Reader"),
    ("s3torch_async.s3reader", "DCPOptimizedConstructor"),
    ("s3torch_async.s3reader", "ItemRange"),
    ("s3torch_async.s3reader", "RangeGroup"),
    ("s3torch_async.s3reader", "S3ReaderConstructorProtocol"),
    ("s3torch_async.s3reader", "DCPS3ReaderConstructorProtocol"),
    ("s3torch_async.s3reader.ranged", "DEFAULT_BUFFER_SIZE"),
    ("s3torch_async.s3reader.dcp_optimized", "DEFAULT_MAX_GAP_SIZE"),
    ("s3torch_async.dcp", "S3StorageWriter"),
    ("s3torch_async.dcp", "S3StorageReader"),
    ("s3torch_async.dcp", "S3FileSystem"),
    ("s3torch_async.dcp", "DefaultPrefixStrategy"),
    ("s3torch_async.dcp.s3_prefix_strategy", "RoundRobinPrefixStrategy"),
    ("s3torch_async._s3client.s3client_config", "S3ClientConfig"),
]


def test_reference_top_level_names_are_exported():
    for name in REFERENCE_TOP_LEVEL:
        assert name in s3torch_async.__all__
        assert getattr(s3torch_async, name) is not None


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolvable(module_name):
    module = importlib.import_module(module_name)
    names = module.__all__
    assert names == sorted(
        names, key=lambda n: (n.startswith("__"), n)
    ) or names == sorted(names)
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name}"


@pytest.mark.parametrize(("module_name", "name"), REFERENCE_PATHS)
def test_reference_module_paths(module_name, name):
    assert hasattr(importlib.import_module(module_name), name)


def test_version_is_a_string():
    assert isinstance(s3torch_async.__version__, str)


def test_import_does_not_import_torch_or_start_threads():
    code = textwrap.dedent(
        """
        import sys, threading
        import s3torch_async
        from s3torch_async import S3Reader, S3Writer, AsyncS3Client, S3ClientConfig
        assert "torch" not in sys.modules, "torch imported"
        assert threading.active_count() == 1, threading.enumerate()
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_async_names_report_the_package_module():
    for name in ("AsyncS3Client", "AsyncS3Reader", "AsyncS3Writer"):
        assert getattr(s3torch_async, name).__module__ == "s3torch_async"


def test_lightning_missing_is_a_module_not_found_error():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["lightning"] = None  # simulate an environment without lightning
        try:
            import s3torch_async.lightning
        except ModuleNotFoundError as exc:
            assert "lightning" in str(exc), exc
        else:
            raise AssertionError("imported without lightning")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
