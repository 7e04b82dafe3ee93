"""Constants shared by the DCP tests."""

from __future__ import annotations

from s3torch_async import S3ClientConfig

REGION = "us-east-1"
# No request-level retries: a scripted fault surfaces as one S3Exception.
NO_RETRY = S3ClientConfig(max_attempts=1)
