"""The bucket and sample data the documentation's examples assume."""

from __future__ import annotations

import io
from typing import Any

import pytest

BUCKET = "my-bucket"
SAMPLES = 16


def _sample(i: int) -> bytes:
    import torch

    buf = io.BytesIO()
    image = torch.full((3, 8, 8), i, dtype=torch.uint8)
    torch.save({"image": image, "label": i % 2}, buf)
    return buf.getvalue()


@pytest.fixture(scope="session")
def docs_bucket(boto_s3: Any) -> str:
    """``my-bucket``, holding the quickstart's sixteen samples under ``train/``."""
    existing = {b["Name"] for b in boto_s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        boto_s3.create_bucket(Bucket=BUCKET)
    for i in range(SAMPLES):
        boto_s3.put_object(
            Bucket=BUCKET, Key=f"train/sample-{i:03d}.pt", Body=_sample(i)
        )
    return BUCKET
