"""Constants and helpers shared by the DCP tests."""

from __future__ import annotations

from typing import Any, Dict

from s3torch_async import S3ClientConfig

REGION = "us-east-1"
# No request-level retries: a scripted fault surfaces as one S3Exception.
NO_RETRY = S3ClientConfig(max_attempts=1)


def load(sd: Dict[str, Any], path: str, endpoint: str, constructor: Any = None) -> None:
    """``dcp.load`` of ``path`` into ``sd`` through ``S3StorageReader``."""
    from torch.distributed.checkpoint import state_dict_loader

    from s3torch_async.dcp import S3StorageReader

    reader = S3StorageReader(
        REGION,
        path,
        s3client_config=NO_RETRY,
        reader_constructor=constructor,
        endpoint=endpoint,
    )
    state_dict_loader.load(sd, storage_reader=reader)


def save(sd: Dict[str, Any], path: str, endpoint: str, **kwargs: Any) -> None:
    """``dcp.save`` of ``sd`` to ``path`` through ``S3StorageWriter``."""
    from torch.distributed.checkpoint import state_dict_saver

    from s3torch_async.dcp import S3StorageWriter

    writer = S3StorageWriter(
        REGION, path, s3client_config=NO_RETRY, endpoint=endpoint, **kwargs
    )
    state_dict_saver.save(sd, storage_writer=writer)
