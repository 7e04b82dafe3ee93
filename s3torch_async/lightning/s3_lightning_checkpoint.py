"""``S3LightningCheckpoint``: a Lightning ``CheckpointIO`` plugin that saves to and loads from S3."""

from __future__ import annotations

from typing import IO, Any, Dict, Optional, cast

import lightning
import torch
from lightning.pytorch.plugins.io import CheckpointIO
from packaging.version import Version

from .._config import S3ClientConfig
from .._s3client import S3Client
from .._s3dataset_common import parse_s3_uri
from .._user_agent import UserAgent

__all__ = ["S3LightningCheckpoint"]

# From Lightning 2.6 on, Lightning passes weights_only itself and None means "torch decides".
_LIGHTNING_PASSES_WEIGHTS_ONLY = Version("2.6")


class S3LightningCheckpoint(CheckpointIO):
    """A checkpoint manager for S3 using the ``CheckpointIO`` interface.

    Pass it to ``Trainer(plugins=[S3LightningCheckpoint(region)])`` and use ``s3://`` paths with
    ``trainer.save_checkpoint`` and ``trainer.fit(ckpt_path=...)``. It also works wrapped in
    Lightning's ``AsyncCheckpointIO``.

    Args:
        region: AWS region of the bucket.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``.
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS.

    Attributes:
        region: The region given.
    """

    def __init__(
        self,
        region: str,
        s3client_config: Optional[S3ClientConfig] = None,
        endpoint: Optional[str] = None,
    ) -> None:
        self.region = region
        user_agent = UserAgent(["lightning", lightning.__version__])
        self._client = S3Client(
            region,
            user_agent=user_agent,
            s3client_config=s3client_config,
            endpoint=endpoint,
        )

    def save_checkpoint(  # type: ignore[override]  # the reference accepts str only
        self,
        checkpoint: Dict[str, Any],
        path: str,
        storage_options: Optional[Any] = None,
    ) -> None:
        """Save a checkpoint to S3 with ``torch.save``; the object appears when it is complete.

        Args:
            checkpoint: The checkpoint state dictionary.
            path: The S3 URI to save to, ``s3://bucket/key``.
            storage_options: Ignored.

        Raises:
            S3Exception: An error occurred accessing S3; no object was written.
            TypeError: ``path`` is not a string.
            ValueError: ``path`` is not an ``s3://`` URI.
        """
        self._validate_path(path)
        bucket, key = parse_s3_uri(path)
        with self._client.put_object(bucket, key) as s3writer:
            torch.save(checkpoint, cast("IO[bytes]", s3writer))

    def load_checkpoint(  # type: ignore[override]  # the reference accepts str only
        self,
        path: str,
        map_location: Optional[Any] = None,
        weights_only: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Load a checkpoint from S3 with ``torch.load``.

        Args:
            path: The S3 URI to load from, ``s3://bucket/key``.
            map_location: How to remap storage locations, as for ``torch.load``.
            weights_only: Passed to ``torch.load``. When None: False on Lightning < 2.6 (as
                Lightning did), left to torch on Lightning >= 2.6.

        Returns:
            Dict[str, Any]: The loaded checkpoint.

        Raises:
            S3Exception: An error occurred accessing S3, e.g.
                ``Service error: The key does not exist``.
            TypeError: ``path`` is not a string.
            ValueError: ``path`` is not an ``s3://`` URI.
        """
        self._validate_path(path)
        bucket, key = parse_s3_uri(path)
        if (
            weights_only is None
            and Version(lightning.__version__) < _LIGHTNING_PASSES_WEIGHTS_ONLY
        ):
            weights_only = False
        s3reader = self._client.get_object(bucket, key)
        try:
            loaded: Dict[str, Any] = torch.load(
                cast("IO[bytes]", s3reader), map_location, weights_only=weights_only
            )
        finally:
            s3reader.close()
        return loaded

    def remove_checkpoint(self, path: str) -> None:  # type: ignore[override]
        """Delete the checkpoint object; a missing key is not an error.

        Args:
            path: The S3 URI of the checkpoint, ``s3://bucket/key``.

        Raises:
            S3Exception: An error occurred accessing S3 (e.g. a missing bucket).
            TypeError: ``path`` is not a string.
            ValueError: ``path`` is not an ``s3://`` URI.
        """
        self._validate_path(path)
        bucket, key = parse_s3_uri(path)
        self._client.delete_object(bucket, key)

    def teardown(self) -> None:
        """Nothing to release: connections belong to the process-wide runner."""

    @staticmethod
    def _validate_path(path: Any) -> None:
        if not isinstance(path, str):
            raise TypeError(
                f"{type(path).__name__!r} is not a supported type for 'path'. "
                "Must be a string formatted as an S3 uri."
            )
