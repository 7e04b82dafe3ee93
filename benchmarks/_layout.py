"""Lay out the data the selected benchmarks read, and check what the write benchmarks wrote.

Uses boto3 (any S3-compatible store). Data that is already there with the right size is kept,
so repeated runs against a real bucket do not upload it again.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import os
import tempfile
import warnings
from typing import Any, Callable, Iterable, Optional, Sequence

from ._cases import Bench
from ._data import make_state_dict, payload, payload_slice, sample_offsets
from ._model import Keys, Target

logger = logging.getLogger(__name__)

_THREADS = 16
_SMALL_SEED = 2


def make_admin_client(target: Target) -> Any:
    """A boto3 client for arranging and checking data."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        region_name=target.region,
        endpoint_url=target.endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=_THREADS,
            retries={"mode": "standard", "max_attempts": 5},
        ),
    )


def _size_of(s3: Any, bucket: str, key: str) -> Optional[int]:
    from botocore.exceptions import ClientError

    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as err:
        if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise


def _existing(s3: Any, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _put_many(
    s3: Any, bucket: str, keys: Iterable[str], body: Callable[[str], bytes]
) -> int:
    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body(key))

    todo = list(keys)
    with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
        for future in concurrent.futures.as_completed(
            [pool.submit(put, k) for k in todo]
        ):
            future.result()
    return len(todo)


def _upload(s3: Any, bucket: str, key: str, data: Any) -> None:
    from boto3.s3.transfer import TransferConfig

    s3.upload_fileobj(
        io.BytesIO(data), bucket, key, Config=TransferConfig(max_concurrency=4)
    )


class Layout:
    """Arranges the data of one run on one store."""

    def __init__(self, target: Target, keys: Keys, *, create_bucket: bool) -> None:
        self.target = target
        self.keys = keys
        self.create_bucket = create_bucket
        self.s3 = make_admin_client(target)

    def prepare(self, benches: Sequence[Bench]) -> None:
        """Create the bucket (local servers) and upload whatever the benchmarks read."""
        bucket = self.target.bucket
        if self.create_bucket:
            existing = [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])]
            if bucket not in existing:
                self.s3.create_bucket(Bucket=bucket)
        else:
            self.s3.head_bucket(Bucket=bucket)
        if _size_of(self.s3, bucket, self.keys.warmup_object) != 1:
            self.s3.put_object(Bucket=bucket, Key=self.keys.warmup_object, Body=b"w")
        ids = {b.id for b in benches}
        if "1" in ids:
            self._large_object()
        if ids & {"2-w0", "2-w2"}:
            self._small_objects()
        if "4" in ids:
            self._listing()
        if "7" in ids:
            self._cold_object()
        if "5-load" in ids:
            self._checkpoint()
        if "6-load" in ids:
            self._dcp()

    def _large_object(self) -> None:
        size, key = self.keys.sizes.read_size, self.keys.read_object
        if _size_of(self.s3, self.target.bucket, key) == size:
            return
        logger.info("uploading %s (%d bytes)", key, size)
        _upload(self.s3, self.target.bucket, key, payload(size))

    def _cold_object(self) -> None:
        from .clients.coldstart import SEED

        size, key = self.keys.sizes.small_size, self.keys.cold_object
        if _size_of(self.s3, self.target.bucket, key) != size:
            _upload(self.s3, self.target.bucket, key, payload(size, SEED))

    def _small_objects(self) -> None:
        sizes = self.keys.sizes
        wanted = {self.keys.small_object(i) for i in range(sizes.small_count)}
        have = _existing(self.s3, self.target.bucket, self.keys.small_prefix)
        body = payload(sizes.small_size, _SMALL_SEED)
        done = _put_many(
            self.s3, self.target.bucket, sorted(wanted - have), lambda _: body
        )
        if done:
            logger.info("uploaded %d small objects", done)

    def _listing(self) -> None:
        count = self.keys.sizes.list_count
        wanted = {self.keys.list_object(i) for i in range(count)}
        have = _existing(self.s3, self.target.bucket, self.keys.list_prefix)
        done = _put_many(
            self.s3, self.target.bucket, sorted(wanted - have), lambda _: b""
        )
        if done:
            logger.info("uploaded %d empty objects for listing", done)

    def _checkpoint(self) -> None:
        import torch

        key = self.keys.checkpoint_load
        if _size_of(self.s3, self.target.bucket, key) is not None:
            return
        buf = io.BytesIO()
        torch.save(make_state_dict(self.keys.sizes.checkpoint_size), buf)
        logger.info("uploading checkpoint %s (%d bytes)", key, buf.tell())
        _upload(self.s3, self.target.bucket, key, buf.getbuffer())

    def _dcp(self) -> None:
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict_saver import save

        prefix = self.keys.dcp_load
        if _size_of(self.s3, self.target.bucket, prefix + ".metadata") is not None:
            return
        with tempfile.TemporaryDirectory(prefix="bench-dcp-") as tmp:
            state = make_state_dict(self.keys.sizes.dcp_size)
            with warnings.catch_warnings():
                # torch warns that no process group is initialised: one rank is the point
                warnings.simplefilter("ignore")
                save(state, storage_writer=FileSystemWriter(tmp))
            for name in sorted(os.listdir(tmp)):
                with open(os.path.join(tmp, name), "rb") as fh:
                    _upload(self.s3, self.target.bucket, prefix + name, fh.read())
        logger.info("uploaded DCP checkpoint under %s", prefix)

    # -- after a write benchmark ------------------------------------------------------------

    def check_written(self, key: str, size: Optional[int], seed: int = 1) -> None:
        """Check the object a write benchmark produced; ``size=None`` checks only existence.

        Raises:
            AssertionError: The object is missing, has the wrong size or the wrong bytes.
        """
        got = _size_of(self.s3, self.target.bucket, key)
        if got is None:
            raise AssertionError(f"{key} was not written")
        if size is None:
            return
        if got != size:
            raise AssertionError(f"{key} has {got} bytes, expected {size}")
        for offset in sample_offsets(size):
            stop = min(size, offset + 4096)
            body = self.s3.get_object(
                Bucket=self.target.bucket, Key=key, Range=f"bytes={offset}-{stop - 1}"
            )["Body"].read()
            if body != payload_slice(offset, stop, seed):
                raise AssertionError(f"{key}: bytes at offset {offset} differ")

    def delete(self, key: str) -> None:
        """Delete an object (frees the local server's memory between runs)."""
        self.s3.delete_object(Bucket=self.target.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix``."""
        for key in sorted(_existing(self.s3, self.target.bucket, prefix)):
            self.delete(key)
