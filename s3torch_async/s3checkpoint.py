"""``S3Checkpoint``: ``torch.save`` / ``torch.load`` straight to and from S3 objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ._config import S3ClientConfig
from ._s3client import S3Client
from ._s3dataset_common import parse_s3_uri
from .s3writer import S3Writer

if TYPE_CHECKING:
    from .s3reader import S3Reader

__all__ = ["S3Checkpoint"]


class S3Checkpoint:
    """A checkpoint manager for S3.

    To read a checkpoint from S3, call the ``reader`` method with the S3 URI of the checkpoint
    and pass the reader to ``torch.load``. To write a checkpoint to S3, call the ``writer``
    method with the S3 URI and pass the writer to ``torch.save``; the object appears when the
    writer is closed (leave the ``with`` block). No request is sent until data is read or
    written.

    Args:
        region: AWS region of the bucket.
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``.

    Attributes:
        region: The region given.
        endpoint: The endpoint given.

    Example::

        checkpoint = S3Checkpoint(region="us-east-1")
        with checkpoint.writer("s3://bucket/model.ckpt") as writer:
            torch.save(model.state_dict(), writer)
        with checkpoint.reader("s3://bucket/model.ckpt") as reader:
            state_dict = torch.load(reader, weights_only=True)
    """

    def __init__(
        self,
        region: str,
        endpoint: Optional[str] = None,
        s3client_config: Optional[S3ClientConfig] = None,
    ) -> None:
        self.region = region
        self.endpoint = endpoint
        self._client = S3Client(
            region, endpoint=endpoint, s3client_config=s3client_config
        )

    def reader(self, s3_uri: str) -> S3Reader:
        """Create a reader (the default, sequential one) for a checkpoint in S3.

        Args:
            s3_uri: The S3 URI of the checkpoint, ``s3://bucket/key``.

        Returns:
            S3Reader: A read-only binary stream of the object's contents.

        Raises:
            S3Exception: An error occurred accessing S3 (on the first read).
            ValueError: ``s3_uri`` is not a valid ``s3://`` URI.
        """
        bucket, key = parse_s3_uri(s3_uri)
        return self._client.get_object(bucket, key)

    def writer(self, s3_uri: str) -> S3Writer:
        """Create a writer for a checkpoint in S3.

        Args:
            s3_uri: The S3 URI of the checkpoint, ``s3://bucket/key``.

        Returns:
            S3Writer: A write-only binary stream; the object is committed when it is closed.

        Raises:
            S3Exception: An error occurred accessing S3.
            ValueError: ``s3_uri`` is not a valid ``s3://`` URI.
        """
        bucket, key = parse_s3_uri(s3_uri)
        return self._client.put_object(bucket, key)
