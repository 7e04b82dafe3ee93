"""Lightning integration: ``S3LightningCheckpoint`` (needs the ``lightning`` extra)."""

from __future__ import annotations

import lightning  # noqa: F401  (fail early and clearly when Lightning is not installed)

from .s3_lightning_checkpoint import S3LightningCheckpoint

__all__ = ["S3LightningCheckpoint"]
