"""S3StorageWriter's uploads carry the right CRC-32 for every part, computed once.

Tensor items are serialised with their CRC-32s computed as they are written (the zip needs
them); the upload's part checksums are added up from those, not hashed again. moto does not
verify part checksums, so the test checks every part's header against the stored bytes.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
import torch
from torch.distributed.checkpoint import state_dict_saver

from s3torch_async import S3ClientConfig
from s3torch_async._core._checksum import crc32_b64
from s3torch_async._core._planning import MiB
from s3torch_async.dcp import S3StorageWriter
from tests._faultproxy import FaultProxy
from tests.dcp._helpers import REGION, load

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]

PART = 5 * MiB


def test_every_uploaded_part_carries_the_crc32_of_its_bytes(
    proxy: FaultProxy, bucket: str, boto_s3: Any
) -> None:
    torch.manual_seed(1)
    expected: Dict[str, Any] = {
        "big": torch.randn(3 * MiB),  # 12 MiB: spans parts
        "odd": torch.randn(333_333),
        "meta": {"step": 3},
        "small": torch.arange(10),
    }
    path = f"s3://{bucket}/crc"
    writer = S3StorageWriter(
        REGION,
        path,
        s3client_config=S3ClientConfig(part_size=PART, max_attempts=1),
        endpoint=proxy.url,
    )
    state_dict_saver.save(expected, storage_writer=writer)
    data = boto_s3.get_object(Bucket=bucket, Key="crc/__0_0.distcp")["Body"].read()
    sent = [
        {k.lower(): v for k, v in headers.items()}.get("x-amz-checksum-crc32")
        for method, raw, headers in proxy.requests
        if method == "PUT" and "__0_0.distcp" in raw and "partNumber=" in raw
    ]
    parts = [data[at : at + PART] for at in range(0, len(data), PART)]
    assert len(parts) >= 3
    assert sent == [crc32_b64(part) for part in parts]
    loaded: Dict[str, Any] = {
        "big": torch.zeros(3 * MiB),
        "odd": torch.zeros(333_333),
        "meta": {"step": None},
        "small": torch.zeros(10, dtype=torch.int64),
    }
    load(loaded, path, proxy.url)
    for name in ("big", "odd", "small"):
        assert torch.equal(loaded[name], expected[name])
    assert loaded["meta"] == {"step": 3}
