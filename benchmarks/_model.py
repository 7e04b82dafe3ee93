"""The data shared by the runner and its worker processes: sizes, keys, jobs, outcomes.

A :class:`Job` says what one worker process measures (one benchmark, one client variant, one
repetition); it crosses the process boundary as JSON. A client function turns a job into a
zero-argument callable, the only thing that is timed, which returns an :class:`Outcome`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

#: Every key the harness writes lives under this prefix (shared endpoints stay tidy).
ROOT_PREFIX = "s3torch-async-bench/"
#: Bucket created on the local and moto servers.
LOCAL_BUCKET = "s3torch-async-bench"
REGION = "us-east-1"


@dataclass(frozen=True)
class Sizes:
    """How much data each case moves (bytes unless named ``*_count``)."""

    read_size: int = 1 * GiB
    small_count: int = 2000
    small_size: int = 128 * KiB
    write_size: int = 1 * GiB
    list_count: int = 10_000
    checkpoint_size: int = 512 * MiB
    dcp_size: int = 512 * MiB

    def replace(self, **changes: int) -> Sizes:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


FULL = Sizes()
QUICK = Sizes(
    read_size=64 * MiB,
    small_count=200,
    write_size=64 * MiB,
    list_count=2000,
    checkpoint_size=64 * MiB,
    dcp_size=64 * MiB,
)

_UNITS = {"": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB}


def parse_size(text: str) -> int:
    """Parse ``"128KiB"``, ``"1GiB"``, ``"64M"`` or a plain integer (binary units).

    Raises:
        ValueError: The text is not a size.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (try 1GiB, 128KiB, 2000)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def human_size(size: int) -> str:
    """``1073741824`` -> ``"1GiB"``; sizes that are not whole units stay in bytes."""
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


class Keys:
    """Where each case's data lives, derived from the sizes (so data can be reused)."""

    def __init__(self, sizes: Sizes, prefix: str = ROOT_PREFIX) -> None:
        self.sizes = sizes
        self.prefix = prefix

    @property
    def read_object(self) -> str:
        """The large object of case 1."""
        return f"{self.prefix}read/{human_size(self.sizes.read_size)}"

    @property
    def warmup_object(self) -> str:
        """A 1-byte object every warm-up request heads."""
        return f"{self.prefix}warmup"

    @property
    def small_prefix(self) -> str:
        """The prefix holding case 2's small objects (ends with ``/``)."""
        s = self.sizes
        return f"{self.prefix}small/{s.small_count}x{human_size(s.small_size)}/"

    def small_object(self, index: int) -> str:
        """Key of small object ``index``."""
        return f"{self.small_prefix}{index:06d}"

    @property
    def cold_object(self) -> str:
        """The small object case 7's fresh processes read first."""
        return f"{self.prefix}cold/{human_size(self.sizes.small_size)}"

    @property
    def list_prefix(self) -> str:
        """The prefix holding case 4's empty objects (ends with ``/``)."""
        return f"{self.prefix}list/{self.sizes.list_count}/"

    def list_object(self, index: int) -> str:
        """Key of listing object ``index``."""
        return f"{self.list_prefix}{index:06d}"

    @property
    def write_object(self) -> str:
        """The object case 3 writes (every client overwrites the same key)."""
        return f"{self.prefix}write/object"

    @property
    def checkpoint_load(self) -> str:
        """The checkpoint case 5 loads."""
        return f"{self.prefix}ckpt/{human_size(self.sizes.checkpoint_size)}/load.pt"

    @property
    def checkpoint_save(self) -> str:
        """The checkpoint case 5 saves."""
        return f"{self.prefix}ckpt/save.pt"

    @property
    def dcp_load(self) -> str:
        """The DCP checkpoint case 6 loads (a prefix, ends with ``/``)."""
        return f"{self.prefix}dcp/{human_size(self.sizes.dcp_size)}/load/"

    @property
    def dcp_save(self) -> str:
        """The DCP checkpoint case 6 saves (a prefix, ends with ``/``)."""
        return f"{self.prefix}dcp/save/"


@dataclass(frozen=True)
class Target:
    """The store under test."""

    endpoint: Optional[str]
    bucket: str
    region: str = REGION

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class Job:
    """One measurement, as handed to a worker process.

    Attributes:
        bench: Benchmark id (``"1"``, ``"2-w0"``...).
        variant: ``family/name`` of the client variant.
        function: ``module:function`` that prepares the timed callable.
        options: Keyword arguments for that function.
        target: The store.
        sizes: The sizes of this run.
        server_pid: PID of a local server process, to read its CPU time (or ``None``).
        count_requests: Hook the HTTP stack to count requests (aiohttp/urllib3 clients, in
            this process only).
        import_torch: Import torch before measuring, so every client starts from the same
            memory baseline (off only for fast smoke runs).
    """

    bench: str
    variant: str
    function: str
    target: Target
    sizes: Sizes
    options: Dict[str, Any] = field(default_factory=dict)
    server_pid: Optional[int] = None
    count_requests: bool = True
    import_torch: bool = True

    @property
    def keys(self) -> Keys:
        """The run's key layout."""
        return Keys(self.sizes)

    def to_json(self) -> str:
        """Serialise for the worker's command line."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        raw["target"] = Target(**raw["target"])
        raw["sizes"] = Sizes(**raw["sizes"])
        return cls(**raw)


@dataclass
class Outcome:
    """What a timed callable did: bytes and objects moved, plus data to verify afterwards.

    Attributes:
        nbytes: Payload bytes read or written.
        nobjects: Objects (or keys, for listings) handled.
        check: Verification run after timing; raises ``AssertionError`` on a mismatch.
        cleanup: Run after the check (close clients and loops), untimed.
        extra: Figures worth keeping in the JSON (e.g. a memory bound).
    """

    nbytes: int = 0
    nobjects: int = 0
    check: Optional[Callable[[], None]] = None
    cleanup: Optional[Callable[[], None]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


#: A client function: prepares everything untimed and returns the timed callable.
Prepare = Callable[..., Callable[[], Outcome]]
