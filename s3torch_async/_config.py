"""Client configuration: the reference's ``S3ClientConfig`` and its validation rules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ._errors import INVALID_PART_SIZE, S3Exception

__all__ = ["S3ClientConfig", "validate_for_use"]

MiB = 1024 * 1024
GiB = 1024 * MiB

_REQUESTER_PAYS_UNSIGNED = (
    "requester_pays=True requires authenticated requests and cannot be combined with "
    "unsigned=True. For more information, see "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/RequesterPaysBuckets.html"
)


@dataclass(frozen=True)
class S3ClientConfig:
    """Configuration of an S3 client, shared by every entry point.

    Attributes:
        throughput_target_gbps: Throughput target in Gbit/s; sets how many ranged GETs and part
            uploads run concurrently.
        part_size: Size in bytes of multipart upload parts and of ranged GET parts
            (5 MiB to 5 GiB, checked when a client first uses it).
        unsigned: Send anonymous (unsigned) requests.
        force_path_style: Use path-style addressing (``https://host/bucket/key``).
        max_attempts: Total attempts per request for retriable errors (>= 1).
        profile: Profile name from the AWS config files.
        requester_pays: Send ``x-amz-request-payer: requester`` on every request.
    """

    throughput_target_gbps: float = 10.0
    part_size: int = 8 * MiB
    unsigned: bool = False
    force_path_style: bool = False
    max_attempts: int = 10
    profile: Optional[str] = None
    requester_pays: bool = False

    def __post_init__(self) -> None:
        if self.requester_pays and self.unsigned:
            raise ValueError(_REQUESTER_PAYS_UNSIGNED)


def validate_for_use(config: S3ClientConfig) -> None:
    """Check the fields the reference validates lazily, when a client is first used.

    Raises:
        S3Exception: ``part_size``, ``max_attempts`` or ``throughput_target_gbps`` is out of range.
    """
    part_size = config.part_size
    if (
        not isinstance(part_size, int)
        or isinstance(part_size, bool)
        or not (5 * MiB <= part_size <= 5 * GiB)
    ):
        raise S3Exception(f"{INVALID_PART_SIZE} (got part_size={part_size!r})")
    attempts = config.max_attempts
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise S3Exception(
            f"invalid configuration: max_attempts must be >= 1 (got max_attempts={attempts!r})"
        )
    gbps = config.throughput_target_gbps
    if not isinstance(gbps, (int, float)) or not math.isfinite(gbps) or gbps <= 0:
        raise S3Exception(
            "invalid configuration: throughput_target_gbps must be a positive number "
            f"(got throughput_target_gbps={gbps!r})"
        )
